//! Shared helpers for the integration tests: the real corpus, read in place.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `../shared/corpus/pe` relative to the workspace root.
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/pe")
}

/// Every file under the corpus that starts with `MZ`, sorted, recursive (bounded depth).
pub fn corpus_pe_files() -> Vec<PathBuf> {
    pe_files_under(corpus_dir())
}

/// Every file under `root` that starts with `MZ`, sorted, recursive (bounded depth).
pub fn pe_files_under(root: PathBuf) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![(root, 0usize)];
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
            } else if is_mz(&p) {
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

fn is_mz(p: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 2];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"MZ"
}

/// The corpus plus directories from `PREENTRY_PE_EXTRA_DIRS` (`:`-separated; e.g. Wine's PE
/// DLLs), for running the corpus-wide tests over more real files.
pub fn corpus_and_extra_pe_files() -> Vec<PathBuf> {
    let mut files = corpus_pe_files();
    if let Some(extra) = std::env::var_os("PREENTRY_PE_EXTRA_DIRS") {
        for dir in std::env::split_paths(&extra) {
            files.extend(pe_files_under(dir));
        }
    }
    files
}
