//! Reads the x64 PEB, its loader module list and its process parameters through any
//! [`MemoryReader`].
//!
//! Offsets (x64): `PEB.ImageBaseAddress` +0x10, `PEB.Ldr` +0x18, `PEB.ProcessParameters` +0x20;
//! `PEB_LDR_DATA.InLoadOrderModuleList` +0x10; `LDR_DATA_TABLE_ENTRY`: `DllBase` +0x30,
//! `EntryPoint` +0x38, `SizeOfImage` +0x40, `FullDllName` +0x48, `BaseDllName` +0x58;
//! `RTL_USER_PROCESS_PARAMETERS`: `ImagePathName` +0x60, `CommandLine` +0x70;
//! `UNICODE_STRING`: `Length` +0, `MaximumLength` +2, `Buffer` +8.
//!
//! 32-bit (WoW64) PEBs are not supported yet: the sources report [`MemoryError::Unsupported`]
//! for them instead of reading 64-bit offsets out of a 32-bit structure.

use crate::{Availability, MemoryError, MemoryReader, Module, ProcessIdentity};

/// `PEB.ImageBaseAddress` offset (x64).
pub const PEB_IMAGE_BASE: u64 = 0x10;
/// `PEB.Ldr` offset (x64).
pub const PEB_LDR: u64 = 0x18;
/// `PEB.ProcessParameters` offset (x64).
pub const PEB_PROCESS_PARAMETERS: u64 = 0x20;
/// `RTL_USER_PROCESS_PARAMETERS.ImagePathName` offset (x64).
pub const PARAMS_IMAGE_PATH: u64 = 0x60;
/// `RTL_USER_PROCESS_PARAMETERS.CommandLine` offset (x64).
pub const PARAMS_COMMAND_LINE: u64 = 0x70;
/// `PEB_LDR_DATA.InLoadOrderModuleList` offset (x64).
pub const LDR_IN_LOAD_ORDER: u64 = 0x10;

/// TEB.NtTib.StackBase (x64).
pub const TEB_STACK_BASE: u64 = 0x08;
/// TEB.NtTib.StackLimit (x64).
pub const TEB_STACK_LIMIT: u64 = 0x10;
/// TEB.NtTib.Self (x64).
pub const TEB_SELF: u64 = 0x30;
/// TEB.ClientId.UniqueProcess (x64).
pub const TEB_PID: u64 = 0x40;
/// TEB.ClientId.UniqueThread (x64).
pub const TEB_TID: u64 = 0x48;
/// TEB.ProcessEnvironmentBlock (x64).
pub const TEB_PEB: u64 = 0x60;

/// The most loader entries [`walk_ldr`] visits.
pub const MAX_LDR_ENTRIES: usize = 4096;
/// The longest UNICODE_STRING read (bytes): `Length` is a u16, so 65534 is the real limit.
pub const MAX_USTR_BYTES: u16 = u16::MAX - 1;

/// What the PEB says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PebInfo {
    /// PEB address.
    pub address: u64,
    /// `PEB.ImageBaseAddress`.
    pub image_base: u64,
    /// `PEB.Ldr` (0 before the loader has run).
    pub ldr: u64,
    /// `PEB.ProcessParameters`.
    pub process_parameters: u64,
    /// `ProcessParameters.ImagePathName`, when readable.
    pub image_path: Result<String, String>,
    /// `ProcessParameters.CommandLine`, when readable.
    pub command_line: Result<String, String>,
}

/// Reads the PEB at `peb`. Only `ImageBaseAddress`, `Ldr` and `ProcessParameters` must be
/// readable; the strings are reported individually.
pub fn read_peb(mem: &(impl MemoryReader + ?Sized), peb: u64) -> Result<PebInfo, MemoryError> {
    let mut head = [0u8; 0x28];
    mem.read_exact_at(peb, &mut head)?;
    let q = |off: usize| -> u64 {
        let mut b = [0u8; 8];
        if let Some(s) = head.get(off..off + 8) {
            b.copy_from_slice(s);
        }
        u64::from_le_bytes(b)
    };
    let image_base = q(PEB_IMAGE_BASE as usize);
    let ldr = q(PEB_LDR as usize);
    let process_parameters = q(PEB_PROCESS_PARAMETERS as usize);
    let (image_path, command_line) = if process_parameters == 0 {
        let msg = "PEB.ProcessParameters is NULL".to_string();
        (Err(msg.clone()), Err(msg))
    } else {
        (
            read_unicode_string_at(mem, process_parameters.wrapping_add(PARAMS_IMAGE_PATH))
                .map_err(|e| e.to_string()),
            read_unicode_string_at(mem, process_parameters.wrapping_add(PARAMS_COMMAND_LINE))
                .map_err(|e| e.to_string()),
        )
    };
    Ok(PebInfo {
        address: peb,
        image_base,
        ldr,
        process_parameters,
        image_path,
        command_line,
    })
}

/// Reads the x64 `UNICODE_STRING` structure at `addr` and the text it points to.
pub fn read_unicode_string_at(
    mem: &(impl MemoryReader + ?Sized),
    addr: u64,
) -> Result<String, MemoryError> {
    let mut raw = [0u8; 16];
    mem.read_exact_at(addr, &mut raw)?;
    let len = u16::from_le_bytes([raw[0], raw[1]]);
    let mut p = [0u8; 8];
    p.copy_from_slice(&raw[8..16]);
    let buffer = u64::from_le_bytes(p);
    read_utf16(mem, buffer, len)
}

/// Reads `len_bytes` bytes of UTF-16LE at `addr` (odd lengths are rounded down; invalid code
/// units become U+FFFD).
pub fn read_utf16(
    mem: &(impl MemoryReader + ?Sized),
    addr: u64,
    len_bytes: u16,
) -> Result<String, MemoryError> {
    let len = (len_bytes.min(MAX_USTR_BYTES) & !1) as usize;
    if len == 0 {
        return Ok(String::new());
    }
    if addr == 0 {
        return Err(MemoryError::Malformed {
            what: "UNICODE_STRING",
            addr,
            detail: format!("NULL buffer with length {len_bytes}"),
        });
    }
    let mut buf = vec![0u8; len];
    mem.read_exact_at(addr, &mut buf)?;
    let units: Vec<u16> = buf
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    Ok(String::from_utf16_lossy(&units))
}

/// One `LDR_DATA_TABLE_ENTRY`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LdrEntry {
    /// Address of the entry.
    pub entry: u64,
    /// `DllBase`.
    pub dll_base: u64,
    /// `EntryPoint`.
    pub entry_point: u64,
    /// `SizeOfImage`.
    pub size_of_image: u32,
    /// `FullDllName` (empty when unreadable).
    pub full_name: String,
    /// `BaseDllName` (empty when unreadable).
    pub base_name: String,
}

impl LdrEntry {
    /// As a [`Module`] (path = full name, or base name when the full name is empty).
    pub fn to_module(&self) -> Module {
        let path = if self.full_name.is_empty() {
            self.base_name.clone()
        } else {
            self.full_name.clone()
        };
        let ep = (self.entry_point != 0).then_some(self.entry_point);
        Module::new(self.dll_base, u64::from(self.size_of_image), path, ep)
    }
}

/// The loader list walk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LdrWalk {
    /// Entries in load order.
    pub entries: Vec<LdrEntry>,
    /// Why the walk stopped early (unreadable link, cycle, bound reached), if it did.
    pub stopped: Option<String>,
}

/// What a PEB says about its process, gathered the same way for every source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PebFacts {
    /// `PEB.ImageBaseAddress`.
    pub image_base: u64,
    /// `ProcessParameters.ImagePathName`, when readable and not empty.
    pub image_path: Option<String>,
    /// `ProcessParameters.CommandLine`, when readable.
    pub command_line: Option<String>,
    /// The loader's module list, or why it is unavailable (`PEB.Ldr` NULL before the loader
    /// ran, an unreadable list).
    pub modules: Availability<Vec<Module>>,
}

impl PebFacts {
    /// Sets `peb_image_base`, `image_path` and `command_line` of `identity` (leaving fields the
    /// PEB could not give as they were) and returns the module list.
    pub fn apply(self, identity: &mut ProcessIdentity) -> Availability<Vec<Module>> {
        identity.peb_image_base = Some(self.image_base);
        if self.image_path.is_some() {
            identity.image_path = self.image_path;
        }
        if self.command_line.is_some() {
            identity.command_line = self.command_line;
        }
        self.modules
    }
}

/// Gathers [`PebFacts`] from a PEB already read, walking the loader list. Unreadable strings
/// and an incomplete walk are noted in `notes` as report-ready sentences.
pub fn peb_facts(
    mem: &(impl MemoryReader + ?Sized),
    info: PebInfo,
    notes: &mut Vec<String>,
) -> PebFacts {
    let image_path = match info.image_path {
        Ok(p) if !p.is_empty() => Some(p),
        Ok(_) => {
            notes.push("PEB ImagePathName is empty".into());
            None
        }
        Err(e) => {
            notes.push(format!("PEB ImagePathName unreadable: {e}"));
            None
        }
    };
    let command_line = match info.command_line {
        Ok(c) => Some(c),
        Err(e) => {
            notes.push(format!("PEB CommandLine unreadable: {e}"));
            None
        }
    };
    let modules = if info.ldr == 0 {
        Availability::unavailable(
            "PEB.Ldr is NULL: the loader has not run yet (e.g. a process created suspended)",
        )
    } else {
        match walk_ldr(mem, info.ldr) {
            Ok(walk) => {
                if let Some(why) = walk.stopped {
                    notes.push(format!("loader module list incomplete: {why}"));
                }
                Availability::Available(walk.entries.iter().map(LdrEntry::to_module).collect())
            }
            Err(e) => Availability::unavailable(format!("loader module list unreadable: {e}")),
        }
    };
    PebFacts {
        image_base: info.image_base,
        image_path,
        command_line,
        modules,
    }
}

/// Walks `PEB_LDR_DATA.InLoadOrderModuleList` at `ldr`. Bounded by [`MAX_LDR_ENTRIES`] and
/// cycle-safe (a link seen twice ends the walk). An unreadable entry ends the walk with the
/// entries read so far and `stopped` set.
pub fn walk_ldr(mem: &(impl MemoryReader + ?Sized), ldr: u64) -> Result<LdrWalk, MemoryError> {
    if ldr == 0 {
        return Err(MemoryError::Malformed {
            what: "PEB_LDR_DATA",
            addr: 0,
            detail: "PEB.Ldr is NULL (the loader has not run yet)".into(),
        });
    }
    let head = ldr
        .checked_add(LDR_IN_LOAD_ORDER)
        .ok_or(MemoryError::AddressOverflow {
            addr: ldr,
            len: 0x18,
        })?;
    let mut link = mem.read_u64(head)?;
    let mut seen = std::collections::HashSet::new();
    let mut entries = Vec::new();
    let mut stopped = None;
    loop {
        if link == head {
            break;
        }
        if entries.len() >= MAX_LDR_ENTRIES {
            stopped = Some(format!("stopped after {MAX_LDR_ENTRIES} entries"));
            break;
        }
        if link == 0 {
            stopped = Some("NULL Flink in the loader list".into());
            break;
        }
        if !seen.insert(link) {
            stopped = Some(format!("loader list cycles back to {link:#x}"));
            break;
        }
        let mut raw = [0u8; 0x68];
        if let Err(e) = mem.read_exact_at(link, &mut raw) {
            stopped = Some(format!("loader entry at {link:#x} unreadable: {e}"));
            break;
        }
        let q = |off: usize| -> u64 {
            let mut b = [0u8; 8];
            if let Some(s) = raw.get(off..off + 8) {
                b.copy_from_slice(s);
            }
            u64::from_le_bytes(b)
        };
        let size = q(0x40) as u32;
        let full_name = read_unicode_string_at(mem, link.wrapping_add(0x48)).unwrap_or_default();
        let base_name = read_unicode_string_at(mem, link.wrapping_add(0x58)).unwrap_or_default();
        entries.push(LdrEntry {
            entry: link,
            dll_base: q(0x30),
            entry_point: q(0x38),
            size_of_image: size,
            full_name,
            base_name,
        });
        link = q(0);
    }
    Ok(LdrWalk { entries, stopped })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ReadResult;
    use std::collections::BTreeMap;

    /// A sparse test address space: page-sized chunks.
    #[derive(Default)]
    pub(crate) struct Sparse {
        pub pages: BTreeMap<u64, Vec<u8>>,
    }

    impl Sparse {
        pub fn write(&mut self, addr: u64, data: &[u8]) {
            for (i, b) in data.iter().enumerate() {
                let a = addr + i as u64;
                let page = self
                    .pages
                    .entry(a & !0xfff)
                    .or_insert_with(|| vec![0; 0x1000]);
                page[(a & 0xfff) as usize] = *b;
            }
        }
        pub fn w64(&mut self, addr: u64, v: u64) {
            self.write(addr, &v.to_le_bytes());
        }
        pub fn ustr(&mut self, at: u64, buf: u64, s: &str) {
            let units: Vec<u8> = s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
            self.write(at, &(units.len() as u16).to_le_bytes());
            self.write(at + 2, &(units.len() as u16).to_le_bytes());
            self.w64(at + 8, buf);
            self.write(buf, &units);
        }
    }

    impl MemoryReader for Sparse {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<ReadResult, MemoryError> {
            let mut valid = Vec::new();
            for (i, slot) in buf.iter_mut().enumerate() {
                let Some(a) = addr.checked_add(i as u64) else {
                    break;
                };
                match self.pages.get(&(a & !0xfff)) {
                    Some(p) => {
                        *slot = p[(a & 0xfff) as usize];
                        valid.push(a..a.saturating_add(1));
                    }
                    None => *slot = 0,
                }
            }
            Ok(ReadResult::from_valid(addr, buf.len() as u64, valid))
        }
    }

    fn entry(m: &mut Sparse, at: u64, flink: u64, base: u64, name: &str) {
        m.w64(at, flink);
        m.w64(at + 0x30, base);
        m.w64(at + 0x38, base + 0x1000);
        m.w64(at + 0x40, 0x5000);
        m.ustr(at + 0x48, at + 0x200, &format!("C:\\windows\\{name}"));
        m.ustr(at + 0x58, at + 0x400, name);
    }

    #[test]
    fn peb_and_ldr_walk() {
        let mut m = Sparse::default();
        let peb = 0x7000_0000u64;
        let ldr = 0x7100_0000u64;
        let params = 0x7200_0000u64;
        m.w64(peb + 0x10, 0x140000000);
        m.w64(peb + 0x18, ldr);
        m.w64(peb + 0x20, params);
        m.ustr(params + 0x60, params + 0x1000, r"C:\x\victim.exe");
        m.ustr(params + 0x70, params + 0x1400, r"victim.exe --flag");
        let e1 = 0x7300_0000u64;
        let e2 = 0x7301_0000u64;
        m.w64(ldr + 0x10, e1);
        entry(&mut m, e1, e2, 0x140000000, "victim.exe");
        entry(&mut m, e2, ldr + 0x10, 0x7ff0_0000_0000, "ntdll.dll");
        let info = read_peb(&m, peb).unwrap();
        assert_eq!(info.image_base, 0x140000000);
        assert_eq!(info.image_path.as_deref(), Ok(r"C:\x\victim.exe"));
        assert_eq!(info.command_line.as_deref(), Ok("victim.exe --flag"));
        let walk = walk_ldr(&m, ldr).unwrap();
        assert_eq!(walk.stopped, None);
        assert_eq!(walk.entries.len(), 2);
        assert_eq!(walk.entries[1].to_module().name, "ntdll.dll");
        assert_eq!(walk.entries[0].to_module().path, r"C:\windows\victim.exe");
    }

    #[test]
    fn ldr_cycle_and_bad_links_are_bounded() {
        let mut m = Sparse::default();
        let ldr = 0x7100_0000u64;
        let e1 = 0x7300_0000u64;
        let e2 = 0x7301_0000u64;
        m.w64(ldr + 0x10, e1);
        entry(&mut m, e1, e2, 0x1000_0000, "a.dll");
        entry(&mut m, e2, e1, 0x2000_0000, "b.dll"); // cycles without returning to head
        let walk = walk_ldr(&m, ldr).unwrap();
        assert_eq!(walk.entries.len(), 2);
        assert!(walk.stopped.unwrap().contains("cycles"));

        entry(&mut m, e2, 0xdead_0000, 0x2000_0000, "b.dll"); // points at unmapped memory
        let walk = walk_ldr(&m, ldr).unwrap();
        assert_eq!(walk.entries.len(), 2);
        assert!(walk.stopped.unwrap().contains("unreadable"));

        assert!(walk_ldr(&m, 0).is_err());
        assert!(walk_ldr(&m, u64::MAX - 4).is_err());
    }

    #[test]
    fn unicode_string_edge_cases() {
        let mut m = Sparse::default();
        // NULL buffer with non-zero length
        m.write(0x1000, &[10, 0, 10, 0]);
        assert!(read_unicode_string_at(&m, 0x1000).is_err());
        // buffer in unmapped memory
        m.write(0x2000, &[10, 0, 10, 0, 0, 0, 0, 0]);
        m.w64(0x2008, 0x9999_0000);
        assert!(read_unicode_string_at(&m, 0x2000).is_err());
        // odd length rounds down
        m.ustr(0x3000, 0x3100, "ab");
        m.write(0x3000, &[3, 0]);
        assert_eq!(read_unicode_string_at(&m, 0x3000).unwrap(), "a");
        // PEB with NULL ProcessParameters
        let info = read_peb(&m, 0x3000).unwrap();
        assert!(info.image_path.is_err());
    }
}
