//! Format detection from content.

use std::path::Path;

use serde_json::Value;

use crate::Format;

/// How JSON records are laid out in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonLayout {
    /// One complete JSON value per line.
    Lines,
    /// A top-level array, or objects spanning several lines.
    Document,
}

/// The magic at the start of an EVTX file.
const EVTX_MAGIC: &[u8] = b"ElfFile\0";

fn strip_bom(b: &[u8]) -> &[u8] {
    b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b)
}

fn first_non_ws(b: &[u8]) -> Option<usize> {
    b.iter().position(|c| !c.is_ascii_whitespace())
}

/// Decide whether a JSON input is JSON lines or a multi-line document.
pub(crate) fn json_layout(head: &[u8]) -> JsonLayout {
    let b = strip_bom(head);
    let Some(i) = first_non_ws(b) else {
        return JsonLayout::Lines;
    };
    if b[i] == b'[' || b[i..].starts_with(b"Record ") {
        return JsonLayout::Document;
    }
    let rest = &b[i..];
    let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
    if serde_json::from_slice::<serde::de::IgnoredAny>(&rest[..end]).is_ok() {
        JsonLayout::Lines
    } else if end == rest.len() {
        // The first line did not fit in the sniffed bytes: a long JSON line.
        JsonLayout::Lines
    } else {
        JsonLayout::Document
    }
}

/// The first complete top-level JSON object in `b` (skipping an opening `[`), if it fits.
fn first_object(b: &[u8]) -> Option<&[u8]> {
    let mut depth = 0u32;
    let mut in_str = false;
    let mut esc = false;
    let mut start = None;
    for (i, &c) in b.iter().enumerate() {
        if start.is_none() {
            match c {
                b'{' => {
                    start = Some(i);
                    depth = 1;
                }
                b'[' | b',' => {}
                c if c.is_ascii_whitespace() => {}
                _ => return None,
            }
            continue;
        }
        if in_str {
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return start.map(|s| &b[s..=i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// Classify one parsed JSON record.
pub(crate) fn classify_json(v: &Value) -> Option<Format> {
    let o = v.as_object()?;
    if o.get("kind").is_some_and(Value::is_object) && o.get("source").is_some_and(Value::is_object)
    {
        return Some(Format::Preentry);
    }
    if o.get("Event").and_then(|e| e.get("System")).is_some() || o.contains_key("winlog") {
        return Some(Format::WinEventJson);
    }
    if o.contains_key("EventID")
        && [
            "SourceName",
            "Channel",
            "ProviderGuid",
            "Hostname",
            "ProviderName",
            "Provider",
        ]
        .iter()
        .any(|k| o.contains_key(*k))
        && !o.contains_key("XmlEventData")
    {
        return Some(Format::WinEventJson);
    }
    if o.contains_key("ActionType")
        || o.get("properties")
            .is_some_and(|p| p.get("ActionType").is_some())
        || o.get("Results").is_some_and(Value::is_array) && o.contains_key("Schema")
    {
        return Some(Format::Defender);
    }
    if o.get("process")
        .and_then(|p| p.get("Ext"))
        .and_then(|e| e.get("api"))
        .is_some()
        || o.get("data_stream")
            .and_then(|d| d.get("dataset"))
            .and_then(Value::as_str)
            .is_some_and(|d| d.starts_with("endpoint.events"))
        || o.get("event")
            .and_then(|e| e.get("dataset"))
            .and_then(Value::as_str)
            .is_some_and(|d| d.starts_with("endpoint.events"))
    {
        return Some(Format::ElasticEndpoint);
    }
    if (o.contains_key("ProviderName") || o.contains_key("ProviderGuid"))
        && o.contains_key("EventName")
    {
        return Some(Format::EtwJson); // SilkETW
    }
    if o.get("type").is_some_and(Value::is_string)
        && ["func", "callback", "trace_id", "krn_pid", "event"]
            .iter()
            .any(|k| o.contains_key(*k))
    {
        return Some(Format::EtwJson); // RedEdr
    }
    None
}

/// True when a text line looks like `wineserver -d2` output: `0024: name( … )` or
/// `0024: name() = …`, or the `00cc: *fd* …` lines.
pub(crate) fn is_wine_trace_line(line: &str) -> bool {
    let b = line.as_bytes();
    if b.len() < 7 || b[4] != b':' || b[5] != b' ' {
        return false;
    }
    if !b[..4].iter().all(u8::is_ascii_hexdigit) {
        return false;
    }
    let rest = &b[6..];
    if rest.starts_with(b"*") {
        return true;
    }
    let name_len = rest
        .iter()
        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || **c == b'_')
        .count();
    name_len > 0 && rest.get(name_len) == Some(&b'(')
}

/// Detect the format of an input from its first bytes (up to 64 KiB is plenty). `path` is only
/// used as a tie-breaker hint; content decides.
pub fn detect_format(path: Option<&Path>, head: &[u8]) -> Option<Format> {
    if head.starts_with(EVTX_MAGIC) {
        return Some(Format::Evtx);
    }
    let b = strip_bom(head);
    let i = first_non_ws(b)?;
    let b = &b[i..];
    if b[0] == b'{' || b[0] == b'[' {
        if let Some(obj) = first_object(b)
            && let Ok(v) = serde_json::from_slice::<Value>(obj)
        {
            return classify_json(&v);
        }
        // The first record is larger than the sniffed bytes: fall back to key spotting.
        let text = String::from_utf8_lossy(b);
        let has = |k: &str| text.contains(k);
        if has("\"kind\":{") && has("\"source\":{") {
            return Some(Format::Preentry);
        }
        if has("\"System\"") || has("\"winlog\"") || has("\"EventID\"") {
            return Some(Format::WinEventJson);
        }
        if has("\"ActionType\"") {
            return Some(Format::Defender);
        }
        if has("\"api\"") && has("\"Ext\"") {
            return Some(Format::ElasticEndpoint);
        }
        if has("\"EventName\"") || has("\"krn_pid\"") || has("\"trace_id\"") {
            return Some(Format::EtwJson);
        }
        return None;
    }
    // Text: evtx_dump's JSON output (`Record N` then a pretty object), or the Wine trace.
    let text = String::from_utf8_lossy(b);
    if let Some(rest) = text.strip_prefix("Record ")
        && let Some((num, after)) = rest.split_once('\n')
        && num.trim().bytes().all(|c| c.is_ascii_digit())
    {
        let after = after.trim_start();
        if after.starts_with('{') {
            return detect_format(path, after.as_bytes());
        }
    }
    let mut lines = 0;
    let mut wine = 0;
    for line in text.lines().take(50) {
        if line.trim().is_empty() {
            continue;
        }
        lines += 1;
        if is_wine_trace_line(line) {
            wine += 1;
        }
    }
    if lines > 0 && wine * 2 >= lines {
        return Some(Format::WineTrace);
    }
    let _ = path;
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_content() {
        assert_eq!(detect_format(None, b"ElfFile\0rest"), Some(Format::Evtx));
        assert_eq!(
            detect_format(None, b"{\"Event\":{\"System\":{}}}\n"),
            Some(Format::WinEventJson)
        );
        assert_eq!(
            detect_format(None, b"[{\"type\":\"meta\",\"func\":\"init\"}]"),
            Some(Format::EtwJson)
        );
        assert_eq!(
            detect_format(None, b"{\"ActionType\":\"WriteProcessMemoryApiCall\"}"),
            Some(Format::Defender)
        );
        assert_eq!(
            detect_format(
                None,
                b"0024: new_process( token=0000 )\n0024: new_process() = 0 { }\n"
            ),
            Some(Format::WineTrace)
        );
        assert_eq!(detect_format(None, b"hello world\nnot telemetry\n"), None);
        assert_eq!(detect_format(None, b""), None);
        assert_eq!(detect_format(None, b"{\"a\":1}\n"), None);
    }

    #[test]
    fn layout() {
        assert_eq!(json_layout(b"{\"a\":1}\n{\"a\":2}\n"), JsonLayout::Lines);
        assert_eq!(json_layout(b"{\n  \"a\": 1\n}\n"), JsonLayout::Document);
        assert_eq!(json_layout(b"[{\"a\":1}]"), JsonLayout::Document);
        assert_eq!(json_layout(b"Record 1\n{\n}"), JsonLayout::Document);
    }
}
