//! Test support (cargo feature `synth`): build a loaded image from a real file as a loader
//! would (headers and sections at their RVAs, zero-fill, base relocations applied for another
//! base, `OptionalHeader.ImageBase` rewritten), then tamper with single fields.
//!
//! Like `minidump-synth` for dumps: for tests in this crate and in `scan`/`memory`. Never used
//! on the detection path.

use object::pe;

use crate::error::PeError;
use crate::image::{DIRECTORY_TLS, Format, Layout, PeImage};
use crate::tls::VaReader;

/// Largest `SizeOfImage` the builder maps (to keep tests and fuzzing bounded).
pub const MAX_SYNTH_IMAGE: u32 = 64 << 20;

/// How to map.
#[derive(Debug, Clone, Copy)]
pub struct MapOptions {
    /// Write the actual base into `OptionalHeader.ImageBase` (the Windows loader does).
    pub write_image_base: bool,
}

impl Default for MapOptions {
    fn default() -> Self {
        MapOptions {
            write_image_base: true,
        }
    }
}

/// A loaded image under construction: `bytes[i]` is RVA `i`, the image sits at `base`.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// Load base.
    pub base: u64,
    /// The mapped bytes (`SizeOfImage` long).
    pub bytes: Vec<u8>,
    format: Format,
}

/// Which TLS directory field to patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum TlsField {
    StartAddressOfRawData,
    EndAddressOfRawData,
    AddressOfIndex,
    AddressOfCallbacks,
    SizeOfZeroFill,
    Characteristics,
}

impl LoadedImage {
    /// Map `file` at `base` with default options (relocations applied, ImageBase written).
    pub fn map(file: &[u8], base: u64) -> Result<LoadedImage, PeError> {
        Self::map_with(file, base, MapOptions::default())
    }

    /// Map `file` at `base`.
    pub fn map_with(file: &[u8], base: u64, options: MapOptions) -> Result<LoadedImage, PeError> {
        let img = PeImage::parse(file, Layout::File)?;
        let size = img.size_of_image();
        if size > MAX_SYNTH_IMAGE {
            return Err(PeError::Truncated {
                what: "synth image (SizeOfImage too large)",
                offset: 0,
                need: size.into(),
                available: MAX_SYNTH_IMAGE.into(),
            });
        }
        let size = size as usize;
        let mut bytes = vec![0u8; size];
        let mut pos = 0usize;
        while pos < size {
            let end = (pos + 0x200).min(size);
            img.read_rva(pos as u64, &mut bytes[pos..end]);
            pos = end;
        }
        let format = img.format();
        let mask = format.va_mask();
        let base = base & mask;
        let delta = base.wrapping_sub(img.image_base());
        img.for_each_base_relocation(|rva, typ| {
            let Ok(at) = usize::try_from(rva) else { return };
            match typ {
                t if t == pe::IMAGE_REL_BASED_HIGHLOW.0 => {
                    if let Some(b) = bytes
                        .get_mut(at..at.saturating_add(4))
                        .filter(|b| b.len() == 4)
                    {
                        let v =
                            u32::from_le_bytes([b[0], b[1], b[2], b[3]]).wrapping_add(delta as u32);
                        b.copy_from_slice(&v.to_le_bytes());
                    }
                }
                t if t == pe::IMAGE_REL_BASED_DIR64.0 => {
                    if let Some(b) = bytes
                        .get_mut(at..at.saturating_add(8))
                        .filter(|b| b.len() == 8)
                    {
                        let mut a = [0u8; 8];
                        a.copy_from_slice(b);
                        let v = u64::from_le_bytes(a).wrapping_add(delta);
                        b.copy_from_slice(&v.to_le_bytes());
                    }
                }
                t if t == pe::IMAGE_REL_BASED_HIGH.0 || t == pe::IMAGE_REL_BASED_LOW.0 => {
                    if let Some(b) = bytes
                        .get_mut(at..at.saturating_add(2))
                        .filter(|b| b.len() == 2)
                    {
                        let part = if t == pe::IMAGE_REL_BASED_HIGH.0 {
                            (delta >> 16) as u16
                        } else {
                            delta as u16
                        };
                        let v = u16::from_le_bytes([b[0], b[1]]).wrapping_add(part);
                        b.copy_from_slice(&v.to_le_bytes());
                    }
                }
                _ => {}
            }
        });
        let mut out = LoadedImage {
            base,
            bytes,
            format,
        };
        if options.write_image_base {
            let off = img.optional_header_offset() + image_base_offset(format);
            out.write_width(off, format.va_width(), base);
        }
        Ok(out)
    }

    /// Parse the current bytes in loaded layout.
    pub fn image(&self) -> Result<PeImage<'_>, PeError> {
        PeImage::parse(&self.bytes, Layout::Loaded { base: self.base })
    }

    /// Write a little-endian value of `width` bytes at `rva` (silently clipped at the end).
    pub fn write_width(&mut self, rva: u64, width: usize, value: u64) {
        let Ok(at) = usize::try_from(rva) else { return };
        let bytes = value.to_le_bytes();
        for (i, &b) in bytes.iter().take(width).enumerate() {
            if let Some(slot) = at.checked_add(i).and_then(|p| self.bytes.get_mut(p)) {
                *slot = b;
            }
        }
    }

    /// Write a VA-width value (4 bytes PE32, 8 bytes PE32+) at `rva`.
    pub fn write_va(&mut self, rva: u64, value: u64) {
        self.write_width(rva, self.format.va_width(), value);
    }

    /// Patch `OptionalHeader.AddressOfEntryPoint`.
    pub fn set_entry_point(&mut self, rva: u32) -> Result<(), PeError> {
        let off = self.image()?.optional_header_offset() + 16;
        self.write_width(off, 4, rva.into());
        Ok(())
    }

    /// Patch a section's `Characteristics`.
    pub fn set_section_characteristics(&mut self, index: usize, value: u32) -> Result<(), PeError> {
        let off = self.image()?.section_table_offset() + 40 * index as u64 + 36;
        self.write_width(off, 4, value.into());
        Ok(())
    }

    /// Patch data directory `index`.
    pub fn set_data_directory(&mut self, index: usize, rva: u32, size: u32) -> Result<(), PeError> {
        let off = self.image()?.data_directory_offset(index);
        self.write_width(off, 4, rva.into());
        self.write_width(off + 4, 4, size.into());
        Ok(())
    }

    /// RVA of the TLS directory (DataDirectory[9].VirtualAddress).
    pub fn tls_directory_rva(&self) -> Result<Option<u64>, PeError> {
        Ok(self
            .image()?
            .data_directory(DIRECTORY_TLS)
            .filter(|d| d.virtual_address != 0)
            .map(|d| u64::from(d.virtual_address)))
    }

    /// Patch one TLS directory field. Errors when the image has no TLS directory.
    pub fn set_tls_field(&mut self, field: TlsField, value: u64) -> Result<(), PeError> {
        let dir = self.tls_directory_rva()?.ok_or(PeError::UnreadableRva {
            what: "TLS directory (none)",
            rva: 0,
        })?;
        let w = self.format.va_width();
        let (off, width) = match field {
            TlsField::StartAddressOfRawData => (0, w),
            TlsField::EndAddressOfRawData => (w, w),
            TlsField::AddressOfIndex => (2 * w, w),
            TlsField::AddressOfCallbacks => (3 * w, w),
            TlsField::SizeOfZeroFill => (4 * w, 4),
            TlsField::Characteristics => (4 * w + 4, 4),
        };
        self.write_width(dir + off as u64, width, value);
        Ok(())
    }

    /// Overwrite callback slot `index` of the array `AddressOfCallBacks` points to (which must
    /// lie in the image).
    pub fn set_callback(&mut self, index: usize, va: u64) -> Result<(), PeError> {
        let image = self.image()?;
        let tls = image
            .tls(&crate::tls::NoOutside)?
            .ok_or(PeError::UnreadableRva {
                what: "TLS directory (none)",
                rva: 0,
            })?;
        let w = self.format.va_width() as u64;
        let slot = tls.address_of_callbacks.wrapping_add(w * index as u64);
        let rva = image.va_to_rva(slot).ok_or(PeError::UnreadableRva {
            what: "callback slot outside the image",
            rva: slot.wrapping_sub(self.base),
        })?;
        self.write_va(rva, va);
        Ok(())
    }
}

fn image_base_offset(format: Format) -> u64 {
    match format {
        Format::Pe32 => 28,
        Format::Pe32Plus => 24,
    }
}

/// Memory outside the image for tests: a list of `(va, bytes)` regions.
#[derive(Debug, Clone, Default)]
pub struct Regions(pub Vec<(u64, Vec<u8>)>);

impl VaReader for Regions {
    fn read_va(&self, va: u64, buf: &mut [u8]) -> usize {
        for (start, bytes) in &self.0 {
            if let Some(off) = va.checked_sub(*start)
                && let Ok(off) = usize::try_from(off)
                && off < bytes.len()
            {
                let n = buf.len().min(bytes.len() - off);
                buf[..n].copy_from_slice(&bytes[off..off + n]);
                return n;
            }
        }
        0
    }
}

/// Run every reader entry point over `bytes` in both layouts (file, and loaded at `base`):
/// headers, RVA reads, TLS with and without outside memory, facts, relocation to another base,
/// diff between layouts, and (for small images) the synth mapping. Shared by the proptest and
/// the cargo-fuzz target; returns a value derived from the results so nothing is optimised
/// away. Must never panic.
pub fn exercise(bytes: &[u8], base: u64) -> usize {
    let mut acc = 0usize;
    let outside = Regions(vec![(
        base.wrapping_add(0x10_0000),
        bytes.get(..64).unwrap_or(bytes).to_vec(),
    )]);
    let mut facts_by_layout = Vec::new();
    for layout in [Layout::File, Layout::Loaded { base }] {
        let Ok(img) = PeImage::parse(bytes, layout) else {
            acc += 1;
            continue;
        };
        acc += img.sections().len() + img.data_directories().len();
        let mut buf = [0u8; 16];
        for rva in [
            0u64,
            0x3c,
            u64::from(img.entry_point_rva()),
            u64::from(img.size_of_image()),
            u64::MAX - 3,
        ] {
            acc += img.read_rva(rva, &mut buf);
            acc += img
                .locate_va(img.actual_base().wrapping_add(rva))
                .directories
                .len();
        }
        if let Ok(Some(t)) = img.tls(&outside) {
            acc += t.callbacks.len();
        }
        let facts = crate::ImageFacts::from_image(&img, &crate::NoOutside);
        let moved = facts.relocated_to(base ^ 0x1234_0000);
        acc += crate::diff(&moved, &facts).len();
        acc += serde_json::to_vec(&facts).map(|v| v.len()).unwrap_or(0);
        facts_by_layout.push(facts);
    }
    if let [a, b] = facts_by_layout.as_slice() {
        acc += crate::diff(&a.relocated_to(base), b).len();
    }
    if let Ok(img) = PeImage::parse(bytes, Layout::File)
        && img.size_of_image() <= 1 << 20
        && let Ok(mut mem) = LoadedImage::map(bytes, base)
    {
        let _ = mem.set_callback(0, base);
        let _ = mem.set_tls_field(TlsField::AddressOfCallbacks, base);
        let _ = mem.set_entry_point(0);
        let _ = mem.set_section_characteristics(0, 0);
        if let Ok(img) = mem.image() {
            acc += crate::ImageFacts::from_image(&img, &outside).sections.len();
        }
    }
    acc
}
