//! Minidump streams preentry adds itself when the dump writer leaves them out: Wine 8's
//! `MiniDumpWriteDump` writes neither a MemoryInfoList nor a ThreadInfoList (measured), so
//! `--preserve` under Wine passes both as user streams, built from preentry's own
//! `VirtualQueryEx` and thread views of the process. Layouts from `minidumpapiset.h`
//! (`MINIDUMP_MEMORY_INFO_LIST`/`MINIDUMP_MEMORY_INFO`, `MINIDUMP_THREAD_INFO_LIST`/
//! `MINIDUMP_THREAD_INFO`). Pure byte building, tested on every platform.

use preentry_memory::{Availability, Region, RegionKind, RegionState, ThreadInfo};

/// `MemoryInfoListStream`.
pub const MEMORY_INFO_LIST_STREAM: u32 = 16;
/// `ThreadInfoListStream`.
pub const THREAD_INFO_LIST_STREAM: u32 = 17;
/// `sizeof(MINIDUMP_MEMORY_INFO)`.
const MEMORY_INFO_SIZE: u32 = 48;
/// `sizeof(MINIDUMP_THREAD_INFO)`.
const THREAD_INFO_SIZE: u32 = 64;
/// `MINIDUMP_THREAD_INFO_ERROR_THREAD`-style flag: no start address for this thread.
const THREAD_INFO_INVALID_INFO: u32 = 1;

fn state_raw(s: RegionState) -> u32 {
    match s {
        RegionState::Commit => 0x1000,
        RegionState::Reserve => 0x2000,
        RegionState::Free => 0x10000,
        RegionState::Unknown(v) => v,
    }
}

fn kind_raw(k: RegionKind) -> u32 {
    match k {
        RegionKind::Image => 0x100_0000,
        RegionKind::Mapped => 0x40000,
        RegionKind::Private => 0x20000,
        RegionKind::Unknown => 0,
    }
}

/// A `MINIDUMP_MEMORY_INFO_LIST` of `regions`.
pub fn memory_info_list(regions: &[Region]) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + regions.len() * MEMORY_INFO_SIZE as usize);
    v.extend_from_slice(&16u32.to_le_bytes()); // SizeOfHeader
    v.extend_from_slice(&MEMORY_INFO_SIZE.to_le_bytes()); // SizeOfEntry
    v.extend_from_slice(&(regions.len() as u64).to_le_bytes()); // NumberOfEntries
    for r in regions {
        v.extend_from_slice(&r.base.to_le_bytes());
        v.extend_from_slice(&r.allocation_base.unwrap_or(r.base).to_le_bytes());
        v.extend_from_slice(&r.allocation_protection.map_or(0, |p| p.raw()).to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes()); // __alignment1
        v.extend_from_slice(&r.size.to_le_bytes());
        v.extend_from_slice(&state_raw(r.state).to_le_bytes());
        v.extend_from_slice(&r.protection.raw().to_le_bytes());
        v.extend_from_slice(&kind_raw(r.kind).to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes()); // __alignment2
    }
    v
}

/// A `MINIDUMP_THREAD_INFO_LIST` of `threads` (thread id and start address; times and
/// affinity are not recorded and left 0).
pub fn thread_info_list(threads: &[ThreadInfo]) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + threads.len() * THREAD_INFO_SIZE as usize);
    v.extend_from_slice(&12u32.to_le_bytes()); // SizeOfHeader
    v.extend_from_slice(&THREAD_INFO_SIZE.to_le_bytes()); // SizeOfEntry
    v.extend_from_slice(&(threads.len() as u32).to_le_bytes()); // NumberOfEntries
    for t in threads {
        let (start, flags) = match t.start_address {
            Availability::Available(a) => (a, 0),
            Availability::Unavailable { .. } => (0, THREAD_INFO_INVALID_INFO),
        };
        v.extend_from_slice(&t.tid.to_le_bytes()); // ThreadId
        v.extend_from_slice(&flags.to_le_bytes()); // DumpFlags
        v.extend_from_slice(&0u32.to_le_bytes()); // DumpError
        v.extend_from_slice(&0u32.to_le_bytes()); // ExitStatus
        for _ in 0..4 {
            v.extend_from_slice(&0u64.to_le_bytes()); // Create/Exit/Kernel/User time
        }
        v.extend_from_slice(&start.to_le_bytes()); // StartAddress
        v.extend_from_slice(&0u64.to_le_bytes()); // Affinity
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use preentry_memory::Protection;

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
    }

    fn u64_at(b: &[u8], o: usize) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(a)
    }

    #[test]
    fn memory_info_layout() {
        let r = Region {
            base: 0x340000,
            size: 0x1000,
            protection: Protection(Protection::EXECUTE_READWRITE),
            allocation_base: Some(0x340000),
            allocation_protection: Some(Protection(Protection::EXECUTE_READWRITE)),
            state: RegionState::Commit,
            kind: RegionKind::Private,
            path: None,
            backing: None,
            anonymous: Some(true),
            pseudo_path: None,
        };
        let b = memory_info_list(&[r.clone(), r]);
        assert_eq!(b.len(), 16 + 2 * 48);
        assert_eq!((u32_at(&b, 0), u32_at(&b, 4), u64_at(&b, 8)), (16, 48, 2));
        let e = &b[16..64];
        assert_eq!(u64_at(e, 0), 0x340000);
        assert_eq!(u64_at(e, 8), 0x340000);
        assert_eq!(u32_at(e, 16), 0x40);
        assert_eq!(u64_at(e, 24), 0x1000);
        assert_eq!(u32_at(e, 32), 0x1000);
        assert_eq!(u32_at(e, 36), 0x40);
        assert_eq!(u32_at(e, 40), 0x20000);
    }

    #[test]
    fn thread_info_layout() {
        let t = ThreadInfo {
            tid: 0x104,
            windows_tid: Some(0x104),
            linux_tid: None,
            teb: None,
            start_address: Availability::Available(0x1400014d0),
            instruction_pointer: Availability::unavailable("x"),
            context: Availability::unavailable("x"),
            suspend_count: Availability::Available(1),
            stack: None,
        };
        let mut no_start = t.clone();
        no_start.start_address = Availability::unavailable("denied");
        let b = thread_info_list(&[t, no_start]);
        assert_eq!(b.len(), 12 + 2 * 64);
        assert_eq!((u32_at(&b, 0), u32_at(&b, 4), u32_at(&b, 8)), (12, 64, 2));
        assert_eq!(u32_at(&b, 12), 0x104);
        assert_eq!(u64_at(&b, 12 + 48), 0x1400014d0);
        assert_eq!(u32_at(&b, 12 + 64 + 4), 1);
    }
}
