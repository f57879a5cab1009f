//! A live Windows process source for the `preentry-memory` interface, read-only.
//!
//! On Windows, [`open`] returns a `WindowsProcess` that implements
//! [`preentry_memory::ProcessMemory`] like the minidump and Wine `/proc` sources:
//!
//! * **processes**: [`list_processes`] (`CreateToolhelp32Snapshot`; under Wine: every process
//!   of the same wineserver, i.e. the same prefix); preentry itself is left out;
//! * **handle**: `OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_VM_READ)`; only when
//!   `VirtualQueryEx` refuses that handle (its documentation asks for
//!   `PROCESS_QUERY_INFORMATION`) it is reopened with `PROCESS_QUERY_INFORMATION |
//!   PROCESS_VM_READ`, and the identity notes say so. Never any write, operation, thread
//!   creation or `PROCESS_ALL_ACCESS` right: see [`access`];
//! * **regions**: `VirtualQueryEx` over the user address space (free space left out), with
//!   `MEM_IMAGE`/`MEM_MAPPED`/`MEM_PRIVATE`, protections, allocation base/protection and, for
//!   image and mapped views, the file from `GetMappedFileNameW` turned into a DOS path
//!   (`QueryDosDeviceW`);
//! * **memory**: `ReadProcessMemory`, region by region (live `VirtualQueryEx`), page by page
//!   where a region fails; guard and no-access pages are never read (a read could clear a
//!   guard); unreadable bytes are listed, not guessed;
//! * **identity**: PEB address and parent PID from
//!   `NtQueryInformationProcess(ProcessBasicInformation)`, image path and command line from
//!   the PEB's process parameters (`QueryFullProcessImageNameW` as fallback), WoW64 from
//!   `IsWow64Process` (32-bit PEBs are not read);
//! * **modules**: the PEB loader list read from memory with [`preentry_memory::peb`], then
//!   cross-checked against the `MEM_IMAGE` allocations (`ModuleCrossCheck`; mismatches are
//!   also identity notes);
//! * **threads**: the thread snapshot; per thread `OpenThread(THREAD_QUERY_LIMITED_INFORMATION
//!   | THREAD_GET_CONTEXT)`, TEB (`ThreadBasicInformation`), Win32 start address
//!   (`ThreadQuerySetWin32StartAddress`, retried with `THREAD_QUERY_INFORMATION` where the
//!   limited right is refused), suspend count (`ThreadSuspendCount`, Windows 8.1+) and
//!   `GetThreadContext` ([`preentry_memory::ContextKind::Captured`]); whatever fails is
//!   `Unavailable` with the reason;
//! * **errors**: access denied (other users' processes without `SeDebugPrivilege`, protected
//!   processes) and exited processes are [`preentry_memory::MemoryError`]s for that process.
//!
//! `suspend_process` (`--suspend`, `PROCESS_SUSPEND_RESUME` only) and `write_minidump`
//! (`--preserve`, `PROCESS_QUERY_INFORMATION | PROCESS_VM_READ`) open their own handles.
//!
//! `enable_debug_privilege` enables `SeDebugPrivilege` in preentry's own token when it holds
//! it (administrators), so that other users' and service processes can be opened.
//!
//! On other targets only the platform-independent parts ([`access`], [`paths`]) are built.

pub mod access;
pub mod paths;
pub mod streams;

#[cfg(windows)]
mod live;
#[cfg(windows)]
mod preserve;
#[cfg(windows)]
mod privilege;

#[cfg(windows)]
pub use live::{
    MAX_PROCESSES, MAX_REGIONS, MAX_THREADS, ModuleCrossCheck, WindowsProcess, WindowsProcessRef,
    list_processes, open, own_pid,
};
#[cfg(windows)]
pub use preserve::{DUMP_TYPE, running_under_wine, suspend_process, write_minidump};
#[cfg(windows)]
pub use privilege::{DebugPrivilege, enable_debug_privilege};
