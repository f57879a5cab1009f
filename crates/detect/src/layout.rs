//! Image layouts known to the engine: where a target image's PE header and TLS structures lie.
//!
//! A layout is exact when it comes from PE bytes (the file on disk via `preentry-pe`, or written
//! bytes that hold an MZ header) and approximate otherwise (`docs/hunt.md`, "Approximations").
//! Pure: parses bytes it is given; [`ImageLayout::from_disk`] is the only function that reads a
//! file, and it is bounded in size.

use std::path::{Path, PathBuf};

use preentry_pe::{DIRECTORY_TLS, Layout, NoOutside, PeImage};
use serde::Serialize;

use crate::config::Approximation;

/// Largest image file read from disk for its layout.
const MAX_DISK_IMAGE: u64 = 256 * 1024 * 1024;

/// A half-open address range `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AddrRange {
    pub start: u64,
    pub end: u64,
}

impl AddrRange {
    /// `[start, start + len)`, saturating at `u64::MAX`.
    pub fn new(start: u64, len: u64) -> Self {
        AddrRange {
            start,
            end: start.saturating_add(len),
        }
    }

    /// True when `[addr, addr + len)` (len 0 counts as 1) overlaps this range.
    pub fn overlaps(&self, addr: u64, len: u64) -> bool {
        let end = addr.saturating_add(len.max(1));
        addr < self.end && self.start < end
    }

    /// True when `addr` lies inside.
    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }
}

/// Where a layout came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LayoutSource {
    /// The image file on disk, parsed with `preentry-pe`.
    Disk,
    /// Written bytes that start with an MZ header.
    WrittenBytes,
    /// An event gave the base (and maybe size) only: ranges are approximate.
    Event,
}

/// Header and TLS ranges of one image in a target's address space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageLayout {
    /// Image path or name, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Load base in the target.
    pub base: u64,
    /// `SizeOfImage` (or the event's size); `None` = unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// PE header range: exact `[base, base + SizeOfHeaders)` or the approximate first page.
    pub header: AddrRange,
    /// The DataDirectory[9] (TLS) entry inside the header, when the header was parsed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_data_directory: Option<AddrRange>,
    /// IMAGE_TLS_DIRECTORY range, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_directory: Option<AddrRange>,
    /// TLS callback array (entries and NULL terminator), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_callbacks: Option<AddrRange>,
    /// The TLS callbacks' addresses (from the file's array), rebased onto `base`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tls_callback_vas: Vec<u64>,
    /// VA width: 4 (PE32) or 8 (PE32+); `None` when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer_width: Option<u8>,
    /// True when header/TLS ranges come from parsed PE bytes.
    pub exact: bool,
    /// Where it came from.
    pub source: LayoutSource,
}

/// What a write touched in one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteTarget {
    /// DataDirectory[9] in the header.
    TlsDataDirectory,
    /// The IMAGE_TLS_DIRECTORY.
    TlsDirectory,
    /// The TLS callback array.
    TlsCallbackArray,
    /// Elsewhere in the PE header.
    PeHeader,
}

impl WriteTarget {
    /// The evidence indicator name.
    pub fn indicator(self) -> &'static str {
        match self {
            WriteTarget::TlsDataDirectory => "tls_data_directory_write",
            WriteTarget::TlsDirectory => "tls_directory_write",
            WriteTarget::TlsCallbackArray => "tls_callback_array_write",
            WriteTarget::PeHeader => "pe_header_write",
        }
    }

    /// True for the TLS structures.
    pub fn is_tls(self) -> bool {
        !matches!(self, WriteTarget::PeHeader)
    }
}

impl ImageLayout {
    /// An approximate layout: only the base (and maybe the size) is known.
    pub fn approximate(
        image: Option<String>,
        base: u64,
        size: Option<u64>,
        approx: &Approximation,
    ) -> Self {
        ImageLayout {
            image,
            base,
            size,
            header: AddrRange::new(base, approx.header_region_size),
            tls_data_directory: None,
            tls_directory: None,
            tls_callbacks: None,
            tls_callback_vas: Vec::new(),
            pointer_width: None,
            exact: false,
            source: LayoutSource::Event,
        }
    }

    /// The exact layout from PE bytes in file layout (a file on disk, or header bytes written
    /// into a target), placed at `base` (the header's `ImageBase` when `None`).
    pub fn from_pe_bytes(
        bytes: &[u8],
        base: Option<u64>,
        image: Option<String>,
        source: LayoutSource,
    ) -> Option<Self> {
        let pe = PeImage::parse(bytes, Layout::File).ok()?;
        let preferred = pe.image_base();
        let base = base.unwrap_or(preferred);
        let width = pe.format().va_width();
        let headers = u64::from(pe.size_of_headers()).max(0x200);
        let mut layout = ImageLayout {
            image,
            base,
            size: Some(u64::from(pe.size_of_image())).filter(|s| *s > 0),
            header: AddrRange::new(base, headers),
            tls_data_directory: Some(AddrRange::new(
                base.saturating_add(pe.data_directory_offset(DIRECTORY_TLS)),
                8,
            )),
            tls_directory: None,
            tls_callbacks: None,
            tls_callback_vas: Vec::new(),
            pointer_width: u8::try_from(width).ok(),
            exact: true,
            source,
        };
        // VAs in the file are relative to the preferred base; rebase them onto `base`.
        let rebase =
            |va: u64| va.wrapping_sub(preferred).wrapping_add(base) & pe.format().va_mask();
        if let Ok(Some(tls)) = pe.tls(&NoOutside) {
            layout.tls_directory = Some(AddrRange::new(
                rebase(tls.directory.va),
                u64::from(tls.directory_size).clamp(0x18, 0x28),
            ));
            if tls.address_of_callbacks != 0 {
                let slots = tls.callbacks.len() as u64 + u64::from(tls.terminated);
                layout.tls_callbacks = Some(AddrRange::new(
                    rebase(tls.address_of_callbacks),
                    slots.max(1).saturating_mul(width as u64),
                ));
            }
            layout.tls_callback_vas = tls.callbacks.iter().map(|c| rebase(c.va)).collect();
        }
        Some(layout)
    }

    /// Read the image file for `image` (a Windows or POSIX path) under `approx.disk_root`, or as
    /// is, and build its exact layout at `base`. `None` when the file is absent or not a PE.
    pub fn from_disk(
        image: &str,
        base: Option<u64>,
        approx: &Approximation,
    ) -> Option<(Self, PathBuf)> {
        if !approx.read_images_from_disk {
            return None;
        }
        let name = crate::config::file_name(image.trim().trim_matches('"'));
        let candidates = disk_path(image, approx.disk_root.as_deref())
            .into_iter()
            .chain(
                approx
                    .image_dirs
                    .iter()
                    .filter(|_| !name.is_empty() && name != "." && name != "..")
                    .map(|d| d.join(name)),
            );
        let path = candidates.into_iter().find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() <= MAX_DISK_IMAGE)
        })?;
        let bytes = std::fs::read(&path).ok()?;
        let layout =
            Self::from_pe_bytes(&bytes, base, Some(image.to_string()), LayoutSource::Disk)?;
        Some((layout, path))
    }

    /// The same layout moved to another base (every range and callback VA shifted).
    pub fn rebased(&self, base: u64) -> Self {
        let delta = base.wrapping_sub(self.base);
        let mv = |r: AddrRange| AddrRange {
            start: r.start.wrapping_add(delta),
            end: r.end.wrapping_add(delta),
        };
        ImageLayout {
            image: self.image.clone(),
            base,
            size: self.size,
            header: mv(self.header),
            tls_data_directory: self.tls_data_directory.map(mv),
            tls_directory: self.tls_directory.map(mv),
            tls_callbacks: self.tls_callbacks.map(mv),
            tls_callback_vas: self
                .tls_callback_vas
                .iter()
                .map(|v| v.wrapping_add(delta))
                .collect(),
            pointer_width: self.pointer_width,
            exact: self.exact,
            source: self.source,
        }
    }

    /// The image's span: `[base, base + size)` with the approximate span when unknown.
    pub fn span(&self, approx: &Approximation) -> AddrRange {
        AddrRange::new(self.base, self.size.unwrap_or(approx.image_span))
    }

    /// Classify a write of `len` bytes at `addr` (most specific first).
    pub fn classify_write(&self, addr: u64, len: u64) -> Option<WriteTarget> {
        if let Some(r) = self.tls_callbacks
            && r.overlaps(addr, len)
        {
            return Some(WriteTarget::TlsCallbackArray);
        }
        if let Some(r) = self.tls_directory
            && r.overlaps(addr, len)
        {
            return Some(WriteTarget::TlsDirectory);
        }
        if let Some(r) = self.tls_data_directory
            && r.overlaps(addr, len)
        {
            return Some(WriteTarget::TlsDataDirectory);
        }
        if self.header.overlaps(addr, len) {
            return Some(WriteTarget::PeHeader);
        }
        None
    }

    /// Learn the callback array from bytes written over the TLS directory (its
    /// `AddressOfCallBacks` field), when the directory range is known.
    /// Returns the new array address.
    pub fn learn_from_tls_directory_write(&mut self, addr: u64, bytes: &[u8]) -> Option<u64> {
        let (Some(dir), Some(width)) = (self.tls_directory, self.pointer_width) else {
            return None;
        };
        let width = u64::from(width);
        let field = dir.start.saturating_add(3 * width);
        let off = field.checked_sub(addr)?;
        let v = read_le(bytes, off, width)?;
        if v == 0 {
            return None;
        }
        // At least the first slot and the terminator.
        self.tls_callbacks = Some(AddrRange::new(v, 2 * width));
        Some(v)
    }
}

/// Read a little-endian value of `width` (4 or 8) bytes at `off`.
pub fn read_le(bytes: &[u8], off: u64, width: u64) -> Option<u64> {
    let off = usize::try_from(off).ok()?;
    let width = usize::try_from(width).ok()?;
    let end = off.checked_add(width)?;
    let slice = bytes.get(off..end)?;
    let mut b = [0u8; 8];
    b.get_mut(..width)?.copy_from_slice(slice);
    Some(u64::from_le_bytes(b))
}

/// Map a Windows path (`C:\Windows\x.exe`) onto `root` (`root/Windows/x.exe`), or use the path
/// as is without a root.
pub fn disk_path(image: &str, root: Option<&Path>) -> Option<PathBuf> {
    let trimmed = image.trim().trim_matches('"');
    if trimmed.is_empty() {
        return None;
    }
    match root {
        // Wine maps drive Z: onto the Unix root.
        None => match trimmed.as_bytes() {
            [b'Z' | b'z', b':', b'\\' | b'/', ..] => Some(PathBuf::from(format!(
                "/{}",
                trimmed[3..].replace('\\', "/")
            ))),
            _ => Some(PathBuf::from(trimmed)),
        },
        Some(root) => {
            // Drop a drive letter and leading separators; split on both separators.
            let rest = match trimmed.as_bytes() {
                [d, b':', ..] if d.is_ascii_alphabetic() => &trimmed[2..],
                _ => trimmed,
            };
            let mut p = root.to_path_buf();
            for part in rest.split(['\\', '/']).filter(|s| !s.is_empty()) {
                if part == ".." || part == "." {
                    return None;
                }
                p.push(part);
            }
            Some(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = AddrRange::new(0x1000, 0x10);
        assert!(r.overlaps(0x100f, 1));
        assert!(!r.overlaps(0x1010, 4));
        assert!(r.overlaps(0xff0, 0x20));
        assert!(r.overlaps(0x1000, 0));
        assert!(AddrRange::new(u64::MAX - 1, 10).contains(u64::MAX - 1));
    }

    #[test]
    fn approximate_header_is_one_page() {
        let a = Approximation::default();
        let l = ImageLayout::approximate(None, 0x400000, None, &a);
        assert_eq!(l.classify_write(0x400000, 2), Some(WriteTarget::PeHeader));
        assert_eq!(l.classify_write(0x400fff, 1), Some(WriteTarget::PeHeader));
        assert_eq!(l.classify_write(0x401000, 8), None);
        assert!(!l.exact);
    }

    #[test]
    fn disk_paths() {
        let root = Path::new("/r");
        assert_eq!(
            disk_path(r"C:\Windows\System32\a.exe", Some(root)),
            Some(PathBuf::from("/r/Windows/System32/a.exe"))
        );
        assert_eq!(disk_path(r"C:\..\x", Some(root)), None);
        assert_eq!(disk_path("", None), None);
        assert_eq!(
            disk_path(r"Z:\work\a.exe", None),
            Some(PathBuf::from("/work/a.exe"))
        );
        assert_eq!(
            disk_path("/tmp/x.exe", None),
            Some(PathBuf::from("/tmp/x.exe"))
        );
    }

    #[test]
    fn read_le_is_bounded() {
        assert_eq!(read_le(&[1, 0, 0, 0], 0, 4), Some(1));
        assert_eq!(read_le(&[1, 0, 0], 0, 4), None);
        assert_eq!(read_le(&[1, 0, 0, 0], u64::MAX, 4), None);
    }
}
