//! Base relocations: walking the `.reloc` table and answering "does the loader relocate this
//! field?".
//!
//! Our own block walker rather than `object::read::pe::RelocationBlockIterator`: that iterator
//! rejects blocks whose `SizeOfBlock` is not a multiple of 4, which the Windows loader accepts
//! (it processes `(SizeOfBlock - 8) / 2` entries and continues at the next block); corkami
//! `tls_reloc.exe` has exactly such a block.

use object::pe;
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
        walk_blocks(&bytes, rva, &mut f)
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

/// Walk relocation blocks like the loader: while at least a block header remains and
/// `SizeOfBlock >= 8`, process `(SizeOfBlock - 8) / 2` entries, then continue at the next block.
fn walk_blocks(bytes: &[u8], dir_rva: u64, f: &mut impl FnMut(u64, u16)) -> RelocTable {
    let mut pos = 0usize;
    // Each iteration advances `pos` by at least 8 bytes.
    while bytes.len().saturating_sub(pos) >= 8 {
        let h = &bytes[pos..pos + 8];
        let page = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let size = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
        if size == 0 && page == 0 {
            // Zero padding after the last block.
            return RelocTable::Present;
        }
        if size < 8 {
            return RelocTable::Malformed {
                at_rva: dir_rva + pos as u64,
            };
        }
        let count = (size - 8) / 2;
        let entries_start = pos + 8;
        let available = (bytes.len() - entries_start) / 2;
        for k in 0..count.min(available) {
            let at = entries_start + 2 * k;
            let e = u16::from_le_bytes([bytes[at], bytes[at + 1]]);
            let typ = e >> 12;
            if typ != pe::IMAGE_REL_BASED_ABSOLUTE.0 {
                f(u64::from(page) + u64::from(e & 0xfff), typ);
            }
        }
        if count > available {
            return RelocTable::Malformed {
                at_rva: dir_rva + pos as u64,
            };
        }
        pos = entries_start + 2 * count;
    }
    RelocTable::Present
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(bytes: &[u8]) -> (RelocTable, Vec<(u64, u16)>) {
        let mut v = Vec::new();
        let t = walk_blocks(bytes, 0x5000, &mut |r, t| v.push((r, t)));
        (t, v)
    }

    #[test]
    fn odd_sized_block_is_accepted_like_the_loader() {
        // One block at page 0x1000, SizeOfBlock 10 (not a multiple of 4), one HIGHLOW at +4.
        let mut b = vec![0x00, 0x10, 0, 0, 10, 0, 0, 0, 0x04, 0x30];
        // A second block right after it (at +10), one DIR64 at +8.
        b.extend_from_slice(&[0x00, 0x20, 0, 0, 12, 0, 0, 0, 0x08, 0xA0, 0, 0]);
        let (t, v) = collect(&b);
        assert_eq!(t, RelocTable::Present);
        assert_eq!(v, vec![(0x1004, 3), (0x2008, 10)]);
    }

    #[test]
    fn bad_block_sizes_are_malformed() {
        let (t, v) = collect(&[0, 0x10, 0, 0, 4, 0, 0, 0]);
        assert_eq!(t, RelocTable::Malformed { at_rva: 0x5000 });
        assert!(v.is_empty());
        let (t, v) = collect(&[0, 0x10, 0, 0, 0x20, 0, 0, 0, 0x04, 0x30]);
        assert_eq!(t, RelocTable::Malformed { at_rva: 0x5000 });
        assert_eq!(v, vec![(0x1004, 3)]);
    }
}
