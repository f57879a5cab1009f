//! The telemetry event model and its decoders for `preentry hunt`.
//!
//! - [`Event`] / [`EventKind`] / [`ProcessRef`] / [`SourceRef`]: the one event model (JSON Schema:
//!   `schema/event.schema.json`, field mappings: `docs/telemetry.md`).
//! - [`Format`]: every supported input format (`FromStr` for `--format`), [`detect_format`].
//! - [`decode_file`] / [`decode_reader`]: streaming decoders yielding
//!   `Result<Event, DecodeError>`; a bad record is one `Err` item, never the end of the stream.
//!   [`EventStream::stats`] counts records, events, skipped (irrelevant) records and errors.

mod decoders;
mod detect;
mod evtx_source;
mod format;
mod model;
mod stream;

pub use detect::detect_format;
pub use format::{Format, ParseFormatError};
pub use model::{Event, EventKind, ProcessRef, SourceRef, protect};
pub use stream::{
    DecodeError, DecodeStats, EventStream, MAX_RECORD_BYTES, decode_all, decode_file, decode_reader,
};

/// Serialise events as preentry JSON lines (one event per line).
pub fn write_jsonl<'a, W: std::io::Write>(
    mut w: W,
    events: impl IntoIterator<Item = &'a Event>,
) -> std::io::Result<()> {
    for e in events {
        serde_json::to_writer(&mut w, e)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

impl SourceRef {
    /// A source reference with only the format set.
    pub fn new(format: Format) -> Self {
        SourceRef {
            format,
            path: None,
            record_id: None,
            line: None,
            offset: None,
            provider: None,
            event_id: None,
            action: None,
        }
    }
}
