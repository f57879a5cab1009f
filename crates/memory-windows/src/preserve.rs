//! Evidence preservation (compiled on Windows only): suspend a process (`--suspend`) and write
//! a full-memory minidump of it (`--preserve`). Each opens its own handle with its own fixed
//! mask ([`ProcessAccess::Suspend`], [`ProcessAccess::Preserve`]); the scan handle is never
//! widened.

use std::os::windows::io::AsRawHandle as _;
use std::path::{Path, PathBuf};

use preentry_memory::MemoryError;
use preentry_memory::ProcessMemory as _;
use windows_sys::Win32::Foundation::{HANDLE, NTSTATUS};
use windows_sys::Win32::System::Diagnostics::Debug::{
    MINIDUMP_TYPE, MINIDUMP_USER_STREAM, MINIDUMP_USER_STREAM_INFORMATION, MiniDumpWithFullMemory,
    MiniDumpWithFullMemoryInfo, MiniDumpWithThreadInfo, MiniDumpWithUnloadedModules,
    MiniDumpWriteDump,
};
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};

use crate::access::ProcessAccess;
use crate::live::{error_text, last_error_code, open_process};
use crate::streams;

windows_link::link!("ntdll.dll" "system" fn NtSuspendProcess(processhandle : HANDLE) -> NTSTATUS);

/// The minidump content: all committed memory, the region list (MemoryInfoList, so region
/// types and protections survive), thread contexts plus ThreadInfoList (start addresses),
/// modules and unloaded modules. No handle data (that would need `PROCESS_DUP_HANDLE`).
pub const DUMP_TYPE: MINIDUMP_TYPE = MiniDumpWithFullMemory
    | MiniDumpWithFullMemoryInfo
    | MiniDumpWithThreadInfo
    | MiniDumpWithUnloadedModules;

/// Suspends every thread of process `pid` (`NtSuspendProcess`) through a handle opened with
/// `PROCESS_SUSPEND_RESUME` only. The process stays suspended after preentry exits; resume it
/// with a debugger, Process Explorer or `NtResumeProcess`.
pub fn suspend_process(pid: u32) -> Result<(), MemoryError> {
    let h = open_process(pid, ProcessAccess::Suspend)?;
    // SAFETY: `h` is a valid process handle with PROCESS_SUSPEND_RESUME.
    let status = unsafe { NtSuspendProcess(h.raw()) };
    if status < 0 {
        return Err(MemoryError::Io {
            path: PathBuf::from(format!("NtSuspendProcess (pid {pid})")),
            source: std::io::Error::other(format!("NTSTATUS {:#010x}", status as u32)),
        });
    }
    Ok(())
}

/// Whether preentry runs under Wine (ntdll exports `wine_get_version`).
pub fn running_under_wine() -> bool {
    let name: Vec<u16> = "ntdll.dll"
        .encode_utf16()
        .chain(std::iter::once(0))
        .collect();
    // SAFETY: `name` is NUL-terminated; ntdll is always loaded; the handle is not freed.
    let ntdll = unsafe { GetModuleHandleW(name.as_ptr()) };
    if ntdll.is_null() {
        return false;
    }
    // SAFETY: valid module handle and a NUL-terminated ASCII name; the address is not called.
    unsafe { GetProcAddress(ntdll, c"wine_get_version".as_ptr().cast()) }.is_some()
}

/// The MemoryInfoList and ThreadInfoList user streams for a dump of `pid`, from preentry's own
/// read-only view of it (see [`crate::streams`]), or why not.
fn own_info_streams(pid: u32) -> Result<Vec<(u32, Vec<u8>)>, MemoryError> {
    let p = crate::live::open(pid)?;
    let mut out = Vec::new();
    if let Some(regions) = p.regions().available() {
        out.push((
            streams::MEMORY_INFO_LIST_STREAM,
            streams::memory_info_list(regions),
        ));
    }
    if let Some(threads) = p.threads().available() {
        out.push((
            streams::THREAD_INFO_LIST_STREAM,
            streams::thread_info_list(threads),
        ));
    }
    Ok(out)
}

/// Writes a full-memory minidump of process `pid` to `out` (created new; an existing file is
/// an error) and returns its size. Opens the process with
/// `PROCESS_QUERY_INFORMATION | PROCESS_VM_READ`. Under Wine, whose `MiniDumpWriteDump` omits
/// them, the MemoryInfoList and ThreadInfoList streams are added from preentry's own view of
/// the process (taken just before the dump; exact when the process is suspended). Note that `MiniDumpWriteDump` itself
/// briefly suspends each thread (dbghelp opens the threads to read their contexts), as it does
/// for every dump tool; it writes nothing into the process.
pub fn write_minidump(pid: u32, out: &Path) -> Result<u64, MemoryError> {
    let extra = if running_under_wine() {
        own_info_streams(pid)?
    } else {
        Vec::new()
    };
    let mut user: Vec<MINIDUMP_USER_STREAM> = extra
        .iter()
        .map(|(ty, bytes)| MINIDUMP_USER_STREAM {
            Type: *ty,
            BufferSize: bytes.len() as u32,
            Buffer: bytes.as_ptr() as *mut std::ffi::c_void,
        })
        .collect();
    let info = MINIDUMP_USER_STREAM_INFORMATION {
        UserStreamCount: user.len() as u32,
        UserStreamArray: user.as_mut_ptr(),
    };
    let h = open_process(pid, ProcessAccess::Preserve)?;
    let io_err = |source: std::io::Error| MemoryError::Io {
        path: out.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(io_err)?;
    // SAFETY: `h` is a valid process handle with the rights MiniDumpWriteDump documents; the
    // file handle is valid and writable for the duration of the call; `info` points at
    // `user`, whose buffers point into `extra`, all alive until the call returns (dbghelp
    // only reads them); the exception and callback pointers are NULL.
    let ok = unsafe {
        MiniDumpWriteDump(
            h.raw(),
            pid,
            file.as_raw_handle() as HANDLE,
            DUMP_TYPE,
            std::ptr::null(),
            if user.is_empty() {
                std::ptr::null()
            } else {
                &info
            },
            std::ptr::null(),
        )
    };
    if ok == 0 {
        let code = last_error_code();
        drop(file);
        let _ = std::fs::remove_file(out);
        return Err(MemoryError::Io {
            path: out.to_path_buf(),
            source: std::io::Error::other(format!(
                "MiniDumpWriteDump of pid {pid} failed: {code:#x} {}",
                error_text(code & 0xffff)
            )),
        });
    }
    file.sync_all().map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    Ok(len)
}
