//! Print `ImageFacts` of PE files as JSON (file layout): `cargo run -p preentry-pe --example pe_facts -- FILE...`
use preentry_pe::{ImageFacts, Layout, NoOutside, PeImage};

fn main() {
    for path in std::env::args().skip(1) {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{path}: {e}");
                continue;
            }
        };
        match PeImage::parse(&bytes, Layout::File) {
            Ok(img) => {
                let facts = ImageFacts::from_image(&img, &NoOutside);
                match serde_json::to_string_pretty(&facts) {
                    Ok(s) => println!("{path}\n{s}"),
                    Err(e) => eprintln!("{path}: {e}"),
                }
            }
            Err(e) => eprintln!("{path}: {e}"),
        }
    }
}
