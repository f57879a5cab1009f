//! The telemetry event model and its decoders for `preentry hunt`.
//!
//! - [`Event`] / [`EventKind`] / [`ProcessRef`] / [`SourceRef`]: the one event model (JSON Schema:
//!   `schema/event.schema.json`, field mappings: `docs/telemetry.md`).
//! - [`Format`]: every supported input format (`FromStr` for `--format`), [`detect_format`].
//! - [`decode_file`] / [`decode_reader`]: streaming decoders yielding
//!   `Result<Event, DecodeError>`; a bad record is one `Err` item, never the end of the stream.
//!   [`EventStream::stats`] counts records, events, skipped (irrelevant) records and errors.

mod format;
mod model;

pub use format::{Format, ParseFormatError};
pub use model::{Event, EventKind, ProcessRef, SourceRef, protect};

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
