//! Live Wine processes on Linux, read through `/proc` only (no ptrace, nothing stopped, memory
//! opened read-only).
//!
//! # What a Wine 8 process looks like from `/proc` (measured on this project's machine)
//!
//! Measured with Wine 8.0 (Debian `wine64`), a mingw-w64 `sleeper.exe` (main thread in
//! `Sleep`, one worker thread) and the same exe started by a parent with `CREATE_SUSPENDED`:
//!
//! * Each Windows process is one Linux process (`comm` = exe name, Linux PPID 1: the Windows
//!   parent is not visible); each Windows thread is one Linux task. Wine's own service
//!   processes (services.exe, winedevice.exe, svchost.exe, plugplay.exe, explorer.exe) are Wine
//!   processes too. Recognised here by mapping Wine's Unix `ntdll.so`, a Wine preloader, or
//!   Wine's PE `ntdll.dll` from `.../x86_64-windows/`.
//! * The exe is mapped from its file only for pages whose file offset is page-aligned: with
//!   mingw's 0x200 file alignment the headers page (`r--p`, offset 0) and a few sections are
//!   file mappings of the exe, while `.text` (`r-xp`) and most data are **anonymous** memory
//!   at the image's addresses. Wine's own PE DLLs (ntdll.dll ...) are file-aligned and fully
//!   file-mapped. So "anonymous executable memory" alone is no hollowing signal under Wine.
//!   Regions here are [`RegionKind::Image`] only for file mappings of a PE file (its first
//!   bytes are `MZ`), [`RegionKind::Mapped`] for other file or shared mappings and
//!   [`RegionKind::Private`] for private anonymous memory; each region keeps path, file
//!   offset, inode, device, shared/deleted flags and anonymity, and the module list (PEB
//!   loader list) gives the image ranges, so the scanner decides the policy.
//! * A process created suspended is already fully laid out: the exe is mapped (same shape as
//!   above), `ntdll.dll` is mapped, the PEB (0x67ff0000 in both samples) has
//!   `ImageBaseAddress` and `ProcessParameters` (image path, command line) set, but
//!   `PEB.Ldr` is NULL (the loader has not run), so the module list is unavailable. It has a
//!   single Linux task and one TEB.
//! * TEBs are found without ptrace: private read-write anonymous pages whose qword at +0x30
//!   (`NtTib.Self`) equals their own address. TEB+0x40 = Windows PID, +0x48 = Windows TID,
//!   +0x60 = PEB, +0x08/+0x10 = stack base/limit. Wine 8 puts them just below the PEB
//!   (0x67fe0000 for the first thread, 0x67fd0000 for the next). Two traps, both measured:
//!   a glibc heap page of a Wine service matched "Self at +0x30" with garbage ids (so ids must
//!   be handle-like multiples of 4, the stack set, and all TEBs agree on PID and PEB); and Wine
//!   keeps the TEBs of exited threads, contents intact, for reuse (services.exe showed three),
//!   so a TEB counts as a live thread only if it is on Wine's doubly linked TEB list
//!   (TEB+0x390) or bound to a Linux task.
//! * Linux task ↔ TEB: Wine's per-thread data right after the TEB's `GdiTebBatch` (TEB+0x2f0
//!   onwards) holds the thread's `pthread_t` (TEB+0x330 in Wine 8), which in glibc is the
//!   address of its `struct pthread`, whose `header.self` (+0x10) points to itself and whose
//!   `tid` (+0x2d0) is the Linux task id. Every candidate is checked against both facts and
//!   against `/proc/PID/task`, so a different Wine or glibc layout yields "not matched", not a
//!   wrong match.
//! * Registers: TEB+0x328 in Wine 8 points to the thread's *syscall frame* on its kernel
//!   stack, where Wine saves the Windows registers when a thread enters a system call
//!   (rax, rbx, rcx, rdx, rsi, rdi, r8–r15 at 0x00–0x68, rip 0x70, cs 0x78, eflags 0x80,
//!   rsp 0x88, ss 0x90, rbp 0x98). It is accepted only if cs = 0x33 and ss = 0x2b; for a
//!   sleeping thread rip is in `ntdll.dll` right after the syscall and rsp is on its stack.
//!   A thread in Windows code (not in a system call) has a stale frame: the context is then
//!   the one of its last system call ([`ThreadContext::origin`] says so).
//! * A thread that has not started yet (the initial thread of a process created suspended)
//!   has an all-zero syscall frame; its pending initial `CONTEXT` lies on its kernel stack
//!   just below the frame: `ContextFlags` 0x10001f, cs 0x33, ss 0x2b, rip = ntdll's
//!   `RtlUserThreadStart`, rcx = the exe entry point, rdx = the PEB — the same values the
//!   parent's `GetThreadContext` returned. It is found by scanning 64 KiB below the frame for
//!   a `CONTEXT` with those selectors and rsp inside the thread's stack. A `SetThreadContext`
//!   made while the thread stays suspended is kept by wineserver until the thread resumes and
//!   is **not** visible here: in the lab's hollow-relocated scenario this view kept
//!   rcx = 0x1400014d0 (the victim's entry) while a minidump of the same moment
//!   (`GetThreadContext` through the server) showed the attacker's new entry 0x3414d0. Such
//!   contexts carry [`ContextKind::PendingInitial`]; a scanner must not read "entry point
//!   unchanged" from them.
//! * Some threads of Wine's own services (e.g. `wine_sechost_se` tasks blocked in a futex)
//!   have a syscall frame that is neither recognisable nor all-zero (cs 0, rip 0, a few
//!   registers set), or a frame pointer into unreadable memory: their context is reported
//!   unavailable with that reason, never half-filled.
//! * Start address: Wine's per-thread data keeps the routine given to `NtCreateThreadEx`
//!   (CreateThread's `lpStartAddress`, i.e. the Win32 start address) at TEB+0x3a0, after the
//!   thread's kernel stack pointer (TEB+0x370, equal to the TEB's StackBase) and its entry in
//!   Wine's doubly linked TEB list (TEB+0x390). Measured: a mingw worker thread's TEB+0x3a0 is
//!   the worker function. It is used only when both layout facts hold; the initial thread has 0
//!   there (the loader starts it) and gets "unavailable" with that reason.
//! * Not readable without ptrace or the server: suspend counts (kept by wineserver). They are
//!   reported unavailable with that reason.
//! * Cost (release build, this machine): `list_processes` over 11 Wine processes 177 ms;
//!   `open_linux` 4–28 ms per process (92–634 regions, 1–11 threads, 14–122 MiB readable).
//! * `/proc/PID/mem` reads work while the process or thread is suspended. Unmapped ranges
//!   fail with EIO; `---p` (reserved / no-access) mappings would be readable through
//!   `/proc/PID/mem` (the kernel forces access), but reads here follow Windows semantics and
//!   report them as unreadable (Wine reserves gigabytes that way).
//! * 0x7ffe0000 (`KUSER_SHARED_DATA`) is a shared `r--s` mapping of a wineserver temp file
//!   that wineserver keeps updating (time fields): it changes while the process is suspended,
//!   so "memory unchanged" comparisons must leave shared mappings out.
//!
//! Only x64 Wine processes are supported; a process where no x64 TEB is found gets an identity
//! without Windows PID/PEB and a note saying so.

pub mod maps;

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::peb;
use crate::{
    Arch, Availability, ContextKind, FileBacking, MemoryError, MemoryReader, Module,
    ProcessIdentity, ProcessMemory, Protection, ReadResult, Region, RegionKind, RegionState,
    SourceKind, ThreadContext, ThreadInfo,
};
use maps::MapEntry;

/// Bytes of read-write anonymous memory examined for TEBs, at most.
pub const TEB_SCAN_BUDGET: u64 = 256 << 20;
/// Most TEBs accepted.
pub const MAX_TEBS: usize = 4096;
/// Largest `/proc/PID/maps` read.
const MAX_MAPS_BYTES: u64 = 64 << 20;
/// How far below the syscall frame the pending initial context is looked for.
const PENDING_CONTEXT_WINDOW: u64 = 0x10000;

/// Wine 8 x64: TEB offset of the syscall frame pointer.
const TEB_SYSCALL_FRAME: u64 = 0x328;
/// Wine per-thread data searched for the pthread pointer.
const TEB_THREAD_DATA: Range<u64> = 0x2f0..0x400;
/// glibc x86_64 `struct pthread`: `header.self`.
const PTHREAD_SELF: u64 = 0x10;
/// glibc x86_64 `struct pthread`: `tid`.
const PTHREAD_TID: u64 = 0x2d0;

/// A Wine process found on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WineProcessRef {
    /// Linux PID.
    pub linux_pid: u32,
    /// Windows PID from its TEBs, when found.
    pub windows_pid: Option<u32>,
    /// Linux `comm`.
    pub comm: String,
}

/// A TEB found in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Teb {
    /// Address.
    pub address: u64,
    /// TEB+0x40.
    pub windows_pid: u32,
    /// TEB+0x48.
    pub windows_tid: u32,
    /// TEB+0x60.
    pub peb: u64,
    /// TEB+0x08.
    pub stack_base: u64,
    /// TEB+0x10.
    pub stack_limit: u64,
}

fn proc_path(pid: u32, leaf: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{leaf}"))
}

fn map_open_err(pid: u32, path: &Path, e: io::Error) -> MemoryError {
    match e.kind() {
        io::ErrorKind::NotFound => MemoryError::ProcessGone {
            pid,
            detail: format!("{} vanished", path.display()),
        },
        io::ErrorKind::PermissionDenied => MemoryError::AccessDenied {
            pid,
            path: path.to_path_buf(),
            source: e,
        },
        _ if e.raw_os_error() == Some(3) => MemoryError::ProcessGone {
            pid,
            detail: format!("{}: {e}", path.display()),
        },
        _ => MemoryError::Io {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

fn read_small(pid: u32, leaf: &str) -> Result<String, MemoryError> {
    use std::io::Read;
    let path = proc_path(pid, leaf);
    let f = File::open(&path).map_err(|e| map_open_err(pid, &path, e))?;
    let mut bytes = Vec::new();
    f.take(MAX_MAPS_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| map_open_err(pid, &path, e))?;
    // Lossy: a mapped file whose name is not UTF-8 must not hide the process.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn read_maps(pid: u32) -> Result<Vec<MapEntry>, MemoryError> {
    let text = read_small(pid, "maps")?;
    let (entries, bad) = maps::parse_maps(&text);
    if bad > 0 {
        tracing::warn!(pid, bad, "unparsed lines in /proc/{pid}/maps");
    }
    Ok(entries)
}

fn numeric_dirs(path: &Path) -> Result<Vec<u32>, MemoryError> {
    let rd = std::fs::read_dir(path).map_err(|e| MemoryError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let mut v: Vec<u32> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// Every Wine process on the host, in Linux PID order. A process whose maps cannot be read
/// (access denied) is an `Err` entry when its name or command line mentions Wine or `.exe`
/// (other protected processes, such as a container's PID 1, are left out); processes that exit
/// while listing are left out.
pub fn list_processes() -> Vec<Result<WineProcessRef, MemoryError>> {
    let pids = match numeric_dirs(Path::new("/proc")) {
        Ok(p) => p,
        Err(e) => return vec![Err(e)],
    };
    let own = std::process::id();
    let mut out = Vec::new();
    for pid in pids {
        if pid == own {
            continue;
        }
        let entries = match read_maps(pid) {
            Ok(e) => e,
            Err(MemoryError::ProcessGone { .. }) => continue,
            Err(e @ MemoryError::AccessDenied { .. }) => {
                // Unknown whether it is Wine: report it only if its world-readable name or
                // command line looks like one, so users learn what was not scanned without a
                // line for every unrelated protected process.
                if looks_like_wine_name(pid) {
                    out.push(Err(e));
                }
                continue;
            }
            Err(_) => continue,
        };
        if !maps::looks_like_wine(&entries) {
            continue;
        }
        let comm = read_small(pid, "comm")
            .map(|s| s.trim_end().to_string())
            .unwrap_or_default();
        let windows_pid = match open_mem(pid) {
            Ok(mem) => {
                let reader = ProcMem {
                    pid,
                    file: &mem,
                    maps: &entries,
                };
                find_tebs(&reader, &entries, 1)
                    .first()
                    .map(|t| t.windows_pid)
            }
            Err(MemoryError::ProcessGone { .. }) => continue,
            Err(e) => {
                out.push(Err(e));
                continue;
            }
        };
        out.push(Ok(WineProcessRef {
            linux_pid: pid,
            windows_pid,
            comm,
        }));
    }
    out
}

/// `comm` or `cmdline` (both readable without ptrace rights) mention Wine or a Windows exe.
fn looks_like_wine_name(pid: u32) -> bool {
    let text = |leaf: &str| {
        read_small(pid, leaf)
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    let comm = text("comm");
    let cmdline = text("cmdline");
    [comm, cmdline]
        .iter()
        .any(|t| t.contains("wine") || t.contains(".exe"))
}

/// Opens a Wine process by Linux PID or, when no Wine process has that Linux PID, by Windows
/// PID. A number that is both is taken as the Linux PID; use [`open_windows`] to force the
/// Windows meaning.
pub fn open(pid: u32) -> Result<WineProcess, MemoryError> {
    match open_linux(pid) {
        Ok(p) => Ok(p),
        Err(MemoryError::ProcessGone { .. }) => open_windows(pid),
        Err(MemoryError::NotWine { pid, detail }) => match open_windows(pid) {
            Err(MemoryError::NoSuchProcess { detail: d, .. }) if d.is_empty() => {
                Err(MemoryError::NoSuchProcess {
                    pid,
                    detail: format!(
                        " (Linux process {pid} exists but is not a Wine process: {detail})"
                    ),
                })
            }
            other => other,
        },
        Err(e) => Err(e),
    }
}

/// Opens the Wine process whose Windows PID (TEB+0x40) is `windows_pid`. With several Wine
/// prefixes (several wineservers) the same Windows PID can exist twice: that is an error
/// naming both Linux PIDs.
pub fn open_windows(windows_pid: u32) -> Result<WineProcess, MemoryError> {
    let mut hits = Vec::new();
    for r in list_processes() {
        if let Ok(p) = r
            && p.windows_pid == Some(windows_pid)
        {
            hits.push(p.linux_pid);
        }
    }
    match hits.as_slice() {
        [] => Err(MemoryError::NoSuchProcess {
            pid: windows_pid,
            detail: String::new(),
        }),
        [one] => open_linux(*one),
        many => Err(MemoryError::NoSuchProcess {
            pid: windows_pid,
            detail: format!(
                ": Windows PID {windows_pid} is ambiguous (Linux PIDs {many:?}, several Wine prefixes); pass the Linux PID"
            ),
        }),
    }
}

fn open_mem(pid: u32) -> Result<File, MemoryError> {
    let path = proc_path(pid, "mem");
    // Read-only: preentry never writes to another process.
    std::fs::OpenOptions::new()
        .read(true)
        .open(&path)
        .map_err(|e| map_open_err(pid, &path, e))
}

/// Opens a Wine process by Linux PID and takes a snapshot of its regions, TEBs, threads and
/// modules. Memory reads stay live.
pub fn open_linux(pid: u32) -> Result<WineProcess, MemoryError> {
    let entries = read_maps(pid)?;
    if !maps::looks_like_wine(&entries) {
        return Err(MemoryError::NotWine {
            pid,
            detail: "it maps neither Wine's ntdll.so nor a Wine preloader".into(),
        });
    }
    let mem = open_mem(pid)?;
    let comm = read_small(pid, "comm")
        .map(|s| s.trim_end().to_string())
        .ok();
    let tasks = numeric_dirs(&proc_path(pid, "task")).unwrap_or_default();

    let (tebs, regions, strays) = {
        let reader = ProcMem {
            pid,
            file: &mem,
            maps: &entries,
        };
        let (tebs, strays) = consensus(find_tebs(&reader, &entries, MAX_TEBS));
        let regions = build_regions(&reader, &entries);
        (tebs, regions, strays)
    };
    let memory_ranges = crate::merge_ranges(
        entries
            .iter()
            .filter(|e| e.read)
            .map(|e| e.start..e.end)
            .collect(),
    );
    let mut proc = WineProcess {
        pid,
        mem,
        maps: entries,
        regions,
        memory_ranges,
        tebs,
        threads: Availability::unavailable("not read yet"),
        modules: Availability::unavailable("not read yet"),
        identity: ProcessIdentity {
            pid,
            windows_pid: None,
            linux_pid: Some(pid),
            image_path: None,
            command_line: None,
            parent_pid: None,
            peb_address: None,
            peb_image_base: None,
            arch: Arch::Unknown,
            source: SourceKind::WineLive,
            linux_comm: comm,
            notes: vec![
                "parent PID unknown: Wine's parent/child link is not visible in Linux PPIDs".into(),
            ],
        },
    };
    if strays > 0 {
        proc.identity.notes.push(format!(
            "{strays} TEB-like page(s) with another Windows PID or PEB ignored"
        ));
    }
    proc.fill_identity()?;
    proc.fill_threads(&tasks);
    // A process that exited while it was being opened is an error, not an empty snapshot.
    check_alive(pid)?;
    Ok(proc)
}

/// A live Wine process.
#[derive(Debug)]
pub struct WineProcess {
    pid: u32,
    mem: File,
    maps: Vec<MapEntry>,
    regions: Vec<Region>,
    memory_ranges: Vec<Range<u64>>,
    tebs: Vec<Teb>,
    threads: Availability<Vec<ThreadInfo>>,
    modules: Availability<Vec<Module>>,
    identity: ProcessIdentity,
}

impl WineProcess {
    /// Linux PID.
    pub fn linux_pid(&self) -> u32 {
        self.pid
    }

    /// The TEBs found.
    pub fn tebs(&self) -> &[Teb] {
        &self.tebs
    }

    /// The raw `/proc/PID/maps` entries of the snapshot.
    pub fn map_entries(&self) -> &[MapEntry] {
        &self.maps
    }

    fn reader(&self) -> ProcMem<'_> {
        ProcMem {
            pid: self.pid,
            file: &self.mem,
            maps: &self.maps,
        }
    }

    fn fill_identity(&mut self) -> Result<(), MemoryError> {
        let mut notes = std::mem::take(&mut self.identity.notes);
        let Some(first) = self.tebs.first().copied() else {
            notes.push(
                "no x64 TEB found: Windows PID, PEB and threads unknown (32-bit Wine processes are not supported)"
                    .into(),
            );
            self.identity.notes = notes;
            self.modules = Availability::unavailable("no x64 TEB found, so no PEB");
            return Ok(());
        };
        self.identity.arch = Arch::X64;
        self.identity.windows_pid = Some(first.windows_pid);
        self.identity.pid = first.windows_pid;
        if self
            .tebs
            .iter()
            .any(|t| t.peb != first.peb || t.windows_pid != first.windows_pid)
        {
            notes.push(
                "TEBs disagree on the PEB or Windows PID; the first TEB's values are used".into(),
            );
        }
        self.identity.peb_address = Some(first.peb);
        let info = match peb::read_peb(&self.reader(), first.peb) {
            Ok(i) => i,
            Err(e) => {
                self.check_alive()?;
                notes.push(format!("PEB at {:#x} unreadable: {e}", first.peb));
                self.modules = Availability::unavailable(format!("PEB unreadable: {e}"));
                self.identity.notes = notes;
                return Ok(());
            }
        };
        self.modules = peb::peb_facts(&self.reader(), info, &mut notes).apply(&mut self.identity);
        self.identity.notes = notes;
        Ok(())
    }

    fn fill_threads(&mut self, tasks: &[u32]) {
        let reader = self.reader();
        let mut threads = Vec::new();
        let mut matched_tasks = Vec::new();
        let mut stale = 0usize;
        for teb in &self.tebs {
            let linux_tid = teb_linux_tid(&reader, teb.address, tasks);
            if linux_tid.is_none() && !teb_in_wine_list(&reader, teb.address) {
                // A TEB Wine keeps from an exited thread.
                stale += 1;
                continue;
            }
            if let Some(t) = linux_tid {
                matched_tasks.push(t);
            }
            let stack =
                (teb.stack_limit < teb.stack_base).then_some(teb.stack_limit..teb.stack_base);
            let context = teb_context(&reader, teb, stack.as_ref());
            threads.push(ThreadInfo {
                tid: teb.windows_tid,
                windows_tid: Some(teb.windows_tid),
                linux_tid,
                teb: Some(teb.address),
                start_address: teb_start_address(&reader, teb),
                instruction_pointer: context.as_ref().map(|c| c.rip),
                context,
                suspend_count: Availability::unavailable(
                    "Wine keeps suspend counts in wineserver; not readable through /proc",
                ),
                stack,
            });
        }
        for &t in tasks {
            if matched_tasks.contains(&t) {
                continue;
            }
            let why = "no TEB matched this Linux task (a Wine-internal Unix thread, or an unknown Wine/glibc layout)";
            threads.push(ThreadInfo {
                tid: t,
                windows_tid: None,
                linux_tid: Some(t),
                teb: None,
                start_address: Availability::unavailable(why),
                instruction_pointer: Availability::unavailable(why),
                context: Availability::unavailable(why),
                suspend_count: Availability::unavailable(why),
                stack: None,
            });
        }
        if stale > 0 {
            self.identity.notes.push(format!(
                "{stale} TEB(s) of exited threads ignored (neither on Wine's TEB list nor bound to a Linux task)"
            ));
        }
        // The initial thread (the process's main Linux task) first, then by Windows TID.
        let pid = self.pid;
        threads.sort_by_key(|t| (t.linux_tid != Some(pid), t.windows_tid.is_none(), t.tid));
        self.threads = Availability::Available(threads);
    }

    fn check_alive(&self) -> Result<(), MemoryError> {
        check_alive(self.pid)
    }
}

fn check_alive(pid: u32) -> Result<(), MemoryError> {
    let p = proc_path(pid, "stat");
    match std::fs::read_to_string(&p) {
        Ok(s) => {
            // State is the field after the ")" of comm; Z = zombie, X = dead.
            let state = s
                .rsplit_once(')')
                .and_then(|(_, r)| r.trim_start().chars().next());
            if matches!(state, Some('Z') | Some('X')) {
                Err(MemoryError::ProcessGone {
                    pid,
                    detail: "the process is a zombie".into(),
                })
            } else {
                Ok(())
            }
        }
        Err(e) => Err(map_open_err(pid, &p, e)),
    }
}

/// Reader over `/proc/PID/mem`, using the maps snapshot to skip unmapped gaps quickly.
struct ProcMem<'a> {
    pid: u32,
    file: &'a File,
    maps: &'a [MapEntry],
}

impl ProcMem<'_> {
    /// The next readable mapped address at or after `addr` (from the snapshot). Mappings
    /// without the `r` bit are skipped: `/proc/PID/mem` would read them anyway (the kernel
    /// forces access for it), but Windows semantics are "no access", and Wine reserves
    /// gigabytes as `---p`.
    fn next_mapped(&self, addr: u64) -> Option<u64> {
        let i = self.maps.partition_point(|e| e.end <= addr);
        self.maps
            .get(i..)?
            .iter()
            .find(|e| e.read)
            .map(|e| e.start.max(addr))
    }
}

impl MemoryReader for ProcMem<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<ReadResult, MemoryError> {
        read_proc_mem(self.pid, self.file, self.maps, addr, buf, |a| {
            self.next_mapped(a)
        })
    }
}

fn read_proc_mem(
    pid: u32,
    file: &File,
    maps: &[MapEntry],
    addr: u64,
    buf: &mut [u8],
    next_mapped: impl Fn(u64) -> Option<u64>,
) -> Result<ReadResult, MemoryError> {
    buf.fill(0);
    let len = buf.len() as u64;
    // Never read past the end of the address space (and /proc/PID/mem offsets are i64).
    let end = addr.saturating_add(len).min(i64::MAX as u64);
    let mut valid = Vec::new();
    let mut cur = addr;
    let mut zero_reads = 0u32;
    let mut interrupts = 0u32;
    // Bounded: each iteration advances `cur` by at least one byte, normally by a page or more.
    while cur < end {
        // Skip unmapped gaps using the snapshot.
        match next_mapped(cur) {
            Some(n) if n < end => cur = n,
            _ => break,
        }
        let stop = mapping_end(maps, cur).min(end);
        let off = (cur - addr) as usize;
        let want = (stop - cur) as usize;
        let Some(dst) = buf.get_mut(off..off + want) else {
            break;
        };
        match file.read_at(dst, cur) {
            Ok(0) => {
                zero_reads += 1;
                if zero_reads == 1 {
                    check_alive(pid)?;
                }
                cur = next_page(cur);
            }
            Ok(n) => {
                valid.push(cur..cur + n as u64);
                cur += n as u64;
            }
            Err(e) if e.raw_os_error() == Some(5) || e.raw_os_error() == Some(14) => {
                // EIO / EFAULT: this page is not readable; go on with the next one.
                cur = next_page(cur);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted && interrupts < 100 => {
                interrupts += 1;
            }
            Err(e) => {
                check_alive(pid)?;
                return Err(map_open_err(pid, &proc_path(pid, "mem"), e));
            }
        }
    }
    Ok(ReadResult::from_valid(addr, len, valid))
}

/// The end of the run of contiguous readable mappings that contains `addr`.
fn mapping_end(maps: &[MapEntry], addr: u64) -> u64 {
    let mut i = maps.partition_point(|e| e.end <= addr);
    let mut end = addr;
    while let Some(e) = maps.get(i) {
        if e.start > end || !e.read {
            break;
        }
        end = e.end;
        i += 1;
    }
    end
}

fn next_page(a: u64) -> u64 {
    (a | 0xfff).saturating_add(1)
}

/// Finds x64 TEBs: private read-write anonymous pages whose qword at +0x30 is their own
/// address, with a plausible client id and PEB.
fn find_tebs(mem: &ProcMem<'_>, maps: &[MapEntry], max: usize) -> Vec<Teb> {
    let mut out: Vec<Teb> = Vec::new();
    let mut budget = TEB_SCAN_BUDGET;
    const CHUNK: u64 = 1 << 20;
    let mut chunk = vec![0u8; CHUNK as usize];
    // Small mappings first: TEB blocks are small (Wine 8: a few 64 KiB slots below the PEB),
    // so the budget is spent where TEBs are, whatever the heap size.
    let mut candidates: Vec<&MapEntry> = maps
        .iter()
        .filter(|e| e.read && e.write && !e.shared && e.is_anonymous() && e.pseudo_path().is_none())
        .filter(|e| e.start < 0x0000_8000_0000_0000)
        .collect();
    candidates.sort_by_key(|e| (e.end - e.start, e.start));
    for e in candidates {
        let mut base = e.start;
        while base < e.end && budget > 0 {
            let n = (e.end - base).min(CHUNK).min(budget);
            budget -= n;
            let Some(buf) = chunk.get_mut(..n as usize) else {
                break;
            };
            let Ok(res) = mem.read(base, buf) else {
                out.sort_by_key(|t| t.address);
                return out;
            };
            let mut page = 0u64;
            while page + 0x68 <= n {
                let p = page as usize;
                let q = |o: usize| -> u64 {
                    let mut b = [0u8; 8];
                    if let Some(s) = buf.get(p + o..p + o + 8) {
                        b.copy_from_slice(s);
                    }
                    u64::from_le_bytes(b)
                };
                let addr = base + page;
                let readable = res
                    .valid
                    .iter()
                    .any(|r| r.start <= addr && addr + 0x68 <= r.end);
                if readable && q(0x30) == addr {
                    let t = Teb {
                        address: addr,
                        windows_pid: q(0x40) as u32,
                        windows_tid: q(0x48) as u32,
                        peb: q(0x60),
                        stack_base: q(0x08),
                        stack_limit: q(0x10),
                    };
                    if plausible_teb(&t) {
                        out.push(t);
                        if out.len() >= max {
                            out.sort_by_key(|t| t.address);
                            return out;
                        }
                    }
                }
                page += 0x1000;
            }
            base += n;
        }
    }
    out.sort_by_key(|t| t.address);
    out
}

/// Client ids are handle values (multiples of 4, small), the PEB and the stack are set.
fn plausible_teb(t: &Teb) -> bool {
    let id_ok = |v: u32| v != 0 && v.is_multiple_of(4) && v < (1 << 26);
    id_ok(t.windows_pid)
        && id_ok(t.windows_tid)
        && t.peb != 0
        && t.peb < 0x0000_8000_0000_0000
        && t.stack_limit != 0
        && t.stack_limit < t.stack_base
}

/// Keeps the TEBs that agree with the most common (Windows PID, PEB) pair: a stray page that
/// happens to look like a TEB does not get to define the process.
fn consensus(tebs: Vec<Teb>) -> (Vec<Teb>, usize) {
    let mut counts: Vec<((u32, u64), usize)> = Vec::new();
    for t in &tebs {
        let key = (t.windows_pid, t.peb);
        match counts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => counts.push((key, 1)),
        }
    }
    let Some(best) = counts.iter().max_by_key(|(_, n)| *n).map(|(k, _)| *k) else {
        return (tebs, 0);
    };
    let before = tebs.len();
    let kept: Vec<Teb> = tebs
        .into_iter()
        .filter(|t| (t.windows_pid, t.peb) == best)
        .collect();
    let dropped = before - kept.len();
    (kept, dropped)
}

/// Whether the TEB is on Wine's list of live TEBs (its list entry at TEB+0x390 is doubly
/// linked). Wine keeps the TEBs of exited threads for reuse, with their old contents.
fn teb_in_wine_list(mem: &ProcMem<'_>, teb: u64) -> bool {
    let entry = teb + TEB_LIST_ENTRY;
    let (Ok(flink), Ok(blink)) = (mem.read_u64(entry), mem.read_u64(entry + 8)) else {
        return false;
    };
    flink != 0
        && blink != 0
        && mem
            .read_u64(flink.wrapping_add(8))
            .is_ok_and(|b| b == entry)
        && mem.read_u64(blink).is_ok_and(|f| f == entry)
}

/// The Linux task of a TEB through Wine's stored `pthread_t` (see the module docs).
fn teb_linux_tid(mem: &ProcMem<'_>, teb: u64, tasks: &[u32]) -> Option<u32> {
    let mut area = [0u8; (TEB_THREAD_DATA.end - TEB_THREAD_DATA.start) as usize];
    let start = teb.checked_add(TEB_THREAD_DATA.start)?;
    mem.read_exact_at(start, &mut area).ok()?;
    for c in area.chunks_exact(8) {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        let p = u64::from_le_bytes(b);
        if !(0x10000..0x0000_8000_0000_0000).contains(&p) {
            continue;
        }
        let Ok(selfp) = mem.read_u64(p + PTHREAD_SELF) else {
            continue;
        };
        if selfp != p {
            continue;
        }
        let Ok(tid) = mem.read_u32(p + PTHREAD_TID) else {
            continue;
        };
        if tasks.contains(&tid) {
            return Some(tid);
        }
    }
    None
}

fn le64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(off..off + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

fn le32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(off..off + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

fn le16(b: &[u8], off: usize) -> u16 {
    let mut a = [0u8; 2];
    if let Some(s) = b.get(off..off + 2) {
        a.copy_from_slice(s);
    }
    u16::from_le_bytes(a)
}

/// Wine 8 x64 `ntdll_thread_data` (TEB+0x2f0): `kernel_stack` +0x370, the TEB list entry
/// +0x390, `start` +0x3a0. See the module docs.
const TEB_KERNEL_STACK: u64 = 0x370;
const TEB_LIST_ENTRY: u64 = 0x390;
const TEB_START: u64 = 0x3a0;

/// The start routine Wine recorded for the thread, accepted only when the surrounding layout
/// is confirmed (kernel stack = stack base, TEB list entry doubly linked).
fn teb_start_address(mem: &ProcMem<'_>, teb: &Teb) -> Availability<u64> {
    let layout = mem
        .read_u64(teb.address + TEB_KERNEL_STACK)
        .is_ok_and(|k| k == teb.stack_base)
        && teb_in_wine_list(mem, teb.address);
    if !layout {
        return Availability::unavailable(
            "Wine thread data layout not recognised (not Wine 8 x64?): start address unknown",
        );
    }
    match mem.read_u64(teb.address + TEB_START) {
        Ok(0) => Availability::unavailable(
            "Wine recorded no start routine: the initial thread is started by the loader, not NtCreateThreadEx",
        ),
        Ok(start) => Availability::Available(start),
        Err(e) => Availability::unavailable(format!("Wine thread start routine unreadable: {e}")),
    }
}

/// The Windows registers of a Wine thread (see the module docs).
fn teb_context(
    mem: &ProcMem<'_>,
    teb: &Teb,
    stack: Option<&Range<u64>>,
) -> Availability<ThreadContext> {
    let frame = match mem.read_u64(teb.address + TEB_SYSCALL_FRAME) {
        Ok(f) if f != 0 => f,
        Ok(_) => {
            return Availability::unavailable("Wine syscall frame pointer (TEB+0x328) is NULL");
        }
        Err(e) => return Availability::unavailable(format!("TEB+0x328 unreadable: {e}")),
    };
    let mut raw = [0u8; 0xa0];
    if let Err(e) = mem.read_exact_at(frame, &mut raw) {
        return Availability::unavailable(format!(
            "Wine syscall frame at {frame:#x} unreadable: {e}"
        ));
    }
    let cs = le64(&raw, 0x78);
    let ss = le64(&raw, 0x90);
    if cs == 0x33 && ss == 0x2b {
        return Availability::Available(ThreadContext {
            rax: le64(&raw, 0x00),
            rbx: le64(&raw, 0x08),
            rcx: le64(&raw, 0x10),
            rdx: le64(&raw, 0x18),
            rsi: le64(&raw, 0x20),
            rdi: le64(&raw, 0x28),
            r8: le64(&raw, 0x30),
            r9: le64(&raw, 0x38),
            rip: le64(&raw, 0x70),
            eflags: le64(&raw, 0x80) as u32,
            rsp: le64(&raw, 0x88),
            rbp: le64(&raw, 0x98),
            cs: 0x33,
            kind: ContextKind::LastSystemCall,
            origin: "Wine syscall frame (Windows registers at the thread's last system call)",
        });
    }
    if raw.iter().any(|&b| b != 0) {
        return Availability::unavailable(format!(
            "Wine syscall frame at {frame:#x} not recognised (cs {cs:#x}, ss {ss:#x})"
        ));
    }
    // Not started yet: look for the pending initial CONTEXT below the frame.
    let lo = frame.saturating_sub(PENDING_CONTEXT_WINDOW) & !0xf;
    let len = frame - lo;
    let Ok(win) = mem.read_range(lo, len, PENDING_CONTEXT_WINDOW) else {
        return Availability::unavailable("kernel stack below the syscall frame unreadable");
    };
    let bytes = &win.bytes;
    const CONTEXT_SIZE: usize = 0x4d0;
    let mut off = bytes.len().saturating_sub(CONTEXT_SIZE) & !0xf;
    loop {
        let flags = le32(bytes, off + 0x30);
        if flags & 0x0010_0000 != 0
            && flags & !0x0010_007f == 0
            && le16(bytes, off + 0x38) == 0x33
            && le16(bytes, off + 0x42) == 0x2b
        {
            let rsp = le64(bytes, off + 0x98);
            let rip = le64(bytes, off + 0xf8);
            let on_stack = stack.is_none_or(|s| rsp >= s.start && rsp <= s.end);
            if rip != 0 && on_stack {
                return Availability::Available(ThreadContext {
                    rax: le64(bytes, off + 0x78),
                    rcx: le64(bytes, off + 0x80),
                    rdx: le64(bytes, off + 0x88),
                    rbx: le64(bytes, off + 0x90),
                    rsp,
                    rbp: le64(bytes, off + 0xa0),
                    rsi: le64(bytes, off + 0xa8),
                    rdi: le64(bytes, off + 0xb0),
                    r8: le64(bytes, off + 0xb8),
                    r9: le64(bytes, off + 0xc0),
                    rip,
                    eflags: le32(bytes, off + 0x44),
                    cs: 0x33,
                    kind: ContextKind::PendingInitial,
                    origin: "Wine pending initial context of a thread that has not started (CONTEXT on its kernel stack; a SetThreadContext made while suspended is held by wineserver and not visible)",
                });
            }
        }
        if off < 16 {
            break;
        }
        off -= 16;
    }
    Availability::unavailable(
        "thread has not entered a system call and no pending initial context was found",
    )
}

/// Regions from the maps snapshot.
fn build_regions(mem: &ProcMem<'_>, entries: &[MapEntry]) -> Vec<Region> {
    use std::collections::HashMap;
    // Which inodes are PE files: the file's mapping at offset 0 starts with "MZ" (read from
    // the file on disk, or from the mapping when the file cannot be opened).
    let mut pe_inodes: HashMap<(String, u64), bool> = HashMap::new();
    for e in entries.iter().filter(|e| e.inode != 0 && e.offset == 0) {
        let key = (e.device.clone(), e.inode);
        if pe_inodes.contains_key(&key) {
            continue;
        }
        let mut magic = [0u8; 2];
        let from_disk = e
            .file_path()
            .filter(|_| !e.deleted)
            .and_then(|p| File::open(p).ok())
            .and_then(|f| f.read_exact_at(&mut magic, 0).ok())
            .is_some();
        if !from_disk && e.read {
            let _ = mem.read_exact_at(e.start, &mut magic);
        }
        pe_inodes.insert(key, &magic == b"MZ");
    }
    entries
        .iter()
        .map(|e| {
            let anonymous = e.is_anonymous();
            let kind = if anonymous {
                if e.shared {
                    RegionKind::Mapped
                } else {
                    RegionKind::Private
                }
            } else if pe_inodes
                .get(&(e.device.clone(), e.inode))
                .copied()
                .unwrap_or(false)
            {
                RegionKind::Image
            } else {
                RegionKind::Mapped
            };
            Region {
                base: e.start,
                size: e.end - e.start,
                protection: Protection::from_rwx(e.read, e.write, e.execute),
                allocation_base: None,
                allocation_protection: None,
                state: RegionState::Commit,
                kind,
                path: e.file_path(),
                backing: (!anonymous || e.shared).then(|| FileBacking {
                    offset: e.offset,
                    device: e.device.clone(),
                    inode: e.inode,
                    shared: e.shared,
                    deleted: e.deleted,
                }),
                anonymous: Some(anonymous),
                pseudo_path: e.pseudo_path().map(str::to_string),
            }
        })
        .collect()
}

impl MemoryReader for WineProcess {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<ReadResult, MemoryError> {
        self.reader().read(addr, buf)
    }
}

impl ProcessMemory for WineProcess {
    fn identity(&self) -> &ProcessIdentity {
        &self.identity
    }

    fn regions(&self) -> Availability<&[Region]> {
        Availability::Available(&self.regions)
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
        let comm = self.identity.linux_comm.as_deref().unwrap_or("?");
        match self.identity.windows_pid {
            Some(w) => format!(
                "Wine process {comm} (Windows PID {w}, Linux PID {})",
                self.pid
            ),
            None => format!("Wine process {comm} (Linux PID {})", self.pid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    /// A process mapping a file whose name is not UTF-8 still has readable maps.
    #[test]
    fn non_utf8_mapping_names_do_not_hide_a_process() {
        let dir = tempfile::tempdir().unwrap();
        let script = r#"
import mmap, os, sys
d = sys.argv[1].encode()
p = d + b"/\xff\xfe-not-utf8.bin"
with open(p, "wb") as f:
    f.write(b"\0" * 4096)
f = open(p, "rb")
m = mmap.mmap(f.fileno(), 4096, prot=mmap.PROT_READ)
print("ready", flush=True)
sys.stdin.read()
"#;
        let child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            eprintln!("SKIPPED: python3 not available to map a non-UTF-8 file name");
            return;
        };
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        let entries = read_maps(child.id());
        drop(child.stdin.take()); // lets the child exit
        let _ = child.wait();
        let entries = entries.unwrap();
        assert!(
            entries
                .iter()
                .any(|e| e.pathname.ends_with("\u{fffd}\u{fffd}-not-utf8.bin")),
            "{entries:#?}"
        );
        assert!(!maps::looks_like_wine(&entries));
    }

    #[test]
    fn teb_plausibility_and_consensus() {
        let t = |pid, tid, peb| Teb {
            address: 0x67fe_0000,
            windows_pid: pid,
            windows_tid: tid,
            peb,
            stack_base: 0x22_0000,
            stack_limit: 0x2_2000,
        };
        assert!(plausible_teb(&t(0x20, 0x24, 0x67ff_0000)));
        assert!(!plausible_teb(&t(
            0x802_a120,
            0x802_9fe0,
            0x736e_6574_7465_6148
        )));
        assert!(!plausible_teb(&t(0x21, 0x24, 0x67ff_0000)));
        assert!(!plausible_teb(&Teb {
            stack_limit: 0,
            ..t(0x20, 0x24, 0x67ff_0000)
        }));
        let (kept, dropped) = consensus(vec![
            t(0x20, 0x24, 0x67ff_0000),
            t(0x20, 0x28, 0x67ff_0000),
            t(0x40, 0x44, 0x1000),
        ]);
        assert_eq!((kept.len(), dropped), (2, 1));
        assert!(kept.iter().all(|k| k.windows_pid == 0x20));
    }
}
