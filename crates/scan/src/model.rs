//! The report model: findings, their kinds and severities, per-process reports and the
//! whole-scan report. This module owns the public JSON contract of `preentry scan --json`; it
//! does no scanning and reads nothing.

use serde::{Deserialize, Serialize};

/// How much a finding matters. Ordered: `Info < Low < Medium < High < Critical`.
///
/// The ladder (also in `FINDINGS.md`):
/// - `critical`: a hollowed image, or a TLS callback into private RWX memory through a modified
///   callback array or directory;
/// - `high`: a changed TLS directory, callback array or DataDirectory[9]; a pre-entry thread
///   anomaly; a PE image in private memory;
/// - `medium`: a callback outside any image without proven modification; other header changes;
/// - `low`: oddities common in benign software;
/// - `info`: inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Inventory, never a verdict.
    Info,
    /// Seen in benign software too.
    Low,
    /// Suspicious without proof of tampering.
    Medium,
    /// Proven tampering or pre-entry anomaly.
    High,
    /// Hollowing, or an injected callback into private RWX memory.
    Critical,
}

impl Severity {
    /// The lowercase name used in JSON and human output.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// ATT&CK T1055.005, Thread Local Storage.
pub const T1055_005: &str = "T1055.005";
/// ATT&CK T1055.012, Process Hollowing.
pub const T1055_012: &str = "T1055.012";
/// ATT&CK T1055.004, Asynchronous Procedure Call.
pub const T1055_004: &str = "T1055.004";
/// ATT&CK T1055, Process Injection (no sub-technique proven).
pub const T1055: &str = "T1055";

macro_rules! finding_kinds {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, $sev:ident, [$($tech:expr),*]; )*) => {
        /// Every kind of finding `preentry scan` can emit. The snake_case names are a public
        /// contract, documented one by one in `crates/scan/FINDINGS.md`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum FindingKind {
            $( $(#[$doc])* $variant, )*
        }

        impl FindingKind {
            /// All kinds, in catalogue order.
            pub const ALL: &'static [FindingKind] = &[ $( FindingKind::$variant, )* ];

            /// The stable snake_case name (same as the JSON value).
            pub fn as_str(self) -> &'static str {
                match self { $( FindingKind::$variant => $name, )* }
            }

            /// The default severity of this kind (a check may raise it, see `FINDINGS.md`).
            pub fn default_severity(self) -> Severity {
                match self { $( FindingKind::$variant => Severity::$sev, )* }
            }

            /// The ATT&CK techniques this kind is evidence of.
            pub fn techniques(self) -> &'static [&'static str] {
                match self { $( FindingKind::$variant => &[$($tech),*], )* }
            }
        }
    };
}

finding_kinds! {
    /// A field of a module's TLS directory differs from the file on disk (relocation-normalised).
    TlsDirectoryModified => "tls_directory_modified", High, [T1055_005];
    /// DataDirectory[9] (the TLS directory's RVA or size) differs from the file on disk.
    TlsDataDirectoryModified => "tls_data_directory_modified", High, [T1055_005];
    /// A slot of a module's TLS callback array differs from the file on disk.
    TlsCallbackArrayModified => "tls_callback_array_modified", High, [T1055_005];
    /// The module has a TLS directory in memory but its file has none.
    TlsDirectoryAdded => "tls_directory_added", High, [T1055_005];
    /// A TLS callback points outside every loaded image.
    TlsCallbackOutsideImage => "tls_callback_outside_image", Medium, [T1055_005];
    /// A TLS callback points into private (not file-backed) memory.
    TlsCallbackInPrivateMemory => "tls_callback_in_private_memory", Medium, [T1055_005];
    /// A TLS callback points into writable and executable memory.
    TlsCallbackInRwxMemory => "tls_callback_in_rwx_memory", Medium, [T1055_005];
    /// A TLS callback points into memory or a section that is not executable.
    TlsCallbackNotExecutable => "tls_callback_not_executable", Medium, [T1055_005];
    /// A TLS callback points outside its own module while the process has not reached its entry point.
    TlsCallbackOutsideModulePreEntry => "tls_callback_outside_module_pre_entry", High, [T1055_005];
    /// TLS callbacks belong to an image that is not backed by the process's exe file.
    TlsCallbackInUnbackedImage => "tls_callback_in_unbacked_image", Critical, [T1055_005, T1055_012];
    /// A header field of a module (entry point, image base, size, data directory, section) differs from its file.
    HeaderFieldModified => "header_field_modified", Medium, [T1055_012];
    /// PEB.ImageBaseAddress points at memory that is not a mapping of the process's exe file.
    HollowedImage => "hollowed_image", Critical, [T1055_012];
    /// No file mapping of the process's exe exists in its address space.
    ExeMappingMissing => "exe_mapping_missing", High, [T1055_012];
    /// An MZ/PE image lives in private memory.
    PeInPrivateMemory => "pe_in_private_memory", High, [T1055_012];
    /// The main module in memory does not match the file named by the process.
    MainImageMismatch => "main_image_mismatch", Critical, [T1055_012];
    /// The suspended initial thread would start somewhere other than the loader's normal start with the image's entry point.
    InitialThreadContextModified => "initial_thread_context_modified", High, [T1055_012];
    /// A thread's start address lies in private memory.
    ThreadStartInPrivateMemory => "thread_start_in_private_memory", High, [T1055];
    /// A process that has not reached its entry point holds private executable memory with code in it.
    PreEntryPrivateCode => "pre_entry_private_code", High, [T1055_004, T1055];
    /// The initial thread, before the process reached its entry point, executes or returns into code outside every image (an early-bird APC after it ran).
    PreEntryThreadInPrivateCode => "pre_entry_thread_in_private_code", High, [T1055_004, T1055];
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Evidence of a finding: a JSON object with named facts (addresses as `0x…` hex strings, region
/// facts, both values of a changed field). Field names per kind are listed in `FINDINGS.md`.
pub type Evidence = serde_json::Map<String, serde_json::Value>;

/// One thing a check saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable kind name.
    pub kind: FindingKind,
    /// How much it matters.
    pub severity: Severity,
    /// ATT&CK technique ids.
    pub technique: Vec<String>,
    /// One human sentence.
    pub summary: String,
    /// Named facts.
    pub evidence: Evidence,
}

impl Finding {
    /// A finding of `kind` at its default severity.
    pub fn new(kind: FindingKind, summary: impl Into<String>, evidence: Evidence) -> Self {
        Finding {
            kind,
            severity: kind.default_severity(),
            technique: kind.techniques().iter().map(|t| (*t).to_string()).collect(),
            summary: summary.into(),
            evidence,
        }
    }

    /// The same finding at another severity.
    pub fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }
}

/// A check that could not run (or ran only partly), and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedCheck {
    /// Check name, e.g. `tls.disk_diff` or `hollowing.exe_mapping`, optionally `@module`.
    pub check: String,
    /// Why it was skipped.
    pub reason: String,
}

/// Where a TLS callback points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackFact {
    /// Slot index in the callback array.
    pub slot: u32,
    /// Callback VA as `0x…`.
    pub address: String,
    /// Image (module) the address falls in, by name, if any.
    pub image: Option<String>,
    /// Section of that image, if any.
    pub section: Option<String>,
    /// Region facts: protection (`rwx`-style) when known.
    pub protection: Option<String>,
    /// Region kind (`image`, `mapped`, `private`) when known.
    pub region_kind: Option<String>,
}

/// Inventory of one module: where it is and its TLS callbacks. Present even for clean processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleFacts {
    /// Module name or path as the source knows it.
    pub path: String,
    /// Base address as `0x…`.
    pub base: String,
    /// Whether this is the main (PEB) image.
    pub main: bool,
    /// Disk file used for comparison, when found.
    pub disk_file: Option<String>,
    /// TLS directory VA as `0x…`, when the in-memory image has one.
    pub tls_directory: Option<String>,
    /// TLS callbacks read from memory.
    pub tls_callbacks: Vec<CallbackFact>,
}

/// Everything the scan learnt about one process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessReport {
    /// PID as the source knows it (Linux PID for Wine live, Windows PID for dumps, …).
    pub pid: Option<u64>,
    /// Windows PID, when known.
    pub windows_pid: Option<u64>,
    /// Linux PID (Wine), when known.
    pub linux_pid: Option<u64>,
    /// Main image path as the process names it.
    pub image_path: Option<String>,
    /// Dump file this report was read from, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dump: Option<String>,
    /// Findings, most severe first.
    pub findings: Vec<Finding>,
    /// Checks that could not run, and why.
    pub skipped_checks: Vec<SkippedCheck>,
    /// Module inventory with TLS callbacks.
    pub modules: Vec<ModuleFacts>,
    /// Per-process error (exited, access denied, unreadable dump), or null.
    pub error: Option<String>,
}

impl ProcessReport {
    /// An empty report for a process.
    pub fn new() -> Self {
        ProcessReport {
            pid: None,
            windows_pid: None,
            linux_pid: None,
            image_path: None,
            dump: None,
            findings: Vec::new(),
            skipped_checks: Vec::new(),
            modules: Vec::new(),
            error: None,
        }
    }

    /// The most severe finding's severity, if any.
    pub fn max_severity(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// Sorts findings most severe first, then by kind, keeping the order stable otherwise.
    pub fn sort_findings(&mut self) {
        self.findings
            .sort_by(|a, b| b.severity.cmp(&a.severity).then(a.kind.cmp(&b.kind)));
    }

    /// Records a skipped check.
    pub fn skip(&mut self, check: impl Into<String>, reason: impl Into<String>) {
        self.skipped_checks.push(SkippedCheck {
            check: check.into(),
            reason: reason.into(),
        });
    }
}

impl Default for ProcessReport {
    fn default() -> Self {
        Self::new()
    }
}

/// The whole `scan --json` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanReport {
    /// One entry per scanned process or dump.
    pub processes: Vec<ProcessReport>,
}

/// Severity at or above which a finding makes `preentry scan` exit 1.
pub const EXIT_THRESHOLD: Severity = Severity::Low;

impl ScanReport {
    /// Whether any process has a finding at or above [`EXIT_THRESHOLD`].
    pub fn has_findings(&self) -> bool {
        self.processes
            .iter()
            .any(|p| p.max_severity().is_some_and(|s| s >= EXIT_THRESHOLD))
    }

    /// Whether any process failed.
    pub fn has_errors(&self) -> bool {
        self.processes.iter().any(|p| p.error.is_some())
    }
}

/// Formats an address as the `0x…` hex string used in evidence.
pub fn hex_addr(addr: u64) -> String {
    format!("{addr:#x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_match_serde_names() {
        for kind in FindingKind::ALL {
            let json = serde_json::to_value(kind).unwrap_or_default();
            assert_eq!(json.as_str(), Some(kind.as_str()), "{kind:?}");
            assert!(!kind.techniques().is_empty());
        }
    }

    #[test]
    fn findings_doc_lists_every_kind() {
        let doc = include_str!("../FINDINGS.md");
        for kind in FindingKind::ALL {
            assert!(
                doc.contains(&format!("### `{}`", kind.as_str())),
                "FINDINGS.md lacks {kind}"
            );
        }
    }

    #[test]
    fn severity_order_and_threshold() {
        assert!(Severity::Info < Severity::Low && Severity::High < Severity::Critical);
        let mut report = ScanReport {
            processes: vec![ProcessReport::new()],
        };
        assert!(!report.has_findings());
        report.processes[0].findings.push(
            Finding::new(FindingKind::TlsCallbackOutsideImage, "x", Evidence::new())
                .with_severity(Severity::Info),
        );
        assert!(!report.has_findings());
        report.processes[0].findings[0].severity = Severity::Low;
        assert!(report.has_findings());
    }
}
