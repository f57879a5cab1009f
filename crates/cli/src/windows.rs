//! Live Windows processes through the Windows API (Windows builds only; included by
//! `scan.rs` as its `live` module). Read-only: see `preentry_memory_windows::access`.

use preentry_memory::ProcessMemory;

/// Opens a live Windows process by PID (`PROCESS_QUERY_LIMITED_INFORMATION |
/// PROCESS_VM_READ`). Access denied and exited processes are errors for this process only.
pub fn open(pid: u32) -> Result<Box<dyn ProcessMemory>, String> {
    preentry_memory_windows::open(pid)
        .map(|p| Box::new(p) as Box<dyn ProcessMemory>)
        .map_err(|e| e.to_string())
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
