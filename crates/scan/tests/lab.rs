//! Lab tests: every Wine lab scenario, scanned live (through `/proc`) and from a minidump of the
//! same moment, at the `suspended` checkpoint and again after the payload ran (`in-callback`:
//! the injected TLS callback, the hollowing payload's callback or the early-bird APC is blocked
//! on the initial thread before `main`; benign controls block in their own TLS callback), and at
//! `at-main`. Skips loudly without the lab; fails instead when
//! `PREENTRY_REQUIRE_LAB=1`.

mod common;

use std::path::Path;

use preentry_lab::{Checkpoint, Lab, Scenario, Session};
use preentry_memory::dump::MinidumpSource;
use preentry_memory::{ProcessMemory, wine};
use preentry_scan::{DiskResolver, ProcessReport, ScanOptions, scan_process};
use sha2::{Digest, Sha256};

fn opts(lab: &Lab) -> ScanOptions {
    ScanOptions {
        resolver: DiskResolver {
            disk_root: None,
            wine_prefix: Some(lab.prefix().to_path_buf()),
        },
    }
}

fn scan_live(lab: &Lab, s: &Session) -> ProcessReport {
    let p = wine::open_linux(s.linux_pid)
        .unwrap_or_else(|e| panic!("{}: open live {}: {e}", s.scenario, s.linux_pid));
    scan_process(&p, &opts(lab))
}

fn scan_dump(lab: &Lab, s: &Session, dir: &Path, tag: &str) -> ProcessReport {
    let path = dir.join(format!("{}-{tag}.dmp", s.scenario));
    s.write_minidump(&path)
        .unwrap_or_else(|e| panic!("{}: minidump: {e}", s.scenario));
    let src = MinidumpSource::open(&path).unwrap_or_else(|e| panic!("{e}"));
    scan_process(&src, &opts(lab))
}

/// Runs `scenario` through its checkpoints and checks live and dump verdicts at each.
fn run(scenario: Scenario) {
    let Some(lab) = Lab::from_env() else { return };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // Every scenario holds at `in-callback`: the injected code (TLS attacks, hollowing's payload
    // callback, early-bird's APC at the end of loader start-up) or, for benign controls and
    // the plain victims, their own TLS callback, has run and is blocked; `main` has not run.
    let checkpoints = [
        Checkpoint::Suspended,
        Checkpoint::InCallback,
        Checkpoint::AtMain,
    ];
    let mut session = lab
        .start(scenario, Checkpoint::Suspended)
        .unwrap_or_else(|e| panic!("{scenario}: start: {e}"));
    let mut failures = Vec::new();
    for cp in checkpoints {
        if session.checkpoint() != cp {
            session
                .advance_to(cp)
                .unwrap_or_else(|e| panic!("{scenario}: advance to {}: {e}", cp.name()));
        }
        let live = scan_live(&lab, &session);
        let dumped = scan_dump(&lab, &session, dir.path(), cp.name());
        for (report, regions, what) in [(&live, true, "live"), (&dumped, false, "dump")] {
            // Shown with --nocapture: what the scan said at this checkpoint.
            eprintln!(
                "--- {scenario}@{} {what}\n{}",
                cp.name(),
                preentry_scan::render::human(
                    &preentry_scan::ScanReport {
                        processes: vec![report.clone()]
                    },
                    false
                )
            );
            if let Err(e) = common::check(scenario.name(), cp.name(), report, regions) {
                failures.push(format!("{what}: {e}"));
            }
        }
        let (lv, dv) = (common::verdict(&live), common::verdict(&dumped));
        if lv != dv {
            failures.push(format!(
                "{scenario}@{}: live verdict {lv:?} != minidump verdict {dv:?}",
                cp.name()
            ));
        }
        assert_eq!(live.windows_pid, Some(u64::from(session.windows_pid)));
        assert_eq!(live.linux_pid, Some(u64::from(session.linux_pid)));
    }
    session
        .finish()
        .unwrap_or_else(|e| panic!("{scenario}: finish: {e}"));
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn tls_array_swap() {
    run(Scenario::TlsArraySwap);
}

#[test]
fn tls_slot_overwrite() {
    run(Scenario::TlsSlotOverwrite);
}

#[test]
fn tls_directory_redirect() {
    run(Scenario::TlsDirectoryRedirect);
}

#[test]
fn hollow_runpe() {
    run(Scenario::HollowRunpe);
}

#[test]
fn hollow_relocated() {
    run(Scenario::HollowRelocated);
}

#[test]
fn early_bird_apc() {
    run(Scenario::EarlyBirdApc);
}

#[test]
fn benign_suspend_resume() {
    run(Scenario::BenignSuspendResume);
}

#[test]
fn benign_debugger() {
    run(Scenario::BenignDebugger);
}

#[test]
fn benign_jit() {
    run(Scenario::BenignJit);
}

#[test]
fn benign_self_unpack() {
    run(Scenario::BenignSelfUnpack);
}

/// SHA-256 over every readable private or file-backed region, leaving out shared mappings
/// (KUSER_SHARED_DATA is a shared mapping wineserver keeps updating).
fn memory_hash(p: &dyn ProcessMemory) -> (String, u64) {
    let mut h = Sha256::new();
    let mut total = 0u64;
    let regions = p
        .regions()
        .available()
        .map(|r| r.to_vec())
        .unwrap_or_default();
    for r in regions {
        if !r.protection.readable() || r.backing.as_ref().is_some_and(|b| b.shared) {
            continue;
        }
        if r.pseudo_path
            .as_deref()
            .is_some_and(|s| s == "[vvar]" || s == "[vsyscall]")
        {
            continue;
        }
        let mut addr = r.base;
        while addr < r.end() {
            let n = (r.end() - addr).min(1 << 20) as usize;
            let mut buf = vec![0u8; n];
            let res = p
                .read(addr, &mut buf)
                .unwrap_or_else(|e| panic!("read {addr:#x}: {e}"));
            h.update(r.base.to_le_bytes());
            h.update(&buf);
            total += res.bytes_read();
            addr += n as u64;
        }
    }
    (format!("{:x}", h.finalize()), total)
}

#[test]
fn scanning_leaves_the_target_unchanged() {
    let Some(lab) = Lab::from_env() else { return };
    let session = lab
        .start(Scenario::TlsArraySwap, Checkpoint::Suspended)
        .unwrap_or_else(|e| panic!("start: {e}"));
    let p = wine::open_linux(session.linux_pid).unwrap_or_else(|e| panic!("{e}"));
    let (before, bytes) = memory_hash(&p);
    assert!(bytes > 1 << 20, "hashed only {bytes} bytes");
    for _ in 0..3 {
        let r = scan_process(&p, &opts(&lab));
        assert!(r.error.is_none());
    }
    // A fresh view too (the CLI opens the process anew).
    let again = wine::open_linux(session.linux_pid).unwrap_or_else(|e| panic!("{e}"));
    let _ = scan_process(&again, &opts(&lab));
    let (after, _) = memory_hash(&p);
    assert_eq!(before, after, "target memory changed during the scan");
    session.finish().unwrap_or_else(|e| panic!("finish: {e}"));
}

/// What `preentry scan --all` does, with a scenario held at `suspended`: every Wine process of
/// the host is scanned; the victim is found with its findings, and Wine's own service
/// processes (services.exe, winedevice.exe, …: real, unmodified Wine programs) have nothing
/// above `low`.
#[test]
fn all_wine_processes_only_the_victim_is_flagged() {
    let Some(lab) = Lab::from_env() else { return };
    let session = lab
        .start(Scenario::TlsSlotOverwrite, Checkpoint::Suspended)
        .unwrap_or_else(|e| panic!("start: {e}"));
    let mut victim_seen = false;
    let mut scanned = 0;
    let mut failures = Vec::new();
    for entry in wine::list_processes() {
        let Ok(p) = entry else { continue };
        let Ok(mem) = wine::open_linux(p.linux_pid) else {
            continue; // exited meanwhile (another engineer's Wine, a dumper)
        };
        let r = scan_process(&mem, &opts(&lab));
        scanned += 1;
        if p.linux_pid == session.linux_pid {
            victim_seen = true;
            if let Err(e) = common::check(session.scenario.name(), "suspended", &r, true) {
                failures.push(e);
            }
        } else if p.comm.ends_with(".exe")
            && [
                "services",
                "winedevice",
                "plugplay",
                "svchost",
                "rpcss",
                "explorer",
            ]
            .iter()
            .any(|n| p.comm.starts_with(n))
            && let Some(f) = r
                .findings
                .iter()
                .find(|f| f.severity > preentry_scan::Severity::Low)
        {
            failures.push(format!(
                "{} ({}): {} {}: {}",
                p.comm, p.linux_pid, f.severity, f.kind, f.summary
            ));
        }
    }
    session.finish().unwrap_or_else(|e| panic!("finish: {e}"));
    assert!(
        victim_seen,
        "the victim was not among {scanned} Wine processes"
    );
    assert!(scanned >= 2, "only {scanned} Wine processes scanned");
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A process that exits after it was opened is reported as a per-process error.
#[test]
fn process_exit_mid_scan_is_a_per_process_error() {
    let Some(lab) = Lab::from_env() else { return };
    let session = lab
        .start(Scenario::BenignSuspendResume, Checkpoint::Suspended)
        .unwrap_or_else(|e| panic!("start: {e}"));
    let mem = wine::open_linux(session.linux_pid).unwrap_or_else(|e| panic!("{e}"));
    drop(session); // kills the scenario
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while Path::new(&format!("/proc/{}", mem.linux_pid())).exists()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let r = scan_process(&mem, &opts(&lab));
    assert!(r.error.is_some(), "no error for an exited process: {r:?}");
}
