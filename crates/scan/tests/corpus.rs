//! Real Windows/Linux crash dumps from the shared corpus (rust-minidump, breakpad, electron):
//! none is an injection, none holds PE headers in memory. The scan must not panic, must report
//! nothing above `low`, and must say which checks it could not run. Malformed dumps are
//! refused by the source with an error naming the file.

use std::path::{Path, PathBuf};

use preentry_memory::dump::MinidumpSource;
use preentry_scan::{DiskResolver, ScanOptions, Severity, scan_process};

fn corpus_dumps() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/minidump");
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(&root)
        .into_iter()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "dmp"))
        .map(|e| e.into_path())
        .collect();
    out.sort();
    out
}

#[test]
fn crash_dumps_scan_clean_and_say_what_was_skipped() {
    let dumps = corpus_dumps();
    assert!(
        dumps.len() >= 10,
        "corpus minidumps missing: {}",
        dumps.len()
    );
    let opts = ScanOptions {
        resolver: DiskResolver {
            // No module of these dumps exists here: every disk comparison is skipped.
            disk_root: Some(std::env::temp_dir().join("preentry-no-such-root")),
            wine_prefix: None,
        },
    };
    let mut scanned = 0;
    for path in &dumps {
        let src = match MinidumpSource::open(path) {
            Ok(s) => s,
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains(&*path.to_string_lossy()), "{msg}");
                continue;
            }
        };
        let r = scan_process(&src, &opts);
        scanned += 1;
        assert!(r.error.is_none(), "{}: {:?}", path.display(), r.error);
        if let Some(f) = r.findings.iter().find(|f| f.severity > Severity::Low) {
            panic!(
                "{}: {} {}: {}",
                path.display(),
                f.severity,
                f.kind,
                f.summary
            );
        }
        assert!(
            !r.skipped_checks.is_empty(),
            "{}: nothing skipped although no disk file exists",
            path.display()
        );
    }
    assert!(scanned >= 8, "only {scanned} dumps opened");
}
