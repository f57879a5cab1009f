//! Shared helpers for the integration tests: the real corpus, read in place.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `../shared/corpus/pe` relative to the workspace root.
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/pe")
}

/// Every file under the corpus that starts with `MZ`, sorted, recursive (bounded depth).
pub fn corpus_pe_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![(corpus_dir(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if depth < 16 {
                    stack.push((p, depth + 1));
                }
            } else if std::fs::read(&p).is_ok_and(|b| b.starts_with(b"MZ")) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Read a corpus file by path relative to the corpus root; fails the test when missing.
pub fn corpus_file(rel: &str) -> Vec<u8> {
    let p = corpus_dir().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("corpus file {}: {e}", p.display()))
}

/// The corkami binary `name` (in `corkami-pocs/PE/bin`).
pub fn corkami(name: &str) -> Vec<u8> {
    corpus_file(&format!("corkami-pocs/PE/bin/{name}"))
}

/// Test-only: require the corpus to be present (it is in this project's environments).
pub fn require_corpus() {
    assert!(
        corpus_dir().is_dir(),
        "corpus missing at {}",
        corpus_dir().display()
    );
}
