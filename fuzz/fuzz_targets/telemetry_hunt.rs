//! Fuzz the telemetry decoders and the AN1289 engine: the input is a telemetry file in any of
//! the supported formats, whole (seed with `../shared/corpus/evtx`, `../shared/corpus/etw`,
//! `../shared/corpus/datasets/**/_derived` and `samples/*/wineserver.trace.gz`). A first byte below 8
//! forces a format, anything else is auto-detected; every decoded event goes through the engine.
//! Nothing may panic, and a bad record is an error item, never the end of the stream.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use preentry_detect::{Config, Engine};
use preentry_telemetry::{Format, decode_reader};

const FORMATS: [Option<Format>; 8] = [
    None,
    Some(Format::Evtx),
    Some(Format::WinEventJson),
    Some(Format::EtwJson),
    Some(Format::Defender),
    Some(Format::ElasticEndpoint),
    Some(Format::WineTrace),
    Some(Format::Preentry),
];

fuzz_target!(|data: &[u8]| {
    // A first byte below 8 forces a format (the rest is the body); anything else (every real
    // file: EVTX, JSON, gzip, trace text) is decoded whole with auto-detection.
    let (format, body) = match data.split_first() {
        Some((&pick, rest)) if usize::from(pick) < FORMATS.len() => {
            (FORMATS[usize::from(pick)], rest)
        }
        _ => (None, data),
    };
    let Ok(stream) = decode_reader(Cursor::new(body.to_vec()), Some("fuzz"), format) else {
        return;
    };
    let mut engine = Engine::new(Config::default());
    // Bounded: a decoder must end on finite input; the cap only guards the fuzzer's time.
    for item in stream.take(1 << 16) {
        if let Ok(event) = item {
            let _ = engine.push(event);
        }
    }
    let _ = engine.finish();
});
