//! Windows minidumps as a [`ProcessMemory`] source, read with the `minidump` crate.
//!
//! Streams used: Memory64List and MemoryList (contents), MemoryInfoList (regions), ThreadList
//! (ids, TEBs, suspend counts, contexts), ThreadInfoList (start addresses), ModuleList,
//! MiscInfo (pid), SystemInfo (CPU type). A stream the dump lacks makes the dependent fact
//! [`Availability::Unavailable`] with a reason such as "MemoryInfoList stream absent from this
//! dump"; a stream that is present but corrupt says so too. Nothing is guessed.
//!
//! Dumps written by Wine 8's `MiniDumpWriteDump` (full memory, full memory info, thread info)
//! carry SystemInfo, ThreadList with contexts, ModuleList (empty before the loader ran),
//! MiscInfo and Memory64List, but no MemoryInfoList and no ThreadInfoList: such a dump has
//! memory contents and thread contexts but no region types and no start addresses.
//!
//! Everything is parsed once by [`MinidumpSource::open`]; the file bytes are kept in memory and
//! reads copy from them.

use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use minidump::{
    Minidump, MinidumpMemory64List, MinidumpMemoryInfoList, MinidumpMemoryList, MinidumpMiscInfo,
    MinidumpModuleList, MinidumpRawContext, MinidumpSystemInfo, MinidumpThreadInfoList,
    MinidumpThreadList,
};

use crate::peb;
use crate::{
    Arch, Availability, ContextKind, MemoryError, MemoryReader, Module, ProcessIdentity,
    ProcessMemory, Protection, ReadResult, Region, RegionKind, RegionState, SourceKind,
    ThreadContext, ThreadInfo,
};

/// The largest dump (after decompression) that is read: 64 GiB.
pub const MAX_DUMP_BYTES: u64 = 64 << 30;

/// A contiguous captured memory block: `len` bytes at address `base`, stored at `offset` in the
/// dump file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    base: u64,
    len: u64,
    offset: usize,
}

/// Whether a stream is in the dump and could be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamStatus {
    /// Stream name ("MemoryInfoList").
    pub name: &'static str,
    /// Present and parsed; otherwise why not.
    pub status: Availability<()>,
}

/// A parsed minidump.
pub struct MinidumpSource {
    path: PathBuf,
    data: Vec<u8>,
    segments: Vec<Segment>,
    memory_ranges: Vec<Range<u64>>,
    memory: Availability<()>,
    regions: Availability<Vec<Region>>,
    threads: Availability<Vec<ThreadInfo>>,
    modules: Availability<Vec<Module>>,
    identity: ProcessIdentity,
    streams: Vec<StreamStatus>,
}

impl std::fmt::Debug for MinidumpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MinidumpSource")
            .field("path", &self.path)
            .field("bytes", &self.data.len())
            .field("segments", &self.segments.len())
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

fn stream_state<T>(
    name: &'static str,
    r: Result<T, minidump::Error>,
) -> (Availability<T>, StreamStatus) {
    let a = match r {
        Ok(v) => Availability::Available(v),
        Err(minidump::Error::StreamNotFound) => {
            Availability::unavailable(format!("{name} stream absent from this dump"))
        }
        Err(e) => Availability::unavailable(format!("{name} stream unreadable: {e}")),
    };
    let status = StreamStatus {
        name,
        status: a.as_ref().map(|_| ()),
    };
    (a, status)
}

impl MinidumpSource {
    /// Reads and parses a minidump file; files that start with the gzip magic (the lab commits
    /// `.dmp.gz`) are decompressed first.
    pub fn open(path: impl AsRef<Path>) -> Result<MinidumpSource, MemoryError> {
        let path = path.as_ref();
        let io = |source| MemoryError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut data = Vec::new();
        let mut limited = file.take(MAX_DUMP_BYTES);
        limited.read_to_end(&mut data).map_err(io)?;
        if data.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            let dec = flate2::read::MultiGzDecoder::new(&data[..]);
            dec.take(MAX_DUMP_BYTES)
                .read_to_end(&mut out)
                .map_err(|e| MemoryError::Minidump {
                    path: path.to_path_buf(),
                    detail: format!("gzip decompression failed: {e}"),
                })?;
            data = out;
        }
        Self::from_bytes(path.to_path_buf(), data)
    }

    /// Parses a minidump held in memory; `path` only names it in messages and the identity.
    pub fn from_bytes(path: PathBuf, data: Vec<u8>) -> Result<MinidumpSource, MemoryError> {
        let parsed = {
            let dump = Minidump::read(&data[..]).map_err(|e| MemoryError::Minidump {
                path: path.clone(),
                detail: e.to_string(),
            })?;
            let parsed = Parsed::from_dump(&dump, &data);
            let nothing = !parsed.memory.is_available()
                && !parsed.regions.is_available()
                && !parsed.threads.is_available()
                && !parsed.modules.is_available();
            if nothing {
                let types: Vec<String> = dump
                    .all_streams()
                    .take(64)
                    .map(|d| format!("{:#x}", d.stream_type))
                    .collect();
                let why: Vec<String> = parsed
                    .streams
                    .iter()
                    .filter_map(|s| s.status.reason().map(str::to_string))
                    .collect();
                return Err(MemoryError::Minidump {
                    path: path.clone(),
                    detail: format!(
                        "no usable stream: the directory lists {} stream(s) of type(s) [{}]; {}",
                        dump.header.stream_count,
                        types.join(", "),
                        why.join("; ")
                    ),
                });
            }
            parsed
        };
        let Parsed {
            segments,
            memory,
            regions,
            threads,
            modules,
            windows_pid,
            arch,
            streams,
            mut notes,
        } = parsed;
        let memory_ranges = crate::merge_ranges(
            segments
                .iter()
                .map(|s| s.base..s.base.saturating_add(s.len))
                .collect(),
        );
        let mut src = MinidumpSource {
            identity: ProcessIdentity {
                pid: windows_pid.unwrap_or(0),
                windows_pid,
                linux_pid: None,
                image_path: None,
                command_line: None,
                parent_pid: None,
                peb_address: None,
                peb_image_base: None,
                arch,
                source: SourceKind::Minidump { path: path.clone() },
                linux_comm: None,
                notes: Vec::new(),
            },
            path,
            data,
            segments,
            memory_ranges,
            memory,
            regions,
            threads,
            modules,
            streams,
        };
        if windows_pid.is_none() {
            notes.push("MiscInfo stream absent or without a process id: pid unknown".into());
        }
        src.fill_identity_from_memory(&mut notes);
        src.fill_stacks();
        src.identity.notes = notes;
        Ok(src)
    }

    /// The dump's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Which of the streams this source uses were present and parsed.
    pub fn streams(&self) -> &[StreamStatus] {
        &self.streams
    }

    /// Whether memory contents are in the dump (Memory64List or MemoryList).
    pub fn memory_availability(&self) -> Availability<()> {
        self.memory.clone()
    }

    fn fill_identity_from_memory(&mut self, notes: &mut Vec<String>) {
        if self.identity.arch != Arch::X64 {
            notes.push(format!(
                "PEB not read: only x64 PEB layouts are supported (dump architecture {:?})",
                self.identity.arch
            ));
            self.fill_image_from_modules();
            return;
        }
        // The PEB from the first thread whose TEB is captured.
        let mut peb_addr = None;
        if let Availability::Available(threads) = &self.threads {
            for t in threads {
                let Some(teb) = t.teb.filter(|&a| a != 0) else {
                    continue;
                };
                if let Ok(p) = self.read_u64(teb.wrapping_add(peb::TEB_PEB))
                    && p != 0
                {
                    peb_addr = Some(p);
                    break;
                }
            }
        }
        let Some(peb_addr) = peb_addr else {
            notes.push("PEB not found: no thread's TEB is captured in this dump".into());
            self.fill_image_from_modules();
            return;
        };
        self.identity.peb_address = Some(peb_addr);
        match peb::read_peb(self, peb_addr) {
            Ok(info) => {
                self.identity.peb_image_base = Some(info.image_base);
                match info.image_path {
                    Ok(p) if !p.is_empty() => self.identity.image_path = Some(p),
                    Ok(_) => notes.push("PEB ImagePathName is empty".into()),
                    Err(e) => notes.push(format!("PEB ImagePathName unreadable: {e}")),
                }
                match info.command_line {
                    Ok(c) => self.identity.command_line = Some(c),
                    Err(e) => notes.push(format!("PEB CommandLine unreadable: {e}")),
                }
            }
            Err(e) => notes.push(format!("PEB at {peb_addr:#x} unreadable: {e}")),
        }
        if self.identity.image_path.is_none() {
            self.fill_image_from_modules();
        }
    }

    /// Stack bounds from each captured x64 TEB (`StackLimit..StackBase`).
    fn fill_stacks(&mut self) {
        if self.identity.arch != Arch::X64 {
            return;
        }
        let Availability::Available(threads) = &self.threads else {
            return;
        };
        let stacks: Vec<Option<Range<u64>>> = threads
            .iter()
            .map(|t| {
                let teb = t.teb?;
                let base = self.read_u64(teb.checked_add(peb::TEB_STACK_BASE)?).ok()?;
                let limit = self.read_u64(teb.checked_add(peb::TEB_STACK_LIMIT)?).ok()?;
                (limit < base).then_some(limit..base)
            })
            .collect();
        if let Availability::Available(threads) = &mut self.threads {
            for (t, s) in threads.iter_mut().zip(stacks) {
                t.stack = s;
            }
        }
    }

    fn fill_image_from_modules(&mut self) {
        if self.identity.image_path.is_none()
            && let Availability::Available(mods) = &self.modules
            && let Some(m) = mods.first()
        {
            self.identity.image_path = Some(m.path.clone());
        }
    }

    fn segment_index(&self, addr: u64) -> usize {
        // First segment whose end is beyond addr (segments are sorted and disjoint).
        self.segments
            .partition_point(|s| s.base.saturating_add(s.len) <= addr)
    }
}

/// Everything taken out of the borrowed `Minidump` before it is dropped.
struct Parsed {
    segments: Vec<Segment>,
    memory: Availability<()>,
    regions: Availability<Vec<Region>>,
    threads: Availability<Vec<ThreadInfo>>,
    modules: Availability<Vec<Module>>,
    windows_pid: Option<u32>,
    arch: Arch,
    streams: Vec<StreamStatus>,
    notes: Vec<String>,
}

impl Parsed {
    fn from_dump(dump: &Minidump<'_, &[u8]>, data: &[u8]) -> Parsed {
        let mut streams = Vec::new();
        let mut notes = Vec::new();

        // Memory contents.
        let mut raw_segments = Vec::new();
        let (m64, s) = stream_state(
            "Memory64List",
            dump.get_stream::<MinidumpMemory64List<'_>>(),
        );
        streams.push(s);
        if let Availability::Available(list) = &m64 {
            for m in list.iter() {
                push_segment(&mut raw_segments, data, m.base_address, m.bytes);
            }
        }
        let (m32, s) = stream_state("MemoryList", dump.get_stream::<MinidumpMemoryList<'_>>());
        streams.push(s);
        if let Availability::Available(list) = &m32 {
            for m in list.iter() {
                push_segment(&mut raw_segments, data, m.base_address, m.bytes);
            }
        }
        let memory = match (&m64, &m32) {
            (Availability::Unavailable { reason: a }, Availability::Unavailable { reason: b }) => {
                let r = format!("no memory contents: {a}; {b}");
                notes.push(r.clone());
                Availability::unavailable(r)
            }
            _ => Availability::Available(()),
        };
        let segments = normalise_segments(raw_segments);

        // System info / misc info.
        let (sys, s) = stream_state("SystemInfo", dump.get_stream::<MinidumpSystemInfo>());
        streams.push(s);
        let arch = match &sys {
            Availability::Available(si) => match si.cpu {
                minidump::system_info::Cpu::X86_64 => Arch::X64,
                minidump::system_info::Cpu::X86 => Arch::X86,
                _ => Arch::Other,
            },
            Availability::Unavailable { .. } => Arch::Unknown,
        };
        let (misc, s) = stream_state("MiscInfo", dump.get_stream::<MinidumpMiscInfo>());
        streams.push(s);
        let windows_pid = match &misc {
            Availability::Available(m) => m.raw.process_id().copied(),
            Availability::Unavailable { .. } => None,
        };

        // Regions.
        let (mil, s) = stream_state(
            "MemoryInfoList",
            dump.get_stream::<MinidumpMemoryInfoList<'_>>(),
        );
        streams.push(s);
        let regions = mil.map(|list| {
            let raw: Vec<Region> = list
                .iter()
                .filter(|i| i.raw.region_size > 0)
                .map(|i| {
                    let state = RegionState::from_raw(i.raw.state);
                    let kind = if state == RegionState::Free {
                        RegionKind::Unknown
                    } else {
                        RegionKind::from_raw(i.raw._type)
                    };
                    Region {
                        base: i.raw.base_address,
                        size: i.raw.region_size,
                        protection: Protection(i.raw.protection),
                        allocation_base: Some(i.raw.allocation_base),
                        allocation_protection: Some(Protection(i.raw.allocation_protection)),
                        state,
                        kind,
                        path: None,
                        backing: None,
                        anonymous: None,
                        pseudo_path: None,
                    }
                })
                .collect();
            normalise_regions(raw)
        });

        // Modules.
        let (ml, s) = stream_state("ModuleList", dump.get_stream::<MinidumpModuleList>());
        streams.push(s);
        let modules = ml.map(|list| {
            list.iter()
                .map(|m| {
                    Module::new(
                        m.raw.base_of_image,
                        u64::from(m.raw.size_of_image),
                        m.name.clone(),
                        None,
                    )
                })
                .collect::<Vec<_>>()
        });
        let mut regions = regions;
        if let (Availability::Available(regs), Availability::Available(mods)) =
            (&mut regions, &modules)
        {
            for r in regs.iter_mut().filter(|r| r.kind == RegionKind::Image) {
                if let Some(m) = mods.iter().find(|m| m.contains(r.base)) {
                    r.path = Some(PathBuf::from(&m.path));
                }
            }
        }

        // Threads.
        let (til, s) = stream_state(
            "ThreadInfoList",
            dump.get_stream::<MinidumpThreadInfoList>(),
        );
        streams.push(s);
        let (tl, s) = stream_state("ThreadList", dump.get_stream::<MinidumpThreadList<'_>>());
        streams.push(s);
        let misc_ref = misc.as_ref().available();
        let threads = tl.map(|list| {
            list.threads
                .iter()
                .map(|t| {
                    let tid = t.raw.thread_id;
                    let (instruction_pointer, context) = match &sys {
                        Availability::Available(si) => match t.context(si, misc_ref) {
                            Some(ctx) => convert_context(&ctx.raw),
                            None => {
                                let r = "thread context missing or not decodable in this dump";
                                (Availability::unavailable(r), Availability::unavailable(r))
                            }
                        },
                        Availability::Unavailable { reason } => {
                            let r = format!("contexts not decoded: CPU type unknown ({reason})");
                            (
                                Availability::unavailable(r.clone()),
                                Availability::unavailable(r),
                            )
                        }
                    };
                    let start_address = match &til {
                        Availability::Available(infos) => match infos.get_thread_info(tid) {
                            Some(i) => Availability::Available(i.raw.start_address),
                            None => Availability::unavailable(format!(
                                "thread {tid} not listed in the ThreadInfoList stream"
                            )),
                        },
                        Availability::Unavailable { reason } => {
                            Availability::unavailable(reason.clone())
                        }
                    };
                    ThreadInfo {
                        tid,
                        windows_tid: Some(tid),
                        linux_tid: None,
                        teb: (t.raw.teb != 0).then_some(t.raw.teb),
                        start_address,
                        instruction_pointer,
                        context,
                        suspend_count: Availability::Available(t.raw.suspend_count),
                        stack: None,
                    }
                })
                .collect::<Vec<_>>()
        });

        Parsed {
            segments,
            memory,
            regions,
            threads,
            modules,
            windows_pid,
            arch,
            streams,
            notes,
        }
    }
}

fn push_segment(out: &mut Vec<Segment>, data: &[u8], base: u64, bytes: &[u8]) {
    // The crate hands out sub-slices of `data`; recover their file offset.
    let start = data.as_ptr() as usize;
    let Some(offset) = (bytes.as_ptr() as usize).checked_sub(start) else {
        return;
    };
    let Some(end) = offset.checked_add(bytes.len()) else {
        return;
    };
    if end > data.len() || bytes.is_empty() {
        return;
    }
    // Clamp a block that would run past the end of the address space.
    let room = u64::MAX - base;
    let len = (bytes.len() as u64).min(room);
    if len == 0 {
        return;
    }
    out.push(Segment { base, len, offset });
}

/// Sorts segments by address and trims overlaps (the first block listed for an address wins
/// after sorting), so lookups can binary-search.
fn normalise_segments(mut v: Vec<Segment>) -> Vec<Segment> {
    v.sort_by_key(|s| (s.base, std::cmp::Reverse(s.len)));
    let mut out: Vec<Segment> = Vec::with_capacity(v.len());
    for mut s in v {
        if let Some(last) = out.last() {
            let last_end = last.base.saturating_add(last.len);
            if s.base < last_end {
                let skip = last_end - s.base;
                if skip >= s.len {
                    continue;
                }
                s.base = last_end;
                s.len -= skip;
                // skip < s.len <= usize range of a slice length
                s.offset = match s.offset.checked_add(skip as usize) {
                    Some(o) => o,
                    None => continue,
                };
            }
        }
        out.push(s);
    }
    out
}

/// Sorts regions and drops overlapping parts, so `region_at` can binary-search.
fn normalise_regions(mut v: Vec<Region>) -> Vec<Region> {
    v.sort_by_key(|r| r.base);
    let mut out: Vec<Region> = Vec::with_capacity(v.len());
    for mut r in v {
        let end = r.end();
        if let Some(last) = out.last() {
            let last_end = last.end();
            if r.base < last_end {
                if end <= last_end {
                    continue;
                }
                r.base = last_end;
                r.size = end - last_end;
            }
        }
        r.size = end - r.base;
        if r.size > 0 {
            out.push(r);
        }
    }
    out
}

/// `CONTEXT_CONTROL` / `CONTEXT_INTEGER` sub-flags (low bits of `ContextFlags`, same values
/// for x86 and x64). The crate accepts a context whatever its sub-flags; registers of a group
/// whose flag is clear were not captured and must not be read as zeros.
const CONTEXT_CONTROL: u32 = 0x1;
const CONTEXT_INTEGER: u32 = 0x2;

fn missing<T>(what: &str, flags: u32) -> Availability<T> {
    Availability::unavailable(format!(
        "thread context lacks {what} (ContextFlags {flags:#x}): those registers were not captured"
    ))
}

/// The instruction pointer (needs CONTEXT_CONTROL) and whether the whole register set
/// (CONTEXT_CONTROL and CONTEXT_INTEGER) was captured; when it was not, why.
fn captured_groups(
    flags: u32,
    ip: u64,
) -> (Availability<u64>, Result<(), Availability<ThreadContext>>) {
    let (control, integer) = (flags & CONTEXT_CONTROL != 0, flags & CONTEXT_INTEGER != 0);
    let ip = if control {
        Availability::Available(ip)
    } else {
        missing("CONTEXT_CONTROL", flags)
    };
    let whole = match (control, integer) {
        (true, true) => Ok(()),
        (true, false) => Err(missing("CONTEXT_INTEGER", flags)),
        (false, _) => Err(missing("CONTEXT_CONTROL", flags)),
    };
    (ip, whole)
}

fn convert_context(raw: &MinidumpRawContext) -> (Availability<u64>, Availability<ThreadContext>) {
    match raw {
        MinidumpRawContext::Amd64(c) => {
            let (ip, whole) = captured_groups(c.context_flags, c.rip);
            if let Err(why) = whole {
                return (ip, why);
            }
            let ctx = ThreadContext {
                rip: c.rip,
                rsp: c.rsp,
                rcx: c.rcx,
                rdx: c.rdx,
                rax: c.rax,
                rbx: c.rbx,
                rbp: c.rbp,
                rsi: c.rsi,
                rdi: c.rdi,
                r8: c.r8,
                r9: c.r9,
                eflags: c.eflags,
                cs: c.cs,
                kind: ContextKind::Captured,
                origin: "minidump ThreadList context",
            };
            (ip, Availability::Available(ctx))
        }
        MinidumpRawContext::X86(c) => {
            let (ip, whole) = captured_groups(c.context_flags, u64::from(c.eip));
            if let Err(why) = whole {
                return (ip, why);
            }
            let ctx = ThreadContext {
                rip: u64::from(c.eip),
                rsp: u64::from(c.esp),
                rcx: u64::from(c.ecx),
                rdx: u64::from(c.edx),
                rax: u64::from(c.eax),
                rbx: u64::from(c.ebx),
                rbp: u64::from(c.ebp),
                rsi: u64::from(c.esi),
                rdi: u64::from(c.edi),
                r8: 0,
                r9: 0,
                eflags: c.eflags,
                cs: c.cs as u16,
                kind: ContextKind::Captured,
                origin: "minidump ThreadList context (x86)",
            };
            (ip, Availability::Available(ctx))
        }
        _ => {
            let r = "thread context of a CPU other than x86/x64";
            (Availability::unavailable(r), Availability::unavailable(r))
        }
    }
}

impl MemoryReader for MinidumpSource {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<ReadResult, MemoryError> {
        buf.fill(0);
        let len = buf.len() as u64;
        let end = addr.saturating_add(len);
        let mut valid = Vec::new();
        let mut i = self.segment_index(addr);
        while let Some(s) = self.segments.get(i) {
            if s.base >= end {
                break;
            }
            let s_end = s.base.saturating_add(s.len);
            let lo = addr.max(s.base);
            let hi = end.min(s_end);
            if lo < hi {
                // All of these fit in usize: they are bounded by buf.len() and the segment size.
                let dst = (lo - addr) as usize;
                let src = s.offset + (lo - s.base) as usize;
                let n = (hi - lo) as usize;
                if let (Some(d), Some(sd)) =
                    (buf.get_mut(dst..dst + n), self.data.get(src..src + n))
                {
                    d.copy_from_slice(sd);
                    valid.push(lo..hi);
                }
            }
            i += 1;
        }
        Ok(ReadResult::from_valid(addr, len, valid))
    }
}

impl ProcessMemory for MinidumpSource {
    fn identity(&self) -> &ProcessIdentity {
        &self.identity
    }

    fn regions(&self) -> Availability<&[Region]> {
        self.regions.as_ref().map(|v| v.as_slice())
    }

    fn memory_ranges(&self) -> &[Range<u64>] {
        &self.memory_ranges
    }

    fn threads(&self) -> Availability<&[ThreadInfo]> {
        self.threads.as_ref().map(|v| v.as_slice())
    }

    fn modules(&self) -> Availability<&[Module]> {
        self.modules.as_ref().map(|v| v.as_slice())
    }

    fn describe(&self) -> String {
        format!("minidump {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_sorted_and_trimmed() {
        let segs = normalise_segments(vec![
            Segment {
                base: 0x2000,
                len: 0x100,
                offset: 0,
            },
            Segment {
                base: 0x1000,
                len: 0x1080,
                offset: 0x1000,
            },
            Segment {
                base: 0x2050,
                len: 0x10,
                offset: 0x500,
            },
        ]);
        assert_eq!(
            segs,
            vec![
                Segment {
                    base: 0x1000,
                    len: 0x1080,
                    offset: 0x1000
                },
                Segment {
                    base: 0x2080,
                    len: 0x80,
                    offset: 0x80
                },
            ]
        );
    }

    #[test]
    fn regions_are_sorted_and_disjoint() {
        let mk = |base, size| Region {
            base,
            size,
            protection: Protection(4),
            allocation_base: None,
            allocation_protection: None,
            state: RegionState::Commit,
            kind: RegionKind::Private,
            path: None,
            backing: None,
            anonymous: None,
            pseudo_path: None,
        };
        let r = normalise_regions(vec![
            mk(0x3000, 0x1000),
            mk(0x1000, 0x2800),
            mk(0x1000, 0x10),
        ]);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].base, r[0].size), (0x1000, 0x2800));
        assert_eq!((r[1].base, r[1].size), (0x3800, 0x800));
        let r = normalise_regions(vec![mk(u64::MAX - 5, 100)]);
        assert_eq!(r[0].end(), u64::MAX);
    }
}
