//! The live Windows source (compiled on Windows only). See the crate documentation.

use std::ffi::c_void;
use std::io;
use std::mem::size_of;
use std::ops::Range;
use std::path::PathBuf;

use preentry_memory::{
    Arch, Availability, ContextKind, MemoryError, MemoryReader, Module, ProcessIdentity,
    ProcessMemory, Protection, ReadResult, Region, RegionKind, RegionState, SourceKind,
    ThreadContext, ThreadInfo, peb,
};
use windows_sys::Wdk::System::Threading::{
    NtQueryInformationProcess, NtQueryInformationThread, ProcessBasicInformation,
    ThreadBasicInformation, ThreadQuerySetWin32StartAddress, ThreadSuspendCount,
};
use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_ACCESS_DENIED, ERROR_INVALID_PARAMETER, FILETIME, GetLastError, HANDLE,
    INVALID_HANDLE_VALUE, STILL_ACTIVE,
};
use windows_sys::Win32::Storage::FileSystem::QueryDosDeviceW;
use windows_sys::Win32::System::Diagnostics::Debug::{
    CONTEXT, CONTEXT_FULL_AMD64, GetThreadContext, ReadProcessMemory,
};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, PROCESSENTRY32W, Process32FirstW, Process32NextW, TH32CS_SNAPPROCESS,
    TH32CS_SNAPTHREAD, THREADENTRY32, Thread32First, Thread32Next,
};
use windows_sys::Win32::System::Memory::{MEMORY_BASIC_INFORMATION, VirtualQueryEx};
use windows_sys::Win32::System::ProcessStatus::K32GetMappedFileNameW;
use windows_sys::Win32::System::Threading::{
    GetCurrentProcessId, GetExitCodeProcess, GetThreadTimes, IsWow64Process, OpenProcess,
    OpenThread, PROCESS_BASIC_INFORMATION, PROCESS_NAME_WIN32, QueryFullProcessImageNameW,
};

use crate::access::{ProcessAccess, ThreadAccess};
use crate::paths::{self, DosDevice};

/// Most regions listed per process (a bound on a hostile address space).
pub const MAX_REGIONS: usize = 1 << 20;
/// Most threads listed per process.
pub const MAX_THREADS: usize = 1 << 16;
/// Most processes listed.
pub const MAX_PROCESSES: usize = 1 << 16;
/// Highest user-mode address considered (x64, 128 TiB).
const USER_END: u64 = 0x0000_8000_0000_0000;
const PAGE: u64 = 0x1000;
const MEM_COMMIT: u32 = 0x1000;
const MEM_FREE: u32 = 0x10000;
const STATUS_ACCESS_DENIED: i32 = 0xC000_0022_u32 as i32;

/// An owned kernel handle, closed on drop.
#[derive(Debug)]
pub(crate) struct Handle(pub(crate) HANDLE);

// SAFETY: a kernel handle is a process-wide index into the handle table; it may be used and
// closed from any thread.
unsafe impl Send for Handle {}
// SAFETY: the handle is only passed by value to thread-safe system calls.
unsafe impl Sync for Handle {}

impl Handle {
    pub(crate) fn raw(&self) -> HANDLE {
        self.0
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: `self.0` is a valid handle this value owns; it is closed exactly once.
        unsafe { CloseHandle(self.0) };
    }
}

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

fn win_error(code: u32) -> io::Error {
    io::Error::from_raw_os_error(code as i32)
}

/// Maps a failed `OpenProcess`/query to the memory-source error kinds.
fn process_error(pid: u32, what: &str, e: io::Error) -> MemoryError {
    match e.raw_os_error().map(|c| c as u32) {
        Some(ERROR_ACCESS_DENIED) => MemoryError::AccessDenied {
            pid,
            path: PathBuf::from(what),
            source: e,
        },
        Some(ERROR_INVALID_PARAMETER) => MemoryError::ProcessGone {
            pid,
            detail: format!("{what}: no such process (it may have exited): {e}"),
        },
        _ => MemoryError::Io {
            path: PathBuf::from(format!("{what} (pid {pid})")),
            source: e,
        },
    }
}

/// Opens process `pid` with the fixed mask of `access`. The only `OpenProcess` call site.
pub(crate) fn open_process(pid: u32, access: ProcessAccess) -> Result<Handle, MemoryError> {
    // SAFETY: plain system call with an integer mask and pid; the result is checked below.
    let h = unsafe { OpenProcess(access.mask(), 0, pid) };
    if h.is_null() {
        let what = format!(
            "OpenProcess with access {:#x} for {}",
            access.mask(),
            access.purpose()
        );
        return Err(process_error(pid, &what, last_error()));
    }
    Ok(Handle(h))
}

/// Opens thread `tid` with the fixed mask of `access`. The only `OpenThread` call site.
fn open_thread(tid: u32, access: ThreadAccess) -> Result<Handle, io::Error> {
    // SAFETY: plain system call; the result is checked below.
    let h = unsafe { OpenThread(access.mask(), 0, tid) };
    if h.is_null() {
        return Err(last_error());
    }
    Ok(Handle(h))
}

/// Whether the process behind `h` has exited.
fn has_exited(h: &Handle) -> bool {
    let mut code = 0u32;
    // SAFETY: `h` is a valid process handle; `code` is a valid out pointer.
    let ok = unsafe { GetExitCodeProcess(h.raw(), &mut code) };
    ok != 0 && code != STILL_ACTIVE as u32
}

/// A process as the system lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowsProcessRef {
    /// Windows PID.
    pub pid: u32,
    /// Parent PID as recorded at creation (the parent may have exited since).
    pub parent_pid: u32,
    /// Executable file name.
    pub exe_name: String,
    /// Number of threads.
    pub threads: u32,
}

fn snapshot(flags: u32) -> Result<Handle, MemoryError> {
    // SAFETY: plain system call; the result is checked below.
    let h = unsafe { CreateToolhelp32Snapshot(flags, 0) };
    if h == INVALID_HANDLE_VALUE || h.is_null() {
        return Err(MemoryError::Io {
            path: PathBuf::from("CreateToolhelp32Snapshot"),
            source: last_error(),
        });
    }
    Ok(Handle(h))
}

/// Every process of the system (under Wine: of the same wineserver), preentry itself left
/// out, in PID order.
pub fn list_processes() -> Result<Vec<WindowsProcessRef>, MemoryError> {
    let snap = snapshot(TH32CS_SNAPPROCESS)?;
    // SAFETY: a zeroed PROCESSENTRY32W is a valid value (plain integers and arrays).
    let mut e: PROCESSENTRY32W = unsafe { std::mem::zeroed() };
    e.dwSize = size_of::<PROCESSENTRY32W>() as u32;
    let own = own_pid();
    let mut out = Vec::new();
    // SAFETY: `snap` is a valid snapshot handle and `e` a valid, sized entry.
    let mut ok = unsafe { Process32FirstW(snap.raw(), &mut e) };
    while ok != 0 && out.len() < MAX_PROCESSES {
        if e.th32ProcessID != own && e.th32ProcessID != 0 {
            out.push(WindowsProcessRef {
                pid: e.th32ProcessID,
                parent_pid: e.th32ParentProcessID,
                exe_name: paths::from_wide(&e.szExeFile),
                threads: e.cntThreads,
            });
        }
        // SAFETY: as above.
        ok = unsafe { Process32NextW(snap.raw(), &mut e) };
    }
    out.sort_by_key(|p| p.pid);
    Ok(out)
}

/// preentry's own PID.
pub fn own_pid() -> u32 {
    // SAFETY: no arguments, cannot fail.
    unsafe { GetCurrentProcessId() }
}

/// The threads (TIDs) owned by `pid`, from a system thread snapshot.
fn thread_ids(pid: u32) -> Result<Vec<u32>, MemoryError> {
    let snap = snapshot(TH32CS_SNAPTHREAD)?;
    // SAFETY: a zeroed THREADENTRY32 is a valid value.
    let mut e: THREADENTRY32 = unsafe { std::mem::zeroed() };
    e.dwSize = size_of::<THREADENTRY32>() as u32;
    let mut out = Vec::new();
    let mut seen = 0usize;
    // SAFETY: valid snapshot handle and sized entry.
    let mut ok = unsafe { Thread32First(snap.raw(), &mut e) };
    while ok != 0 && out.len() < MAX_THREADS && seen < MAX_THREADS * 64 {
        seen += 1;
        if e.th32OwnerProcessID == pid {
            out.push(e.th32ThreadID);
        }
        // SAFETY: as above.
        ok = unsafe { Thread32Next(snap.raw(), &mut e) };
    }
    Ok(out)
}

/// `QueryDosDeviceW` for the drives A: to Z:.
fn dos_devices() -> Vec<DosDevice> {
    let mut out = Vec::new();
    for letter in b'A'..=b'Z' {
        let drive = format!("{}:", letter as char);
        let name: Vec<u16> = drive.encode_utf16().chain(std::iter::once(0)).collect();
        let mut buf = vec![0u16; 1024];
        // SAFETY: `name` is NUL-terminated; `buf` holds `buf.len()` u16s.
        let n = unsafe { QueryDosDeviceW(name.as_ptr(), buf.as_mut_ptr(), buf.len() as u32) };
        if n == 0 {
            continue;
        }
        if let Some(device) = paths::first_multi_sz(buf.get(..n as usize).unwrap_or(&[])) {
            out.push(DosDevice { drive, device });
        }
    }
    out
}

/// `THREAD_BASIC_INFORMATION` (ntdll; not in windows-sys).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct ThreadBasicInfo {
    exit_status: i32,
    teb_base: usize,
    unique_process: usize,
    unique_thread: usize,
    affinity_mask: usize,
    priority: i32,
    base_priority: i32,
}

/// `CONTEXT` needs 16-byte alignment on x64; windows-sys declares it without.
#[repr(C, align(16))]
struct AlignedContext(CONTEXT);

/// How the module list (PEB loader list) compares with the mapped-image regions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleCrossCheck {
    /// Whether both lists were available, so the comparison was made.
    pub compared: bool,
    /// `MEM_IMAGE` allocations (base, mapped file) that no loader entry names: a module
    /// unlinked from the loader list, or an image mapped by hand.
    pub images_not_in_loader_list: Vec<(u64, Option<PathBuf>)>,
    /// Loader entries whose base is not the start of a `MEM_IMAGE` allocation: a module entry
    /// pointing at private memory (reflective loading, hollowing) or a forged entry.
    pub loader_entries_without_image: Vec<Module>,
}

/// A live Windows process, opened read-only.
#[derive(Debug)]
pub struct WindowsProcess {
    pid: u32,
    handle: Handle,
    access: ProcessAccess,
    regions: Availability<Vec<Region>>,
    memory_ranges: Vec<Range<u64>>,
    threads: Availability<Vec<ThreadInfo>>,
    modules: Availability<Vec<Module>>,
    identity: ProcessIdentity,
    cross_check: ModuleCrossCheck,
}

/// Opens process `pid` read-only and takes a snapshot of its regions, threads and modules
/// (memory reads stay live). Access denied and exited processes are errors for this process.
pub fn open(pid: u32) -> Result<WindowsProcess, MemoryError> {
    let handle = open_process(pid, ProcessAccess::Scan)?;
    if has_exited(&handle) {
        return Err(MemoryError::ProcessGone {
            pid,
            detail: "the process has exited".into(),
        });
    }
    let mut p = WindowsProcess {
        pid,
        handle,
        access: ProcessAccess::Scan,
        regions: Availability::unavailable("not read yet"),
        memory_ranges: Vec::new(),
        threads: Availability::unavailable("not read yet"),
        modules: Availability::unavailable("not read yet"),
        identity: ProcessIdentity {
            pid,
            windows_pid: Some(pid),
            linux_pid: None,
            image_path: None,
            command_line: None,
            parent_pid: None,
            peb_address: None,
            peb_image_base: None,
            arch: Arch::Unknown,
            source: SourceKind::WindowsLive,
            linux_comm: None,
            notes: Vec::new(),
        },
        cross_check: ModuleCrossCheck::default(),
    };
    p.fill_regions()?;
    p.fill_identity_and_modules();
    p.fill_threads();
    p.cross_check_modules();
    p.identity.notes.push(format!(
        "opened with access {:#x} ({})",
        p.access.mask(),
        p.access.purpose()
    ));
    Ok(p)
}

/// One `VirtualQueryEx` answer.
#[derive(Clone, Copy, Debug)]
struct Mbi {
    base: u64,
    allocation_base: u64,
    allocation_protect: u32,
    size: u64,
    state: u32,
    protect: u32,
    kind: u32,
}

impl Mbi {
    fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    fn readable(&self) -> bool {
        self.state == MEM_COMMIT && Protection(self.protect).readable()
    }
}

fn query(h: &Handle, addr: u64) -> Result<Option<Mbi>, io::Error> {
    if addr >= USER_END {
        return Ok(None);
    }
    // SAFETY: a zeroed MEMORY_BASIC_INFORMATION is valid (pointers and integers).
    let mut m: MEMORY_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: `h` is a valid process handle; `m` is a valid out buffer of the given size.
    let n = unsafe {
        VirtualQueryEx(
            h.raw(),
            addr as usize as *const c_void,
            &mut m,
            size_of::<MEMORY_BASIC_INFORMATION>(),
        )
    };
    if n == 0 {
        let e = last_error();
        if e.raw_os_error() == Some(ERROR_INVALID_PARAMETER as i32) {
            return Ok(None); // above the highest user address
        }
        return Err(e);
    }
    Ok(Some(Mbi {
        base: m.BaseAddress as usize as u64,
        allocation_base: m.AllocationBase as usize as u64,
        allocation_protect: m.AllocationProtect,
        size: m.RegionSize as u64,
        state: m.State,
        protect: m.Protect,
        kind: m.Type,
    }))
}

fn mapped_file_name(h: &Handle, addr: u64) -> Option<String> {
    let mut buf = vec![0u16; 1024];
    // SAFETY: `buf` holds `buf.len()` u16s; `h` is a valid process handle.
    let n = unsafe {
        K32GetMappedFileNameW(
            h.raw(),
            addr as usize as *const c_void,
            buf.as_mut_ptr(),
            buf.len() as u32,
        )
    };
    if n == 0 {
        return None;
    }
    let s = paths::from_wide(buf.get(..n as usize).unwrap_or(&[]));
    (!s.is_empty()).then_some(s)
}

impl WindowsProcess {
    /// Windows PID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The access mask the scan handle was opened with.
    pub fn access_mask(&self) -> u32 {
        self.access.mask()
    }

    /// Loader list vs mapped images.
    pub fn module_cross_check(&self) -> &ModuleCrossCheck {
        &self.cross_check
    }

    fn gone_or<E>(&self, e: E) -> MemoryError
    where
        E: FnOnce() -> MemoryError,
    {
        if has_exited(&self.handle) {
            MemoryError::ProcessGone {
                pid: self.pid,
                detail: "the process exited during the scan".into(),
            }
        } else {
            e()
        }
    }

    fn list_regions(&self) -> Result<Vec<Region>, io::Error> {
        let devices = dos_devices();
        let mut names: std::collections::HashMap<u64, Option<PathBuf>> =
            std::collections::HashMap::new();
        let mut out = Vec::new();
        let mut addr = 0u64;
        while out.len() < MAX_REGIONS {
            let Some(m) = query(&self.handle, addr)? else {
                break;
            };
            let next = m.end();
            if m.size == 0 || next <= addr {
                break;
            }
            if m.state != MEM_FREE {
                let kind = RegionKind::from_raw(m.kind);
                let path = if matches!(kind, RegionKind::Image | RegionKind::Mapped) {
                    names
                        .entry(m.allocation_base)
                        .or_insert_with(|| {
                            mapped_file_name(&self.handle, m.base).map(|nt| {
                                PathBuf::from(paths::nt_to_dos(&nt, &devices).unwrap_or(nt))
                            })
                        })
                        .clone()
                } else {
                    None
                };
                out.push(Region {
                    base: m.base,
                    size: m.size,
                    protection: Protection(m.protect),
                    allocation_base: Some(m.allocation_base),
                    allocation_protection: Some(Protection(m.allocation_protect)),
                    state: RegionState::from_raw(m.state),
                    kind,
                    anonymous: Some(path.is_none()),
                    path,
                    backing: None,
                    pseudo_path: None,
                });
            }
            addr = next;
        }
        Ok(out)
    }

    fn fill_regions(&mut self) -> Result<(), MemoryError> {
        let regions = match self.list_regions() {
            Ok(r) => Ok(r),
            Err(e) if e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) => {
                // VirtualQueryEx refused the limited handle: retry with the documented right.
                match open_process(self.pid, ProcessAccess::ScanFallback) {
                    Ok(h) => {
                        self.handle = h;
                        self.access = ProcessAccess::ScanFallback;
                        self.identity.notes.push(
                            "VirtualQueryEx refused PROCESS_QUERY_LIMITED_INFORMATION; reopened with PROCESS_QUERY_INFORMATION | PROCESS_VM_READ".into(),
                        );
                        self.list_regions()
                    }
                    Err(_) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        match regions {
            Ok(r) => {
                self.memory_ranges = preentry_memory::merge_ranges(
                    r.iter()
                        .filter(|r| r.state == RegionState::Commit && r.protection.readable())
                        .map(|r| r.range())
                        .collect(),
                );
                self.regions = Availability::Available(r);
                Ok(())
            }
            Err(e) => {
                let pid = self.pid;
                Err(self.gone_or(|| process_error(pid, "VirtualQueryEx", e)))
            }
        }
    }

    fn fill_identity_and_modules(&mut self) {
        let mut notes = std::mem::take(&mut self.identity.notes);
        let mut wow = 0i32;
        // SAFETY: valid process handle; `wow` is a valid out pointer.
        let wow_ok = unsafe { IsWow64Process(self.handle.raw(), &mut wow) };
        if wow_ok != 0 && wow != 0 {
            self.identity.arch = Arch::X86;
            notes.push("32-bit (WoW64) process: the 32-bit PEB is not read (not supported)".into());
            self.modules = Availability::unavailable(
                "32-bit (WoW64) process: 32-bit PEB loader lists are not supported",
            );
        } else {
            self.identity.arch = Arch::X64;
        }
        // SAFETY: a zeroed PROCESS_BASIC_INFORMATION is valid (pointer and integers).
        let mut pbi: PROCESS_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
        let mut ret = 0u32;
        // SAFETY: `pbi` is a valid out buffer of the size passed.
        let status = unsafe {
            NtQueryInformationProcess(
                self.handle.raw(),
                ProcessBasicInformation,
                (&mut pbi as *mut PROCESS_BASIC_INFORMATION).cast(),
                size_of::<PROCESS_BASIC_INFORMATION>() as u32,
                &mut ret,
            )
        };
        let mut peb_addr = None;
        if status >= 0 {
            let peb = pbi.PebBaseAddress as usize as u64;
            if peb != 0 {
                peb_addr = Some(peb);
            }
            let parent = pbi.InheritedFromUniqueProcessId as u64;
            self.identity.parent_pid = u32::try_from(parent).ok().filter(|p| *p != 0);
        } else {
            notes.push(format!(
                "NtQueryInformationProcess(ProcessBasicInformation) failed: NTSTATUS {:#010x}",
                status as u32
            ));
        }
        self.identity.peb_address = peb_addr;
        if self.identity.arch == Arch::X64
            && let Some(peb_addr) = peb_addr
        {
            match peb::read_peb(self, peb_addr) {
                Ok(info) => {
                    self.modules = peb::peb_facts(self, info, &mut notes).apply(&mut self.identity);
                }
                Err(e) => {
                    notes.push(format!("PEB at {peb_addr:#x} unreadable: {e}"));
                    self.modules = Availability::unavailable(format!("PEB unreadable: {e}"));
                }
            }
        } else if self.identity.arch == Arch::X64 {
            self.modules = Availability::unavailable("PEB address unknown");
        }
        if self.identity.image_path.is_none() {
            match full_image_name(&self.handle) {
                Ok(p) => self.identity.image_path = Some(p),
                Err(e) => notes.push(format!("QueryFullProcessImageNameW failed: {e}")),
            }
        }
        self.identity.notes = notes;
    }

    fn fill_threads(&mut self) {
        let tids = match thread_ids(self.pid) {
            Ok(t) => t,
            Err(e) => {
                self.threads = Availability::unavailable(format!("thread snapshot failed: {e}"));
                return;
            }
        };
        let mut threads: Vec<(u64, ThreadInfo)> = Vec::with_capacity(tids.len());
        for tid in tids {
            threads.push(self.thread_info(tid));
        }
        // Oldest first, so the initial thread leads (what the pre-entry checks look at);
        // threads whose creation time is unknown go last, in snapshot order.
        threads.sort_by_key(|(created, _)| *created);
        self.threads = Availability::Available(threads.into_iter().map(|(_, t)| t).collect());
    }

    /// The thread's facts and its creation time (`u64::MAX` when unknown).
    fn thread_info(&self, tid: u32) -> (u64, ThreadInfo) {
        let unavailable = |why: String| ThreadInfo {
            tid,
            windows_tid: Some(tid),
            linux_tid: None,
            teb: None,
            start_address: Availability::unavailable(why.clone()),
            instruction_pointer: Availability::unavailable(why.clone()),
            context: Availability::unavailable(why.clone()),
            suspend_count: Availability::unavailable(why),
            stack: None,
        };
        let (h, can_context) = match open_thread(tid, ThreadAccess::Query) {
            Ok(h) => (h, true),
            Err(_) => match open_thread(tid, ThreadAccess::QueryLimited) {
                Ok(h) => (h, false),
                Err(e) => {
                    return (
                        u64::MAX,
                        unavailable(format!("OpenThread of thread {tid} failed: {e}")),
                    );
                }
            },
        };
        let created = creation_time(&h).unwrap_or(u64::MAX);
        let mut tbi = ThreadBasicInfo::default();
        let teb = match query_thread(&h, ThreadBasicInformation, &mut tbi) {
            Ok(()) if tbi.teb_base != 0 => Some(tbi.teb_base as u64),
            _ => None,
        };
        let mut start = 0usize;
        let start_address = match query_thread(&h, ThreadQuerySetWin32StartAddress, &mut start) {
            Ok(()) => Availability::Available(start as u64),
            Err(STATUS_ACCESS_DENIED) => {
                // Some Windows versions want THREAD_QUERY_INFORMATION for this class.
                match open_thread(tid, ThreadAccess::QueryFull) {
                    Ok(h2) => {
                        match query_thread(&h2, ThreadQuerySetWin32StartAddress, &mut start) {
                            Ok(()) => Availability::Available(start as u64),
                            Err(s) => Availability::unavailable(format!(
                                "NtQueryInformationThread(ThreadQuerySetWin32StartAddress) failed: NTSTATUS {:#010x}",
                                s as u32
                            )),
                        }
                    }
                    Err(e) => Availability::unavailable(format!(
                        "ThreadQuerySetWin32StartAddress needs THREAD_QUERY_INFORMATION, refused: {e}"
                    )),
                }
            }
            Err(s) => Availability::unavailable(format!(
                "NtQueryInformationThread(ThreadQuerySetWin32StartAddress) failed: NTSTATUS {:#010x}",
                s as u32
            )),
        };
        let mut count = 0u32;
        let suspend_count = match query_thread(&h, ThreadSuspendCount, &mut count) {
            Ok(()) => Availability::Available(count),
            Err(s) => Availability::unavailable(format!(
                "NtQueryInformationThread(ThreadSuspendCount) failed (Windows 8.1 and later only): NTSTATUS {:#010x}",
                s as u32
            )),
        };
        let context = if can_context {
            thread_context(&h)
        } else {
            Availability::unavailable("THREAD_GET_CONTEXT refused")
        };
        let stack = teb.and_then(|t| {
            let base = self.read_u64(t.checked_add(peb::TEB_STACK_BASE)?).ok()?;
            let limit = self.read_u64(t.checked_add(peb::TEB_STACK_LIMIT)?).ok()?;
            (limit < base).then_some(limit..base)
        });
        let info = ThreadInfo {
            tid,
            windows_tid: Some(tid),
            linux_tid: None,
            teb,
            start_address,
            instruction_pointer: context.as_ref().map(|c| c.rip),
            context,
            suspend_count,
            stack,
        };
        (created, info)
    }

    fn cross_check_modules(&mut self) {
        let (Availability::Available(regions), Availability::Available(modules)) =
            (&self.regions, &self.modules)
        else {
            return;
        };
        let mut images: Vec<(u64, Option<PathBuf>)> = Vec::new();
        for r in regions.iter().filter(|r| r.kind == RegionKind::Image) {
            let base = r.allocation_base.unwrap_or(r.base);
            if images.last().is_none_or(|(b, _)| *b != base) {
                images.push((base, r.path.clone()));
            }
        }
        let mut cc = ModuleCrossCheck {
            compared: true,
            ..ModuleCrossCheck::default()
        };
        for (base, path) in &images {
            if !modules.iter().any(|m| m.base == *base) {
                cc.images_not_in_loader_list.push((*base, path.clone()));
            }
        }
        for m in modules {
            if !images.iter().any(|(b, _)| *b == m.base) {
                cc.loader_entries_without_image.push(m.clone());
            }
        }
        if !cc.images_not_in_loader_list.is_empty() {
            let list: Vec<String> = cc
                .images_not_in_loader_list
                .iter()
                .take(8)
                .map(|(b, p)| match p {
                    Some(p) => format!("{b:#x} {}", p.display()),
                    None => format!("{b:#x}"),
                })
                .collect();
            self.identity.notes.push(format!(
                "module cross-check: {} mapped image(s) not in the PEB loader list: {}",
                cc.images_not_in_loader_list.len(),
                list.join(", ")
            ));
        }
        if !cc.loader_entries_without_image.is_empty() {
            let list: Vec<String> = cc
                .loader_entries_without_image
                .iter()
                .take(8)
                .map(|m| format!("{:#x} {}", m.base, m.name))
                .collect();
            self.identity.notes.push(format!(
                "module cross-check: {} loader entr(ies) not at the start of a mapped image: {}",
                cc.loader_entries_without_image.len(),
                list.join(", ")
            ));
        }
        self.cross_check = cc;
    }

    /// Reads one committed readable span; on failure page by page.
    fn read_span(&self, addr: u64, dst: &mut [u8], valid: &mut Vec<Range<u64>>) {
        let n = rpm(&self.handle, addr, dst);
        if n == dst.len() {
            valid.push(addr..addr + n as u64);
            return;
        }
        if n > 0 {
            valid.push(addr..addr + n as u64);
        }
        // Page by page from the first byte not read.
        let mut cur = addr + n as u64;
        let end = addr + dst.len() as u64;
        while cur < end {
            let stop = ((cur | (PAGE - 1)) + 1).min(end);
            let off = (cur - addr) as usize;
            let len = (stop - cur) as usize;
            if let Some(chunk) = dst.get_mut(off..off + len) {
                let got = rpm(&self.handle, cur, chunk);
                if got > 0 {
                    valid.push(cur..cur + got as u64);
                }
            }
            cur = stop;
        }
    }
}

/// `ReadProcessMemory` into `dst`; returns the bytes read (0 on failure).
fn rpm(h: &Handle, addr: u64, dst: &mut [u8]) -> usize {
    if dst.is_empty() {
        return 0;
    }
    let mut got = 0usize;
    // SAFETY: `dst` is a valid writable buffer of `dst.len()` bytes; `got` is a valid out
    // pointer. The source address is in the target process and only read.
    let ok = unsafe {
        ReadProcessMemory(
            h.raw(),
            addr as usize as *const c_void,
            dst.as_mut_ptr().cast(),
            dst.len(),
            &mut got,
        )
    };
    if ok != 0 {
        dst.len()
    } else {
        got.min(dst.len())
    }
}

/// `NtQueryInformationThread` for a fixed-size class; `Err(NTSTATUS)` on failure.
fn query_thread<T>(h: &Handle, class: i32, out: &mut T) -> Result<(), i32> {
    let mut ret = 0u32;
    // SAFETY: `out` is a valid writable `T` and its size is passed; `h` is a thread handle.
    let status = unsafe {
        NtQueryInformationThread(
            h.raw(),
            class,
            (out as *mut T).cast(),
            size_of::<T>() as u32,
            &mut ret,
        )
    };
    if status >= 0 { Ok(()) } else { Err(status) }
}

/// `GetThreadTimes` creation time (100 ns units since 1601).
fn creation_time(h: &Handle) -> Option<u64> {
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut c, mut e, mut k, mut u) = (zero, zero, zero, zero);
    // SAFETY: `h` is a thread handle with THREAD_QUERY_LIMITED_INFORMATION; the four out
    // pointers are valid FILETIMEs.
    let ok = unsafe { GetThreadTimes(h.raw(), &mut c, &mut e, &mut k, &mut u) };
    (ok != 0).then(|| (u64::from(c.dwHighDateTime) << 32) | u64::from(c.dwLowDateTime))
}

fn thread_context(h: &Handle) -> Availability<ThreadContext> {
    // SAFETY: a zeroed CONTEXT is valid (integers and arrays).
    let mut ctx = AlignedContext(unsafe { std::mem::zeroed() });
    ctx.0.ContextFlags = CONTEXT_FULL_AMD64;
    // SAFETY: `ctx` is a 16-byte aligned CONTEXT with ContextFlags set; `h` has
    // THREAD_GET_CONTEXT.
    let ok = unsafe { GetThreadContext(h.raw(), &mut ctx.0) };
    if ok == 0 {
        return Availability::unavailable(format!("GetThreadContext failed: {}", last_error()));
    }
    let c = &ctx.0;
    Availability::Available(ThreadContext {
        rip: c.Rip,
        rsp: c.Rsp,
        rcx: c.Rcx,
        rdx: c.Rdx,
        rax: c.Rax,
        rbx: c.Rbx,
        rbp: c.Rbp,
        rsi: c.Rsi,
        rdi: c.Rdi,
        r8: c.R8,
        r9: c.R9,
        eflags: c.EFlags,
        cs: c.SegCs,
        kind: ContextKind::Captured,
        origin: "GetThreadContext (live Windows thread; exact while the thread is suspended, a sample otherwise)",
    })
}

fn full_image_name(h: &Handle) -> Result<String, io::Error> {
    let mut buf = vec![0u16; 32768];
    let mut n = buf.len() as u32;
    // SAFETY: `buf` holds `n` u16s; `n` is a valid in/out pointer.
    let ok = unsafe {
        QueryFullProcessImageNameW(h.raw(), PROCESS_NAME_WIN32, buf.as_mut_ptr(), &mut n)
    };
    if ok == 0 {
        return Err(last_error());
    }
    Ok(paths::from_wide(buf.get(..n as usize).unwrap_or(&[])))
}

impl MemoryReader for WindowsProcess {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<ReadResult, MemoryError> {
        let len = buf.len() as u64;
        let end = addr
            .checked_add(len)
            .ok_or(MemoryError::AddressOverflow { addr, len })?;
        buf.fill(0);
        let mut valid = Vec::new();
        let mut cur = addr;
        // Bounded: every iteration moves `cur` to the end of a region (at least one page on).
        while cur < end {
            let m = match query(&self.handle, cur) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    let pid = self.pid;
                    return Err(self.gone_or(|| process_error(pid, "VirtualQueryEx", e)));
                }
            };
            let stop = m.end().min(end);
            if stop <= cur {
                break;
            }
            // Guard and no-access pages are never touched: reading them could change them.
            if m.readable() {
                let off = (cur - addr) as usize;
                let n = (stop - cur) as usize;
                if let Some(dst) = buf.get_mut(off..off + n) {
                    self.read_span(cur, dst, &mut valid);
                }
            }
            cur = stop;
        }
        if valid.is_empty() && len > 0 && has_exited(&self.handle) {
            return Err(MemoryError::ProcessGone {
                pid: self.pid,
                detail: "the process exited during the scan".into(),
            });
        }
        Ok(ReadResult::from_valid(addr, len, valid))
    }
}

impl ProcessMemory for WindowsProcess {
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
        let name = self
            .identity
            .image_path
            .as_deref()
            .map(preentry_memory::file_name_of)
            .unwrap_or("?");
        format!("Windows process {name} (PID {})", self.pid)
    }
}

/// `winerror` text for a code, for messages.
pub(crate) fn error_text(code: u32) -> String {
    win_error(code).to_string()
}

/// The last Win32 error code.
pub(crate) fn last_error_code() -> u32 {
    // SAFETY: no arguments.
    unsafe { GetLastError() }
}

#[cfg(test)]
mod tests {
    //! Run on Windows, or under Wine: `CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine64 cargo
    //! test --target x86_64-pc-windows-gnu -p preentry-memory-windows` (WINEPREFIX with the
    //! lab's bcryptprimitives shim).
    use super::*;

    static MARKER: [u8; 24] = *b"preentry-windows-marker!";

    #[test]
    fn own_process_through_the_api() {
        let p = open(own_pid()).unwrap_or_else(|e| panic!("open self: {e}"));
        // Memory: a static of this test exe, read through ReadProcessMemory.
        let addr = MARKER.as_ptr() as u64;
        let mut buf = [0u8; 24];
        p.read_exact_at(addr, &mut buf)
            .unwrap_or_else(|e| panic!("read: {e}"));
        assert_eq!(&buf, &MARKER);
        // Regions: the static lies in a MEM_IMAGE view of this exe.
        let r = p.region_at(addr).unwrap_or_else(|| panic!("no region"));
        assert_eq!(r.kind, RegionKind::Image, "{r:?}");
        let exe = std::env::current_exe().unwrap_or_default();
        let name = exe.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let mapped = r
            .path
            .as_ref()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .unwrap_or("");
        assert!(mapped.eq_ignore_ascii_case(name), "{mapped} vs {name}");
        // Identity and modules: PEB image base is the first loader entry, and it is mapped.
        let id = p.identity();
        assert_eq!(id.arch, Arch::X64);
        let base = id.peb_image_base.unwrap_or(0);
        let mods = p.modules().available().unwrap_or_default();
        assert!(mods.iter().any(|m| m.base == base), "{mods:?}");
        assert!(
            mods.iter()
                .any(|m| m.name.eq_ignore_ascii_case("ntdll.dll"))
        );
        let cc = p.module_cross_check();
        assert!(cc.compared);
        assert!(cc.loader_entries_without_image.is_empty(), "{cc:?}");
        // Threads: this thread, running (suspend count 0), with a TEB and a start address.
        // SAFETY: no arguments.
        let me = unsafe { windows_sys::Win32::System::Threading::GetCurrentThreadId() };
        let threads = p.threads().available().unwrap_or_default();
        // The initial thread comes first: it started at the exe's entry point.
        let e_lfanew = u64::from(p.read_u32(base + 0x3c).unwrap_or(0));
        let entry_rva = u64::from(p.read_u32(base + e_lfanew + 0x28).unwrap_or(0));
        let first = threads.first().unwrap_or_else(|| panic!("no threads"));
        assert_eq!(
            first.start_address,
            Availability::Available(base + entry_rva),
            "{threads:?}"
        );
        let t = threads
            .iter()
            .find(|t| t.tid == me)
            .unwrap_or_else(|| panic!("thread {me} not listed: {threads:?}"));
        assert!(t.teb.is_some());
        assert_eq!(t.suspend_count, Availability::Available(0));
        assert!(t.start_address.is_available(), "{:?}", t.start_address);
    }

    #[test]
    fn unreadable_ranges_are_listed_not_errors() {
        let p = open(own_pid()).unwrap_or_else(|e| panic!("open self: {e}"));
        let mut buf = vec![0xAAu8; 0x3000];
        // The first pages of the address space are never mapped.
        let res = p.read(0x1000, &mut buf).unwrap_or_else(|e| panic!("{e}"));
        assert!(res.valid.is_empty());
        assert_eq!(res.unreadable, vec![0x1000..0x4000]);
        assert!(buf.iter().all(|b| *b == 0));
        // Straddling the end of a readable static and whatever follows is at worst partial.
        let a = MARKER.as_ptr() as u64;
        let r = p.read_range(a, 24, 24).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.result.is_complete());
        // Past the user address space: nothing read, no panic, no error.
        let r = p
            .read(USER_END - 8, &mut [0u8; 16])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(r.valid.is_empty());
    }

    #[test]
    fn missing_process_is_a_per_process_error() {
        // PIDs are multiples of 4; this one does not exist.
        match open(0x7fff_fff1) {
            Err(MemoryError::ProcessGone { .. }) | Err(MemoryError::AccessDenied { .. }) => {}
            other => panic!("{other:?}"),
        }
        let list = list_processes().unwrap_or_else(|e| panic!("{e}"));
        assert!(!list.iter().any(|p| p.pid == own_pid()));
    }
}
