//! Fuzz the PE/TLS reader: the input is a PE image (seed with `../shared/corpus/pe`, see
//! `fuzz/README.md`). Both layouts, TLS with and without outside memory, facts, relocation to
//! another base, the field diff, and the synth loader mapping. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use preentry_pe::synth::{Regions, exercise};
use preentry_pe::{ImageFacts, Layout, NoOutside, PeImage, diff};

/// Load bases to try, picked by input length so seeds stay valid PE files.
const BASES: [u64; 4] = [0x40_0000, 0x1_4000_0000, 0x7ff6_1234_0000, 0xffff_0000];

fuzz_target!(|data: &[u8]| {
    let base = BASES[data.len() % BASES.len()];
    // Direct calls, so a crash points at the API a caller uses.
    let file = PeImage::parse(data, Layout::File).ok();
    let loaded = PeImage::parse(data, Layout::Loaded { base }).ok();
    if let Some(img) = &file {
        let _ = img.tls(&NoOutside);
        let facts = ImageFacts::from_image(img, &NoOutside);
        let expected = facts.relocated_to(base);
        if let Some(mem) = &loaded {
            let outside = Regions(vec![(
                base.wrapping_sub(0x1000),
                data.iter().take(256).copied().collect(),
            )]);
            let observed = ImageFacts::from_image(mem, &outside);
            let _ = diff(&expected, &observed);
        }
    }
    // Everything else, shared with the proptest in crates/pe/tests/no_panic.rs.
    exercise(data, base);
});
