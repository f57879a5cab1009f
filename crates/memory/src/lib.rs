//! One address-space interface over a process, with its sources (minidumps, live Wine processes).
//!
//! # The interface
//!
//! [`ProcessMemory`] is the one trait the scanner talks to. It is object-safe and `Send`, so a
//! scan holds `Box<dyn ProcessMemory>` whatever the source:
//!
//! * [`ProcessMemory::identity`] — [`ProcessIdentity`]: pid (Windows and/or Linux), image path,
//!   command line, parent, PEB address and `PEB.ImageBaseAddress`;
//! * [`ProcessMemory::regions`] — [`Region`]s with base, size, [`Protection`] (raw `PAGE_*`),
//!   [`RegionState`], [`RegionKind`] (image/mapped/private) and backing path;
//! * [`MemoryReader::read`] (supertrait) — bounded reads returning a [`ReadResult`] that lists the
//!   valid and the unreadable ranges, with the helpers [`MemoryReader::read_exact_at`],
//!   [`MemoryReader::read_u64`], [`MemoryReader::read_range`];
//! * [`ProcessMemory::threads`] — [`ThreadInfo`]: ids, TEB, start address, instruction pointer,
//!   [`ThreadContext`], suspend count, each an [`Availability`] with a reason when missing;
//! * [`ProcessMemory::modules`] — [`Module`]s: base, size, path.
//!
//! Facts a source cannot provide are [`Availability::Unavailable`] with a sentence saying why
//! (for example "MemoryInfoList stream absent from this dump"), never guessed.
//!
//! [`pe_adapter::AsVaReader`] makes any source a `preentry_pe::VaReader`.
//!
//! Sources: [`dump::MinidumpSource`] (Windows minidumps, also gzip-compressed) and
//! [`wine::WineProcess`] (live Wine processes on Linux, read through `/proc` only). A live
//! Windows source is meant to be one more implementation of the same trait. [`peb`] reads the
//! PEB, its loader module list and process parameters through any [`MemoryReader`].
//!
//! ```no_run
//! use preentry_memory::{Availability, MemoryReader, ProcessMemory, dump::MinidumpSource, wine};
//! # fn main() -> Result<(), preentry_memory::MemoryError> {
//! let sources: Vec<Box<dyn ProcessMemory>> = vec![
//!     Box::new(MinidumpSource::open("samples/tls-array-swap/victim.dmp.gz")?),
//!     Box::new(wine::open(1234)?), // a Linux or a Windows PID
//! ];
//! for mem in &sources {
//!     let id = mem.identity();
//!     println!("{}: PEB.ImageBaseAddress {:x?}", mem.describe(), id.peb_image_base);
//!     match mem.regions() {
//!         Availability::Available(regions) => println!("{} regions", regions.len()),
//!         Availability::Unavailable { reason } => println!("not checkable: {reason}"),
//!     }
//!     if let Some(base) = id.peb_image_base {
//!         let head = mem.read_range(base, 0x1000, 0x1000)?;
//!         println!("headers complete: {}", head.result.is_complete());
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Read-only
//!
//! Nothing here writes to another process: `/proc/PID/mem` is opened read-only, no process is
//! ptrace-attached or stopped.
//!
//! See the [`wine`] module for what a Wine process looks like from `/proc` (measured facts the
//! scan checks rely on).

pub mod dump;
mod error;
pub mod pe_adapter;
pub mod peb;
mod types;
#[cfg(unix)]
pub mod wine;

pub use error::MemoryError;
pub use types::{
    Arch, Availability, ContextKind, FileBacking, Module, ProcessIdentity, Protection, ReadBuf,
    ReadResult, Region, RegionKind, RegionState, SourceKind, ThreadContext, ThreadInfo,
    file_name_of,
};

use std::ops::Range;

/// The largest single read the helpers will allocate for, whatever the caller asks
/// ([`MemoryReader::read_range`] takes its own, smaller cap).
pub const MAX_READ: u64 = 256 * 1024 * 1024;

/// Bounded reads of an address space. Object-safe; the PEB helpers and any `VaReader`-style
/// adapter only need this part.
pub trait MemoryReader {
    /// Reads `buf.len()` bytes at `addr`. Bytes that cannot be read are set to zero and listed
    /// in [`ReadResult::unreadable`]; an `Err` means the source itself failed (the process
    /// exited, access was denied, an I/O error), not that the range was unmapped.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<ReadResult, MemoryError>;

    /// Reads exactly `buf.len()` bytes or fails with [`MemoryError::Unreadable`] naming the
    /// first unreadable range.
    fn read_exact_at(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let res = self.read(addr, buf)?;
        match res.unreadable.first() {
            None => Ok(()),
            Some(r) => Err(MemoryError::Unreadable {
                addr: r.start,
                len: r.end.saturating_sub(r.start),
                detail: format!("while reading {} bytes at {addr:#x}", buf.len()),
            }),
        }
    }

    /// Little-endian `u64` at `addr`.
    fn read_u64(&self, addr: u64) -> Result<u64, MemoryError> {
        let mut b = [0u8; 8];
        self.read_exact_at(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Little-endian `u32` at `addr`.
    fn read_u32(&self, addr: u64) -> Result<u32, MemoryError> {
        let mut b = [0u8; 4];
        self.read_exact_at(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Little-endian `u16` at `addr`.
    fn read_u16(&self, addr: u64) -> Result<u16, MemoryError> {
        let mut b = [0u8; 2];
        self.read_exact_at(addr, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// Reads `min(len, cap, MAX_READ)` bytes at `addr` into a new buffer, reporting partial
    /// reads. `truncated` says whether the length was cut.
    fn read_range(&self, addr: u64, len: u64, cap: u64) -> Result<ReadBuf, MemoryError> {
        let limit = cap.min(MAX_READ);
        let want = len.min(limit);
        let truncated = want < len;
        // Clamp to the end of the address space so the range never wraps.
        let room = u64::MAX - addr;
        let want = want.min(room);
        let n = usize::try_from(want).map_err(|_| MemoryError::AddressOverflow { addr, len })?;
        let mut bytes = vec![0u8; n];
        let result = self.read(addr, &mut bytes)?;
        Ok(ReadBuf {
            address: addr,
            bytes,
            result,
            truncated,
        })
    }
}

/// One process's address space and its metadata, from any source.
pub trait ProcessMemory: MemoryReader + Send {
    /// Who the process is.
    fn identity(&self) -> &ProcessIdentity;

    /// All regions, sorted by base address, non-overlapping.
    fn regions(&self) -> Availability<&[Region]>;

    /// The address ranges whose contents this source can return (sorted, merged). For a dump:
    /// the captured memory; for a live process: the readable mappings.
    fn memory_ranges(&self) -> &[Range<u64>];

    /// Threads. The process's initial thread comes first when the source can tell (minidumps:
    /// ThreadList order, which dump writers start with the initial thread; Wine: the thread on
    /// the process's main Linux task).
    fn threads(&self) -> Availability<&[ThreadInfo]>;

    /// Loaded modules.
    fn modules(&self) -> Availability<&[Module]>;

    /// A short description for reports ("minidump samples/x.dmp", "Wine pid 1234 (x.exe)").
    fn describe(&self) -> String;

    /// The region containing `addr`, when regions are available.
    fn region_at(&self, addr: u64) -> Option<&Region> {
        let regions = self.regions().available()?;
        let idx = regions.partition_point(|r| r.end() <= addr);
        regions.get(idx).filter(|r| r.contains(addr))
    }

    /// The module containing `addr`, when modules are available.
    fn module_at(&self, addr: u64) -> Option<&Module> {
        let modules = self.modules().available()?;
        modules.iter().find(|m| m.contains(addr))
    }
}

/// Sorts and merges address ranges (empty ones dropped): the form of
/// [`ProcessMemory::memory_ranges`] every source returns.
pub fn merge_ranges(mut v: Vec<Range<u64>>) -> Vec<Range<u64>> {
    v.retain(|r| r.start < r.end);
    v.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}

    #[test]
    fn sources_are_send_and_sync() {
        send_sync::<crate::dump::MinidumpSource>();
        #[cfg(unix)]
        send_sync::<crate::wine::WineProcess>();
        send::<Box<dyn crate::ProcessMemory>>();
    }
}
