//! The source-independent vocabulary: availability, regions, protections, threads, modules,
//! process identity and read results.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// Whether a source can provide a fact at all.
///
/// `Unavailable` is not an error: a minidump without a MemoryInfoList stream simply cannot say
/// what the region types were, and the scanner must report the dependent checks as
/// "not checkable from this dump" instead of guessing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Availability<T> {
    /// The source provides this fact.
    Available(T),
    /// The source cannot provide this fact; `reason` says why (e.g. "MemoryInfoList stream
    /// absent from this dump").
    Unavailable {
        /// Human-readable explanation, suitable for a report.
        reason: String,
    },
}

impl<T> Availability<T> {
    /// Builds `Unavailable` from anything printable.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Availability::Unavailable {
            reason: reason.into(),
        }
    }

    /// `Some(value)` when available.
    pub fn available(self) -> Option<T> {
        match self {
            Availability::Available(v) => Some(v),
            Availability::Unavailable { .. } => None,
        }
    }

    /// Borrowing view.
    pub fn as_ref(&self) -> Availability<&T> {
        match self {
            Availability::Available(v) => Availability::Available(v),
            Availability::Unavailable { reason } => Availability::Unavailable {
                reason: reason.clone(),
            },
        }
    }

    /// `true` when available.
    pub fn is_available(&self) -> bool {
        matches!(self, Availability::Available(_))
    }

    /// The reason when unavailable.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Availability::Available(_) => None,
            Availability::Unavailable { reason } => Some(reason),
        }
    }

    /// Maps the available value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Availability<U> {
        match self {
            Availability::Available(v) => Availability::Available(f(v)),
            Availability::Unavailable { reason } => Availability::Unavailable { reason },
        }
    }

    /// The value, or `Err(reason)`.
    pub fn into_result(self) -> Result<T, String> {
        match self {
            Availability::Available(v) => Ok(v),
            Availability::Unavailable { reason } => Err(reason),
        }
    }
}

/// A Windows page protection (`PAGE_*` value, as stored in a MemoryInfoList or returned by
/// `VirtualQueryEx`). Linux `rwx` permissions are mapped onto the same constants.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Protection(pub u32);

impl Protection {
    /// `PAGE_NOACCESS`.
    pub const NOACCESS: u32 = 0x01;
    /// `PAGE_READONLY`.
    pub const READONLY: u32 = 0x02;
    /// `PAGE_READWRITE`.
    pub const READWRITE: u32 = 0x04;
    /// `PAGE_WRITECOPY`.
    pub const WRITECOPY: u32 = 0x08;
    /// `PAGE_EXECUTE`.
    pub const EXECUTE: u32 = 0x10;
    /// `PAGE_EXECUTE_READ`.
    pub const EXECUTE_READ: u32 = 0x20;
    /// `PAGE_EXECUTE_READWRITE`.
    pub const EXECUTE_READWRITE: u32 = 0x40;
    /// `PAGE_EXECUTE_WRITECOPY`.
    pub const EXECUTE_WRITECOPY: u32 = 0x80;
    /// `PAGE_GUARD` modifier.
    pub const GUARD: u32 = 0x100;
    /// `PAGE_NOCACHE` modifier.
    pub const NOCACHE: u32 = 0x200;
    /// `PAGE_WRITECOMBINE` modifier.
    pub const WRITECOMBINE: u32 = 0x400;

    const BASE_MASK: u32 = 0xFF;

    /// The raw value.
    pub fn raw(self) -> u32 {
        self.0
    }

    /// The base protection without the GUARD/NOCACHE/WRITECOMBINE modifiers.
    pub fn base(self) -> u32 {
        self.0 & Self::BASE_MASK
    }

    /// Readable (and not a guard page).
    pub fn readable(self) -> bool {
        !self.guard()
            && matches!(
                self.base(),
                Self::READONLY
                    | Self::READWRITE
                    | Self::WRITECOPY
                    | Self::EXECUTE_READ
                    | Self::EXECUTE_READWRITE
                    | Self::EXECUTE_WRITECOPY
            )
    }

    /// Writable, including copy-on-write.
    pub fn writable(self) -> bool {
        matches!(
            self.base(),
            Self::READWRITE | Self::WRITECOPY | Self::EXECUTE_READWRITE | Self::EXECUTE_WRITECOPY
        )
    }

    /// Executable.
    pub fn executable(self) -> bool {
        matches!(
            self.base(),
            Self::EXECUTE | Self::EXECUTE_READ | Self::EXECUTE_READWRITE | Self::EXECUTE_WRITECOPY
        )
    }

    /// Writable and executable at once (RWX or execute-writecopy).
    pub fn writable_executable(self) -> bool {
        self.writable() && self.executable()
    }

    /// `PAGE_GUARD` set.
    pub fn guard(self) -> bool {
        self.0 & Self::GUARD != 0
    }

    /// Maps Linux `/proc/PID/maps` permissions onto a `PAGE_*` value. Linux has no
    /// write-only or execute-write-only mapping kinds that Windows lacks a name for, so `-w-` is
    /// reported as `PAGE_READWRITE` (as Wine itself does) and `--x` as `PAGE_EXECUTE`.
    pub fn from_rwx(read: bool, write: bool, execute: bool) -> Protection {
        let v = match (read, write, execute) {
            (false, false, false) => Self::NOACCESS,
            (true, false, false) => Self::READONLY,
            (_, true, false) => Self::READWRITE,
            (false, false, true) => Self::EXECUTE,
            (true, false, true) => Self::EXECUTE_READ,
            (_, true, true) => Self::EXECUTE_READWRITE,
        };
        Protection(v)
    }

    /// Short text such as `RWX`, `R-X`, `RW-`, `---`, with `+G` for guard pages.
    pub fn short(self) -> String {
        let mut s = String::with_capacity(5);
        s.push(if self.readable() || (self.guard() && self.base() != 1) {
            'R'
        } else {
            '-'
        });
        s.push(if self.writable() { 'W' } else { '-' });
        s.push(if self.executable() { 'X' } else { '-' });
        if self.guard() {
            s.push_str("+G");
        }
        s
    }
}

impl fmt::Debug for Protection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Protection({:#x} {})", self.0, self.short())
    }
}

impl fmt::Display for Protection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

/// `MEM_COMMIT`/`MEM_RESERVE`/`MEM_FREE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegionState {
    /// `MEM_COMMIT` (0x1000); every mapping listed in `/proc/PID/maps` is reported so.
    Commit,
    /// `MEM_RESERVE` (0x2000).
    Reserve,
    /// `MEM_FREE` (0x10000).
    Free,
    /// A value the source did not recognise.
    Unknown(u32),
}

impl RegionState {
    /// From a raw `MEM_*` state value.
    pub fn from_raw(v: u32) -> RegionState {
        match v {
            0x1000 => RegionState::Commit,
            0x2000 => RegionState::Reserve,
            0x10000 => RegionState::Free,
            other => RegionState::Unknown(other),
        }
    }
}

/// `MEM_IMAGE`/`MEM_MAPPED`/`MEM_PRIVATE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegionKind {
    /// `MEM_IMAGE` (0x1000000): a view of an image section. Under Wine: a file-backed
    /// mapping of a PE file (see the crate docs for the caveats).
    Image,
    /// `MEM_MAPPED` (0x40000): a view of a data section; under Wine a file-backed mapping of
    /// a non-PE file or a shared anonymous mapping.
    Mapped,
    /// `MEM_PRIVATE` (0x20000): private memory; under Wine a private anonymous mapping.
    Private,
    /// The source does not say (free memory in a dump, or an unrecognised value).
    Unknown,
}

impl RegionKind {
    /// From a raw `MEM_*` type value.
    pub fn from_raw(v: u32) -> RegionKind {
        match v {
            0x1000000 => RegionKind::Image,
            0x40000 => RegionKind::Mapped,
            0x20000 => RegionKind::Private,
            _ => RegionKind::Unknown,
        }
    }
}

/// Linux facts about the file behind a mapping (live Wine source only).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileBacking {
    /// Offset into the file of the region's first byte.
    pub offset: u64,
    /// Device as printed in `/proc/PID/maps` (`major:minor`, hex).
    pub device: String,
    /// Inode number (0 for anonymous mappings).
    pub inode: u64,
    /// The mapping is shared (`s`) rather than private copy-on-write (`p`).
    pub shared: bool,
    /// The kernel marked the file as deleted.
    pub deleted: bool,
}

/// One memory region of the address space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// First address.
    pub base: u64,
    /// Size in bytes (never 0 in regions returned by a source).
    pub size: u64,
    /// Current protection.
    pub protection: Protection,
    /// `AllocationBase`, when the source knows it (minidumps with MemoryInfoList).
    pub allocation_base: Option<u64>,
    /// Protection at allocation time, when known.
    pub allocation_protection: Option<Protection>,
    /// Commit/reserve/free.
    pub state: RegionState,
    /// Image/mapped/private.
    pub kind: RegionKind,
    /// Path of the backing file when known (Linux path for the Wine source).
    pub path: Option<PathBuf>,
    /// File-mapping facts from `/proc/PID/maps` (Wine source), `None` elsewhere.
    pub backing: Option<FileBacking>,
    /// Anonymous mapping (no file), when the source can tell; `None` for minidumps.
    pub anonymous: Option<bool>,
    /// The pseudo-path the kernel gives special mappings (`[heap]`, `[stack]`, `[vdso]` ...).
    pub pseudo_path: Option<String>,
}

impl Region {
    /// One past the last address (saturating).
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    /// `base..end`.
    pub fn range(&self) -> Range<u64> {
        self.base..self.end()
    }

    /// Whether `addr` lies in the region.
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr < self.end()
    }
}

/// How far a [`ThreadContext`] can be trusted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ContextKind {
    /// Captured by the OS for this thread (a minidump's ThreadList context, which the dump
    /// writer got from `GetThreadContext`): authoritative for the moment of capture.
    #[default]
    Captured,
    /// Wine's saved registers of the thread's last system call: exact while the thread is
    /// inside a system call (blocked, sleeping, suspended in one), stale if it is running
    /// Windows code.
    LastSystemCall,
    /// Wine, a thread that has not started: the registers it will start with, *unless* a
    /// `SetThreadContext` was made while it is suspended — wineserver holds that new context
    /// until resume and it is not visible here. Measured in the lab (hollow-relocated): this
    /// view kept rcx = the original entry while a minidump (`GetThreadContext`) showed the
    /// attacker's new entry. Do not conclude "entry point unchanged" from it.
    PendingInitial,
}

/// Register values of a thread (x64 names; for x86 contexts the 32-bit registers are widened).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadContext {
    /// Instruction pointer.
    pub rip: u64,
    /// Stack pointer.
    pub rsp: u64,
    /// First argument register; for a not-yet-started initial thread on x64 Windows and Wine,
    /// the entry point that `RtlUserThreadStart` will call (what RunPE rewrites).
    pub rcx: u64,
    /// Second argument register; the PEB address for a not-yet-started initial thread.
    pub rdx: u64,
    /// Accumulator.
    pub rax: u64,
    /// rbx.
    pub rbx: u64,
    /// rbp.
    pub rbp: u64,
    /// rsi.
    pub rsi: u64,
    /// rdi.
    pub rdi: u64,
    /// r8.
    pub r8: u64,
    /// r9.
    pub r9: u64,
    /// Flags register.
    pub eflags: u32,
    /// Code segment selector (0x33 for 64-bit user code, 0x23 for 32-bit).
    pub cs: u16,
    /// How far the values can be trusted.
    pub kind: ContextKind,
    /// Where the values came from, e.g. "minidump ThreadList context" or
    /// "Wine syscall frame".
    pub origin: &'static str,
}

/// One thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadInfo {
    /// The id in the source's own namespace: the Windows TID for minidumps, the Windows TID for
    /// live Wine threads whose TEB was found, otherwise the Linux TID.
    pub tid: u32,
    /// Windows thread id, when known.
    pub windows_tid: Option<u32>,
    /// Linux task id (live Wine source).
    pub linux_tid: Option<u32>,
    /// TEB address, when known.
    pub teb: Option<u64>,
    /// The thread's start address (minidump ThreadInfoList `StartAddress`, which dbghelp fills
    /// with the Win32 start address).
    pub start_address: Availability<u64>,
    /// Instruction pointer (from the context).
    pub instruction_pointer: Availability<u64>,
    /// Register context.
    pub context: Availability<ThreadContext>,
    /// Windows suspend count (minidump ThreadList), `> 0` means suspended.
    pub suspend_count: Availability<u32>,
    /// Stack range `StackLimit..StackBase` from the TEB, when readable.
    pub stack: Option<Range<u64>>,
}

impl ThreadInfo {
    /// `Some(true)` when the suspend count is known and positive.
    pub fn suspended(&self) -> Option<bool> {
        match self.suspend_count {
            Availability::Available(n) => Some(n > 0),
            Availability::Unavailable { .. } => None,
        }
    }
}

/// One loaded module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// Load address.
    pub base: u64,
    /// Size of the image in memory.
    pub size: u64,
    /// Full path as the process knows it (a Windows path such as `C:\windows\system32\x.dll`).
    pub path: String,
    /// File name part of `path`.
    pub name: String,
    /// Entry point, when the source knows it (PEB loader list).
    pub entry_point: Option<u64>,
}

impl Module {
    /// Builds a module, deriving `name` from the last `\` or `/` component of `path`.
    pub fn new(base: u64, size: u64, path: String, entry_point: Option<u64>) -> Module {
        let name = file_name_of(&path).to_string();
        Module {
            base,
            size,
            path,
            name,
            entry_point,
        }
    }

    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    /// Whether `addr` lies in the module.
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr < self.end()
    }
}

/// The file-name part of a Windows or Unix path.
pub fn file_name_of(path: &str) -> &str {
    path.rsplit(['\\', '/']).next().unwrap_or(path)
}

/// The process's architecture as far as the source can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// x86-64 (64-bit PEB/TEB layouts are used).
    X64,
    /// 32-bit x86 (or a WoW64 process). The PEB helpers do not support it yet.
    X86,
    /// Anything else (ARM64 dumps ...).
    Other,
    /// The source does not say (a dump without SystemInfo).
    Unknown,
}

/// Where the address space comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// A minidump file.
    Minidump {
        /// The dump's path.
        path: PathBuf,
    },
    /// A live Wine process read through `/proc`.
    WineLive,
    /// A live Windows process (reserved for the Windows source).
    WindowsLive,
}

/// Who the process is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessIdentity {
    /// The primary id: the Windows PID when known, otherwise the Linux PID.
    pub pid: u32,
    /// Windows PID (minidump MiscInfo, or TEB+0x40 under Wine).
    pub windows_pid: Option<u32>,
    /// Linux PID (Wine source).
    pub linux_pid: Option<u32>,
    /// Image path as the process knows it (PEB ProcessParameters ImagePathName, or the dump's
    /// main module).
    pub image_path: Option<String>,
    /// Command line (PEB ProcessParameters CommandLine).
    pub command_line: Option<String>,
    /// Parent PID when known (not available from minidumps or Wine, whose children have PPID 1).
    pub parent_pid: Option<u32>,
    /// PEB address.
    pub peb_address: Option<u64>,
    /// `PEB.ImageBaseAddress` (PEB+0x10 on x64) as read from memory.
    pub peb_image_base: Option<u64>,
    /// Architecture.
    pub arch: Arch,
    /// Where it comes from.
    pub source: SourceKind,
    /// Linux `comm` (Wine source), e.g. the exe name.
    pub linux_comm: Option<String>,
    /// Why identity fields are missing, in report-ready sentences.
    pub notes: Vec<String>,
}

/// The outcome of one bounded read: which parts of the requested range were filled from the
/// source and which could not be read. Unreadable bytes in the caller's buffer are set to 0.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadResult {
    /// Address ranges that were read (sorted, non-overlapping, merged).
    pub valid: Vec<Range<u64>>,
    /// Address ranges that could not be read (sorted, non-overlapping, merged).
    pub unreadable: Vec<Range<u64>>,
}

impl ReadResult {
    /// Number of bytes read.
    pub fn bytes_read(&self) -> u64 {
        self.valid
            .iter()
            .map(|r| r.end.saturating_sub(r.start))
            .sum()
    }

    /// Every requested byte was read.
    pub fn is_complete(&self) -> bool {
        self.unreadable.is_empty()
    }

    /// Nothing was read.
    pub fn is_empty(&self) -> bool {
        self.valid.is_empty()
    }

    /// Builds a result from the per-byte outcome of a read of `[start, start+len)`, given the
    /// valid sub-ranges (any order, may touch). The complement becomes `unreadable`.
    pub fn from_valid(start: u64, len: u64, mut valid: Vec<Range<u64>>) -> ReadResult {
        let end = start.saturating_add(len);
        valid.retain(|r| r.start < r.end);
        for r in valid.iter_mut() {
            r.start = r.start.clamp(start, end);
            r.end = r.end.clamp(start, end);
        }
        valid.retain(|r| r.start < r.end);
        valid.sort_by_key(|r| r.start);
        let mut merged: Vec<Range<u64>> = Vec::with_capacity(valid.len());
        for r in valid {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        let mut unreadable = Vec::new();
        let mut cursor = start;
        for r in &merged {
            if r.start > cursor {
                unreadable.push(cursor..r.start);
            }
            cursor = cursor.max(r.end);
        }
        if cursor < end {
            unreadable.push(cursor..end);
        }
        ReadResult {
            valid: merged,
            unreadable,
        }
    }
}

/// An owned bounded read ([`crate::MemoryReader::read_range`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadBuf {
    /// Address of `bytes[0]`.
    pub address: u64,
    /// The bytes (unreadable spans are zero).
    pub bytes: Vec<u8>,
    /// Which parts were read.
    pub result: ReadResult,
    /// The requested length exceeded the cap and was cut to it.
    pub truncated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protection_helpers() {
        let rwx = Protection(Protection::EXECUTE_READWRITE);
        assert!(rwx.readable() && rwx.writable() && rwx.executable());
        assert!(rwx.writable_executable());
        let guard = Protection(Protection::READWRITE | Protection::GUARD);
        assert!(guard.guard() && !guard.readable() && guard.writable());
        let na = Protection(Protection::NOACCESS);
        assert!(!na.readable() && !na.writable() && !na.executable());
        assert_eq!(Protection::from_rwx(true, false, true).raw(), 0x20);
        assert_eq!(Protection::from_rwx(true, true, true).raw(), 0x40);
        assert_eq!(Protection::from_rwx(false, false, false).raw(), 0x01);
        assert_eq!(Protection::from_rwx(true, true, false).raw(), 0x04);
        assert_eq!(Protection::from_rwx(true, true, true).short(), "RWX");
        assert_eq!(Protection(Protection::READONLY).short(), "R--");
    }

    #[test]
    fn read_result_complement() {
        let r = ReadResult::from_valid(100, 100, vec![150..160, 110..120, 118..130, 300..400]);
        assert_eq!(r.valid, vec![110..130, 150..160]);
        assert_eq!(r.unreadable, vec![100..110, 130..150, 160..200]);
        assert_eq!(r.bytes_read(), 30);
        assert!(!r.is_complete());
        let full = ReadResult::from_valid(0, 10, std::iter::once(0..10).collect());
        assert!(full.is_complete());
        let none = ReadResult::from_valid(u64::MAX - 2, 10, vec![]);
        assert_eq!(none.unreadable, vec![u64::MAX - 2..u64::MAX]);
    }

    #[test]
    fn read_result_properties() {
        // Deterministic pseudo-random valid sets: valid and unreadable partition the request.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..2000 {
            let start = next() % 0x1_0000;
            let len = next() % 0x400;
            let valid: Vec<Range<u64>> = (0..next() % 6)
                .map(|_| {
                    let a = next() % 0x1_0800;
                    a..a + next() % 0x100
                })
                .collect();
            let r = ReadResult::from_valid(start, len, valid.clone());
            let covered: u64 = r
                .valid
                .iter()
                .chain(&r.unreadable)
                .map(|x| x.end - x.start)
                .sum();
            assert_eq!(covered, len);
            for b in start..start + len {
                let in_valid = valid.iter().any(|v| v.contains(&b));
                assert_eq!(r.valid.iter().any(|v| v.contains(&b)), in_valid);
                assert_eq!(r.unreadable.iter().any(|v| v.contains(&b)), !in_valid);
            }
        }
    }

    #[test]
    fn names() {
        assert_eq!(file_name_of(r"C:\windows\system32\ntdll.dll"), "ntdll.dll");
        assert_eq!(file_name_of("/usr/lib/x.so"), "x.so");
        assert_eq!(file_name_of("plain"), "plain");
        assert_eq!(RegionKind::from_raw(0x20000), RegionKind::Private);
        assert_eq!(RegionState::from_raw(0x2000), RegionState::Reserve);
    }

    #[test]
    fn availability() {
        let a: Availability<u32> = Availability::unavailable("no stream");
        assert_eq!(a.reason(), Some("no stream"));
        assert_eq!(a.clone().available(), None);
        assert_eq!(
            Availability::Available(3).map(|v| v + 1).available(),
            Some(4)
        );
    }
}
