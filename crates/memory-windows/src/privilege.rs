//! `SeDebugPrivilege` on preentry's *own* token (compiled on Windows only).
//!
//! Administrators hold `SeDebugPrivilege` but it is disabled in their token until a program
//! enables it; with it enabled, `OpenProcess` succeeds on other users' and service processes
//! (not on protected processes: PPL stays closed to everyone). This touches only preentry's
//! own token (`TOKEN_ADJUST_PRIVILEGES | TOKEN_QUERY` on the current process), never a target.

use windows_sys::Win32::Foundation::{ERROR_NOT_ALL_ASSIGNED, HANDLE, LUID};
use windows_sys::Win32::Security::{
    AdjustTokenPrivileges, LUID_AND_ATTRIBUTES, LookupPrivilegeValueW, SE_PRIVILEGE_ENABLED,
    TOKEN_ADJUST_PRIVILEGES, TOKEN_PRIVILEGES, TOKEN_QUERY,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

use crate::live::{Handle, last_error_code};

/// Whether preentry's token now has `SeDebugPrivilege` enabled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DebugPrivilege {
    /// Enabled: other users' and service processes can be opened (protected ones still not).
    Enabled,
    /// The token does not hold it (not running as administrator).
    NotHeld,
    /// Enabling failed for another reason.
    Failed(String),
}

/// Enables `SeDebugPrivilege` in preentry's own process token when the token holds it.
pub fn enable_debug_privilege() -> DebugPrivilege {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: the current-process pseudo handle needs no closing; `token` is a valid out
    // pointer.
    let ok = unsafe {
        OpenProcessToken(
            GetCurrentProcess(),
            TOKEN_ADJUST_PRIVILEGES | TOKEN_QUERY,
            &mut token,
        )
    };
    if ok == 0 {
        return DebugPrivilege::Failed(format!("OpenProcessToken: error {}", last_error_code()));
    }
    let token = Handle(token);
    let name: Vec<u16> = "SeDebugPrivilege"
        .encode_utf16()
        .chain(std::iter::once(0))
        .collect();
    let mut luid = LUID {
        LowPart: 0,
        HighPart: 0,
    };
    // SAFETY: `name` is NUL-terminated; `luid` is a valid out pointer.
    let ok = unsafe { LookupPrivilegeValueW(std::ptr::null(), name.as_ptr(), &mut luid) };
    if ok == 0 {
        return DebugPrivilege::Failed(format!(
            "LookupPrivilegeValueW: error {}",
            last_error_code()
        ));
    }
    let tp = TOKEN_PRIVILEGES {
        PrivilegeCount: 1,
        Privileges: [LUID_AND_ATTRIBUTES {
            Luid: luid,
            Attributes: SE_PRIVILEGE_ENABLED,
        }],
    };
    // SAFETY: `token` has TOKEN_ADJUST_PRIVILEGES; `tp` is a valid TOKEN_PRIVILEGES with one
    // entry; the previous state is not asked for.
    let ok = unsafe {
        AdjustTokenPrivileges(
            token.raw(),
            0,
            &tp,
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    let code = last_error_code();
    if ok == 0 {
        return DebugPrivilege::Failed(format!("AdjustTokenPrivileges: error {code}"));
    }
    if code == ERROR_NOT_ALL_ASSIGNED {
        return DebugPrivilege::NotHeld;
    }
    DebugPrivilege::Enabled
}
