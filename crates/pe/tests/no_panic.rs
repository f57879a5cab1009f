//! No panic on any input: mutated corpus files (and raw bytes) through every entry point in both
//! layouts. Bounded case count so it runs in seconds; the cargo-fuzz target under `fuzz/` runs
//! the same `exercise` function without a bound.

mod common;

use std::sync::OnceLock;

use preentry_pe::synth::exercise;
use proptest::prelude::*;
use proptest::sample::Index;

fn corpus() -> &'static Vec<Vec<u8>> {
    static C: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    C.get_or_init(|| {
        let files: Vec<Vec<u8>> = common::corpus_pe_files()
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .collect();
        assert!(files.len() >= 30, "corpus missing");
        files
    })
}

const INTERESTING: [u32; 8] = [
    0,
    1,
    0x7fff_ffff,
    0xffff_ffff,
    0x40_0000,
    0x1000,
    0xfff,
    0x8000_0000,
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_corpus_files_never_panic(
        file in any::<Index>(),
        mutations in prop::collection::vec((0u8..3, any::<Index>(), any::<u8>(), any::<Index>()), 0..24),
        truncate in prop::option::weighted(0.2, any::<Index>()),
        base in prop_oneof![Just(0x40_0000u64), Just(0x1_4000_0000u64), any::<u64>()],
    ) {
        let files = corpus();
        let mut bytes = files[file.index(files.len())].clone();
        for (kind, at, byte, value) in mutations {
            match kind {
                // Any byte anywhere.
                0 => { let i = at.index(bytes.len()); bytes[i] = byte; }
                // A byte in the headers.
                1 => { let i = at.index(bytes.len().min(0x400)); bytes[i] = byte; }
                // An interesting dword in the headers (sizes, RVAs, counts).
                _ => {
                    let i = at.index(bytes.len().min(0x400).saturating_sub(4).max(1));
                    let v = INTERESTING[value.index(INTERESTING.len())];
                    if let Some(d) = bytes.get_mut(i..i + 4) { d.copy_from_slice(&v.to_le_bytes()); }
                }
            }
        }
        if let Some(t) = truncate {
            bytes.truncate(t.index(bytes.len() + 1));
        }
        exercise(&bytes, base);
    }

    #[test]
    fn raw_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048), base in any::<u64>()) {
        let mut b = bytes;
        if b.len() >= 2 { b[0] = b'M'; b[1] = b'Z'; }
        exercise(&b, base);
    }
}

/// Each corpus file runs cleanly through `exercise` unmodified.
#[test]
fn corpus_files_exercise_cleanly() {
    for bytes in corpus() {
        for base in [0x40_0000u64, 0x7ff6_0000_0000, u64::MAX - 0xfff] {
            exercise(bytes, base);
        }
    }
}
