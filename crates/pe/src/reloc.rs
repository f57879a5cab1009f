//! Base relocations: walking the `.reloc` table (via `object::read::pe::RelocationBlockIterator`)
//! and answering "does the loader relocate this field?".

use object::pe;
use object::read::pe::RelocationBlockIterator;
use serde::Serialize;

use crate::image::{DIRECTORY_BASERELOC, PeImage};

/// State of the base relocation table of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum RelocTable {
    /// No base relocation directory (or `VirtualAddress` 0 / `Size` 0): the loader cannot move
    /// any field, so no VA field is relocated.
    Absent,
    /// Parsed to the end.
    Present,
    /// A block is malformed at this RVA; relocations before it were used (the loader stops
    /// there too or refuses the image).
    Malformed {
        /// RVA of the bad block (directory start + offset of the block).
        at_rva: u64,
    },
    /// The directory's bytes are not readable in the image.
    Unreadable {
        /// RVA of the directory.
        rva: u64,
    },
}

/// Type of a base relocation that rewrites a whole VA field of `width` bytes.
pub(crate) fn whole_field_type(width: usize) -> u16 {
    if width == 8 {
        pe::IMAGE_REL_BASED_DIR64.0
    } else {
        pe::IMAGE_REL_BASED_HIGHLOW.0
    }
}

impl PeImage<'_> {
    /// Call `f(rva, type)` for every base relocation entry (type 0 padding entries skipped).
    /// Bounded by the directory size.
    pub fn for_each_base_relocation(&self, mut f: impl FnMut(u64, u16)) -> RelocTable {
        let Some(dir) = self.data_directory(DIRECTORY_BASERELOC) else {
            return RelocTable::Absent;
        };
        if dir.virtual_address == 0 || dir.size == 0 {
            return RelocTable::Absent;
        }
        let rva = u64::from(dir.virtual_address);
        let Some(bytes) = self.rva_bytes(rva, dir.size as usize) else {
            return RelocTable::Unreadable { rva };
        };
        let mut blocks = RelocationBlockIterator::new(&bytes);
        let mut offset = 0u64;
        // Each block consumes at least 10 bytes of `bytes`, so this ends.
        loop {
            match blocks.next() {
                Ok(None) => return RelocTable::Present,
                Ok(Some(block)) => {
                    offset += u64::from(block.size());
                    for r in block {
                        if r.typ.0 != pe::IMAGE_REL_BASED_ABSOLUTE.0 {
                            f(u64::from(r.virtual_address), r.typ.0);
                        }
                    }
                }
                Err(_) => {
                    return RelocTable::Malformed {
                        at_rva: rva + offset,
                    };
                }
            }
        }
    }

    /// For each query RVA, whether a base relocation rewrites the whole VA-width field there
    /// (`HIGHLOW` for PE32, `DIR64` for PE32+). Partial overlaps (e.g. `HIGH`/`LOW` halves) are
    /// not counted.
    pub fn relocation_coverage(&self, rvas: &[u64]) -> (RelocTable, Vec<bool>) {
        let mut covered = vec![false; rvas.len()];
        let mut sorted: Vec<(u64, usize)> = rvas.iter().copied().zip(0..).collect();
        sorted.sort_unstable();
        let want = whole_field_type(self.format().va_width());
        let table = self.for_each_base_relocation(|rva, typ| {
            if typ != want {
                return;
            }
            let start = sorted.partition_point(|&(q, _)| q < rva);
            for &(q, i) in &sorted[start..] {
                if q != rva {
                    break;
                }
                covered[i] = true;
            }
        });
        (table, covered)
    }
}
