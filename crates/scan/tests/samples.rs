//! Scans every committed lab sample (`samples/*/`: a Wine minidump of the victim, the victim's
//! exe, `meta.json`) and checks the verdict for its scenario. Runs without the Wine lab.

mod common;

use std::path::{Path, PathBuf};

use preentry_memory::dump::MinidumpSource;
use preentry_scan::{DiskResolver, ScanOptions, scan_process};

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples")
}

#[test]
fn every_sample_gets_its_scenario_verdict() {
    let mut seen = 0;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(samples_dir())
        .unwrap_or_else(|e| panic!("samples/: {e}"))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("meta.json").is_file())
        .collect();
    entries.sort();
    let mut failures = Vec::new();
    for dir in entries {
        let meta: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("meta.json")).unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let scenario = meta["scenario"].as_str().unwrap_or_default().to_string();
        let checkpoint = meta["checkpoint"].as_str().unwrap_or_default().to_string();
        let dump = ["victim.dmp.gz", "victim.dmp"]
            .iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{}: no victim.dmp[.gz]", dir.display()));
        let source = MinidumpSource::open(&dump).unwrap_or_else(|e| panic!("{e}"));
        let opts = ScanOptions {
            resolver: DiskResolver {
                disk_root: Some(dir.clone()),
                wine_prefix: None,
            },
        };
        let report = scan_process(&source, &opts);
        // The victim's exe is in the sample: the disk comparison must have run.
        assert!(
            report
                .modules
                .iter()
                .any(|m| m.main && m.disk_file.is_some())
                || report
                    .findings
                    .iter()
                    .any(|f| f.kind == preentry_scan::FindingKind::HollowedImage),
            "{}: main image not compared with its file: {:?}",
            dir.display(),
            report.skipped_checks
        );
        if let Err(e) = common::check(&scenario, &checkpoint, &report, false) {
            failures.push(e);
        }
        seen += 1;
    }
    assert!(seen >= 2, "expected the committed samples, found {seen}");
    assert!(failures.is_empty(), "{failures:#?}");
}
