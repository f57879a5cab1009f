//! `preentry scan (--pid N… | --all | --dump FILE…) [--json] [--disk-root DIR]`: memory
//! forensics of TLS callback injection and hollowing over live Wine processes or minidumps.
//!
//! Each process or dump becomes one entry of the report; a process that exits or denies access
//! mid-scan, or a dump that cannot be read, is a per-entry `error` and the others go on.
//! Exit codes: 1 when any finding is `low` or above (`preentry_scan::EXIT_THRESHOLD`), otherwise
//! 2 when any entry failed, otherwise 0. Findings win over errors: a detection must not be
//! hidden behind an unrelated process that could not be read.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;

use clap::{ArgGroup, Args};
use preentry_memory::ProcessMemory;
use preentry_memory::dump::MinidumpSource;
use preentry_scan::{DiskResolver, ProcessReport, ScanOptions, ScanReport, render, scan_process};

use crate::Outcome;

/// Arguments of `preentry scan`.
#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("target").required(true).args(["pids", "all", "dumps"])),
    after_help = "Exit codes: 0 clean; 1 a finding of severity low or above in any process; \
                  2 no such finding but a process or dump could not be scanned (or bad usage).\n\
                  Finding kinds, severities and evidence fields: crates/scan/FINDINGS.md."
)]
pub struct ScanArgs {
    /// Live Wine processes to scan, by Linux or Windows PID (repeatable).
    #[arg(long = "pid", value_name = "PID", num_args = 1..)]
    pub pids: Vec<u32>,
    /// Every live Wine process of this machine.
    #[arg(long)]
    pub all: bool,
    /// Minidump files to scan (`.dmp` or gzip-compressed `.dmp.gz`).
    #[arg(long = "dump", value_name = "FILE", num_args = 1..)]
    pub dumps: Vec<PathBuf>,
    /// One JSON document (`{"processes": [...]}`) instead of the human summary.
    #[arg(long)]
    pub json: bool,
    /// Look module files up under DIR (by relative path, then by file name) instead of the
    /// Wine drive mapping.
    #[arg(long, value_name = "DIR")]
    pub disk_root: Option<PathBuf>,
    /// Human output: also list skipped checks and modules without TLS callbacks.
    #[arg(long, short)]
    pub verbose: bool,
    /// Windows build: for each live process with a finding of severity high or above, write a
    /// full-memory minidump and its JSON report into DIR (see docs/windows.md).
    #[arg(long, value_name = "DIR")]
    pub preserve: Option<PathBuf>,
    /// With --preserve: also suspend that process (before the dump) and leave it suspended.
    #[arg(long, requires = "preserve")]
    pub suspend: bool,
}

/// A process or dump to scan.
enum Target {
    Pid(u32),
    Dump(PathBuf),
}

fn error_report(target: &Target, err: String) -> ProcessReport {
    let mut r = ProcessReport::new();
    match target {
        Target::Pid(pid) => r.pid = Some(u64::from(*pid)),
        Target::Dump(path) => r.dump = Some(path.display().to_string()),
    }
    r.error = Some(err);
    r
}

fn open(target: &Target) -> Result<Box<dyn ProcessMemory>, String> {
    match target {
        Target::Dump(path) => MinidumpSource::open(path)
            .map(|s| Box::new(s) as Box<dyn ProcessMemory>)
            .map_err(|e| e.to_string()),
        Target::Pid(pid) => live::open(*pid),
    }
}

/// Runs `preentry scan`.
pub fn run(args: &ScanArgs) -> anyhow::Result<Outcome> {
    preserve::check_args(args.preserve.as_deref(), args.suspend)?;
    let opts = ScanOptions {
        resolver: DiskResolver::from_env(args.disk_root.clone()),
    };
    let mut targets: Vec<Target> = args.dumps.iter().cloned().map(Target::Dump).collect();
    targets.extend(args.pids.iter().copied().map(Target::Pid));
    if args.all {
        targets.extend(live::all_pids()?.into_iter().map(Target::Pid));
    }
    let bar = if args.all && std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(targets.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} processes {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut report = ScanReport {
        processes: Vec::with_capacity(targets.len()),
    };
    for target in &targets {
        let entry = match open(target) {
            Ok(mem) => {
                bar.set_message(mem.describe());
                scan_process(mem.as_ref(), &opts)
            }
            Err(e) => error_report(target, e),
        };
        if let (Some(dir), Target::Pid(pid)) = (&args.preserve, target)
            && preserve::wanted(&entry)
        {
            match preserve::preserve(dir, *pid, args.suspend, &entry) {
                Ok(p) => eprintln!(
                    "preentry: preserved pid {}: {} ({} bytes), {}{}",
                    p.pid,
                    p.dump.display(),
                    p.dump_bytes,
                    p.report.display(),
                    if p.suspended {
                        "; process suspended"
                    } else {
                        ""
                    }
                ),
                Err(e) => eprintln!("preentry: error: --preserve: {e}"),
            }
        }
        report.processes.push(entry);
        bar.inc(1);
    }
    bar.finish_and_clear();

    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        out.write_all(render::human(&report, args.verbose).as_bytes())?;
    }
    out.flush()?;
    Ok(if report.has_findings() {
        Outcome::Findings
    } else if report.has_errors() {
        Outcome::Error
    } else {
        Outcome::Clean
    })
}

#[path = "preserve.rs"]
mod preserve;

/// Windows builds scan live processes through the Windows API.
#[cfg(windows)]
#[path = "windows.rs"]
mod live;

#[cfg(not(windows))]
mod live {
    //! Live Wine processes, read through `/proc` (Linux only).
    use preentry_memory::{ProcessMemory, wine};

    /// Opens a live Wine process by Linux or Windows PID.
    pub fn open(pid: u32) -> Result<Box<dyn ProcessMemory>, String> {
        wine::open(pid)
            .map(|p| Box::new(p) as Box<dyn ProcessMemory>)
            .map_err(|e| e.to_string())
    }

    /// Linux PIDs of every Wine process of this machine. Processes that could not be
    /// inspected are still listed, so that their error shows in the report.
    pub fn all_pids() -> anyhow::Result<Vec<u32>> {
        let mut pids = Vec::new();
        for entry in wine::list_processes() {
            match entry {
                Ok(p) => pids.push(p.linux_pid),
                Err(preentry_memory::MemoryError::AccessDenied { pid, .. }) => pids.push(pid),
                Err(e) => anyhow::bail!("listing Wine processes: {e}"),
            }
        }
        Ok(pids)
    }
}
