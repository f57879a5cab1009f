//! Streaming decode: open a file or reader, detect its format, split it into records and turn
//! each record into zero or more events. Memory stays bounded by the largest record.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::Path;

use crate::decoders::{self, RecordDecoder};
use crate::detect::{JsonLayout, detect_format, json_layout};
use crate::{Event, Format, SourceRef};

/// Longest line or JSON record accepted; longer ones are reported and skipped.
pub const MAX_RECORD_BYTES: usize = 64 << 20;
/// How much of the input is looked at to detect its format.
const SNIFF_BYTES: usize = 64 << 10;

/// A decoding problem. Every variant names the input, and record-level ones the line and/or byte
/// offset, so a user can find the bad record.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The input could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    /// The input's format could not be recognised from its content.
    #[error("{path}: cannot recognise the input format from its content (use --format)")]
    UnknownFormat { path: String },
    /// One record (line, JSON object, EVTX chunk/record) could not be decoded; it was skipped.
    #[error("{path}{}: {message}", location(*.line, *.offset, .record.as_deref()))]
    Record {
        path: String,
        line: Option<u64>,
        offset: Option<u64>,
        record: Option<String>,
        message: String,
    },
}

fn location(line: Option<u64>, offset: Option<u64>, record: Option<&str>) -> String {
    let mut s = String::new();
    if let Some(l) = line {
        s.push_str(&format!(":{l}"));
    }
    if let Some(o) = offset {
        s.push_str(&format!(" (byte offset {o})"));
    }
    if let Some(r) = record {
        s.push_str(&format!(" [{r}]"));
    }
    s
}

/// Counters for one decoded input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Records read (lines, JSON objects, EVTX records).
    pub records: u64,
    /// Events produced.
    pub events: u64,
    /// Records that were read fine but carry nothing AN1289 needs (e.g. Sysmon 3).
    pub skipped: u64,
    /// Records (or EVTX chunks) that could not be decoded.
    pub errors: u64,
}

/// One raw record handed to a decoder.
pub(crate) struct RawRecord<'a> {
    pub text: &'a str,
    pub line: Option<u64>,
    pub offset: Option<u64>,
    /// Record id known from the container (EVTX).
    pub record_id: Option<u64>,
}

/// Where records come from.
enum Source {
    Lines(LineSplitter),
    JsonDoc(JsonSplitter),
    Evtx(crate::evtx_source::EvtxSource),
}

/// A streaming iterator of decoded events (and per-record errors) from one input.
pub struct EventStream {
    path: String,
    format: Format,
    source: Source,
    decoder: Box<dyn RecordDecoder>,
    pending: VecDeque<Result<Event, DecodeError>>,
    stats: DecodeStats,
    scratch: Vec<Event>,
    done: bool,
    finished: bool,
}

impl EventStream {
    /// The format being decoded (detected or forced).
    pub fn format(&self) -> Format {
        self.format
    }

    /// The input's display path (`<stdin>` for standard input).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Counters so far (final once the iterator returned `None`).
    pub fn stats(&self) -> DecodeStats {
        self.stats
    }

    fn base_source(&self, rec: &RawRecord<'_>) -> SourceRef {
        let mut s = SourceRef::new(self.format);
        if self.path != STDIN {
            s.path = Some(self.path.clone());
        }
        s.line = rec.line;
        s.offset = rec.offset;
        s.record_id = rec.record_id.map(|r| r.to_string());
        s
    }

    fn handle(&mut self, rec: RawRecord<'_>) {
        self.stats.records += 1;
        let base = self.base_source(&rec);
        self.scratch.clear();
        match self.decoder.decode(&rec, &base, &mut self.scratch) {
            Ok(()) => {
                if self.scratch.is_empty() {
                    self.stats.skipped += 1;
                }
                self.stats.events += self.scratch.len() as u64;
                self.pending.extend(self.scratch.drain(..).map(Ok));
            }
            Err(message) => {
                self.stats.errors += 1;
                self.pending.push_back(Err(DecodeError::Record {
                    path: self.path.clone(),
                    line: rec.line,
                    offset: rec.offset,
                    record: rec.record_id.map(|r| format!("record {r}")),
                    message,
                }));
            }
        }
    }

    /// The source itself failed: counted, queued; an I/O error ends the stream.
    fn source_error(&mut self, e: DecodeError) {
        self.stats.errors += 1;
        if matches!(e, DecodeError::Io { .. }) {
            self.done = true;
        }
        self.pending.push_back(Err(e));
    }

    /// A `what` (line or record) that is not UTF-8: counted as a record in error, queued.
    fn not_utf8(
        &mut self,
        path: String,
        line: u64,
        offset: u64,
        what: &str,
        e: std::str::Utf8Error,
    ) {
        self.stats.records += 1;
        self.stats.errors += 1;
        self.pending.push_back(Err(DecodeError::Record {
            path,
            line: Some(line),
            offset: Some(offset),
            record: None,
            message: format!("{what} is not UTF-8: {e}"),
        }));
    }

    fn pull(&mut self) {
        let path = self.path.clone();
        match &mut self.source {
            Source::Lines(s) => match s.next_line(&path) {
                None => self.done = true,
                Some(Err(e)) => self.source_error(e),
                Some(Ok((line, offset))) => {
                    let text = std::mem::take(&mut s.buf);
                    match std::str::from_utf8(&text) {
                        Ok(t) => {
                            let t = t.trim_end_matches(['\n', '\r']);
                            let t = if line == 1 {
                                t.trim_start_matches('\u{feff}')
                            } else {
                                t
                            };
                            if t.trim().is_empty() {
                                // blank lines are not records
                            } else {
                                self.handle(RawRecord {
                                    text: t,
                                    line: Some(line),
                                    offset: Some(offset),
                                    record_id: None,
                                });
                            }
                        }
                        Err(e) => self.not_utf8(path, line, offset, "line", e),
                    }
                    if let Source::Lines(s) = &mut self.source {
                        s.buf = text;
                    }
                }
            },
            Source::JsonDoc(s) => match s.next_record(&path) {
                None => self.done = true,
                Some(Err(e)) => self.source_error(e),
                Some(Ok((line, offset))) => {
                    let text = std::mem::take(&mut s.buf);
                    match std::str::from_utf8(&text) {
                        Ok(t) => self.handle(RawRecord {
                            text: t,
                            line: Some(line),
                            offset: Some(offset),
                            record_id: None,
                        }),
                        Err(e) => self.not_utf8(path, line, offset, "record", e),
                    }
                    if let Source::JsonDoc(s) = &mut self.source {
                        s.buf = text;
                    }
                }
            },
            Source::Evtx(s) => match s.next_record() {
                None => self.done = true,
                Some(Err(fail)) => {
                    self.stats.errors += 1;
                    self.pending.push_back(Err(DecodeError::Record {
                        path,
                        line: None,
                        offset: fail.offset,
                        record: Some(fail.location),
                        message: fail.message,
                    }));
                }
                Some(Ok(rec)) => {
                    let (json, id, offset) = rec;
                    self.handle(RawRecord {
                        text: &json,
                        line: None,
                        offset,
                        record_id: Some(id),
                    });
                }
            },
        }
    }
}

impl Iterator for EventStream {
    type Item = Result<Event, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(x) = self.pending.pop_front() {
                return Some(x);
            }
            if self.done {
                if !self.finished {
                    self.finished = true;
                    let base = self.base_source(&RawRecord {
                        text: "",
                        line: None,
                        offset: None,
                        record_id: None,
                    });
                    self.scratch.clear();
                    let problem = self.decoder.finish(&base, &mut self.scratch);
                    self.stats.events += self.scratch.len() as u64;
                    self.pending.extend(self.scratch.drain(..).map(Ok));
                    if let Some(message) = problem {
                        self.stats.errors += 1;
                        self.pending.push_back(Err(DecodeError::Record {
                            path: self.path.clone(),
                            line: None,
                            offset: None,
                            record: None,
                            message,
                        }));
                    }
                    continue;
                }
                return None;
            }
            self.pull();
        }
    }
}

const STDIN: &str = "<stdin>";

/// Open `path` and decode it, detecting the format from its content unless `format` is given.
/// Gzip-compressed input (`*.gz`, detected by its magic) is decompressed on the fly.
///
/// Errors only when the file cannot be opened or its format cannot be recognised; every later
/// problem is an `Err` item of the stream and decoding goes on.
pub fn decode_file(path: &Path, format: Option<Format>) -> Result<EventStream, DecodeError> {
    let display = path.display().to_string();
    let io = |source| DecodeError::Io {
        path: display.clone(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let mut magic = [0u8; 8];
    let mut got = 0;
    while got < magic.len() {
        match file.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    let is_gzip = magic[..got].starts_with(GZIP_MAGIC);
    let is_evtx =
        matches!(format, Some(Format::Evtx) | None) && magic[..got].starts_with(b"ElfFile\0");
    if is_evtx && !is_gzip {
        // The evtx parser reads (and seeks in) the file itself.
        drop(file);
        let src = crate::evtx_source::EvtxSource::open_path(path).map_err(|message| {
            DecodeError::Record {
                path: display.clone(),
                line: None,
                offset: Some(0),
                record: Some("file header".into()),
                message,
            }
        })?;
        return Ok(build(display, Format::Evtx, Source::Evtx(src)));
    }
    let rest: Box<dyn Read + Send> = Box::new(Cursor::new(magic[..got].to_vec()).chain(file));
    decode_reader_named(rest, display, Some(path), format)
}

/// The two bytes every gzip member starts with.
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];

/// Decode from any reader (e.g. stdin). `name` is used in error messages (`None` = `<stdin>`).
/// Gzip-compressed input is decompressed on the fly.
pub fn decode_reader<R: Read + Send + 'static>(
    reader: R,
    name: Option<&str>,
    format: Option<Format>,
) -> Result<EventStream, DecodeError> {
    let display = name.unwrap_or(STDIN).to_string();
    decode_reader_named(Box::new(reader), display, name.map(Path::new), format)
}

fn decode_reader_named(
    mut reader: Box<dyn Read + Send>,
    display: String,
    hint: Option<&Path>,
    format: Option<Format>,
) -> Result<EventStream, DecodeError> {
    let io = |source| DecodeError::Io {
        path: display.clone(),
        source,
    };
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    (&mut reader)
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(io)?;
    if head.starts_with(GZIP_MAGIC) {
        let whole: Box<dyn Read + Send> = Box::new(Cursor::new(head).chain(reader));
        let mut inner: Box<dyn Read + Send> =
            Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(whole)));
        head = Vec::with_capacity(SNIFF_BYTES);
        (&mut inner)
            .take(SNIFF_BYTES as u64)
            .read_to_end(&mut head)
            .map_err(io)?;
        reader = inner;
    }
    let format = match format {
        Some(f) => f,
        None => detect_format(hint, &head).ok_or_else(|| DecodeError::UnknownFormat {
            path: display.clone(),
        })?,
    };
    if format == Format::Evtx {
        // The evtx parser needs to seek: read the whole (decompressed) input into memory.
        let mut all = head;
        reader.read_to_end(&mut all).map_err(io)?;
        let src = crate::evtx_source::EvtxSource::from_buffer(all).map_err(|message| {
            DecodeError::Record {
                path: display.clone(),
                line: None,
                offset: Some(0),
                record: Some("file header".into()),
                message,
            }
        })?;
        return Ok(build(display, format, Source::Evtx(src)));
    }
    let reader: Box<dyn Read + Send> = Box::new(Cursor::new(head.clone()).chain(reader));
    Ok(build_text(display, format, &head, reader))
}

fn build_text(
    display: String,
    format: Format,
    head: &[u8],
    reader: Box<dyn Read + Send>,
) -> EventStream {
    let reader = BufReader::with_capacity(256 << 10, reader);
    let source = match format {
        Format::WineTrace | Format::Preentry => Source::Lines(LineSplitter::new(reader)),
        _ => match json_layout(head) {
            JsonLayout::Lines => Source::Lines(LineSplitter::new(reader)),
            JsonLayout::Document => Source::JsonDoc(JsonSplitter::new(reader)),
        },
    };
    build(display, format, source)
}

fn build(path: String, format: Format, source: Source) -> EventStream {
    EventStream {
        decoder: decoders::for_format(format),
        path,
        format,
        source,
        pending: VecDeque::new(),
        stats: DecodeStats::default(),
        scratch: Vec::new(),
        done: false,
        finished: false,
    }
}

/// Splits input into lines, bounded by [`MAX_RECORD_BYTES`].
struct LineSplitter {
    reader: BufReader<Box<dyn Read + Send>>,
    buf: Vec<u8>,
    line: u64,
    offset: u64,
    eof: bool,
}

impl LineSplitter {
    fn new(reader: BufReader<Box<dyn Read + Send>>) -> Self {
        LineSplitter {
            reader,
            buf: Vec::new(),
            line: 0,
            offset: 0,
            eof: false,
        }
    }

    /// Reads the next line into `self.buf`; returns its 1-based number and byte offset.
    fn next_line(&mut self, path: &str) -> Option<Result<(u64, u64), DecodeError>> {
        if self.eof {
            return None;
        }
        self.buf.clear();
        let start = self.offset;
        self.line = self.line.saturating_add(1);
        let limit = MAX_RECORD_BYTES as u64 + 1;
        let n = match (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buf)
        {
            Ok(n) => n,
            Err(source) => {
                self.eof = true;
                return Some(Err(DecodeError::Io {
                    path: format!("{path}:{} (byte offset {start})", self.line),
                    source,
                }));
            }
        };
        if n == 0 {
            self.eof = true;
            return None;
        }
        self.offset = self.offset.saturating_add(n as u64);
        if n as u64 >= limit && self.buf.last() != Some(&b'\n') {
            // Overlong line: skip to its end without keeping it.
            let line = self.line;
            loop {
                let (skip, found) = match self.reader.fill_buf() {
                    Ok([]) => {
                        self.eof = true;
                        break;
                    }
                    Ok(b) => match memchr::memchr(b'\n', b) {
                        Some(i) => (i + 1, true),
                        None => (b.len(), false),
                    },
                    Err(_) => {
                        self.eof = true;
                        break;
                    }
                };
                self.reader.consume(skip);
                self.offset = self.offset.saturating_add(skip as u64);
                if found {
                    break;
                }
            }
            self.buf.clear();
            return Some(Err(DecodeError::Record {
                path: path.to_string(),
                line: Some(line),
                offset: Some(start),
                record: None,
                message: format!("line longer than {MAX_RECORD_BYTES} bytes, skipped"),
            }));
        }
        Some(Ok((self.line, start)))
    }
}

/// Splits a JSON document (a top-level array of objects, or concatenated objects, pretty-printed
/// or not) into its top-level objects without parsing them.
struct JsonSplitter {
    reader: BufReader<Box<dyn Read + Send>>,
    buf: Vec<u8>,
    line: u64,
    offset: u64,
    /// Nesting depth of top-level arrays we are inside (0 or 1 normally).
    array_depth: u32,
    /// Text between records on the current line, and where it began.
    junk: Vec<u8>,
    junk_at: (u64, u64),
    eof: bool,
}

impl JsonSplitter {
    fn new(reader: BufReader<Box<dyn Read + Send>>) -> Self {
        JsonSplitter {
            reader,
            buf: Vec::new(),
            line: 1,
            offset: 0,
            array_depth: 0,
            junk: Vec::new(),
            junk_at: (0, 0),
            eof: false,
        }
    }

    fn next_record(&mut self, path: &str) -> Option<Result<(u64, u64), DecodeError>> {
        self.buf.clear();
        let mut depth: u32 = 0;
        let mut in_str = false;
        let mut esc = false;
        let mut start = (0u64, 0u64);
        let mut oversize = false;
        loop {
            if self.eof {
                return None;
            }
            let chunk = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(source) => {
                    self.eof = true;
                    return Some(Err(DecodeError::Io {
                        path: format!("{path}:{} (byte offset {})", self.line, self.offset),
                        source,
                    }));
                }
            };
            if chunk.is_empty() {
                self.eof = true;
                if !self.junk.is_empty() {
                    let text = std::mem::take(&mut self.junk);
                    if !is_record_header(&text) {
                        return Some(Err(junk_error(path, self.junk_at.0, self.junk_at.1, &text)));
                    }
                }
                if depth > 0 {
                    return Some(Err(DecodeError::Record {
                        path: path.to_string(),
                        line: Some(start.0),
                        offset: Some(start.1),
                        record: None,
                        message: "input ends inside this JSON record (truncated file?)".into(),
                    }));
                }
                return None;
            }
            let mut used = 0usize;
            let mut finished = false;
            let mut junk: Option<(u64, u64, Vec<u8>)> = None;
            for &b in chunk {
                used += 1;
                let here = (self.line, self.offset);
                self.offset += 1;
                if b == b'\n' {
                    self.line += 1;
                }
                if depth == 0 {
                    // Text between records: `Record N` headers (evtx_dump's JSON output) are
                    // skipped; anything else is reported once per line.
                    if !self.junk.is_empty() && b != b'\n' && b != b'{' {
                        if self.junk.len() < 80 {
                            self.junk.push(b);
                        }
                        continue;
                    }
                    if !self.junk.is_empty() {
                        let text = std::mem::take(&mut self.junk);
                        if !is_record_header(&text) {
                            if b == b'{' {
                                // Leave the `{` for the next call.
                                used -= 1;
                                self.offset -= 1;
                            }
                            junk = Some((self.junk_at.0, self.junk_at.1, text));
                            break;
                        }
                        if b == b'\n' {
                            continue;
                        }
                    }
                    match b {
                        b'{' => {
                            depth = 1;
                            start = here;
                            in_str = false;
                            esc = false;
                            self.buf.push(b);
                        }
                        b'[' => self.array_depth = self.array_depth.saturating_add(1),
                        b']' => self.array_depth = self.array_depth.saturating_sub(1),
                        b',' | b' ' | b'\t' | b'\r' | b'\n' => {}
                        0xEF | 0xBB | 0xBF if here.1 < 3 => {} // UTF-8 BOM
                        other => {
                            self.junk_at = here;
                            self.junk.push(other);
                        }
                    }
                    continue;
                }
                if !oversize {
                    if self.buf.len() >= MAX_RECORD_BYTES {
                        oversize = true;
                        self.buf.clear();
                    } else {
                        self.buf.push(b);
                    }
                }
                if in_str {
                    if esc {
                        esc = false;
                    } else if b == b'\\' {
                        esc = true;
                    } else if b == b'"' {
                        in_str = false;
                    }
                    continue;
                }
                match b {
                    b'"' => in_str = true,
                    b'{' | b'[' => depth = depth.saturating_add(1),
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            finished = true;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            self.reader.consume(used);
            if let Some((line, offset, text)) = junk {
                return Some(Err(junk_error(path, line, offset, &text)));
            }
            if finished {
                if oversize {
                    return Some(Err(DecodeError::Record {
                        path: path.to_string(),
                        line: Some(start.0),
                        offset: Some(start.1),
                        record: None,
                        message: format!(
                            "JSON record longer than {MAX_RECORD_BYTES} bytes, skipped"
                        ),
                    }));
                }
                return Some(Ok(start));
            }
        }
    }
}

/// `Record 123` (the header `evtx_dump` writes before each JSON record).
fn is_record_header(text: &[u8]) -> bool {
    let t = String::from_utf8_lossy(text);
    let t = t.trim();
    t.strip_prefix("Record ")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))
}

fn junk_error(path: &str, line: u64, offset: u64, text: &[u8]) -> DecodeError {
    DecodeError::Record {
        path: path.to_string(),
        line: Some(line),
        offset: Some(offset),
        record: None,
        message: format!(
            "unexpected text between JSON records: `{}` (not a JSON document?)",
            String::from_utf8_lossy(text).trim()
        ),
    }
}

/// Convenience: decode a whole file into a vector of events plus the errors and stats.
pub fn decode_all(
    path: &Path,
    format: Option<Format>,
) -> Result<(Vec<Event>, Vec<DecodeError>, DecodeStats), DecodeError> {
    let mut stream = decode_file(path, format)?;
    let mut events = Vec::new();
    let mut errors = Vec::new();
    for item in &mut stream {
        match item {
            Ok(e) => events.push(e),
            Err(e) => errors.push(e),
        }
    }
    Ok((events, errors, stream.stats()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn stream_is_send() {
        // The CLI may decode inputs on worker threads.
        assert_send::<EventStream>();
        assert_send::<DecodeError>();
    }

    #[test]
    fn record_headers() {
        assert!(is_record_header(b"Record 12"));
        assert!(is_record_header(b"Record 1 \r"));
        assert!(!is_record_header(b"Record x"));
        assert!(!is_record_header(b"Recording 1"));
    }
}
