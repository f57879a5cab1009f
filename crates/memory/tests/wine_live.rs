//! The live Wine source against the lab's real scenarios (`lab/runner`). Without the lab these
//! tests print a loud SKIPPED banner; with `PREENTRY_REQUIRE_LAB=1` they fail instead.

use std::path::Path;
use std::time::{Duration, Instant};

use preentry_lab::{Checkpoint, Lab, Scenario, Session};
use preentry_memory::dump::MinidumpSource;
use preentry_memory::wine::{self, WineProcess};
use preentry_memory::{
    Arch, ContextKind, MemoryError, MemoryReader, ProcessMemory, RegionKind, ThreadInfo,
};
use sha2::{Digest, Sha256};

fn lab() -> Option<Lab> {
    Lab::from_env()
}

fn start(lab: &Lab, sc: Scenario, cp: Checkpoint) -> Session {
    lab.start(sc, cp)
        .unwrap_or_else(|e| panic!("lab scenario {sc} at {cp}: {e}"))
}

/// `key=0x...` from the attacker's free-form report.
fn detail_hex(detail: &str, key: &str) -> u64 {
    let v = detail
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {detail:?}"));
    u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap()
}

/// The entry point of the image at `base`, read through the source.
fn entry_point(p: &dyn ProcessMemory, base: u64) -> u64 {
    let lfanew = u64::from(p.read_u32(base + 0x3c).unwrap());
    base + u64::from(p.read_u32(base + lfanew + 0x28).unwrap())
}

fn initial_thread<'a>(threads: &'a [ThreadInfo], s: &Session) -> &'a ThreadInfo {
    threads
        .iter()
        .find(|t| t.windows_tid == Some(s.windows_tid))
        .unwrap_or_else(|| {
            panic!(
                "initial thread {} not found in {threads:#x?}",
                s.windows_tid
            )
        })
}

fn region_path_ends(p: &dyn ProcessMemory, addr: u64, suffix: &str) -> bool {
    p.region_at(addr)
        .and_then(|r| r.path.as_ref())
        .is_some_and(|path| path.to_string_lossy().ends_with(suffix))
}

/// SHA-256 over every readable region's bytes (and the read outcome), for the read-only check.
fn hash_memory(p: &WineProcess) -> (Vec<u8>, u64) {
    let mut h = Sha256::new();
    let mut total = 0u64;
    // Shared mappings (KUSER_SHARED_DATA at 0x7ffe0000, nls files) are written by wineserver
    // or others, not by the target: left out.
    let private: Vec<_> = p
        .regions()
        .available()
        .unwrap()
        .iter()
        .filter(|r| r.protection.readable() && !r.backing.as_ref().is_some_and(|b| b.shared))
        .map(|r| r.range())
        .collect();
    for r in &private {
        let mut a = r.start;
        while a < r.end {
            let n = (r.end - a).min(1 << 20);
            let buf = p.read_range(a, n, n).unwrap();
            h.update(a.to_le_bytes());
            h.update(&buf.bytes);
            for u in &buf.result.unreadable {
                h.update(u.start.to_le_bytes());
                h.update(u.end.to_le_bytes());
            }
            total += buf.result.bytes_read();
            a += n;
        }
    }
    (h.finalize().to_vec(), total)
}

#[test]
fn suspended_victim_through_proc() {
    let Some(lab) = lab() else { return };
    let s = start(&lab, Scenario::TlsArraySwap, Checkpoint::Suspended);

    // Listing finds it with both PIDs.
    let listed = wine::list_processes();
    let me = listed
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .find(|r| r.linux_pid == s.linux_pid)
        .unwrap_or_else(|| panic!("{} not listed in {listed:?}", s.linux_pid));
    assert_eq!(me.windows_pid, Some(s.windows_pid));
    assert!(me.comm.starts_with("victim-tls"), "{}", me.comm);

    let t0 = Instant::now();
    let p = wine::open(s.linux_pid).unwrap();
    eprintln!("opened {} in {:?}", p.describe(), t0.elapsed());
    let id = p.identity();
    assert_eq!(id.linux_pid, Some(s.linux_pid));
    assert_eq!(id.windows_pid, Some(s.windows_pid));
    assert_eq!(id.pid, s.windows_pid);
    assert_eq!(id.arch, Arch::X64);
    assert_eq!(id.peb_address, Some(s.report.peb));
    assert_eq!(id.peb_image_base, Some(s.report.image_base));
    assert_eq!(
        id.image_path.as_deref(),
        Some(s.report.victim_windows_path.as_str())
    );
    assert!(
        id.command_line
            .as_deref()
            .unwrap()
            .contains("victim-tls.exe")
    );
    assert_eq!(id.parent_pid, None);

    // The Windows PID opens the same process (unless another prefix reuses it: then the
    // error must say so and name this Linux PID).
    match wine::open(s.windows_pid) {
        Ok(q) => assert_eq!(q.linux_pid(), s.linux_pid),
        Err(MemoryError::NoSuchProcess { detail, .. }) => {
            assert!(
                detail.contains("ambiguous") && detail.contains(&s.linux_pid.to_string()),
                "{detail}"
            )
        }
        Err(e) => panic!("open by Windows PID: {e}"),
    }

    // One thread, not started: its pending initial context.
    let threads = p.threads().available().unwrap();
    let windows_threads: Vec<_> = threads.iter().filter(|t| t.windows_tid.is_some()).collect();
    assert_eq!(windows_threads.len(), 1, "{threads:#x?}");
    let t = initial_thread(threads, &s);
    assert_eq!(t.linux_tid, Some(s.linux_pid));
    let ctx = t
        .context
        .clone()
        .available()
        .expect("pending initial context");
    assert_eq!(ctx.kind, ContextKind::PendingInitial);
    assert_eq!(ctx.rdx, s.report.peb);
    assert_eq!(ctx.rcx, entry_point(&p, s.report.image_base));
    assert!(
        region_path_ends(&p, ctx.rip, "ntdll.dll"),
        "rip {:#x}",
        ctx.rip
    );
    assert!(t.stack.as_ref().unwrap().contains(&ctx.rsp));
    assert!(t.suspend_count.reason().unwrap().contains("wineserver"));
    assert!(t.start_address.reason().unwrap().contains("loader"));

    // Loader not run yet.
    assert!(p.modules().reason().unwrap().contains("PEB.Ldr is NULL"));

    // Regions: headers file-mapped from the exe, .text anonymous r-x (mingw file alignment).
    let head = p.region_at(s.report.image_base).unwrap();
    assert_eq!(head.kind, RegionKind::Image);
    assert!(region_path_ends(&p, s.report.image_base, "victim-tls.exe"));
    assert_eq!(head.backing.as_ref().unwrap().offset, 0);
    let mut mz = [0u8; 2];
    p.read_exact_at(s.report.image_base, &mut mz).unwrap();
    assert_eq!(&mz, b"MZ");
    let regions = p.regions().available().unwrap();
    let text = regions
        .iter()
        .find(|r| {
            r.base > s.report.image_base
                && r.base < s.report.image_base + 0x10000
                && r.protection.executable()
        })
        .expect("an executable region in the image");
    assert_eq!(text.kind, RegionKind::Private);
    assert_eq!(text.anonymous, Some(true));
    for w in regions.windows(2) {
        assert!(w[0].end() <= w[1].base);
    }

    // A read across the end of a mapping into a gap is partial, not an error.
    let gap_after = regions
        .windows(2)
        .find(|w| w[0].end() < w[1].base && w[0].protection.readable())
        .map(|w| w[0].end())
        .unwrap();
    let mut buf = [0xffu8; 32];
    let r = p.read(gap_after - 16, &mut buf).unwrap();
    assert_eq!(r.valid, vec![gap_after - 16..gap_after]);
    assert_eq!(r.unreadable, vec![gap_after..gap_after + 16]);
    assert!(buf[16..].iter().all(|&b| b == 0));
    // A PROT_NONE mapping reads as unreadable.
    if let Some(none) = regions
        .iter()
        .find(|r| !r.protection.readable() && r.size >= 0x1000)
    {
        let mut b = [0u8; 8];
        assert!(p.read(none.base, &mut b).unwrap().is_empty());
    }
}

#[test]
fn scanning_never_writes_to_the_target() {
    let Some(lab) = lab() else { return };
    let s = start(&lab, Scenario::TlsSlotOverwrite, Checkpoint::Suspended);
    let p = wine::open_linux(s.linux_pid).unwrap();
    let (before, n) = hash_memory(&p);
    assert!(n > 1 << 20, "hashed only {n} bytes");
    // Everything a scan does: list, open (TEB scan, PEB, contexts), read every region.
    for _ in 0..3 {
        let _ = wine::list_processes();
        let q = wine::open(s.linux_pid).unwrap();
        let _ = q.threads();
        let _ = hash_memory(&q);
    }
    let (after, m) = hash_memory(&p);
    assert_eq!(n, m);
    assert_eq!(before, after, "target memory changed during a scan");
}

#[test]
fn running_process_modules_and_syscall_frames() {
    let Some(lab) = lab() else { return };
    let s = start(&lab, Scenario::BenignSuspendResume, Checkpoint::AtMain);
    let p = wine::open(s.linux_pid).unwrap();
    let id = p.identity();
    let mods = p
        .modules()
        .available()
        .expect("loader list after the loader ran");
    assert_eq!(Some(mods[0].base), id.peb_image_base);
    assert_eq!(Some(mods[0].path.as_str()), id.image_path.as_deref());
    for want in ["ntdll.dll", "kernel32.dll", "kernelbase.dll"] {
        assert!(
            mods.iter().any(|m| m.name.eq_ignore_ascii_case(want)),
            "{want} missing from {mods:#x?}"
        );
    }
    for m in mods {
        assert!(m.size > 0);
        if let Some(ep) = m.entry_point {
            assert!(m.contains(ep), "{} entry {ep:#x} outside", m.name);
        }
    }
    // The initial thread is blocked in main, i.e. inside a system call: its syscall frame.
    let threads = p.threads().available().unwrap();
    let t = initial_thread(threads, &s);
    assert_eq!(t.linux_tid, Some(s.linux_pid));
    assert_eq!(
        threads[0].windows_tid,
        Some(s.windows_tid),
        "initial thread first"
    );
    let ctx = t.context.clone().available().unwrap();
    assert_eq!(ctx.kind, ContextKind::LastSystemCall);
    assert_eq!(ctx.cs, 0x33);
    let ntdll = p.module_at(ctx.rip).map(|m| m.name.to_ascii_lowercase());
    assert_eq!(ntdll.as_deref(), Some("ntdll.dll"), "rip {:#x}", ctx.rip);
    assert!(t.stack.as_ref().unwrap().contains(&ctx.rsp));
    // Every Windows thread has a TEB, a Linux task and a recognised context.
    for t in threads.iter().filter(|t| t.windows_tid.is_some()) {
        assert!(t.linux_tid.is_some(), "{t:#x?}");
        assert!(t.context.is_available(), "{t:#x?}");
    }
    // The loader started the initial thread: Wine records no start routine for it.
    assert!(
        t.start_address.reason().unwrap().contains("loader"),
        "{t:#x?}"
    );
}

#[test]
fn wine_service_threads_start_inside_their_modules() {
    let Some(lab) = lab() else { return };
    // Holding a scenario keeps the lab prefix's Wine services (services.exe, winedevice.exe,
    // plugplay.exe, svchost.exe...) running; their worker threads come from CreateThread.
    let _s = start(&lab, Scenario::BenignSuspendResume, Checkpoint::AtMain);
    let services = [
        "services.exe",
        "winedevice.exe",
        "plugplay.exe",
        "svchost.exe",
        "rpcss.exe",
    ];
    let mut starts = 0;
    for r in wine::list_processes().into_iter().flatten() {
        if !services.contains(&r.comm.as_str()) {
            continue;
        }
        let Ok(p) = wine::open_linux(r.linux_pid) else {
            continue;
        };
        let Some(threads) = p.threads().available() else {
            continue;
        };
        for t in threads {
            if let Some(start) = t.start_address.clone().available() {
                let m = p.module_at(start);
                assert!(
                    m.is_some(),
                    "{}: thread {} starts at {start:#x}, outside every module",
                    p.describe(),
                    t.tid
                );
                starts += 1;
            }
        }
    }
    assert!(
        starts >= 3,
        "only {starts} thread start addresses found in Wine's services"
    );
}

#[test]
fn hollowed_processes_as_seen_live_and_in_a_dump() {
    let Some(lab) = lab() else { return };

    // RunPE: the exe is unmapped; PEB.ImageBaseAddress points at anonymous RWX memory with MZ.
    let s = start(&lab, Scenario::HollowRunpe, Checkpoint::Suspended);
    let p = wine::open(s.linux_pid).unwrap();
    let base = p.identity().peb_image_base.unwrap();
    assert_eq!(base, s.report.image_base);
    let r = p.region_at(base).unwrap();
    assert_eq!((r.kind, r.anonymous), (RegionKind::Private, Some(true)));
    assert!(r.protection.writable_executable());
    let mut mz = [0u8; 2];
    p.read_exact_at(base, &mut mz).unwrap();
    assert_eq!(&mz, b"MZ");
    let regions = p.regions().available().unwrap();
    assert!(
        !regions.iter().any(|r| r
            .path
            .as_ref()
            .is_some_and(|x| x.ends_with("victim-crt.exe"))),
        "victim exe still mapped after RunPE"
    );
    drop(p);
    drop(s);

    // Relocated payload: SetThreadContext(rcx = new entry) on the suspended thread is visible
    // through the server (minidump) but not through /proc (documented ContextKind).
    let s = start(&lab, Scenario::HollowRelocated, Checkpoint::Suspended);
    let old_entry = detail_hex(&s.report.detail, "old_entry");
    let new_entry = detail_hex(&s.report.detail, "new_entry");
    assert_ne!(old_entry, new_entry);
    let p = wine::open(s.linux_pid).unwrap();
    assert_eq!(p.identity().peb_image_base, Some(s.report.image_base));
    assert_eq!(
        p.region_at(s.report.image_base).unwrap().kind,
        RegionKind::Private
    );
    assert!(
        region_path_ends(&p, 0x1_4000_0000, "victim-crt.exe"),
        "victim left mapped"
    );
    let live = initial_thread(p.threads().available().unwrap(), &s)
        .context
        .clone()
        .available()
        .unwrap();
    assert_eq!(live.kind, ContextKind::PendingInitial);
    assert_eq!(
        live.rcx, old_entry,
        "Wine /proc view of a SetThreadContext'd suspended thread"
    );

    let dir = tempfile::tempdir().unwrap();
    let dmp = dir.path().join("reloc.dmp");
    s.write_minidump(&dmp).unwrap();
    let d = MinidumpSource::open(&dmp).unwrap();
    let dumped = initial_thread(d.threads().available().unwrap(), &s)
        .context
        .clone()
        .available()
        .unwrap();
    assert_eq!(dumped.kind, ContextKind::Captured);
    assert_eq!(dumped.rcx, new_entry);
    assert_eq!(
        (dumped.rip, dumped.rsp, dumped.rdx),
        (live.rip, live.rsp, live.rdx)
    );
}

#[test]
fn minidump_of_a_suspended_victim_matches_the_live_view() {
    let Some(lab) = lab() else { return };
    let s = start(&lab, Scenario::TlsArraySwap, Checkpoint::Suspended);
    let dir = tempfile::tempdir().unwrap();
    let dmp = dir.path().join("victim.dmp");
    s.write_minidump(&dmp).unwrap();
    let live = wine::open(s.linux_pid).unwrap();
    let d = MinidumpSource::open(&dmp).unwrap();
    let (li, di) = (live.identity(), d.identity());
    assert_eq!(li.windows_pid, di.windows_pid);
    assert_eq!(li.peb_address, di.peb_address);
    assert_eq!(li.peb_image_base, di.peb_image_base);
    assert_eq!(li.image_path, di.image_path);
    assert_eq!(li.command_line, di.command_line);
    // Wine's dump has no MemoryInfoList/ThreadInfoList: said, not guessed.
    assert_eq!(
        d.regions().reason(),
        Some("MemoryInfoList stream absent from this dump")
    );
    let dt = initial_thread(d.threads().available().unwrap(), &s);
    let lt = initial_thread(live.threads().available().unwrap(), &s);
    assert_eq!(dt.suspended(), Some(true));
    assert_eq!(dt.teb, lt.teb);
    assert_eq!(dt.stack, lt.stack);
    let (dc, lc) = (
        dt.context.clone().available().unwrap(),
        lt.context.clone().available().unwrap(),
    );
    assert_eq!(
        (dc.rip, dc.rsp, dc.rcx, dc.rdx),
        (lc.rip, lc.rsp, lc.rcx, lc.rdx)
    );
    // The same bytes wherever both have them (the process is suspended).
    let mut compared = 0u64;
    let mut shared = 0;
    for r in d.memory_ranges() {
        if live
            .region_at(r.start)
            .is_some_and(|x| x.backing.as_ref().is_some_and(|b| b.shared))
        {
            shared += 1; // KUSER_SHARED_DATA and nls files: changed by wineserver, not the target
            continue;
        }
        let n = (r.end - r.start).min(16 << 20);
        let a = d.read_range(r.start, n, n).unwrap();
        let b = live.read_range(r.start, n, n).unwrap();
        for v in &b.result.valid {
            let lo = (v.start - r.start) as usize;
            let hi = (v.end - r.start) as usize;
            let first_diff = a.bytes[lo..hi]
                .iter()
                .zip(&b.bytes[lo..hi])
                .position(|(x, y)| x != y);
            assert!(
                first_diff.is_none(),
                "bytes differ at {:#x}",
                v.start + first_diff.unwrap_or(0) as u64
            );
            compared += v.end - v.start;
        }
    }
    assert!(shared > 0, "KUSER_SHARED_DATA expected in the dump");
    assert!(compared > 1 << 20, "compared only {compared} bytes");
}

#[test]
fn a_process_that_exits_mid_scan_is_an_error_not_a_panic() {
    let Some(lab) = lab() else { return };
    let s = start(&lab, Scenario::BenignSuspendResume, Checkpoint::Suspended);
    let pid = s.linux_pid;
    let p = wine::open(pid).unwrap();
    let base = p.identity().peb_image_base.unwrap();
    assert!(p.read_u64(base).is_ok());
    drop(s); // kills the scenario
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let gone = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(st) => st
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with(['Z', 'X'])),
        };
        if gone {
            break;
        }
        assert!(Instant::now() < deadline, "victim {pid} did not exit");
        std::thread::sleep(Duration::from_millis(100));
    }
    match p.read_u64(base) {
        Err(MemoryError::ProcessGone { pid: p2, .. }) => assert_eq!(p2, pid),
        other => panic!("expected ProcessGone, got {other:?}"),
    }
    assert!(wine::open_linux(pid).is_err());
    assert!(
        !wine::list_processes()
            .iter()
            .any(|r| r.as_ref().is_ok_and(|r| r.linux_pid == pid))
    );
    assert!(Path::new("/proc").exists());
}
