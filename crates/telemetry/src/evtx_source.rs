//! EVTX records via the `evtx` crate, one chunk (64 KiB) at a time: a broken chunk or record is
//! reported and skipped, the rest of the file is read.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Cursor};
use std::path::Path;
use std::sync::Arc;

use evtx::{EvtxParser, IntoIterChunks, ParserSettings};

/// A chunk or record that could not be read.
pub(crate) struct EvtxFailure {
    pub offset: Option<u64>,
    pub location: String,
    pub message: String,
}

/// (record JSON as rendered by the evtx crate, EventRecordID, byte offset of its chunk).
pub(crate) type EvtxItem = (String, u64, Option<u64>);

enum Chunks {
    File(IntoIterChunks<BufReader<File>>),
    Buffer(IntoIterChunks<Cursor<Vec<u8>>>),
}

pub(crate) struct EvtxSource {
    chunks: Chunks,
    settings: Arc<ParserSettings>,
    pending: VecDeque<Result<EvtxItem, EvtxFailure>>,
    /// The chunk count the file header declares (dirty files hold more).
    declared_chunks: u64,
    /// Chunks handed out so far (bounds the walk even on a corrupt header).
    seen_chunks: u64,
    /// A partial chunk at the end of the input (truncated file): (chunk number, its offset,
    /// bytes present). The evtx crate ignores it silently; we report it.
    partial_tail: Option<(u64, u64, u64)>,
    done: bool,
}

/// Where the input stops short of a whole chunk, if it does.
fn partial_tail(len: u64) -> Option<(u64, u64, u64)> {
    let body = len.checked_sub(EVTX_FILE_HEADER_SIZE)?;
    let rest = body % EVTX_CHUNK_SIZE;
    if rest == 0 {
        return None;
    }
    let n = body / EVTX_CHUNK_SIZE;
    Some((n, EVTX_FILE_HEADER_SIZE + n * EVTX_CHUNK_SIZE, rest))
}

const EVTX_FILE_HEADER_SIZE: u64 = 4096;
const EVTX_CHUNK_SIZE: u64 = 65536;
/// An EVTX file can address at most 2^16 chunks (4 GiB).
const MAX_CHUNKS: u64 = 1 << 20;

fn settings() -> ParserSettings {
    ParserSettings::new().num_threads(1)
}

/// Full error text including its sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    let mut n = 0;
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
        n += 1;
        if n > 8 {
            break;
        }
    }
    s
}

impl EvtxSource {
    pub(crate) fn open_path(path: &Path) -> Result<Self, String> {
        let file = File::open(path).map_err(|e| e.to_string())?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let parser = EvtxParser::from_read_seek(BufReader::new(file))
            .map_err(|e| format!("not a readable EVTX file: {}", error_chain(&e)))?
            .with_configuration(settings());
        let declared = u64::from(parser.header().chunk_count);
        Ok(Self::new(Chunks::File(parser.into_chunks()), len, declared))
    }

    pub(crate) fn from_buffer(buf: Vec<u8>) -> Result<Self, String> {
        let len = buf.len() as u64;
        let parser = EvtxParser::from_buffer(buf)
            .map_err(|e| format!("not a readable EVTX file: {}", error_chain(&e)))?
            .with_configuration(settings());
        let declared = u64::from(parser.header().chunk_count);
        Ok(Self::new(
            Chunks::Buffer(parser.into_chunks()),
            len,
            declared,
        ))
    }

    fn new(chunks: Chunks, len: u64, declared_chunks: u64) -> Self {
        EvtxSource {
            declared_chunks,
            chunks,
            settings: Arc::new(settings()),
            pending: VecDeque::new(),
            seen_chunks: 0,
            partial_tail: partial_tail(len),
            done: false,
        }
    }

    pub(crate) fn next_record(&mut self) -> Option<Result<EvtxItem, EvtxFailure>> {
        loop {
            if let Some(x) = self.pending.pop_front() {
                return Some(x);
            }
            if self.done || self.seen_chunks >= MAX_CHUNKS {
                if let Some((n, offset, have)) = self.partial_tail.take() {
                    return Some(Err(EvtxFailure {
                        offset: Some(offset),
                        location: format!("chunk {n}"),
                        message: format!(
                            "input ends {have} bytes into chunk {n} (of {EVTX_CHUNK_SIZE}): truncated file, the partial chunk is not read"
                        ),
                    }));
                }
                return None;
            }
            let next = match &mut self.chunks {
                Chunks::File(c) => c.next(),
                Chunks::Buffer(c) => c.next(),
            };
            self.seen_chunks += 1;
            match next {
                None => self.done = true,
                Some(Err(e)) => {
                    let (offset, location) = match &e {
                        evtx::err::EvtxError::FailedToParseChunk { chunk_id, .. } => {
                            (chunk_offset(*chunk_id), format!("chunk {chunk_id}"))
                        }
                        _ => (None, "chunk".to_string()),
                    };
                    let beyond = match &e {
                        evtx::err::EvtxError::FailedToParseChunk { chunk_id, .. }
                            if *chunk_id >= self.declared_chunks =>
                        {
                            format!(
                                " (beyond the {} chunk(s) the file header declares: likely unused space)",
                                self.declared_chunks
                            )
                        }
                        _ => String::new(),
                    };
                    self.pending.push_back(Err(EvtxFailure {
                        offset,
                        location,
                        message: format!("chunk skipped{beyond}: {}", error_chain(&e)),
                    }));
                }
                Some(Ok(mut data)) => {
                    let number = data.number;
                    let offset = number.and_then(chunk_offset);
                    let location = number.map_or_else(|| "chunk".into(), |n| format!("chunk {n}"));
                    let settings = Arc::clone(&self.settings);
                    let pending = &mut self.pending;
                    // A panic inside the evtx crate on hostile bytes costs this chunk, not the run.
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        Self::read_chunk(&mut data, settings, offset, &location, pending)
                    }));
                    if outcome.is_err() {
                        self.pending.push_back(Err(EvtxFailure {
                            offset,
                            location,
                            message: "chunk skipped: the EVTX parser panicked on it".into(),
                        }));
                    }
                }
            }
        }
    }

    fn read_chunk(
        data: &mut evtx::EvtxChunkData,
        settings: Arc<ParserSettings>,
        offset: Option<u64>,
        location: &str,
        pending: &mut VecDeque<Result<EvtxItem, EvtxFailure>>,
    ) {
        let mut chunk = match data.parse(settings) {
            Ok(c) => c,
            Err(e) => {
                pending.push_back(Err(EvtxFailure {
                    offset,
                    location: location.to_string(),
                    message: format!("chunk skipped: {}", error_chain(&e)),
                }));
                return;
            }
        };
        for rec in chunk.iter() {
            match rec.and_then(|r| r.into_json()) {
                Ok(r) => pending.push_back(Ok((r.data, r.event_record_id, offset))),
                Err(e) => pending.push_back(Err(EvtxFailure {
                    offset,
                    location: location.to_string(),
                    message: format!("record skipped: {}", error_chain(&e)),
                })),
            }
        }
    }
}

fn chunk_offset(n: u64) -> Option<u64> {
    n.checked_mul(EVTX_CHUNK_SIZE)?
        .checked_add(EVTX_FILE_HEADER_SIZE)
}
