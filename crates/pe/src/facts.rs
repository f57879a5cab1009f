//! [`ImageFacts`]: the comparable, serialisable snapshot of an image (headers, data directories,
//! section table, TLS), and its relocation to another base.

use serde::Serialize;

use crate::image::{
    DataDirectory, DosHeader, FileHeader, Format, OptionalHeader, PeImage, Section, machine_name,
};
use crate::tls::{ArrayEnd, Location, TlsInfo, VaReader};

/// Everything we compare between two images of the same module (typically disk vs memory).
///
/// Serialized field names are the `inspect --json` contract: `machine`, `format`, `image_base`,
/// `entry_point_rva`, `size_of_image`, `sections[]` (`name`, `virtual_address`, `virtual_size`,
/// `characteristics`, …), `tls` (`null` or the six fields, `callbacks[]` with `va`, `rva`,
/// `section`, and `callbacks_terminated`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageFacts {
    /// `FileHeader.Machine`.
    pub machine: u16,
    /// Short name of the machine (`i386`, `amd64`, …).
    pub machine_name: &'static str,
    /// `pe32` or `pe32+`.
    pub format: Format,
    /// `OptionalHeader.ImageBase` as found in the view.
    pub image_base: u64,
    /// Base the image actually sits at (header `ImageBase` for files, the caller's base for
    /// loaded images). Callback RVAs are relative to it.
    pub actual_base: u64,
    /// `AddressOfEntryPoint`.
    pub entry_point_rva: u32,
    /// `SizeOfImage`.
    pub size_of_image: u32,
    /// `SizeOfHeaders`.
    pub size_of_headers: u32,
    /// DOS header fields.
    pub dos_header: DosHeader,
    /// File header.
    pub file_header: FileHeader,
    /// Optional header (fixed part).
    pub optional_header: OptionalHeader,
    /// Present data directories.
    pub data_directories: Vec<DataDirectory>,
    /// Section table (as far as the view holds it).
    pub sections: Vec<Section>,
    /// Fewer section headers were readable than `file_header.number_of_sections` declares.
    pub section_table_truncated: bool,
    /// TLS directory and callbacks; `None` when the image has no TLS directory or it could not
    /// be read (then `tls_error` says why).
    pub tls: Option<TlsInfo>,
    /// Why the TLS directory could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_error: Option<String>,
}

impl ImageFacts {
    /// Take the snapshot. `outside` supplies bytes for a callback array outside the image.
    pub fn from_image(image: &PeImage<'_>, outside: &dyn VaReader) -> ImageFacts {
        let (tls, tls_error) = match image.tls(outside) {
            Ok(t) => (t, None),
            Err(e) => (None, Some(e.to_string())),
        };
        ImageFacts {
            machine: image.machine(),
            machine_name: machine_name(image.machine()),
            format: image.format(),
            image_base: image.image_base(),
            actual_base: image.actual_base(),
            entry_point_rva: image.entry_point_rva(),
            size_of_image: image.size_of_image(),
            size_of_headers: image.size_of_headers(),
            dos_header: *image.dos_header(),
            file_header: *image.file_header(),
            optional_header: *image.optional_header(),
            data_directories: image.data_directories().to_vec(),
            sections: image.sections().to_vec(),
            section_table_truncated: image.section_table_truncated(),
            tls,
            tls_error,
        }
    }

    /// The facts a loader would produce after mapping this image at `new_base`:
    ///
    /// * `image_base` and `optional_header.image_base` become `new_base`: the Windows loader
    ///   writes the actual base into `OptionalHeader.ImageBase` of the mapped header (Wine may
    ///   not; see [`crate::diff::LOADER_WRITTEN_FIELDS`] to exclude the field from a diff).
    /// * A TLS VA field or callback entry is shifted by `new_base - actual_base` exactly when a
    ///   base relocation rewrites it ([`TlsInfo::relocations`], [`crate::CallbackSlot::relocated`]);
    ///   without relocations nothing moves, as with the real loader. Values wrap at 32 bits in
    ///   PE32. If the callback array was inside the image but its pointer is not relocated, the
    ///   expected array is `Unreadable` at the stale VA with no callbacks (what the reader gives
    ///   for such an image with [`crate::NoOutside`]; the file cannot say what lies there).
    /// * RVAs and section classification of callbacks are recomputed against `new_base`;
    ///   header RVA fields, data directories and the section table do not change.
    pub fn relocated_to(&self, new_base: u64) -> ImageFacts {
        let mask = self.format.va_mask();
        let new_base = new_base & mask;
        let delta = new_base.wrapping_sub(self.actual_base);
        let shift = |v: u64| v.wrapping_add(delta) & mask;
        let mut out = self.clone();
        out.image_base = new_base;
        out.actual_base = new_base;
        out.optional_header.image_base = new_base;
        if let Some(tls) = out.tls.as_mut() {
            let r = tls.relocations;
            if r.start_address_of_raw_data {
                tls.start_address_of_raw_data = shift(tls.start_address_of_raw_data);
            }
            if r.end_address_of_raw_data {
                tls.end_address_of_raw_data = shift(tls.end_address_of_raw_data);
            }
            if r.address_of_index {
                tls.address_of_index = shift(tls.address_of_index);
            }
            if r.address_of_callbacks {
                tls.address_of_callbacks = shift(tls.address_of_callbacks);
            }
            if let Some(rva) = tls.directory.rva {
                tls.directory = self.relocate_location(
                    &tls.directory,
                    new_base.wrapping_add(rva) & mask,
                    new_base,
                );
            }
            let old_rva = tls.array.as_ref().and_then(|a| a.rva);
            if tls.address_of_callbacks == 0 {
                tls.array = None;
            } else {
                let old = tls.array.clone();
                let moved = match &old {
                    Some(a) => self.relocate_location(a, tls.address_of_callbacks, new_base),
                    None => self.classify(tls.address_of_callbacks, new_base),
                };
                if old.is_none() || (old_rva.is_some() && moved.rva != old_rva) {
                    // The array pointer now designates other bytes (a relocation made a zero
                    // pointer non-zero, or the image moved under an unrelocated pointer): the
                    // file cannot tell what the loader would read there.
                    tls.callbacks.clear();
                    tls.terminated = false;
                    tls.hit_limit = false;
                    tls.end = ArrayEnd::Unreadable {
                        va: tls.address_of_callbacks,
                        index: 0,
                    };
                }
                tls.array = Some(moved);
            }
            for slot in &mut tls.callbacks {
                if self.va_in_image(slot.slot_va, self.actual_base) {
                    slot.slot_va = shift(slot.slot_va);
                }
                if slot.relocated {
                    slot.va = shift(slot.va);
                }
                let loc = self.classify(slot.va, new_base);
                slot.rva = loc.rva;
                slot.in_image = loc.in_image;
                slot.section = loc.section;
                slot.section_index = loc.section_index;
                slot.executable = loc.executable;
            }
        }
        out
    }

    fn va_in_image(&self, va: u64, base: u64) -> bool {
        va.checked_sub(base)
            .is_some_and(|r| r < u64::from(self.size_of_image))
    }

    /// Classify `va` against this snapshot's section table for an image at `base`.
    pub fn classify(&self, va: u64, base: u64) -> Location {
        let rva = va
            .checked_sub(base)
            .filter(|&r| r < u64::from(self.size_of_image));
        let align = self.optional_header.section_alignment;
        let section = rva.and_then(|r| self.sections.iter().find(|s| s.contains_rva(r, align)));
        Location {
            va,
            rva,
            in_image: rva.is_some(),
            section: section.map(|s| s.name.clone()),
            section_index: section.map(|s| s.index),
            executable: section.map(|s| s.is_executable()),
            directories: rva
                .map(|r| {
                    self.data_directories
                        .iter()
                        .filter(|d| d.contains_rva(r))
                        .map(|d| d.name)
                        .collect()
                })
                .unwrap_or_default(),
            in_import_address_table: false,
        }
    }

    fn relocate_location(&self, old: &Location, new_va: u64, new_base: u64) -> Location {
        let mut loc = self.classify(new_va, new_base);
        if loc.rva.is_some() && loc.rva == old.rva {
            loc.in_import_address_table = old.in_import_address_table;
        }
        loc
    }
}
