//! Test support: an in-memory [`ProcessMemory`] built from real PE files of the corpus mapped by
//! `preentry-pe`'s synth loader, plus extra private regions. Only compiled for tests.

use std::ops::Range;
use std::path::PathBuf;

use preentry_memory::{
    Arch, Availability, MemoryError, MemoryReader, Module, ProcessIdentity, ProcessMemory,
    Protection, ReadResult, Region, RegionKind, RegionState, SourceKind, ThreadContext, ThreadInfo,
};

/// Path of a corpus file, relative to the workspace root.
pub fn corpus(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus")
        .join(rel)
}

/// A fake process.
pub struct FakeProcess {
    pub identity: ProcessIdentity,
    pub regions: Vec<Region>,
    pub contents: Vec<(u64, Vec<u8>)>,
    pub threads: Vec<ThreadInfo>,
    pub modules: Option<Vec<Module>>,
    pub regions_known: bool,
    ranges: Vec<Range<u64>>,
}

impl FakeProcess {
    pub fn new(image_path: &str, peb: u64) -> Self {
        FakeProcess {
            identity: ProcessIdentity {
                pid: 42,
                windows_pid: Some(42),
                linux_pid: None,
                image_path: Some(image_path.to_string()),
                command_line: None,
                parent_pid: None,
                peb_address: Some(peb),
                peb_image_base: None,
                arch: Arch::X64,
                source: SourceKind::WineLive,
                linux_comm: None,
                notes: Vec::new(),
            },
            regions: Vec::new(),
            contents: Vec::new(),
            threads: Vec::new(),
            modules: Some(Vec::new()),
            regions_known: true,
            ranges: Vec::new(),
        }
    }

    /// Adds memory with contents.
    pub fn map(
        &mut self,
        base: u64,
        bytes: Vec<u8>,
        kind: RegionKind,
        prot: u32,
        path: Option<PathBuf>,
    ) {
        let size = (bytes.len() as u64).div_ceil(0x1000) * 0x1000;
        self.regions.push(Region {
            base,
            size,
            protection: Protection(prot),
            allocation_base: Some(base),
            allocation_protection: Some(Protection(prot)),
            state: RegionState::Commit,
            kind,
            path,
            backing: None,
            anonymous: None,
            pseudo_path: None,
        });
        self.regions.sort_by_key(|r| r.base);
        let mut padded = bytes;
        padded.resize(size as usize, 0);
        self.contents.push((base, padded));
        self.ranges = self
            .contents
            .iter()
            .map(|(b, v)| *b..b + v.len() as u64)
            .collect();
        self.ranges.sort_by_key(|r| r.start);
    }

    /// The PEB: image base at +0x10, Ldr at +0x18.
    pub fn set_peb(&mut self, image_base: u64, ldr: u64) {
        let peb = self.identity.peb_address.unwrap_or(0x7000_0000);
        let mut page = vec![0u8; 0x1000];
        page[0x10..0x18].copy_from_slice(&image_base.to_le_bytes());
        page[0x18..0x20].copy_from_slice(&ldr.to_le_bytes());
        self.contents.retain(|(b, _)| *b != peb);
        self.regions.retain(|r| r.base != peb);
        self.map(peb, page, RegionKind::Private, Protection::READWRITE, None);
        self.identity.peb_image_base = Some(image_base);
    }

    pub fn write(&mut self, addr: u64, data: &[u8]) {
        for (b, v) in self.contents.iter_mut() {
            if addr >= *b && addr + data.len() as u64 <= *b + v.len() as u64 {
                let off = (addr - *b) as usize;
                v[off..off + data.len()].copy_from_slice(data);
                return;
            }
        }
        panic!("write outside fake memory at {addr:#x}");
    }

    pub fn thread(&mut self, tid: u32, rip: u64, rcx: u64, rdx: u64) {
        self.threads.push(ThreadInfo {
            tid,
            windows_tid: Some(tid),
            linux_tid: None,
            teb: None,
            start_address: Availability::unavailable("not recorded"),
            instruction_pointer: Availability::Available(rip),
            context: Availability::Available(ThreadContext {
                rip,
                rcx,
                rdx,
                origin: "test",
                ..ThreadContext::default()
            }),
            suspend_count: Availability::Available(1),
            stack: None,
        });
    }
}

impl MemoryReader for FakeProcess {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<ReadResult, MemoryError> {
        buf.fill(0);
        let end = addr.saturating_add(buf.len() as u64);
        let mut valid = Vec::new();
        for (b, v) in &self.contents {
            let vend = b + v.len() as u64;
            let s = addr.max(*b);
            let e = end.min(vend);
            if s < e {
                let src = &v[(s - b) as usize..(e - b) as usize];
                buf[(s - addr) as usize..(e - addr) as usize].copy_from_slice(src);
                valid.push(s..e);
            }
        }
        Ok(ReadResult::from_valid(addr, buf.len() as u64, valid))
    }
}

impl ProcessMemory for FakeProcess {
    fn identity(&self) -> &ProcessIdentity {
        &self.identity
    }
    fn regions(&self) -> Availability<&[Region]> {
        if self.regions_known {
            Availability::Available(&self.regions)
        } else {
            Availability::unavailable("MemoryInfoList stream absent from this dump")
        }
    }
    fn memory_ranges(&self) -> &[Range<u64>] {
        &self.ranges
    }
    fn threads(&self) -> Availability<&[ThreadInfo]> {
        Availability::Available(&self.threads)
    }
    fn modules(&self) -> Availability<&[Module]> {
        match &self.modules {
            Some(m) => Availability::Available(m),
            None => Availability::unavailable("no module list"),
        }
    }
    fn describe(&self) -> String {
        "fake process".into()
    }
}
