//! Hunt throughput and memory, on real inputs (results go to BENCHMARKS.md, `## hunt`):
//!
//! 1. JSON lines: real events (the committed lab traces and the EVTX-ATTACK Sysmon
//!    recordings, decoded once) written as preentry JSON lines, repeated with fresh PIDs to
//!    about 1M events; decoded by `preentry-telemetry` and fed to the engine: events/s.
//! 2. EVTX end to end: every `.evtx` of the corpus, decoded and hunted, in MB/s, beside the raw
//!    `evtx` crate parse (records to JSON) of the same files in the same run.
//! 3. Memory per tracked process: RSS growth while the engine tracks N targets built from a
//!    real process creation + suspended-thread + remote-write sequence (lab trace), divided by N.
//!
//! Run: `cargo bench -p preentry-detect --bench hunt` (release profile).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use preentry_detect::{Config, Engine};
use preentry_telemetry::{Event, Format, decode_file};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn corpus() -> PathBuf {
    root().join("../shared/corpus")
}

fn evtx_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            evtx_files(&p, out);
        } else if p
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("evtx"))
        {
            out.push(p);
        }
    }
}

fn lab_events() -> Vec<Event> {
    let mut events = Vec::new();
    let Ok(rd) = fs::read_dir(root().join("samples")) else {
        return events;
    };
    let mut dirs: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    dirs.sort();
    for d in dirs {
        let p = d.join("wineserver.trace.gz");
        if let Ok(s) = decode_file(&p, Some(Format::WineTrace)) {
            events.extend(s.flatten());
        }
    }
    events
}

fn rss_bytes() -> u64 {
    // /proc/self/statm: size resident ... in pages.
    fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

fn shift_pids(e: &Event, add: u32) -> Event {
    let mut e = e.clone();
    for r in [e.actor.as_mut(), e.target.as_mut()].into_iter().flatten() {
        if let Some(p) = r.pid.as_mut() {
            *p = p.wrapping_add(add);
        }
        if let Some(g) = r.guid.as_mut() {
            g.push_str(&format!("-{add}"));
        }
    }
    e
}

fn main() {
    // Cargo passes `--bench`; ignore arguments.
    let mut base: Vec<Event> = lab_events();
    let mut sysmon = Vec::new();
    evtx_files(&corpus().join("evtx/EVTX-ATTACK-SAMPLES"), &mut sysmon);
    for f in &sysmon {
        if let Ok(s) = decode_file(f, None) {
            base.extend(s.flatten());
        }
    }
    if base.is_empty() {
        eprintln!("!!! SKIPPED: no samples/ and no corpus");
        return;
    }

    // 1. JSON lines.
    let target = 1_000_000usize;
    let tmp =
        std::env::temp_dir().join(format!("preentry-hunt-bench-{}.jsonl", std::process::id()));
    {
        let mut w = std::io::BufWriter::new(fs::File::create(&tmp).expect("tmp"));
        let mut n = 0usize;
        let mut round = 0u32;
        while n < target {
            for e in &base {
                serde_json::to_writer(&mut w, &shift_pids(e, round.wrapping_mul(100_000)))
                    .expect("write");
                w.write_all(b"\n").expect("write");
                n += 1;
            }
            round += 1;
        }
    }
    let size = fs::metadata(&tmp).map(|m| m.len()).unwrap_or(0);
    // Decoding alone, for the engine's share.
    let t = Instant::now();
    let decoded = decode_file(&tmp, Some(Format::Preentry))
        .expect("open")
        .flatten()
        .count();
    let decode_secs = t.elapsed().as_secs_f64();
    println!(
        "jsonl decode only: {decoded} events in {decode_secs:.2} s => {:.0} events/s",
        decoded as f64 / decode_secs
    );
    let t = Instant::now();
    let mut engine = Engine::new(Config::default());
    let mut events = 0u64;
    let mut alerts = 0usize;
    for e in decode_file(&tmp, Some(Format::Preentry))
        .expect("open")
        .flatten()
    {
        events += 1;
        alerts += engine.push(e).len();
    }
    alerts += engine.finish().len();
    let secs = t.elapsed().as_secs_f64();
    let _ = fs::remove_file(&tmp);
    println!(
        "jsonl: {events} events, {:.1} MB, {secs:.2} s => {:.0} events/s ({:.1} MB/s), {alerts} alerts, peak tracked {}",
        size as f64 / 1e6,
        events as f64 / secs,
        size as f64 / 1e6 / secs,
        engine.stats().processes_peak
    );

    // 2. EVTX end to end vs raw evtx parse, same files, same run (3 rounds each, best).
    let mut all_evtx = Vec::new();
    evtx_files(&corpus().join("evtx"), &mut all_evtx);
    let total: u64 = all_evtx
        .iter()
        .filter_map(|p| fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let mut best_raw = f64::MAX;
    let mut best_hunt = f64::MAX;
    let mut raw_records = 0u64;
    let mut hunt_events = 0u64;
    for _ in 0..3 {
        let t = Instant::now();
        raw_records = 0;
        for p in &all_evtx {
            if let Ok(mut parser) = evtx::EvtxParser::from_path(p) {
                for r in parser.records_json() {
                    if r.is_ok() {
                        raw_records += 1;
                    }
                }
            }
        }
        best_raw = best_raw.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        hunt_events = 0;
        let mut engine = Engine::new(Config::default());
        for p in &all_evtx {
            if let Ok(s) = decode_file(p, Some(Format::Evtx)) {
                for e in s.flatten() {
                    hunt_events += 1;
                    engine.push(e);
                }
            }
        }
        engine.finish();
        best_hunt = best_hunt.min(t.elapsed().as_secs_f64());
    }
    println!(
        "evtx: {} files, {:.1} MB; raw evtx parse (records_json) {raw_records} records in {best_raw:.3} s => {:.1} MB/s; hunt end to end {hunt_events} events in {best_hunt:.3} s => {:.1} MB/s",
        all_evtx.len(),
        total as f64 / 1e6,
        total as f64 / 1e6 / best_raw,
        total as f64 / 1e6 / best_hunt
    );

    // 3. Memory per tracked process.
    let seq: Vec<Event> = lab_events()
        .into_iter()
        .filter(|e| {
            e.target
                .as_ref()
                .and_then(|t| t.image.as_deref())
                .is_some_and(|i| i.contains("victim"))
        })
        .collect();
    if seq.is_empty() {
        println!("memory: skipped (no lab sample)");
        return;
    }
    let n = 100_000u32;
    let mut config = Config::default();
    config.engine.max_tracked_processes = n as usize + 1;
    config.approximation.read_images_from_disk = false;
    let mut engine = Engine::new(config);
    let before = rss_bytes();
    for i in 0..n {
        for e in &seq {
            if matches!(e.kind, preentry_telemetry::EventKind::ProcessExit { .. }) {
                continue;
            }
            engine.push(shift_pids(e, (i + 1).wrapping_mul(4)));
        }
    }
    let after = rss_bytes();
    println!(
        "memory: {} targets tracked ({} events each), RSS +{:.1} MB => {:.0} bytes per tracked process",
        engine.tracked(),
        seq.len(),
        after.saturating_sub(before) as f64 / 1e6,
        after.saturating_sub(before) as f64 / f64::from(n)
    );
}
