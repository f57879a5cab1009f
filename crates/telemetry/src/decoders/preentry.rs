//! preentry's own JSON lines: [`crate::Event`] serialised one per line.
//!
//! The `source` recorded in the line is kept (it says where the event was first decoded from);
//! only when it has no line/offset are those of this file filled in.

use super::RecordDecoder;
use crate::stream::RawRecord;
use crate::{Event, SourceRef};

pub(crate) struct PreentryDecoder;

impl RecordDecoder for PreentryDecoder {
    fn decode(
        &mut self,
        rec: &RawRecord<'_>,
        base: &SourceRef,
        out: &mut Vec<Event>,
    ) -> Result<(), String> {
        let mut ev: Event = serde_json::from_str(rec.text)
            .map_err(|e| format!("not a preentry event line: {e}"))?;
        if ev.source.line.is_none() && ev.source.offset.is_none() {
            ev.source.line = base.line;
            ev.source.offset = base.offset;
            if ev.source.path.is_none() {
                ev.source.path = base.path.clone();
            }
        }
        out.push(ev);
        Ok(())
    }
}
