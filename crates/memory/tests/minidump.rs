//! The minidump source: synthetic dumps (streams present/absent, gaps, hostile sizes), the real
//! corpus under `../shared/corpus/minidump`, and the lab's committed dumps under `samples/`.

use std::io::Write;
use std::path::{Path, PathBuf};

use minidump_synth::{
    DumpString, ListStream, Memory, MemoryInfo, MiscStream, Module as SynthModule, SectionExtra,
    SimpleStream, SynthMinidump, SystemInfo, amd64_context,
};
use preentry_memory::dump::MinidumpSource;
use preentry_memory::{
    Arch, Availability, MemoryError, MemoryReader, ProcessMemory, RegionKind, RegionState,
};
use test_assembler::{Endian, Section};

const LE: Endian = Endian::Little;
const PEB: u64 = 0x7000_0000;
const PARAMS: u64 = 0x7000_0800;
const TEB: u64 = 0x7010_0000;
const IMAGE: u64 = 0x1_4000_0000;
const STACK: u64 = 0x20_0000;
const TID: u32 = 0x174;
const WPID: u32 = 4242;
const ENTRY: u64 = IMAGE + 0x14d0;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn corpus(rel: &str) -> PathBuf {
    workspace_root().join("../shared/corpus/minidump").join(rel)
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

/// A page holding the PEB and its process parameters.
fn peb_page() -> Vec<u8> {
    let mut p = vec![0u8; 0x1000];
    let put = |p: &mut Vec<u8>, off: usize, b: &[u8]| p[off..off + b.len()].copy_from_slice(b);
    put(&mut p, 0x10, &IMAGE.to_le_bytes());
    put(&mut p, 0x18, &0u64.to_le_bytes()); // Ldr: loader has not run
    put(&mut p, 0x20, &PARAMS.to_le_bytes());
    let path = utf16(r"C:\lab\victim.exe");
    let cmd = utf16(r"victim.exe --hold");
    let po = (PARAMS - PEB) as usize;
    put(&mut p, po + 0x60, &(path.len() as u16).to_le_bytes());
    put(&mut p, po + 0x62, &(path.len() as u16).to_le_bytes());
    put(&mut p, po + 0x68, &(PARAMS + 0x200).to_le_bytes());
    put(&mut p, po + 0x70, &(cmd.len() as u16).to_le_bytes());
    put(&mut p, po + 0x72, &(cmd.len() as u16).to_le_bytes());
    put(&mut p, po + 0x78, &(PARAMS + 0x400).to_le_bytes());
    put(&mut p, po + 0x200, &path);
    put(&mut p, po + 0x400, &cmd);
    p
}

fn teb_page() -> Vec<u8> {
    let mut p = vec![0u8; 0x1000];
    p[0x08..0x10].copy_from_slice(&(STACK + 0x10000).to_le_bytes());
    p[0x10..0x18].copy_from_slice(&STACK.to_le_bytes());
    p[0x30..0x38].copy_from_slice(&TEB.to_le_bytes());
    p[0x40..0x48].copy_from_slice(&u64::from(WPID).to_le_bytes());
    p[0x48..0x50].copy_from_slice(&u64::from(TID).to_le_bytes());
    p[0x60..0x68].copy_from_slice(&PEB.to_le_bytes());
    p
}

fn image_pages() -> (Vec<u8>, Vec<u8>) {
    let mut head = vec![0u8; 0x1000];
    head[0] = b'M';
    head[1] = b'Z';
    let text = vec![0xccu8; 0x1000];
    (head, text)
}

#[derive(Clone, Copy)]
struct Opts {
    /// `ContextFlags` of a hand-built CONTEXT_AMD64 instead of minidump-synth's full one.
    context_flags: Option<u32>,
    system_info: bool,
    misc: bool,
    memory_info: bool,
    thread_info: bool,
    memory64: bool,
}

const FULL: Opts = Opts {
    context_flags: None,
    system_info: true,
    misc: true,
    memory_info: true,
    thread_info: true,
    memory64: true,
};

/// A synthetic dump of a suspended x64 process: PEB, TEB, image header and a text page with
/// a one-page gap between them, one suspended thread whose context is the pending initial one.
fn synth(o: Opts) -> Vec<u8> {
    let (head, text) = image_pages();
    let mut dump = SynthMinidump::with_endian(LE);
    let blocks = [
        (PEB, peb_page()),
        (TEB, teb_page()),
        (IMAGE, head),
        (IMAGE + 0x2000, text), // IMAGE+0x1000 is a gap
    ];
    let stack = Memory::with_section(
        Section::with_endian(LE).append_repeated(0, 0x100),
        STACK + 0xff00,
    );
    for (addr, bytes) in blocks {
        let m = Memory::with_section(Section::with_endian(LE).append_bytes(&bytes), addr);
        dump = if o.memory64 {
            dump.add_memory64(m)
        } else {
            dump.add_memory(m)
        };
    }
    // Thread with a TEB and suspend count 1 (minidump-synth's Thread has neither).
    // minidump-synth's context sets rip/rsp only; rcx/rdx are checked on real dumps.
    let ctx = match o.context_flags {
        None => amd64_context(LE, 0x1_7005_dc20, STACK + 0xffd8),
        Some(flags) => {
            // CONTEXT_AMD64 is 0x4d0 bytes: flags +0x30, cs +0x38, rcx +0x80, rsp +0x98, rip +0xf8.
            let mut c = vec![0u8; 0x4d0];
            c[0x30..0x34].copy_from_slice(&flags.to_le_bytes());
            c[0x38..0x3a].copy_from_slice(&0x33u16.to_le_bytes());
            c[0x80..0x88].copy_from_slice(&ENTRY.to_le_bytes());
            c[0x98..0xa0].copy_from_slice(&(STACK + 0xffd8).to_le_bytes());
            c[0xf8..0x100].copy_from_slice(&0x1_7005_dc20u64.to_le_bytes());
            Section::with_endian(LE).append_bytes(&c)
        }
    };
    let thread = Section::with_endian(LE)
        .D32(TID)
        .D32(1) // suspend_count
        .D32(0)
        .D32(0)
        .D64(TEB)
        .cite_memory(&stack)
        .cite_location(&ctx);
    let threads = ListStream::<Section>::new(3u32, LE).add(thread);
    dump = dump.add(ctx).add_memory(stack).add_stream(threads);
    if o.thread_info {
        let mut s = Section::with_endian(LE).D32(12).D32(64).D32(1);
        s = s
            .D32(TID)
            .D32(0)
            .D32(0)
            .D32(0)
            .D64(0)
            .D64(0)
            .D64(0)
            .D64(0)
            .D64(ENTRY) // start_address
            .D64(1);
        dump = dump.add_stream(SimpleStream {
            stream_type: 17,
            section: s,
        });
    }
    if o.memory_info {
        let infos = [
            (PEB, 0x1000u64, 0x1000u32, 0x04u32, 0x20000u32),
            (TEB, 0x1000, 0x1000, 0x04, 0x20000),
            (IMAGE, 0x1000, 0x1000, 0x02, 0x1000000),
            (IMAGE + 0x1000, 0x1000, 0x2000, 0x00, 0x1000000),
            (IMAGE + 0x2000, 0x1000, 0x1000, 0x40, 0x20000),
            (0x10000, 0x10000, 0x10000, 0x01, 0),
        ];
        for (base, size, state, prot, ty) in infos {
            dump =
                dump.add_memory_info(MemoryInfo::new(LE, base, base, prot, size, state, prot, ty));
        }
    }
    let name = DumpString::new(r"C:\lab\victim.exe", LE);
    let module = SynthModule::new(LE, IMAGE, 0x3000, &name, 0, 0, None);
    dump = dump.add_module(module).add(name);
    if o.system_info {
        dump = dump.add_system_info(SystemInfo::new(LE).set_processor_architecture(9));
    }
    if o.misc {
        let mut misc = MiscStream::new(LE);
        misc.process_id = Some(WPID);
        dump = dump.add_stream(misc);
    }
    dump.finish().expect("synthetic dump")
}

fn open_bytes(bytes: Vec<u8>) -> MinidumpSource {
    MinidumpSource::from_bytes(PathBuf::from("synthetic.dmp"), bytes)
        .expect("synthetic dump parses")
}

#[test]
fn full_synthetic_dump() {
    let src = open_bytes(synth(FULL));
    let id = src.identity();
    assert_eq!(id.windows_pid, Some(WPID));
    assert_eq!(id.pid, WPID);
    assert_eq!(id.arch, Arch::X64);
    assert_eq!(id.peb_address, Some(PEB));
    assert_eq!(id.peb_image_base, Some(IMAGE));
    assert_eq!(id.image_path.as_deref(), Some(r"C:\lab\victim.exe"));
    assert_eq!(id.command_line.as_deref(), Some("victim.exe --hold"));
    assert!(id.notes.is_empty(), "{:?}", id.notes);

    let regions = src.regions().available().expect("MemoryInfoList present");
    assert_eq!(regions.len(), 6);
    let img = src.region_at(IMAGE + 5).unwrap();
    assert_eq!(img.kind, RegionKind::Image);
    assert_eq!(img.path.as_deref(), Some(Path::new(r"C:\lab\victim.exe")));
    let rwx = src.region_at(IMAGE + 0x2100).unwrap();
    assert_eq!(rwx.kind, RegionKind::Private);
    assert!(rwx.protection.writable_executable());
    assert_eq!(
        src.region_at(IMAGE + 0x1000).unwrap().state,
        RegionState::Reserve
    );
    assert!(src.region_at(0x5000_0000).is_none());

    let threads = src.threads().available().expect("ThreadList present");
    assert_eq!(threads.len(), 1);
    let t = &threads[0];
    assert_eq!(t.tid, TID);
    assert_eq!(t.teb, Some(TEB));
    assert_eq!(t.suspended(), Some(true));
    assert_eq!(t.start_address, Availability::Available(ENTRY));
    assert_eq!(
        t.instruction_pointer,
        Availability::Available(0x1_7005_dc20)
    );
    let ctx = t.context.clone().available().unwrap();
    assert_eq!(ctx.rsp, STACK + 0xffd8);
    assert_eq!(t.stack, Some(STACK..STACK + 0x10000));

    let mods = src.modules().available().unwrap();
    assert_eq!(mods.len(), 1);
    assert_eq!(mods[0].name, "victim.exe");
    assert_eq!(src.module_at(IMAGE + 0x10).unwrap().base, IMAGE);
}

#[test]
fn reads_report_gaps_exactly() {
    let src = open_bytes(synth(FULL));
    // header page, gap page, text page
    let mut buf = vec![0xffu8; 0x3000];
    let r = src.read(IMAGE, &mut buf).unwrap();
    assert_eq!(
        r.valid,
        vec![IMAGE..IMAGE + 0x1000, IMAGE + 0x2000..IMAGE + 0x3000]
    );
    assert_eq!(r.unreadable, vec![IMAGE + 0x1000..IMAGE + 0x2000]);
    assert_eq!(&buf[..2], b"MZ");
    assert!(
        buf[0x1000..0x2000].iter().all(|&b| b == 0),
        "gap bytes are zeroed"
    );
    assert!(buf[0x2000..].iter().all(|&b| b == 0xcc));
    assert_eq!(r.bytes_read(), 0x2000);

    assert_eq!(src.read_u64(TEB + 0x30).unwrap(), TEB);
    match src.read_u64(IMAGE + 0xffc) {
        Err(MemoryError::Unreadable { addr, .. }) => assert_eq!(addr, IMAGE + 0x1000),
        other => panic!("expected Unreadable, got {other:?}"),
    }
    let rb = src.read_range(IMAGE, 0x10_0000, 0x1800).unwrap();
    assert!(rb.truncated);
    assert_eq!(rb.bytes.len(), 0x1800);
    assert_eq!(rb.result.unreadable, vec![IMAGE + 0x1000..IMAGE + 0x1800]);
    // At the top of the address space: no wrap, no panic.
    let mut b = [0u8; 32];
    let r = src.read(u64::MAX - 8, &mut b).unwrap();
    assert!(r.valid.is_empty());
    assert_eq!(r.unreadable, vec![u64::MAX - 8..u64::MAX]);
    let mut expected = [
        STACK + 0xff00..STACK + 0x10000,
        IMAGE..IMAGE + 0x1000,
        IMAGE + 0x2000..IMAGE + 0x3000,
        PEB..PEB + 0x1000,
        TEB..TEB + 0x1000,
    ];
    expected.sort_by_key(|r| r.start);
    assert_eq!(src.memory_ranges(), &expected[..]);
}

#[test]
fn absent_streams_are_reported_not_guessed() {
    // Like a Wine-written dump: no MemoryInfoList, no ThreadInfoList.
    let src = open_bytes(synth(Opts {
        memory_info: false,
        thread_info: false,
        ..FULL
    }));
    assert_eq!(
        src.regions().reason(),
        Some("MemoryInfoList stream absent from this dump")
    );
    let t = &src.threads().available().unwrap()[0];
    assert_eq!(
        t.start_address.reason(),
        Some("ThreadInfoList stream absent from this dump")
    );
    assert!(t.context.is_available(), "context still decoded");
    assert!(src.region_at(IMAGE).is_none());
    // Memory is still readable and the identity still comes from the PEB.
    assert_eq!(src.identity().peb_image_base, Some(IMAGE));

    // No SystemInfo: CPU unknown, contexts not decoded, PEB not interpreted.
    let src = open_bytes(synth(Opts {
        system_info: false,
        misc: false,
        ..FULL
    }));
    assert_eq!(src.identity().arch, Arch::Unknown);
    assert_eq!(src.identity().windows_pid, None);
    assert_eq!(src.identity().peb_address, None);
    let t = &src.threads().available().unwrap()[0];
    assert!(
        t.context
            .reason()
            .unwrap()
            .contains("SystemInfo stream absent")
    );
    assert!(!t.instruction_pointer.is_available());
    assert!(
        src.identity()
            .notes
            .iter()
            .any(|n| n.contains("pid unknown"))
    );

    // MemoryList instead of Memory64List reads the same.
    let src = open_bytes(synth(Opts {
        memory64: false,
        ..FULL
    }));
    assert_eq!(src.read_u64(PEB + 0x10).unwrap(), IMAGE);
    let st = src
        .streams()
        .iter()
        .find(|s| s.name == "Memory64List")
        .unwrap();
    assert!(!st.status.is_available());
}

#[test]
fn gzip_dumps_open_transparently() {
    let raw = synth(FULL);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("victim.dmp.gz");
    let f = std::fs::File::create(&path).unwrap();
    let mut enc = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    enc.write_all(&raw).unwrap();
    enc.finish().unwrap();
    let src = MinidumpSource::open(&path).unwrap();
    assert_eq!(src.identity().peb_image_base, Some(IMAGE));
    assert!(src.describe().contains("victim.dmp.gz"));

    // A corrupt gzip stream is a named error.
    std::fs::write(&path, [0x1f, 0x8b, 8, 0, 0, 0]).unwrap();
    match MinidumpSource::open(&path) {
        Err(MemoryError::Minidump { path: p, detail }) => {
            assert_eq!(p, path);
            assert!(detail.contains("gzip"), "{detail}");
        }
        other => panic!("expected a Minidump error, got {other:?}"),
    }
    match MinidumpSource::open(dir.path().join("missing.dmp")) {
        Err(MemoryError::Io { path, .. }) => assert!(path.ends_with("missing.dmp")),
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn hostile_sizes_and_mutations_never_panic() {
    // Memory-info regions at the top of the address space and overlapping ones.
    let mut dump = SynthMinidump::with_endian(LE)
        .add_system_info(SystemInfo::new(LE).set_processor_architecture(9));
    for (base, size) in [
        (u64::MAX - 0xfff, u64::MAX),
        (0x1000, 0x10_0000),
        (0x2000, 0x1000),
        (0, 0),
    ] {
        dump = dump.add_memory_info(MemoryInfo::new(LE, base, base, 4, size, 0x1000, 4, 0x20000));
    }
    let m = Memory::with_section(
        Section::with_endian(LE).append_repeated(0x41, 0x2000),
        u64::MAX - 0xfff,
    );
    let bytes = dump.add_memory(m).finish().unwrap();
    let src = open_bytes(bytes);
    let regions = src.regions().available().unwrap();
    for w in regions.windows(2) {
        assert!(w[0].end() <= w[1].base, "regions overlap: {w:?}");
    }
    let mut b = [0u8; 0x20];
    let r = src.read(u64::MAX - 0x10, &mut b).unwrap();
    assert_eq!(r.valid, vec![u64::MAX - 0x10..u64::MAX]);

    // Deterministic mutations of a valid dump: every outcome is Ok or a named error.
    let base = synth(FULL);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut ok = 0;
    for _ in 0..3000 {
        let mut m = base.clone();
        for _ in 0..(1 + rnd() % 8) {
            let i = (rnd() as usize) % m.len();
            m[i] = rnd() as u8;
        }
        if rnd() % 10 == 0 {
            let cut = (rnd() as usize) % m.len();
            m.truncate(cut);
        }
        if let Ok(src) = MinidumpSource::from_bytes(PathBuf::from("mutant.dmp"), m) {
            ok += 1;
            let mut buf = vec![0u8; 0x100];
            for r in src.memory_ranges().to_vec() {
                let _ = src.read(r.start, &mut buf);
            }
            let _ = src.threads();
            let _ = src.regions();
        }
    }
    assert!(ok > 0, "some mutants must still parse");
}

#[test]
fn corpus_invalid_dumps_give_clear_errors() {
    for name in ["invalid-range.dmp", "invalid-record-count.dmp"] {
        let path = corpus(&format!("rust-minidump/testdata/{name}"));
        match MinidumpSource::open(&path) {
            Err(MemoryError::Minidump { path: p, detail }) => {
                assert_eq!(p, path);
                assert!(detail.contains("no usable stream"), "{detail}");
                let msg = MemoryError::Minidump { path: p, detail }.to_string();
                assert!(msg.contains(name), "{msg}");
            }
            other => panic!("{name}: expected a Minidump error, got {other:?}"),
        }
    }
}

#[test]
fn corpus_windows_dump_identity_and_peb_cross_check() {
    // An Electron renderer dumped on Windows (x64, MemoryList, no MemoryInfoList).
    let src =
        MinidumpSource::open(corpus("electron-node-minidump/test/fixtures/windows.dmp")).unwrap();
    let id = src.identity();
    assert_eq!(id.windows_pid, Some(10148));
    assert_eq!(id.arch, Arch::X64);
    assert!(
        id.image_path
            .as_deref()
            .unwrap()
            .ends_with(r"\electron.exe")
    );
    assert!(
        id.command_line
            .as_deref()
            .unwrap()
            .contains("--type=renderer")
    );
    let mods = src.modules().available().unwrap();
    assert_eq!(mods.len(), 58);
    // A process that is not hollowed: PEB.ImageBaseAddress is the main module's base.
    assert_eq!(id.peb_image_base, Some(mods[0].base));
    assert_eq!(
        src.regions().reason(),
        Some("MemoryInfoList stream absent from this dump")
    );
    let threads = src.threads().available().unwrap();
    assert_eq!(threads.len(), 14);
    for t in threads {
        let ctx = t.context.clone().available().expect("x64 context decoded");
        assert_eq!(ctx.cs, 0x33);
        let st = t.stack.clone().expect("stack bounds from the captured TEB");
        assert!(st.contains(&ctx.rsp), "rsp {:#x} outside {st:x?}", ctx.rsp);
    }
}

#[test]
fn corpus_dump_with_memory_info_list() {
    let src = MinidumpSource::open(corpus(
        "breakpad/src/processor/testdata/tiny-exe-with-cet-xsave.dmp",
    ))
    .unwrap();
    let id = src.identity();
    assert_eq!(id.windows_pid, Some(15444));
    let base = id.peb_image_base.unwrap();
    let mods = src.modules().available().unwrap();
    assert_eq!(mods[0].base, base);
    let r = src.region_at(base).expect("region of the exe");
    assert_eq!(r.kind, RegionKind::Image);
    assert_eq!(r.state, RegionState::Commit);
    assert!(
        r.path
            .as_ref()
            .unwrap()
            .to_string_lossy()
            .ends_with("tiny.exe")
    );
    let regions = src.regions().available().unwrap();
    assert_eq!(regions.len(), 557);
    assert!(regions.iter().any(|r| r.state == RegionState::Free));
    assert!(regions.iter().any(|r| r.kind == RegionKind::Mapped));
}

#[test]
fn every_corpus_dump_opens_or_fails_cleanly() {
    let dirs = [
        "breakpad/src/processor/testdata",
        "electron-node-minidump/test/fixtures",
        "rust-minidump/testdata",
    ];
    let mut seen = 0;
    for d in dirs {
        let dir = corpus(d);
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            if p.extension().is_none_or(|x| x != "dmp") {
                continue;
            }
            seen += 1;
            let bytes = std::fs::read(&p).unwrap();
            // The whole file, then truncated halves: Ok or a named error, never a panic.
            for cut in [bytes.len(), bytes.len() / 2, bytes.len() / 7, 40] {
                let mut b = bytes.clone();
                b.truncate(cut);
                match MinidumpSource::from_bytes(p.clone(), b) {
                    Ok(src) => {
                        let _ = src.threads();
                        let _ = src.modules();
                        let mut buf = [0u8; 64];
                        for r in src.memory_ranges().iter().take(50) {
                            let _ = src.read(r.start, &mut buf);
                        }
                    }
                    Err(e) => assert!(
                        e.to_string()
                            .contains(&*p.file_name().unwrap().to_string_lossy())
                    ),
                }
            }
        }
    }
    assert!(seen >= 14, "corpus dumps found: {seen}");
}

fn meta_hex(meta: &serde_json::Value, key: &str) -> u64 {
    let v = meta[key]
        .as_str()
        .unwrap_or_else(|| panic!("meta.json: no {key}"));
    u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap()
}

/// `key=0x...` from the attacker's detail line.
fn detail_hex(detail: &str, key: &str) -> Option<u64> {
    detail
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok())
}

/// The lab's committed dumps (`samples/<scenario>/victim.dmp.gz` with `meta.json`): the dump
/// must agree with what the lab recorded at the checkpoint.
#[test]
fn lab_sample_dumps() {
    let samples = workspace_root().join("samples");
    let mut checked = 0;
    let dirs = std::fs::read_dir(&samples).map(|rd| rd.flatten().collect::<Vec<_>>());
    for d in dirs.unwrap_or_default() {
        let meta_path = d.path().join("meta.json");
        let Ok(text) = std::fs::read_to_string(&meta_path) else {
            continue;
        };
        let meta: serde_json::Value = serde_json::from_str(&text).unwrap();
        let Some(dump_name) = meta["dump"].as_str() else {
            continue;
        };
        let gz = d.path().join(format!("{dump_name}.gz"));
        let path = if gz.exists() {
            gz
        } else {
            d.path().join(dump_name)
        };
        let src = MinidumpSource::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let id = src.identity();
        let wpid = meta["windows_pid"].as_u64().unwrap() as u32;
        assert_eq!(id.windows_pid, Some(wpid), "{}", path.display());
        assert_eq!(id.arch, Arch::X64);
        assert_eq!(id.peb_address, Some(meta_hex(&meta, "peb")));
        assert_eq!(id.peb_image_base, Some(meta_hex(&meta, "image_base")));
        assert_eq!(
            id.image_path.as_deref(),
            meta["victim_windows_path"].as_str()
        );
        // Wine-written: no MemoryInfoList, no ThreadInfoList — said, not guessed.
        assert_eq!(
            src.regions().reason(),
            Some("MemoryInfoList stream absent from this dump")
        );
        let tid = meta["windows_tid"].as_u64().unwrap() as u32;
        let threads = src.threads().available().expect("ThreadList");
        let t = threads
            .iter()
            .find(|t| t.tid == tid)
            .expect("initial thread");
        assert!(t.start_address.reason().unwrap().contains("ThreadInfoList"));
        let ctx = t.context.clone().available().expect("context");
        if meta["checkpoint"] == "suspended" {
            assert_eq!(t.suspended(), Some(true));
            assert_eq!(ctx.rdx, id.peb_address.unwrap(), "rdx = PEB before start");
        }
        // tls-array-swap: the patched AddressOfCallBacks points at the new array, whose slot 0
        // is the injected code — readable from the dump alone.
        let detail = meta["attacker_detail"].as_str().unwrap_or("");
        if let (Some(dir), Some(array), Some(injected)) = (
            detail_hex(detail, "tls_directory"),
            detail_hex(detail, "new_array"),
            detail_hex(detail, "injected"),
        ) {
            assert_eq!(src.read_u64(dir + 0x18).unwrap(), array);
            assert_eq!(src.read_u64(array).unwrap(), injected);
        }
        checked += 1;
    }
    if checked == 0 {
        eprintln!(
            "NOTE: no lab dumps under {} yet; nothing to check",
            samples.display()
        );
    }
}

#[test]
fn partial_contexts_are_not_read_as_zeros() {
    // CONTEXT_CONTROL only: rip/rsp captured, rcx/rdx (integer group) not.
    let src = open_bytes(synth(Opts {
        context_flags: Some(0x0010_0001),
        ..FULL
    }));
    let t = &src.threads().available().unwrap()[0];
    assert_eq!(
        t.instruction_pointer,
        Availability::Available(0x1_7005_dc20)
    );
    assert!(
        t.context.reason().unwrap().contains("CONTEXT_INTEGER"),
        "{:?}",
        t.context
    );

    // Both groups: the hand-built context decodes, rcx included.
    let src = open_bytes(synth(Opts {
        context_flags: Some(0x0010_0003),
        ..FULL
    }));
    let t = &src.threads().available().unwrap()[0];
    let ctx = t.context.clone().available().unwrap();
    assert_eq!((ctx.rip, ctx.rcx, ctx.cs), (0x1_7005_dc20, ENTRY, 0x33));

    // Neither group.
    let src = open_bytes(synth(Opts {
        context_flags: Some(0x0010_0000),
        ..FULL
    }));
    let t = &src.threads().available().unwrap()[0];
    assert!(
        t.instruction_pointer
            .reason()
            .unwrap()
            .contains("CONTEXT_CONTROL")
    );
    assert!(!t.context.is_available());
}
