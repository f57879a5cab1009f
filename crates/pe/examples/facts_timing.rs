//! Rough timing: parse + TLS + facts + relocate + diff over the given files, in both layouts.
//! `cargo run --release -p preentry-pe --example facts_timing -- FILE...`
use std::time::Instant;

use preentry_pe::{ImageFacts, Layout, NoOutside, PeImage, diff};

fn main() {
    let files: Vec<Vec<u8>> = std::env::args()
        .skip(1)
        .filter_map(|p| std::fs::read(p).ok())
        .collect();
    let rounds = 2000;
    let start = Instant::now();
    let mut n = 0usize;
    let mut acc = 0usize;
    for _ in 0..rounds {
        for f in &files {
            for layout in [
                Layout::File,
                Layout::Loaded {
                    base: 0x7ff6_0000_0000,
                },
            ] {
                if let Ok(img) = PeImage::parse(f, layout) {
                    let facts = ImageFacts::from_image(&img, &NoOutside);
                    acc += diff(&facts.relocated_to(0x50_0000), &facts).len();
                }
                n += 1;
            }
        }
    }
    let el = start.elapsed();
    println!(
        "{n} parses+facts+relocate+diff in {:.3} s: {:.2} us each (acc {acc})",
        el.as_secs_f64(),
        el.as_secs_f64() * 1e6 / n as f64
    );
}
