//! `scan` end to end over synthetic minidumps (no lab needed): a real corpus PE with a TLS
//! callback (goblin's `lld_with_tls_64.exe.bin`) is mapped as the loader maps it by
//! `preentry-pe`'s synth builder, wrapped into a minidump by `minidump-synth` with a PEB, a TEB
//! and a suspended thread, optionally tampered as the tls-array-swap attack does, and read back
//! through `preentry-memory`'s minidump source. Two dump shapes: a Windows-written one (with
//! MemoryInfoList and a module list) and a Wine-written one (neither).

use std::path::{Path, PathBuf};

use minidump_synth::{
    DumpString, ListStream, Memory, MemoryInfo, MiscStream, Module as SynthModule, SectionExtra,
    SynthMinidump, SystemInfo,
};
use preentry_memory::dump::MinidumpSource;
use preentry_pe::synth::{LoadedImage, TlsField};
use preentry_scan::{
    DiskResolver, FindingKind, ProcessReport, ScanOptions, Severity, scan_process,
};
use test_assembler::{Endian, Section};

const LE: Endian = Endian::Little;
const FILE: &str = "lld_with_tls_64.exe.bin";
const IMAGE: u64 = 0x1_4000_0000;
const PEB: u64 = 0x7000_0000;
const PARAMS: u64 = 0x7000_0800;
const TEB: u64 = 0x7010_0000;
const STACK: u64 = 0x20_0000;
/// Where the attack writes its code (private RWX) and its new callback array.
const CODE: u64 = 0x34_0000;
const ARRAY: u64 = 0x35_0000;
const TID: u32 = 0x40;
/// The image's entry point (RVA 0x1010).
const ENTRY: u64 = IMAGE + 0x1010;
const WPID: u32 = 0x3c;

const MEM_COMMIT: u32 = 0x1000;
const MEM_PRIVATE: u32 = 0x20000;
const MEM_IMAGE: u32 = 0x100_0000;
const PAGE_READONLY: u32 = 0x02;
const PAGE_READWRITE: u32 = 0x04;
const PAGE_EXECUTE_READ: u32 = 0x20;
const PAGE_EXECUTE_READWRITE: u32 = 0x40;

fn goblin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/pe/goblin/tests/bins/pe")
}

fn corpus_present() -> bool {
    let ok = goblin_dir().join(FILE).is_file();
    if !ok {
        eprintln!(
            "!!! SKIPPED: ../shared/corpus/pe/goblin is absent; synthetic-dump scan tests need it"
        );
    }
    ok
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

fn put(page: &mut [u8], off: usize, bytes: &[u8]) {
    page[off..off + bytes.len()].copy_from_slice(bytes);
}

/// The PEB (loader not run yet: `Ldr` NULL, as in a process created suspended) and its
/// process parameters naming the exe.
fn peb_page() -> Vec<u8> {
    let mut p = vec![0u8; 0x1000];
    put(&mut p, 0x10, &IMAGE.to_le_bytes());
    put(&mut p, 0x20, &PARAMS.to_le_bytes());
    let path = utf16(&format!(r"C:\lab\{FILE}"));
    let po = (PARAMS - PEB) as usize;
    put(&mut p, po + 0x60, &(path.len() as u16).to_le_bytes());
    put(&mut p, po + 0x62, &(path.len() as u16).to_le_bytes());
    put(&mut p, po + 0x68, &(PARAMS + 0x200).to_le_bytes());
    put(&mut p, po + 0x200, &path);
    p
}

fn teb_page() -> Vec<u8> {
    let mut p = vec![0u8; 0x1000];
    put(&mut p, 0x08, &(STACK + 0x10000).to_le_bytes());
    put(&mut p, 0x10, &STACK.to_le_bytes());
    put(&mut p, 0x30, &TEB.to_le_bytes());
    put(&mut p, 0x40, &u64::from(WPID).to_le_bytes());
    put(&mut p, 0x48, &u64::from(TID).to_le_bytes());
    put(&mut p, 0x60, &PEB.to_le_bytes());
    p
}

/// `windows_shape`: MemoryInfoList and a module list present (a dump written on Windows);
/// otherwise neither (what Wine 8 writes for a suspended process).
fn dump(tampered: bool, windows_shape: bool) -> Vec<u8> {
    dump_starting_at(tampered, windows_shape, ENTRY)
}

/// As [`dump`], with the initial thread set to start at `start` (RCX of its context).
fn dump_starting_at(tampered: bool, windows_shape: bool, start: u64) -> Vec<u8> {
    let file = std::fs::read(goblin_dir().join(FILE)).unwrap_or_else(|e| panic!("{FILE}: {e}"));
    let mut image = LoadedImage::map(&file, IMAGE).unwrap_or_else(|e| panic!("map: {e}"));
    let mut blocks = vec![(PEB, peb_page()), (TEB, teb_page())];
    if tampered {
        // tls-array-swap: code in fresh RWX memory, a new array pointing at it, and the TLS
        // directory's AddressOfCallBacks redirected to that array.
        image
            .set_tls_field(TlsField::AddressOfCallbacks, ARRAY)
            .unwrap_or_else(|e| panic!("tamper: {e}"));
        let mut code = vec![0xccu8; 0x1000];
        code[0] = 0xc3; // ret
        let mut array = vec![0u8; 0x1000];
        put(&mut array, 0, &CODE.to_le_bytes());
        blocks.push((CODE, code));
        blocks.push((ARRAY, array));
    }
    blocks.push((IMAGE, image.bytes.clone()));

    let mut dump = SynthMinidump::with_endian(LE);
    for (addr, bytes) in &blocks {
        dump = dump.add_memory64(Memory::with_section(
            Section::with_endian(LE).append_bytes(bytes),
            *addr,
        ));
    }
    // The initial thread, suspended before its first instruction.
    let stack = Memory::with_section(
        Section::with_endian(LE).append_repeated(0, 0x100),
        STACK + 0xff00,
    );
    // CONTEXT_AMD64 (0x4d0 bytes) of a thread that has not run: rip at the loader's thread
    // start, rcx = the entry point it will call, rdx = the PEB. Flags: AMD64 | CONTROL | INTEGER.
    let mut c = vec![0u8; 0x4d0];
    put(&mut c, 0x30, &0x0010_0003u32.to_le_bytes());
    put(&mut c, 0x38, &0x33u16.to_le_bytes());
    put(&mut c, 0x80, &start.to_le_bytes());
    put(&mut c, 0x88, &PEB.to_le_bytes());
    put(&mut c, 0x98, &(STACK + 0xffd8).to_le_bytes());
    put(&mut c, 0xf8, &0x1_7005_dc20u64.to_le_bytes());
    let ctx = Section::with_endian(LE).append_bytes(&c);
    let thread = Section::with_endian(LE)
        .D32(TID)
        .D32(1)
        .D32(0)
        .D32(0)
        .D64(TEB)
        .cite_memory(&stack)
        .cite_location(&ctx);
    dump = dump
        .add(ctx)
        .add_memory(stack)
        .add_stream(ListStream::<Section>::new(3u32, LE).add(thread));
    if windows_shape {
        let size = image.bytes.len() as u64;
        let mut infos = vec![
            (PEB, 0x1000u64, PAGE_READWRITE, MEM_PRIVATE),
            (TEB, 0x1000, PAGE_READWRITE, MEM_PRIVATE),
            (IMAGE, 0x1000, PAGE_READONLY, MEM_IMAGE),
            (IMAGE + 0x1000, size - 0x1000, PAGE_EXECUTE_READ, MEM_IMAGE),
        ];
        if tampered {
            infos.push((CODE, 0x1000, PAGE_EXECUTE_READWRITE, MEM_PRIVATE));
            infos.push((ARRAY, 0x1000, PAGE_READWRITE, MEM_PRIVATE));
        }
        for (base, size, prot, ty) in infos {
            dump = dump.add_memory_info(MemoryInfo::new(
                LE, base, base, prot, size, MEM_COMMIT, prot, ty,
            ));
        }
        let name = DumpString::new(&format!(r"C:\lab\{FILE}"), LE);
        let module = SynthModule::new(LE, IMAGE, size as u32, &name, 0, 0, None);
        dump = dump.add_module(module).add(name);
    }
    dump = dump.add_system_info(SystemInfo::new(LE).set_processor_architecture(9));
    let mut misc = MiscStream::new(LE);
    misc.process_id = Some(WPID);
    dump.add_stream(misc).finish().expect("synthetic dump")
}

fn scan(bytes: Vec<u8>) -> ProcessReport {
    let src = MinidumpSource::from_bytes(PathBuf::from("synthetic.dmp"), bytes)
        .unwrap_or_else(|e| panic!("dump parses: {e}"));
    let options = ScanOptions {
        resolver: DiskResolver {
            disk_root: Some(goblin_dir()),
            wine_prefix: None,
        },
    };
    scan_process(&src, &options)
}

fn kinds(r: &ProcessReport) -> Vec<FindingKind> {
    r.findings.iter().map(|f| f.kind).collect()
}

fn field_change(r: &ProcessReport, kind: FindingKind, field: &str) -> Option<(String, String)> {
    let f = r.findings.iter().find(|f| {
        f.kind == kind && f.evidence.get("field").and_then(|v| v.as_str()) == Some(field)
    })?;
    let s = |k: &str| f.evidence.get(k).map(|v| v.to_string()).unwrap_or_default();
    Some((s("disk"), s("memory")))
}

#[test]
fn untampered_image_is_clean_in_both_dump_shapes() {
    if !corpus_present() {
        return;
    }
    for windows_shape in [true, false] {
        let r = scan(dump(false, windows_shape));
        assert_eq!(r.error, None);
        assert_eq!(r.windows_pid, Some(u64::from(WPID)));
        let loud: Vec<_> = r
            .findings
            .iter()
            .filter(|f| f.severity > Severity::Low)
            .collect();
        assert!(loud.is_empty(), "windows_shape={windows_shape}: {loud:#?}");
        // The inventory still shows the file's callback and where it points.
        let main = r.modules.first().expect("main module in the inventory");
        let inventory = serde_json::to_string(main).unwrap_or_default();
        assert!(
            inventory.contains(r#""address":"0x140001000""#),
            "{inventory}"
        );
        assert!(inventory.contains(r#""section":".text""#), "{inventory}");
    }
}

#[test]
fn array_swap_from_a_windows_written_dump() {
    if !corpus_present() {
        return;
    }
    let r = scan(dump(true, true));
    assert_eq!(r.error, None);
    let k = kinds(&r);
    let (disk, memory) = field_change(
        &r,
        FindingKind::TlsDirectoryModified,
        "tls.address_of_callbacks",
    )
    .unwrap_or_else(|| panic!("no tls.address_of_callbacks change in {k:?}"));
    assert!(disk.contains("140001020"), "disk value {disk}");
    assert!(memory.contains("350000"), "memory value {memory}");
    // With region facts the callback's target is named as private RWX memory.
    assert!(k.contains(&FindingKind::TlsCallbackInRwxMemory), "{k:?}");
    let worst = r.findings.iter().map(|f| f.severity).max();
    assert_eq!(worst, Some(Severity::Critical), "{k:?}");
    assert!(r.findings.iter().all(|f| !f.technique.is_empty()));
}

#[test]
fn array_swap_from_a_wine_written_dump_says_what_it_could_not_check() {
    if !corpus_present() {
        return;
    }
    let r = scan(dump(true, false));
    assert_eq!(r.error, None);
    let k = kinds(&r);
    // The field change is proven from memory contents and the disk file alone ...
    assert!(
        field_change(
            &r,
            FindingKind::TlsDirectoryModified,
            "tls.address_of_callbacks"
        )
        .is_some(),
        "{k:?}"
    );
    // ... and the callback is still placed outside every image ...
    assert!(k.contains(&FindingKind::TlsCallbackOutsideImage), "{k:?}");
    // ... while what needs region types is listed as skipped, not guessed.
    assert!(!k.contains(&FindingKind::TlsCallbackInRwxMemory), "{k:?}");
    assert!(
        r.skipped_checks
            .iter()
            .any(|s| s.reason.contains("MemoryInfoList")),
        "{:#?}",
        r.skipped_checks
    );
}

#[test]
fn initial_thread_redirected_to_private_code() {
    if !corpus_present() {
        return;
    }
    // What RunPE's SetThreadContext does: the suspended initial thread will start elsewhere.
    for windows_shape in [true, false] {
        let r = scan(dump_starting_at(true, windows_shape, CODE));
        let f = r
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::InitialThreadContextModified)
            .unwrap_or_else(|| panic!("windows_shape={windows_shape}: {:?}", kinds(&r)));
        assert!(f.severity >= Severity::High);
        assert!(f.summary.contains("0x340000"), "{}", f.summary);
    }
}
