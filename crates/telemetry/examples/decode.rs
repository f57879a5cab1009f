//! Decode telemetry files and print preentry JSON lines on stdout, errors and counts on stderr.
//!
//! `cargo run -p preentry-telemetry --example decode -- [--format NAME] FILE...`

use std::io::Write;
use std::path::Path;

use preentry_telemetry::{Format, decode_file};

fn main() {
    let mut format: Option<Format> = None;
    let mut args = std::env::args().skip(1);
    let mut files = Vec::new();
    while let Some(a) = args.next() {
        if a == "--format" {
            match args.next().map(|f| f.parse::<Format>()) {
                Some(Ok(f)) => format = Some(f),
                Some(Err(e)) => {
                    eprintln!("{e}");
                    std::process::exit(2);
                }
                None => {
                    eprintln!("--format needs a value");
                    std::process::exit(2);
                }
            }
        } else {
            files.push(a);
        }
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for f in files {
        let mut stream = match decode_file(Path::new(&f), format) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                continue;
            }
        };
        for item in &mut stream {
            match item {
                Ok(ev) => {
                    if serde_json::to_writer(&mut out, &ev).is_err()
                        || out.write_all(b"\n").is_err()
                    {
                        return;
                    }
                }
                Err(e) => eprintln!("error: {e}"),
            }
        }
        let s = stream.stats();
        eprintln!(
            "{f}: format={} records={} events={} skipped={} errors={}",
            stream.format(),
            s.records,
            s.events,
            s.skipped,
            s.errors
        );
    }
}
