//! Expected verdicts per lab scenario, shared by the samples test and the lab test.

#![allow(dead_code)]

use std::collections::BTreeSet;

use preentry_scan::{FindingKind, ProcessReport, Severity};

/// Kinds decided from memory contents and the disk file alone, so a live scan and a scan of a
/// Wine minidump (no region list) of the same moment must agree on them.
/// `pre_entry_thread_in_private_code` is decided live with the region list (executable memory
/// outside every image) and from a dump by contents (outside every image, after a call
/// instruction); the two must still agree.
pub const CONTENT_KINDS: &[FindingKind] = &[
    FindingKind::PreEntryThreadInPrivateCode,
    FindingKind::TlsDirectoryModified,
    FindingKind::TlsDataDirectoryModified,
    FindingKind::TlsCallbackArrayModified,
    FindingKind::TlsDirectoryAdded,
    FindingKind::HollowedImage,
    FindingKind::MainImageMismatch,
    FindingKind::TlsCallbackInUnbackedImage,
];

/// The content-decided verdict: kinds with severity ≥ high among [`CONTENT_KINDS`].
pub fn verdict(r: &ProcessReport) -> BTreeSet<FindingKind> {
    r.findings
        .iter()
        .filter(|f| f.severity >= Severity::High && CONTENT_KINDS.contains(&f.kind))
        .map(|f| f.kind)
        .collect()
}

fn has(r: &ProcessReport, kind: FindingKind) -> bool {
    r.findings.iter().any(|f| f.kind == kind)
}

fn has_field(r: &ProcessReport, kind: FindingKind, field: &str) -> bool {
    r.findings
        .iter()
        .any(|f| f.kind == kind && f.evidence.get("field").and_then(|v| v.as_str()) == Some(field))
}

fn tls_kinds(r: &ProcessReport) -> Vec<FindingKind> {
    r.findings
        .iter()
        .filter(|f| f.kind.as_str().starts_with("tls_"))
        .map(|f| f.kind)
        .collect()
}

/// Whether `r` is the right verdict for `scenario` at `checkpoint`. `regions` says whether the
/// source had a region list (live Wine: yes; Wine minidump: no).
pub fn check(
    scenario: &str,
    checkpoint: &str,
    r: &ProcessReport,
    regions: bool,
) -> Result<(), String> {
    let kinds: Vec<String> = r
        .findings
        .iter()
        .map(|f| format!("{} {}", f.severity, f.kind))
        .collect();
    let fail = |why: &str| {
        Err(format!(
            "{scenario}@{checkpoint}: {why}; findings: {kinds:?}"
        ))
    };
    if let Some(e) = &r.error {
        return fail(&format!("scan error {e}"));
    }
    match scenario {
        "tls-array-swap" => {
            if !has_field(
                r,
                FindingKind::TlsDirectoryModified,
                "tls.address_of_callbacks",
            ) {
                return fail("no changed tls.address_of_callbacks");
            }
            // The injected callback: private RWX memory (live) or outside every image (dump).
            let callback = r.findings.iter().any(|f| {
                f.severity == Severity::Critical
                    && match f.kind {
                        FindingKind::TlsCallbackInRwxMemory => {
                            f.evidence.get("region_kind").and_then(|v| v.as_str())
                                == Some("private")
                        }
                        FindingKind::TlsCallbackOutsideImage => !regions,
                        _ => false,
                    }
            });
            if !callback {
                return fail("no critical callback into private RWX memory");
            }
        }
        "tls-slot-overwrite" => {
            if !has_field(r, FindingKind::TlsCallbackArrayModified, "tls.callbacks[0]") {
                return fail("no changed tls.callbacks[0]");
            }
        }
        "tls-directory-redirect" => {
            if !has_field(
                r,
                FindingKind::TlsDataDirectoryModified,
                "data_directory.tls.virtual_address",
            ) {
                return fail("no changed DataDirectory[9]");
            }
        }
        "hollow-runpe" | "hollow-relocated" => {
            if !has(r, FindingKind::HollowedImage) {
                return fail("no hollowed_image");
            }
            let attributed = r.findings.iter().any(|f| {
                f.kind == FindingKind::TlsCallbackInUnbackedImage
                    && f.severity == Severity::Critical
            });
            if !attributed {
                return fail("payload callbacks not attributed to an unbacked image");
            }
        }
        "early-bird-apc" => {
            if !tls_kinds(r).is_empty() {
                return fail("TLS finding in an APC-only scenario");
            }
            if checkpoint == "in-callback" {
                // The APC ran on the initial thread and is blocked in the injected code.
                let seen = r.findings.iter().any(|f| {
                    f.kind == FindingKind::PreEntryThreadInPrivateCode
                        && f.severity == Severity::High
                        && f.technique.iter().any(|t| t == "T1055.004")
                        && f.evidence.get("executable_known").and_then(|v| v.as_bool())
                            == Some(regions)
                });
                if !seen {
                    return fail("no pre_entry_thread_in_private_code");
                }
            }
            if checkpoint == "suspended" {
                if regions && !has(r, FindingKind::PreEntryPrivateCode) {
                    return fail("no pre_entry_private_code");
                }
                if !regions
                    && !r
                        .skipped_checks
                        .iter()
                        .any(|s| s.check == "pre_entry.private_code")
                {
                    return fail("pre_entry.private_code neither run nor listed as skipped");
                }
            }
        }
        s if s.starts_with("benign-") || s == "victim" => {
            if let Some(f) = r.findings.iter().find(|f| f.severity > Severity::Low) {
                return fail(&format!("benign control has {} {}", f.severity, f.kind));
            }
        }
        other => return fail(&format!("no expectation for scenario {other}")),
    }
    Ok(())
}
