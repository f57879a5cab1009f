//! Our own TLS reader: the directory (all six fields, both widths) and the callback array,
//! including the hostile cases other parsers drop (array outside the image, in the IAT, without
//! a NULL terminator, unreadable part way).

use serde::Serialize;

use crate::error::PeError;
use crate::image::{DIRECTORY_IAT, DIRECTORY_IMPORT, DIRECTORY_TLS, PeImage};
use crate::reloc::RelocTable;

/// Hard bound on callback entries read. When hit, [`TlsInfo::hit_limit`] is set.
pub const CALLBACK_LIMIT: usize = 4096;

/// Bound on import descriptors and IAT thunks walked to decide whether the callback array
/// lies in an import address table.
const IMPORT_WALK_LIMIT: usize = 1 << 16;

/// Supplies bytes for VAs outside the image (e.g. a callback array moved into private RWX
/// memory by a tls-array-swap). A memory scanner implements it over a process or a dump.
pub trait VaReader {
    /// Copy bytes at `va` into `buf`; return how many leading bytes were available.
    fn read_va(&self, va: u64, buf: &mut [u8]) -> usize;
}

/// A [`VaReader`] with nothing outside the image: use it for files.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoOutside;

impl VaReader for NoOutside {
    fn read_va(&self, _va: u64, _buf: &mut [u8]) -> usize {
        0
    }
}

impl<T: VaReader + ?Sized> VaReader for &T {
    fn read_va(&self, va: u64, buf: &mut [u8]) -> usize {
        (**self).read_va(va, buf)
    }
}

/// Where a VA lies relative to the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// The VA.
    pub va: u64,
    /// `va - actual_base` when inside `[0, SizeOfImage)`, else `None`.
    pub rva: Option<u64>,
    /// Inside the image.
    pub in_image: bool,
    /// Name of the section containing it (lossy UTF-8).
    pub section: Option<String>,
    /// Index of that section.
    pub section_index: Option<usize>,
    /// Whether that section has `IMAGE_SCN_MEM_EXECUTE` (`None` when in no section; for VAs
    /// outside the image the memory scanner must say).
    pub executable: Option<bool>,
    /// Names of data directories whose range contains it (e.g. `["import"]`).
    pub directories: Vec<&'static str>,
    /// Inside an import address table (the IAT directory, or a descriptor's `FirstThunk`
    /// array): the loader overwrites these slots with resolved import addresses.
    pub in_import_address_table: bool,
}

/// How reading the callback array ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ArrayEnd {
    /// `AddressOfCallBacks` is 0: no array.
    NoArray,
    /// A NULL entry at this index ended the array.
    Null {
        /// Index of the NULL entry (= number of callbacks).
        index: usize,
    },
    /// The entry at `va` (index `index`) could not be read (unmapped, past the file, or
    /// outside the image with no bytes from the [`VaReader`]).
    Unreadable {
        /// VA of the unreadable entry.
        va: u64,
        /// Its index.
        index: usize,
    },
    /// [`CALLBACK_LIMIT`] entries were read without a NULL.
    Limit {
        /// Entries read.
        entries: usize,
    },
}

/// One non-NULL callback entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallbackSlot {
    /// Position in the array.
    pub index: usize,
    /// VA of the slot itself (`AddressOfCallBacks + index * width`).
    pub slot_va: u64,
    /// The entry: the callback's VA.
    pub va: u64,
    /// `va - actual_base` when inside the image.
    pub rva: Option<u64>,
    /// The callback lies inside the image.
    pub in_image: bool,
    /// Section containing the callback.
    pub section: Option<String>,
    /// Index of that section.
    pub section_index: Option<usize>,
    /// Whether that section is executable (`None` outside the image / in no section).
    pub executable: Option<bool>,
    /// A base relocation rewrites this slot (so it moves with the image).
    pub relocated: bool,
}

/// Which TLS VA fields a base relocation rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[allow(missing_docs)]
pub struct TlsRelocations {
    /// State of the relocation table.
    pub table: RelocTable,
    pub start_address_of_raw_data: bool,
    pub end_address_of_raw_data: bool,
    pub address_of_index: bool,
    pub address_of_callbacks: bool,
}

/// The TLS directory and its callback array. Serialized names follow the `inspect --json`
/// contract (`callbacks_terminated`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsInfo {
    /// Where the directory lies (`va` = actual base + DataDirectory[9].VirtualAddress).
    pub directory: Location,
    /// DataDirectory[9].Size (the loader does not check it).
    pub directory_size: u32,
    /// `StartAddressOfRawData` (VA).
    pub start_address_of_raw_data: u64,
    /// `EndAddressOfRawData` (VA).
    pub end_address_of_raw_data: u64,
    /// `AddressOfIndex` (VA; the loader writes the TLS index there).
    pub address_of_index: u64,
    /// `AddressOfCallBacks` (VA of the callback array).
    pub address_of_callbacks: u64,
    /// `SizeOfZeroFill`.
    pub size_of_zero_fill: u32,
    /// `Characteristics`.
    pub characteristics: u32,
    /// Where the callback array lies (`None` when `AddressOfCallBacks` is 0).
    pub array: Option<Location>,
    /// Non-NULL entries in order.
    pub callbacks: Vec<CallbackSlot>,
    /// A NULL entry ended the array (also `true` when there is no array).
    #[serde(rename = "callbacks_terminated")]
    pub terminated: bool,
    /// [`CALLBACK_LIMIT`] was reached.
    #[serde(rename = "callbacks_hit_limit")]
    pub hit_limit: bool,
    /// How the read ended.
    #[serde(rename = "callbacks_end")]
    pub end: ArrayEnd,
    /// Which VA fields a base relocation rewrites (from the relocation table in the view only;
    /// `Unreadable` when a partial memory view lacks it).
    pub relocations: TlsRelocations,
}

impl PeImage<'_> {
    /// Read `buf.len()` bytes at `va`: from the image when the VA is inside it (and readable
    /// there), else from `outside`. Returns the bytes read.
    pub fn read_va(&self, va: u64, buf: &mut [u8], outside: &dyn VaReader) -> usize {
        if let Some(rva) = self.va_to_rva(va) {
            let n = self.read_rva(rva, buf);
            if n == buf.len() {
                return n;
            }
        }
        outside.read_va(va, buf).min(buf.len())
    }

    /// Classify a VA: inside the image or not, which section, executable, which directories.
    pub fn locate_va(&self, va: u64) -> Location {
        let rva = self.va_to_rva(va);
        let section = rva.and_then(|r| self.section_for_rva(r));
        Location {
            va,
            rva,
            in_image: rva.is_some(),
            section: section.map(|s| s.name.clone()),
            section_index: section.map(|s| s.index),
            executable: section.map(|s| s.is_executable()),
            directories: rva
                .map(|r| {
                    self.data_directories()
                        .iter()
                        .filter(|d| d.contains_rva(r))
                        .map(|d| d.name)
                        .collect()
                })
                .unwrap_or_default(),
            in_import_address_table: false,
        }
    }

    /// Whether `rva` lies in the IAT directory or in a `FirstThunk` array of an import
    /// descriptor (bounded walk).
    pub fn rva_in_import_address_table(&self, rva: u64) -> bool {
        if self
            .data_directory(DIRECTORY_IAT)
            .is_some_and(|d| d.contains_rva(rva))
        {
            return true;
        }
        let Some(imports) = self.data_directory(DIRECTORY_IMPORT) else {
            return false;
        };
        if imports.virtual_address == 0 {
            return false;
        }
        let w = self.format().va_width() as u64;
        let mut budget = IMPORT_WALK_LIMIT;
        let mut desc = u64::from(imports.virtual_address);
        while budget > 0 {
            budget -= 1;
            let mut d = [0u8; 20];
            if self.read_rva(desc, &mut d) != 20 || d.iter().all(|&b| b == 0) {
                return false;
            }
            let first_thunk = u64::from(u32::from_le_bytes([d[16], d[17], d[18], d[19]]));
            if first_thunk != 0 && rva >= first_thunk {
                let mut at = first_thunk;
                while budget > 0 {
                    budget -= 1;
                    match self.read_va_field_rva(at) {
                        Some(v) if v != 0 => {
                            if rva >= at && rva < at + w {
                                return true;
                            }
                            at += w;
                        }
                        _ => break,
                    }
                }
            }
            desc += 20;
        }
        false
    }

    /// The TLS directory and callback array, or `None` when DataDirectory[9] is absent or its
    /// `VirtualAddress` is 0 (the loader's test; `Size` is ignored, as the loader does).
    ///
    /// Entries outside the image are read through `outside` (use [`NoOutside`] for files). The
    /// array is read until a NULL entry, an unreadable entry, or [`CALLBACK_LIMIT`] entries.
    ///
    /// Errors: the directory itself is not readable at its RVA (neither in the view nor through
    /// `outside`).
    pub fn tls(&self, outside: &dyn VaReader) -> Result<Option<TlsInfo>, PeError> {
        let Some(dir) = self.data_directory(DIRECTORY_TLS) else {
            return Ok(None);
        };
        if dir.virtual_address == 0 {
            return Ok(None);
        }
        let dir_rva = u64::from(dir.virtual_address);
        let format = self.format();
        let w = format.va_width();
        let mask = format.va_mask();
        let len = 4 * w + 8;
        let mut raw = [0u8; 40];
        // Through `read_va`, so a partial memory view can be completed by `outside`.
        let dir_va = self.actual_base().wrapping_add(dir_rva) & mask;
        if self.read_rva(dir_rva, &mut raw[..len]) != len
            && self.read_va(dir_va, &mut raw[..len], outside) != len
        {
            return Err(PeError::UnreadableRva {
                what: "TLS directory",
                rva: dir_rva,
            });
        }
        let field = |i: usize| -> u64 {
            let mut b = [0u8; 8];
            b[..w].copy_from_slice(&raw[i * w..i * w + w]);
            u64::from_le_bytes(b)
        };
        let tail = 4 * w;
        let size_of_zero_fill =
            u32::from_le_bytes([raw[tail], raw[tail + 1], raw[tail + 2], raw[tail + 3]]);
        let characteristics =
            u32::from_le_bytes([raw[tail + 4], raw[tail + 5], raw[tail + 6], raw[tail + 7]]);
        let address_of_callbacks = field(3);
        let base = self.actual_base();

        let mut callbacks = Vec::new();
        let mut slot_rvas: Vec<u64> = (0..4).map(|i| dir_rva + (i * w) as u64).collect();
        let (array, end) = if address_of_callbacks == 0 {
            (None, ArrayEnd::NoArray)
        } else {
            let mut array = self.locate_va(address_of_callbacks);
            if let Some(r) = array.rva {
                array.in_import_address_table = self.rva_in_import_address_table(r);
            }
            let mut end = ArrayEnd::Limit {
                entries: CALLBACK_LIMIT,
            };
            let mut last_section: Option<usize> = None;
            for index in 0..CALLBACK_LIMIT {
                let slot_va = (index as u64)
                    .checked_mul(w as u64)
                    .and_then(|o| address_of_callbacks.checked_add(o))
                    .filter(|&v| v <= mask);
                let Some(slot_va) = slot_va else {
                    end = ArrayEnd::Unreadable {
                        va: address_of_callbacks,
                        index,
                    };
                    break;
                };
                let mut b = [0u8; 8];
                if self.read_va(slot_va, &mut b[..w], outside) != w {
                    end = ArrayEnd::Unreadable { va: slot_va, index };
                    break;
                }
                let va = u64::from_le_bytes(b);
                if va == 0 {
                    end = ArrayEnd::Null { index };
                    break;
                }
                // Slots outside the image get an RVA no relocation can name.
                slot_rvas.push(self.va_to_rva(slot_va).unwrap_or(u64::MAX));
                let rva = self.va_to_rva(va);
                // Consecutive callbacks usually share a section: try the last one first.
                let align = self.optional_header().section_alignment;
                let section = rva.and_then(|r| {
                    last_section
                        .and_then(|i| self.sections().get(i))
                        .filter(|s| s.contains_rva(r, align))
                        .or_else(|| self.section_for_rva(r))
                });
                last_section = section.map(|s| s.index).or(last_section);
                callbacks.push(CallbackSlot {
                    index,
                    slot_va,
                    va,
                    rva,
                    in_image: rva.is_some(),
                    section: section.map(|s| s.name.clone()),
                    section_index: section.map(|s| s.index),
                    executable: section.map(|s| s.is_executable()),
                    relocated: false,
                });
            }
            (Some(array), end)
        };
        let (table, covered) = self.relocation_coverage(&slot_rvas);
        for (slot, &c) in callbacks.iter_mut().zip(covered.iter().skip(4)) {
            slot.relocated = c;
        }
        let relocations = TlsRelocations {
            table,
            start_address_of_raw_data: covered.first().copied().unwrap_or(false),
            end_address_of_raw_data: covered.get(1).copied().unwrap_or(false),
            address_of_index: covered.get(2).copied().unwrap_or(false),
            address_of_callbacks: covered.get(3).copied().unwrap_or(false),
        };
        let mut directory = self.locate_va(base.wrapping_add(dir_rva) & mask);
        if directory.rva.is_none() {
            // The directory was readable at its RVA even though the VA arithmetic says
            // otherwise (e.g. RVA past SizeOfImage): keep the RVA.
            directory.rva = Some(dir_rva);
        }
        Ok(Some(TlsInfo {
            directory,
            directory_size: dir.size,
            start_address_of_raw_data: field(0),
            end_address_of_raw_data: field(1),
            address_of_index: field(2),
            address_of_callbacks,
            size_of_zero_fill,
            characteristics,
            array,
            callbacks,
            terminated: matches!(end, ArrayEnd::Null { .. } | ArrayEnd::NoArray),
            hit_limit: matches!(end, ArrayEnd::Limit { .. }),
            end,
            relocations,
        }))
    }
}
