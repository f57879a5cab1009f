//! `preentry-scan`: checks for TLS callback injection (T1055.005) and process hollowing
//! (T1055.012) over any [`preentry_memory::ProcessMemory`] source — a live Wine process or a
//! minidump.
//!
//! For every image of a process (the loader's module list, the PEB image, PE headers found in
//! private memory) the scan reads the headers, the TLS directory and the callback array from
//! memory, compares them field by field with the file on disk (relocation-normalised), and says
//! where each callback points. Hollowing checks compare the PEB image with the exe file and its
//! mappings; pre-entry checks look at the initial thread and at private code before the entry
//! point. Every finding kind, its severity and evidence fields are listed in `FINDINGS.md`.
//!
//! The crate reads only: it never writes to, suspends or attaches to a target.
//!
//! ```no_run
//! use preentry_scan::{ScanOptions, scan_process, DiskResolver};
//! # fn demo(mem: &dyn preentry_memory::ProcessMemory) {
//! let opts = ScanOptions { resolver: DiskResolver::from_env(None) };
//! let report = scan_process(mem, &opts);
//! for f in &report.findings {
//!     println!("{} {} {}", f.severity, f.kind, f.summary);
//! }
//! # }
//! ```

pub mod disk;
pub mod model;
mod process;
pub mod render;
#[cfg(test)]
mod testing;

pub use disk::DiskResolver;
pub use model::{
    CallbackFact, EXIT_THRESHOLD, Evidence, Finding, FindingKind, ModuleFacts, ProcessReport,
    ScanReport, Severity, SkippedCheck,
};
pub use process::{ScanOptions, scan_process};
