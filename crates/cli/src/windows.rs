//! Live Windows processes through the Windows API (Windows builds only; included by
//! `scan.rs` as its `live` module). Read-only: see `preentry_memory_windows::access`.

use std::sync::OnceLock;

use preentry_memory::{MemoryError, ProcessMemory};
use preentry_memory_windows::DebugPrivilege;

/// `SeDebugPrivilege` in preentry's own token, enabled once per run when held.
fn debug_privilege() -> &'static DebugPrivilege {
    static STATE: OnceLock<DebugPrivilege> = OnceLock::new();
    STATE.get_or_init(preentry_memory_windows::enable_debug_privilege)
}

/// Opens a live Windows process by PID (`PROCESS_QUERY_LIMITED_INFORMATION |
/// PROCESS_VM_READ`). Access denied and exited processes are errors for this process only.
pub fn open(pid: u32) -> Result<Box<dyn ProcessMemory>, String> {
    let privilege = debug_privilege();
    preentry_memory_windows::open(pid)
        .map(|p| Box::new(p) as Box<dyn ProcessMemory>)
        .map_err(|e| match (&e, privilege) {
            (MemoryError::AccessDenied { .. }, DebugPrivilege::Enabled) => format!(
                "{e} (SeDebugPrivilege is enabled: a protected process, or one denied by policy)"
            ),
            (MemoryError::AccessDenied { .. }, DebugPrivilege::NotHeld) => format!(
                "{e} (run preentry as administrator to scan other users' and elevated processes)"
            ),
            (MemoryError::AccessDenied { .. }, DebugPrivilege::Failed(why)) => {
                format!("{e} (SeDebugPrivilege could not be enabled: {why})")
            }
            _ => e.to_string(),
        })
}

/// PIDs of every process of this system (under Wine: of this prefix's wineserver), preentry
/// itself left out. Processes that cannot be opened stay in the list, so that their error
/// (access denied, exited) shows in the report.
pub fn all_pids() -> anyhow::Result<Vec<u32>> {
    Ok(preentry_memory_windows::list_processes()
        .map_err(|e| anyhow::anyhow!("listing processes: {e}"))?
        .into_iter()
        .map(|p| p.pid)
        .collect())
}
