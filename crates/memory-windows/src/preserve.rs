//! Evidence preservation (compiled on Windows only): suspend a process (`--suspend`) and write
//! a full-memory minidump of it (`--preserve`). Each opens its own handle with its own fixed
//! mask ([`ProcessAccess::Suspend`], [`ProcessAccess::Preserve`]); the scan handle is never
//! widened.

use std::os::windows::io::AsRawHandle as _;
use std::path::{Path, PathBuf};

use preentry_memory::MemoryError;
use windows_sys::Win32::Foundation::{HANDLE, NTSTATUS};
use windows_sys::Win32::System::Diagnostics::Debug::{
    MINIDUMP_TYPE, MiniDumpWithFullMemory, MiniDumpWithFullMemoryInfo, MiniDumpWithThreadInfo,
    MiniDumpWithUnloadedModules, MiniDumpWriteDump,
};

use crate::access::ProcessAccess;
use crate::live::{error_text, last_error_code, open_process};

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

/// Writes a full-memory minidump of process `pid` to `out` (created new; an existing file is
/// an error) and returns its size. Opens the process with
/// `PROCESS_QUERY_INFORMATION | PROCESS_VM_READ`. Note that `MiniDumpWriteDump` itself
/// briefly suspends each thread (dbghelp opens the threads to read their contexts), as it does
/// for every dump tool; it writes nothing into the process.
pub fn write_minidump(pid: u32, out: &Path) -> Result<u64, MemoryError> {
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
    // file handle is valid and writable for the duration of the call; the optional pointers
    // are NULL.
    let ok = unsafe {
        MiniDumpWriteDump(
            h.raw(),
            pid,
            file.as_raw_handle() as HANDLE,
            DUMP_TYPE,
            std::ptr::null(),
            std::ptr::null(),
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
