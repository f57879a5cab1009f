//! One decoder per input format, plus shared value parsing helpers.

use std::borrow::Cow;

use jiff::Timestamp;
use serde_json::Value;

use crate::stream::RawRecord;
use crate::{Event, Format, SourceRef};

pub(crate) mod defender;
pub(crate) mod elastic;
pub(crate) mod etw;
pub(crate) mod preentry;
pub(crate) mod wine;
pub(crate) mod winevent;

/// Turns one raw record into zero or more events. `Ok` with nothing pushed = irrelevant record.
/// `Err(message)` = the record is bad; the caller adds file/line/offset.
pub(crate) trait RecordDecoder: Send {
    fn decode(
        &mut self,
        rec: &RawRecord<'_>,
        base: &SourceRef,
        out: &mut Vec<Event>,
    ) -> Result<(), String>;

    /// Called once at the end of the input: emit anything still held back; `Some(message)`
    /// reports a problem with the input as a whole.
    fn finish(&mut self, _base: &SourceRef, _out: &mut Vec<Event>) -> Option<String> {
        None
    }
}

pub(crate) fn for_format(format: Format) -> Box<dyn RecordDecoder> {
    match format {
        Format::Evtx | Format::WinEventJson => Box::new(winevent::WinEventDecoder::default()),
        Format::EtwJson => Box::new(etw::EtwDecoder::default()),
        Format::Defender => Box::new(defender::DefenderDecoder),
        Format::ElasticEndpoint => Box::new(elastic::ElasticDecoder),
        Format::WineTrace => Box::new(wine::WineDecoder::default()),
        Format::Preentry => Box::new(preentry::PreentryDecoder),
    }
}

/// Parse a JSON record, with a short message on failure.
pub(crate) fn parse_json<'a, T: serde::Deserialize<'a>>(text: &'a str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))
}

/// A number written as decimal or `0x` hex.
pub(crate) fn parse_u64_strict(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return u64::from_str_radix(h, 16).ok();
    }
    s.parse::<u64>().ok()
}

pub(crate) fn parse_u32(s: &str) -> Option<u32> {
    parse_u64_strict(s).and_then(|v| u32::try_from(v).ok())
}

/// A JSON value as a number: integers, or strings holding decimal/`0x` hex.
pub(crate) fn value_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| n.as_i64().map(|i| i as u64)),
        Value::String(s) => parse_u64_strict(s),
        _ => None,
    }
}

pub(crate) fn value_u32(v: &Value) -> Option<u32> {
    value_u64(v).and_then(|x| u32::try_from(x).ok())
}

/// A JSON value as text (numbers and booleans rendered).
pub(crate) fn value_str(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s.as_str())),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

/// An RFC 3339 / ISO 8601 timestamp; without a zone it is taken as UTC. Also accepts the Sysmon
/// `2025-11-27 07:22:22.031` form.
pub(crate) fn parse_time(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some(t);
    }
    let fixed: Cow<'_, str> = if s.as_bytes().get(10) == Some(&b' ') {
        let mut o = s.to_string();
        o.replace_range(10..11, "T");
        Cow::Owned(o)
    } else {
        Cow::Borrowed(s)
    };
    if let Ok(t) = fixed.parse::<Timestamp>() {
        return Some(t);
    }
    let dt: jiff::civil::DateTime = fixed.parse().ok()?;
    jiff::tz::TimeZone::UTC.to_timestamp(dt).ok()
}

/// A Windows FILETIME (100 ns since 1601-01-01) as a timestamp.
pub(crate) fn filetime(ft: u64) -> Option<Timestamp> {
    const EPOCH_DIFF: u64 = 116_444_736_000_000_000;
    let since_unix = ft.checked_sub(EPOCH_DIFF)?;
    let nanos = i128::from(since_unix).checked_mul(100)?;
    Timestamp::from_nanosecond(nanos).ok()
}

/// Normalise a GUID to `{UPPERCASE}`.
pub(crate) fn norm_guid(s: &str) -> Option<String> {
    let t = s.trim().trim_start_matches('{').trim_end_matches('}');
    if t.is_empty() || t == "-" {
        return None;
    }
    let mut o = String::with_capacity(t.len() + 2);
    o.push('{');
    o.extend(t.chars().map(|c| c.to_ascii_uppercase()));
    o.push('}');
    Some(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u64_strict("0x1fffff"), Some(0x1fffff));
        assert_eq!(parse_u64_strict("42"), Some(42));
        assert_eq!(parse_u64_strict("7ffe1234"), None);
        assert_eq!(parse_u32("0x1ffffffff"), None);
        assert_eq!(value_u64(&Value::from("0x10")), Some(16));
        assert_eq!(value_u64(&Value::from(16)), Some(16));
    }

    #[test]
    fn times() {
        let a = parse_time("2025-11-27 07:22:22.031").unwrap();
        let b = parse_time("2025-11-27T07:22:22.031Z").unwrap();
        assert_eq!(a, b);
        assert!(parse_time("nonsense").is_none());
        // 134214927009848304 is a FILETIME from the RedEdr recording (2026-04-24).
        let t = filetime(134_214_927_009_848_304).unwrap();
        assert!(t.to_string().starts_with("2026-04-24T"), "{t}");
        assert!(filetime(5).is_none());
    }

    #[test]
    fn guids() {
        assert_eq!(
            norm_guid("0197231e-fc2d-6927-810b-000000000d00").as_deref(),
            Some("{0197231E-FC2D-6927-810B-000000000D00}")
        );
        assert_eq!(norm_guid("{}"), None);
    }
}
