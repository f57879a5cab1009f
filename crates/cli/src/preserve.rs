//! `--preserve DIR` / `--suspend`: keep the evidence of a process with high-severity findings
//! (seed: "preserve process memory and thread context").
//!
//! For each live process whose report has a finding of severity `high` or above:
//! 1. with `--suspend`, the process is suspended first (`NtSuspendProcess` through a handle
//!    opened with `PROCESS_SUSPEND_RESUME` only), so the dump and whatever comes after see the
//!    same state; it stays suspended when preentry exits;
//! 2. a full-memory minidump (memory, MemoryInfoList, thread contexts and ThreadInfoList,
//!    modules) is written to `DIR/preentry-pid<PID>-<unix seconds>.dmp` (handle:
//!    `PROCESS_QUERY_INFORMATION | PROCESS_VM_READ`);
//! 3. the process's JSON report (a `scan --json` document with this one process) is written
//!    beside it as `.json`.
//!
//! The Linux build reads such a dump back with `preentry scan --dump FILE`. Minidumps are
//! written by the Windows build only (`MiniDumpWriteDump`); the Linux build refuses
//! `--preserve` with a message saying so.

use std::path::{Path, PathBuf};

use preentry_scan::{ProcessReport, ScanReport, Severity};

/// Severity at or above which a process is preserved.
pub const PRESERVE_THRESHOLD: Severity = Severity::High;

/// What was kept for one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preserved {
    /// The process.
    pub pid: u32,
    /// The minidump.
    pub dump: PathBuf,
    /// Its size in bytes.
    pub dump_bytes: u64,
    /// The JSON report.
    pub report: PathBuf,
    /// Whether the process was suspended.
    pub suspended: bool,
}

/// Whether `report` calls for preservation.
pub fn wanted(report: &ProcessReport) -> bool {
    report.error.is_none()
        && report
            .max_severity()
            .is_some_and(|s| s >= PRESERVE_THRESHOLD)
}

/// Checks the flag combination before anything is scanned.
pub fn check_args(dir: Option<&Path>, suspend: bool) -> anyhow::Result<()> {
    if suspend && dir.is_none() {
        anyhow::bail!("--suspend needs --preserve DIR");
    }
    if let Some(d) = dir {
        if !cfg!(windows) {
            anyhow::bail!(
                "--preserve writes minidumps with MiniDumpWriteDump and needs the Windows build \
                 (preentry.exe, also under Wine); this build reads dumps with --dump"
            );
        }
        std::fs::create_dir_all(d)
            .map_err(|e| anyhow::anyhow!("--preserve {}: {e}", d.display()))?;
    }
    Ok(())
}

fn file_stem(pid: u32) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("preentry-pid{pid}-{secs}")
}

/// Preserves the process of `report` (pid `pid`) into `dir`.
pub fn preserve(
    dir: &Path,
    pid: u32,
    suspend: bool,
    report: &ProcessReport,
) -> Result<Preserved, String> {
    let stem = file_stem(pid);
    let dump = dir.join(format!("{stem}.dmp"));
    let json = dir.join(format!("{stem}.json"));
    let mut suspended = false;
    if suspend {
        suspend_process(pid).map_err(|e| format!("suspending pid {pid}: {e}"))?;
        suspended = true;
    }
    let dump_bytes =
        write_minidump(pid, &dump).map_err(|e| format!("minidump of pid {pid}: {e}"))?;
    let doc = ScanReport {
        processes: vec![report.clone()],
    };
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    std::fs::write(&json, format!("{text}\n")).map_err(|e| format!("{}: {e}", json.display()))?;
    Ok(Preserved {
        pid,
        dump,
        dump_bytes,
        report: json,
        suspended,
    })
}

#[cfg(windows)]
fn suspend_process(pid: u32) -> Result<(), String> {
    preentry_memory_windows::suspend_process(pid).map_err(|e| e.to_string())
}

#[cfg(windows)]
fn write_minidump(pid: u32, out: &Path) -> Result<u64, String> {
    preentry_memory_windows::write_minidump(pid, out).map_err(|e| e.to_string())
}

#[cfg(not(windows))]
fn suspend_process(pid: u32) -> Result<(), String> {
    Err(format!(
        "cannot suspend pid {pid}: --suspend needs the Windows build"
    ))
}

#[cfg(not(windows))]
fn write_minidump(pid: u32, _out: &Path) -> Result<u64, String> {
    Err(format!(
        "cannot dump pid {pid}: --preserve needs the Windows build"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use preentry_scan::{Finding, FindingKind};

    fn report_with(kind: Option<FindingKind>) -> ProcessReport {
        let mut r = ProcessReport::new();
        if let Some(k) = kind {
            r.findings
                .push(Finding::new(k, "x", serde_json::Map::new()));
        }
        r
    }

    #[test]
    fn only_high_findings_are_preserved() {
        assert!(!wanted(&report_with(None)));
        assert!(!wanted(&report_with(Some(
            FindingKind::TlsCallbackOutsideImage
        ))));
        assert!(wanted(&report_with(Some(
            FindingKind::TlsCallbackArrayModified
        ))));
        assert!(wanted(&report_with(Some(FindingKind::HollowedImage))));
        let mut failed = report_with(Some(FindingKind::HollowedImage));
        failed.error = Some("gone".into());
        assert!(!wanted(&failed));
    }

    #[test]
    fn suspend_alone_is_refused() {
        assert!(check_args(None, true).is_err());
        assert!(check_args(None, false).is_ok());
    }

    #[cfg(not(windows))]
    #[test]
    fn linux_build_refuses_preserve() {
        let dir = std::env::temp_dir();
        let e = check_args(Some(&dir), false).err().map(|e| e.to_string());
        assert!(e.is_some_and(|m| m.contains("Windows build")));
    }
}
