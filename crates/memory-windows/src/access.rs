//! Every access mask the Windows source ever asks for, in one place.
//!
//! `OpenProcess` and `OpenThread` are called in exactly one function each (`open_process`,
//! `open_thread` in the live module), and those functions take a [`ProcessAccess`] /
//! [`ThreadAccess`], not a raw mask: the masks below are the only ones preentry can request.
//! The unit tests check that none of them carries a right that can change the target (write or
//! operate on its memory, create threads, set contexts, terminate, duplicate handles, change
//! security), and the lab test `crates/cli/tests/windows_lab.rs` checks the masks wineserver
//! actually saw.
//!
//! The values are the documented `winnt.h` constants, written out so that this module (and its
//! tests) also builds on Linux; on Windows a test compares them with `windows-sys`.

/// `PROCESS_TERMINATE`.
pub const PROCESS_TERMINATE: u32 = 0x0001;
/// `PROCESS_CREATE_THREAD`.
pub const PROCESS_CREATE_THREAD: u32 = 0x0002;
/// `PROCESS_SET_SESSIONID`.
pub const PROCESS_SET_SESSIONID: u32 = 0x0004;
/// `PROCESS_VM_OPERATION` (VirtualProtectEx, VirtualAllocEx, ...): never requested.
pub const PROCESS_VM_OPERATION: u32 = 0x0008;
/// `PROCESS_VM_READ`: ReadProcessMemory.
pub const PROCESS_VM_READ: u32 = 0x0010;
/// `PROCESS_VM_WRITE`: never requested.
pub const PROCESS_VM_WRITE: u32 = 0x0020;
/// `PROCESS_DUP_HANDLE`.
pub const PROCESS_DUP_HANDLE: u32 = 0x0040;
/// `PROCESS_CREATE_PROCESS`.
pub const PROCESS_CREATE_PROCESS: u32 = 0x0080;
/// `PROCESS_SET_QUOTA`.
pub const PROCESS_SET_QUOTA: u32 = 0x0100;
/// `PROCESS_SET_INFORMATION`.
pub const PROCESS_SET_INFORMATION: u32 = 0x0200;
/// `PROCESS_QUERY_INFORMATION`.
pub const PROCESS_QUERY_INFORMATION: u32 = 0x0400;
/// `PROCESS_SUSPEND_RESUME`.
pub const PROCESS_SUSPEND_RESUME: u32 = 0x0800;
/// `PROCESS_QUERY_LIMITED_INFORMATION`.
pub const PROCESS_QUERY_LIMITED_INFORMATION: u32 = 0x1000;
/// `DELETE`.
pub const DELETE: u32 = 0x0001_0000;
/// `WRITE_DAC`.
pub const WRITE_DAC: u32 = 0x0004_0000;
/// `WRITE_OWNER`.
pub const WRITE_OWNER: u32 = 0x0008_0000;
/// `PROCESS_ALL_ACCESS` (Vista and later).
pub const PROCESS_ALL_ACCESS: u32 = 0x001F_FFFF;

/// `THREAD_TERMINATE`.
pub const THREAD_TERMINATE: u32 = 0x0001;
/// `THREAD_SUSPEND_RESUME`.
pub const THREAD_SUSPEND_RESUME: u32 = 0x0002;
/// `THREAD_GET_CONTEXT`: GetThreadContext.
pub const THREAD_GET_CONTEXT: u32 = 0x0008;
/// `THREAD_SET_CONTEXT`: never requested.
pub const THREAD_SET_CONTEXT: u32 = 0x0010;
/// `THREAD_SET_INFORMATION`.
pub const THREAD_SET_INFORMATION: u32 = 0x0020;
/// `THREAD_QUERY_INFORMATION`.
pub const THREAD_QUERY_INFORMATION: u32 = 0x0040;
/// `THREAD_SET_THREAD_TOKEN`.
pub const THREAD_SET_THREAD_TOKEN: u32 = 0x0080;
/// `THREAD_IMPERSONATE`.
pub const THREAD_IMPERSONATE: u32 = 0x0100;
/// `THREAD_DIRECT_IMPERSONATION`.
pub const THREAD_DIRECT_IMPERSONATION: u32 = 0x0200;
/// `THREAD_SET_LIMITED_INFORMATION`.
pub const THREAD_SET_LIMITED_INFORMATION: u32 = 0x0400;
/// `THREAD_QUERY_LIMITED_INFORMATION`.
pub const THREAD_QUERY_LIMITED_INFORMATION: u32 = 0x0800;

/// Process rights that can change the target or its security: none of the masks below may
/// contain any of them.
pub const PROCESS_FORBIDDEN: u32 = PROCESS_TERMINATE
    | PROCESS_CREATE_THREAD
    | PROCESS_SET_SESSIONID
    | PROCESS_VM_OPERATION
    | PROCESS_VM_WRITE
    | PROCESS_DUP_HANDLE
    | PROCESS_CREATE_PROCESS
    | PROCESS_SET_QUOTA
    | PROCESS_SET_INFORMATION
    | DELETE
    | WRITE_DAC
    | WRITE_OWNER;

/// Thread rights that can change the target: none of the thread masks may contain them
/// (`THREAD_SUSPEND_RESUME` included: the scan never suspends a thread; `--suspend` suspends
/// the whole process through a separate process handle).
pub const THREAD_FORBIDDEN: u32 = THREAD_TERMINATE
    | THREAD_SUSPEND_RESUME
    | THREAD_SET_CONTEXT
    | THREAD_SET_INFORMATION
    | THREAD_SET_THREAD_TOKEN
    | THREAD_IMPERSONATE
    | THREAD_DIRECT_IMPERSONATION
    | THREAD_SET_LIMITED_INFORMATION
    | DELETE
    | WRITE_DAC
    | WRITE_OWNER;

/// Why a process handle is opened. Each variant has one fixed mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProcessAccess {
    /// The scan: `PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_VM_READ` (0x1010). Enough for
    /// `NtQueryInformationProcess(ProcessBasicInformation)` (PEB address, parent),
    /// `IsWow64Process`, `QueryFullProcessImageNameW`, `GetExitCodeProcess` and
    /// `ReadProcessMemory`; on current Windows also for `VirtualQueryEx` and
    /// `GetMappedFileNameW`.
    Scan,
    /// The scan's fallback when `VirtualQueryEx` refuses the limited handle (its documentation
    /// asks for `PROCESS_QUERY_INFORMATION`; older Windows enforces it):
    /// `PROCESS_QUERY_INFORMATION | PROCESS_VM_READ` (0x410).
    ScanFallback,
    /// `--preserve`: `MiniDumpWriteDump` needs `PROCESS_QUERY_INFORMATION | PROCESS_VM_READ`
    /// (0x410). `PROCESS_DUP_HANDLE` would only be needed for handle data, which preentry does
    /// not ask for.
    Preserve,
    /// `--suspend`: `NtSuspendProcess` needs `PROCESS_SUSPEND_RESUME` (0x800), nothing else.
    Suspend,
}

impl ProcessAccess {
    /// Every variant.
    pub const ALL: [ProcessAccess; 4] = [
        ProcessAccess::Scan,
        ProcessAccess::ScanFallback,
        ProcessAccess::Preserve,
        ProcessAccess::Suspend,
    ];

    /// The access mask passed to `OpenProcess`.
    pub const fn mask(self) -> u32 {
        match self {
            ProcessAccess::Scan => PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_VM_READ,
            ProcessAccess::ScanFallback | ProcessAccess::Preserve => {
                PROCESS_QUERY_INFORMATION | PROCESS_VM_READ
            }
            ProcessAccess::Suspend => PROCESS_SUSPEND_RESUME,
        }
    }

    /// What the handle is for, for error messages and notes.
    pub const fn purpose(self) -> &'static str {
        match self {
            ProcessAccess::Scan => "scan",
            ProcessAccess::ScanFallback => "scan (VirtualQueryEx fallback)",
            ProcessAccess::Preserve => "minidump (--preserve)",
            ProcessAccess::Suspend => "suspend (--suspend)",
        }
    }
}

/// Why a thread handle is opened. Each variant has one fixed mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ThreadAccess {
    /// `THREAD_QUERY_LIMITED_INFORMATION | THREAD_GET_CONTEXT` (0x808): TEB address
    /// (`ThreadBasicInformation`), suspend count (`ThreadSuspendCount`, Windows 8.1+) and
    /// `GetThreadContext`.
    Query,
    /// `THREAD_QUERY_INFORMATION | THREAD_GET_CONTEXT` (0x48): the Win32 start address
    /// (`ThreadQuerySetWin32StartAddress`) where the limited right is refused.
    QueryFull,
    /// `THREAD_QUERY_LIMITED_INFORMATION` (0x800) alone, when `THREAD_GET_CONTEXT` is refused
    /// (the context is then reported unavailable).
    QueryLimited,
}

impl ThreadAccess {
    /// Every variant.
    pub const ALL: [ThreadAccess; 3] = [
        ThreadAccess::Query,
        ThreadAccess::QueryFull,
        ThreadAccess::QueryLimited,
    ];

    /// The access mask passed to `OpenThread`.
    pub const fn mask(self) -> u32 {
        match self {
            ThreadAccess::Query => THREAD_QUERY_LIMITED_INFORMATION | THREAD_GET_CONTEXT,
            ThreadAccess::QueryFull => THREAD_QUERY_INFORMATION | THREAD_GET_CONTEXT,
            ThreadAccess::QueryLimited => THREAD_QUERY_LIMITED_INFORMATION,
        }
    }
}

/// The rights in `mask` that can change a process (empty = read-only).
pub fn process_write_rights(mask: u32) -> u32 {
    mask & PROCESS_FORBIDDEN
}

/// The rights in `mask` that can change a thread (empty = read-only).
pub fn thread_write_rights(mask: u32) -> u32 {
    mask & THREAD_FORBIDDEN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_masks_are_read_only_and_minimal() {
        for a in ProcessAccess::ALL {
            let m = a.mask();
            assert_eq!(process_write_rights(m), 0, "{a:?} {m:#x}");
            assert_ne!(m, PROCESS_ALL_ACCESS, "{a:?}");
            assert_eq!(m & PROCESS_VM_WRITE, 0);
            assert_eq!(m & PROCESS_VM_OPERATION, 0);
        }
        assert_eq!(ProcessAccess::Scan.mask(), 0x1010);
        assert_eq!(ProcessAccess::Preserve.mask(), 0x410);
        assert_eq!(ProcessAccess::Suspend.mask(), 0x800);
        // Only --suspend may suspend, and it asks for nothing else.
        for a in ProcessAccess::ALL {
            let suspends = a.mask() & PROCESS_SUSPEND_RESUME != 0;
            assert_eq!(suspends, a == ProcessAccess::Suspend, "{a:?}");
        }
        // The scan reads memory; the suspend handle cannot.
        assert_ne!(ProcessAccess::Scan.mask() & PROCESS_VM_READ, 0);
        assert_eq!(ProcessAccess::Suspend.mask() & PROCESS_VM_READ, 0);
    }

    #[test]
    fn thread_masks_are_read_only() {
        for a in ThreadAccess::ALL {
            let m = a.mask();
            assert_eq!(thread_write_rights(m), 0, "{a:?} {m:#x}");
        }
        assert_eq!(ThreadAccess::Query.mask(), 0x808);
    }

    #[test]
    fn forbidden_sets_catch_the_attack_masks() {
        // The masks seen in injection telemetry (reference: Sysmon 10 GrantedAccess).
        for attack in [PROCESS_ALL_ACCESS, 0x43A, 0x1F0FFF, 0x28, 0x20, 0x8] {
            assert_ne!(process_write_rights(attack), 0, "{attack:#x}");
        }
        assert_ne!(thread_write_rights(0x1F03FF), 0);
        assert_ne!(thread_write_rights(THREAD_SET_CONTEXT), 0);
    }

    /// The live source requests access only through `open_process` / `open_thread`, which take
    /// the enums above: one call site of each API, and no forbidden constant named anywhere.
    #[test]
    fn live_source_opens_handles_in_one_place_only() {
        let src = include_str!("live.rs");
        assert_eq!(
            src.matches("OpenProcess(").count(),
            1,
            "OpenProcess call sites"
        );
        assert_eq!(
            src.matches("OpenThread(").count(),
            1,
            "OpenThread call sites"
        );
        for banned in [
            "PROCESS_VM_WRITE",
            "PROCESS_VM_OPERATION",
            "PROCESS_ALL_ACCESS",
            "PROCESS_CREATE_THREAD",
            "THREAD_SET_CONTEXT",
            "THREAD_ALL_ACCESS",
            "WriteProcessMemory",
            "VirtualProtectEx",
            "VirtualAllocEx",
            "SetThreadContext",
            "SuspendThread",
            "ResumeThread",
            "DebugActiveProcess",
        ] {
            assert!(!src.contains(banned), "live.rs names {banned}");
        }
    }

    #[cfg(windows)]
    #[test]
    fn constants_match_windows_sys() {
        use windows_sys::Win32::System::Threading as t;
        assert_eq!(PROCESS_VM_READ, t::PROCESS_VM_READ);
        assert_eq!(PROCESS_VM_WRITE, t::PROCESS_VM_WRITE);
        assert_eq!(PROCESS_VM_OPERATION, t::PROCESS_VM_OPERATION);
        assert_eq!(PROCESS_QUERY_INFORMATION, t::PROCESS_QUERY_INFORMATION);
        assert_eq!(
            PROCESS_QUERY_LIMITED_INFORMATION,
            t::PROCESS_QUERY_LIMITED_INFORMATION
        );
        assert_eq!(PROCESS_SUSPEND_RESUME, t::PROCESS_SUSPEND_RESUME);
        assert_eq!(PROCESS_ALL_ACCESS, t::PROCESS_ALL_ACCESS);
        assert_eq!(THREAD_GET_CONTEXT, t::THREAD_GET_CONTEXT);
        assert_eq!(THREAD_QUERY_INFORMATION, t::THREAD_QUERY_INFORMATION);
        assert_eq!(
            THREAD_QUERY_LIMITED_INFORMATION,
            t::THREAD_QUERY_LIMITED_INFORMATION
        );
        assert_eq!(THREAD_SET_CONTEXT, t::THREAD_SET_CONTEXT);
    }
}
