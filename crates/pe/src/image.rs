//! The PE reader: headers, section table, data directories, and RVA reads in either layout.

use std::borrow::Cow;

use object::LittleEndian as LE;
use object::pe;
use object::read::pe::ImageOptionalHeader;
use serde::Serialize;

use crate::error::PeError;

/// How the bytes handed to [`PeImage::parse`] are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Layout {
    /// The file as on disk: an RVA is turned into a file offset through the section table
    /// (Windows loader rules: `PointerToRawData` rounded down to 0x200 when
    /// `FileAlignment >= 0x200`, bytes past `SizeOfRawData` but inside the section's virtual
    /// extent read as zeros; the header region is `SizeOfHeaders` rounded up to the section
    /// alignment, cut at the first section). The load base is the header's `ImageBase`.
    /// Headers themselves (NT headers, data directories, section table) are read at file
    /// offsets, as the kernel's image mapper and pefile do; a "folded" header that runs into
    /// section space therefore reads differently in memory, and the diff shows it.
    File,
    /// The image as a loader mapped it: byte `i` of the view is RVA `i`. `base` is the address
    /// the image actually sits at (given by the caller; the header's `ImageBase` is never trusted
    /// for this).
    Loaded {
        /// Actual load base.
        base: u64,
    },
}

/// Optional header flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Format {
    /// Magic 0x10B, 32-bit VAs.
    #[serde(rename = "pe32")]
    Pe32,
    /// Magic 0x20B, 64-bit VAs.
    #[serde(rename = "pe32+")]
    Pe32Plus,
}

impl Format {
    /// Width in bytes of a VA field (TLS fields, callback entries).
    pub fn va_width(self) -> usize {
        match self {
            Format::Pe32 => 4,
            Format::Pe32Plus => 8,
        }
    }

    /// Mask of the VA space (`u32::MAX` for PE32).
    pub fn va_mask(self) -> u64 {
        match self {
            Format::Pe32 => u64::from(u32::MAX),
            Format::Pe32Plus => u64::MAX,
        }
    }
}

/// The two DOS header fields that matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DosHeader {
    /// `MZ` = 0x5A4D.
    pub e_magic: u16,
    /// Offset of the NT headers.
    pub e_lfanew: u32,
}

/// `IMAGE_FILE_HEADER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[allow(missing_docs)]
pub struct FileHeader {
    pub machine: u16,
    pub number_of_sections: u16,
    pub time_date_stamp: u32,
    pub pointer_to_symbol_table: u32,
    pub number_of_symbols: u32,
    pub size_of_optional_header: u16,
    pub characteristics: u16,
}

/// `IMAGE_OPTIONAL_HEADER32/64` without the data directories, both widths in one struct.
/// `base_of_data` exists only in PE32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[allow(missing_docs)]
pub struct OptionalHeader {
    pub magic: u16,
    pub major_linker_version: u8,
    pub minor_linker_version: u8,
    pub size_of_code: u32,
    pub size_of_initialized_data: u32,
    pub size_of_uninitialized_data: u32,
    pub address_of_entry_point: u32,
    pub base_of_code: u32,
    pub base_of_data: Option<u32>,
    pub image_base: u64,
    pub section_alignment: u32,
    pub file_alignment: u32,
    pub major_operating_system_version: u16,
    pub minor_operating_system_version: u16,
    pub major_image_version: u16,
    pub minor_image_version: u16,
    pub major_subsystem_version: u16,
    pub minor_subsystem_version: u16,
    pub win32_version_value: u32,
    pub size_of_image: u32,
    pub size_of_headers: u32,
    pub check_sum: u32,
    pub subsystem: u16,
    pub dll_characteristics: u16,
    pub size_of_stack_reserve: u64,
    pub size_of_stack_commit: u64,
    pub size_of_heap_reserve: u64,
    pub size_of_heap_commit: u64,
    pub loader_flags: u32,
    pub number_of_rva_and_sizes: u32,
}

/// Names of the 16 data directories, as used in diff field names
/// (`data_directory.<name>.virtual_address`).
pub const DATA_DIRECTORY_NAMES: [&str; 16] = [
    "export",
    "import",
    "resource",
    "exception",
    "security",
    "basereloc",
    "debug",
    "architecture",
    "globalptr",
    "tls",
    "load_config",
    "bound_import",
    "iat",
    "delay_import",
    "clr_runtime",
    "reserved",
];

/// Index of the TLS directory.
pub const DIRECTORY_TLS: usize = pe::IMAGE_DIRECTORY_ENTRY_TLS;
/// Index of the base relocation directory.
pub const DIRECTORY_BASERELOC: usize = pe::IMAGE_DIRECTORY_ENTRY_BASERELOC;
/// Index of the import directory.
pub const DIRECTORY_IMPORT: usize = pe::IMAGE_DIRECTORY_ENTRY_IMPORT;
/// Index of the import address table directory.
pub const DIRECTORY_IAT: usize = pe::IMAGE_DIRECTORY_ENTRY_IAT;
/// Index of the security directory (its address is a file offset, not an RVA).
pub const DIRECTORY_SECURITY: usize = pe::IMAGE_DIRECTORY_ENTRY_SECURITY;

/// One data directory entry. Only the first `min(NumberOfRvaAndSizes, 16)` exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DataDirectory {
    /// Index 0..16.
    pub index: usize,
    /// Name from [`DATA_DIRECTORY_NAMES`].
    pub name: &'static str,
    /// RVA (file offset for `security`).
    pub virtual_address: u32,
    /// Size in bytes.
    pub size: u32,
}

impl DataDirectory {
    /// Whether `rva` falls inside this directory's range (never for `security`, whose address is
    /// a file offset, nor for empty entries).
    pub fn contains_rva(&self, rva: u64) -> bool {
        if self.index == DIRECTORY_SECURITY || self.virtual_address == 0 || self.size == 0 {
            return false;
        }
        let start = u64::from(self.virtual_address);
        rva >= start && rva < start + u64::from(self.size)
    }
}

/// One section header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Section {
    /// Position in the section table.
    pub index: usize,
    /// Name up to the first NUL, lossily decoded as UTF-8.
    pub name: String,
    /// Hex of the name bytes (up to the first NUL) when they are not valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_hex: Option<String>,
    /// The eight raw name bytes.
    #[serde(skip)]
    pub raw_name: [u8; 8],
    #[allow(missing_docs)]
    pub virtual_size: u32,
    #[allow(missing_docs)]
    pub virtual_address: u32,
    #[allow(missing_docs)]
    pub size_of_raw_data: u32,
    #[allow(missing_docs)]
    pub pointer_to_raw_data: u32,
    #[allow(missing_docs)]
    pub pointer_to_relocations: u32,
    #[allow(missing_docs)]
    pub pointer_to_linenumbers: u32,
    #[allow(missing_docs)]
    pub number_of_relocations: u16,
    #[allow(missing_docs)]
    pub number_of_linenumbers: u16,
    #[allow(missing_docs)]
    pub characteristics: u32,
}

impl Section {
    fn from_raw(index: usize, h: &pe::ImageSectionHeader) -> Section {
        let raw_name = h.name;
        let (name, name_hex) = decode_name(&raw_name);
        Section {
            index,
            name,
            name_hex,
            raw_name,
            virtual_size: h.virtual_size.get(LE),
            virtual_address: h.virtual_address.get(LE),
            size_of_raw_data: h.size_of_raw_data.get(LE),
            pointer_to_raw_data: h.pointer_to_raw_data.get(LE),
            pointer_to_relocations: h.pointer_to_relocations.get(LE),
            pointer_to_linenumbers: h.pointer_to_linenumbers.get(LE),
            number_of_relocations: h.number_of_relocations.get(LE),
            number_of_linenumbers: h.number_of_linenumbers.get(LE),
            characteristics: h.characteristics.get(LE).0,
        }
    }

    /// `IMAGE_SCN_MEM_EXECUTE` is set: the loader maps the section executable.
    pub fn is_executable(&self) -> bool {
        self.characteristics & pe::IMAGE_SCN_MEM_EXECUTE.0 != 0
    }

    /// The section's extent in memory: `VirtualSize` (or `SizeOfRawData` when `VirtualSize` is
    /// 0) rounded up to `section_alignment` (not rounded when the alignment is not a power of
    /// two: the loader refuses such images, and rounding to e.g. 0xFFFFFFFF would claim the
    /// whole address space).
    pub fn virtual_extent(&self, section_alignment: u32) -> u64 {
        let size = if self.virtual_size == 0 {
            self.size_of_raw_data
        } else {
            self.virtual_size
        };
        if section_alignment.is_power_of_two() {
            align_up(u64::from(size), u64::from(section_alignment))
        } else {
            u64::from(size)
        }
    }

    /// Whether `rva` lies in `[VirtualAddress, VirtualAddress + virtual_extent)`.
    pub fn contains_rva(&self, rva: u64, section_alignment: u32) -> bool {
        let start = u64::from(self.virtual_address);
        rva >= start && rva - start < self.virtual_extent(section_alignment)
    }
}

/// Decode a section name: lossy string up to the first NUL, plus hex when not valid UTF-8.
pub fn decode_name(raw: &[u8]) -> (String, Option<String>) {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let bytes = &raw[..end];
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), None),
        Err(_) => (
            String::from_utf8_lossy(bytes).into_owned(),
            Some(hex::encode(bytes)),
        ),
    }
}

pub(crate) fn align_up(value: u64, align: u64) -> u64 {
    if align <= 1 {
        return value;
    }
    match value.checked_add(align - 1) {
        Some(v) => v / align * align,
        None => value,
    }
}

/// The size of the header page the loader maps; header reads in file layout past the end of
/// the view are zero-filled up to here (the loader zero-fills the rest of the page).
const HEADER_PAGE: u64 = 0x1000;

/// Common machine names.
pub fn machine_name(machine: u16) -> &'static str {
    match pe::Machine(machine) {
        pe::IMAGE_FILE_MACHINE_I386 => "i386",
        pe::IMAGE_FILE_MACHINE_AMD64 => "amd64",
        pe::IMAGE_FILE_MACHINE_ARM64 => "arm64",
        pe::IMAGE_FILE_MACHINE_ARMNT => "armnt",
        pe::IMAGE_FILE_MACHINE_ARM => "arm",
        pe::IMAGE_FILE_MACHINE_IA64 => "ia64",
        pe::IMAGE_FILE_MACHINE_UNKNOWN => "unknown",
        _ => "other",
    }
}

/// A parsed PE image over a borrowed byte view. Cheap to build: headers and the section table
/// are decoded once; everything else is read on demand.
#[derive(Debug, Clone)]
pub struct PeImage<'a> {
    data: &'a [u8],
    layout: Layout,
    format: Format,
    dos: DosHeader,
    file_header: FileHeader,
    optional: OptionalHeader,
    optional_header_offset: u64,
    data_directories: Vec<DataDirectory>,
    section_table_offset: u64,
    sections: Vec<Section>,
}

/// A piece of an RVA read (file layout).
enum Chunk {
    /// Bytes at this view offset, at most `len` of them belong to the mapping.
    Data { offset: u64, len: u64 },
    /// The loader zero-fills `len` bytes here.
    Zero { len: u64 },
    /// Not mapped.
    Unmapped,
}

impl<'a> PeImage<'a> {
    /// Parse the headers and the section table of `bytes` in `layout`.
    ///
    /// Needs the DOS header (`MZ`), `e_lfanew`, the `PE\0\0` signature, the file header and the
    /// optional header magic. In file layout, header bytes past the end of the view but inside
    /// the first page read as zeros (the loader does the same); in loaded layout they must be in
    /// the view.
    pub fn parse(bytes: &'a [u8], layout: Layout) -> Result<PeImage<'a>, PeError> {
        let pad = matches!(layout, Layout::File);
        let hdr = |offset: u64, len: usize, what: &'static str| -> Result<Vec<u8>, PeError> {
            read_header_bytes(bytes, offset, len, pad, what)
        };
        let dos_raw = hdr(0, size_of::<pe::ImageDosHeader>(), "DOS header")?;
        let dos: &pe::ImageDosHeader = pod(&dos_raw, 0, "DOS header")?;
        let e_magic = dos.e_magic.get(LE);
        if e_magic != pe::IMAGE_DOS_SIGNATURE {
            return Err(PeError::BadMagic {
                what: "DOS signature",
                offset: 0,
                found: e_magic.into(),
            });
        }
        let e_lfanew = dos.e_lfanew.get(LE);
        let nt = u64::from(e_lfanew);
        let sig_raw = hdr(nt, 4 + size_of::<pe::ImageFileHeader>() + 2, "NT headers")?;
        let sig = u32::from_le_bytes([sig_raw[0], sig_raw[1], sig_raw[2], sig_raw[3]]);
        if sig != pe::IMAGE_NT_SIGNATURE {
            return Err(PeError::BadMagic {
                what: "PE signature",
                offset: nt,
                found: sig.into(),
            });
        }
        let fh: &pe::ImageFileHeader = pod(&sig_raw[4..24], nt + 4, "file header")?;
        let file_header = FileHeader {
            machine: fh.machine.get(LE).0,
            number_of_sections: fh.number_of_sections.get(LE),
            time_date_stamp: fh.time_date_stamp.get(LE),
            pointer_to_symbol_table: fh.pointer_to_symbol_table.get(LE),
            number_of_symbols: fh.number_of_symbols.get(LE),
            size_of_optional_header: fh.size_of_optional_header.get(LE),
            characteristics: fh.characteristics.get(LE).0,
        };
        let opt_off = nt + 4 + size_of::<pe::ImageFileHeader>() as u64;
        let magic = u16::from_le_bytes([sig_raw[24], sig_raw[25]]);
        let (format, optional, dirs_off) = match magic {
            pe::IMAGE_NT_OPTIONAL_HDR32_MAGIC => {
                let len = size_of::<pe::ImageOptionalHeader32>();
                let raw = hdr(opt_off, len, "optional header")?;
                let o: &pe::ImageOptionalHeader32 = pod(&raw, opt_off, "optional header")?;
                (Format::Pe32, optional(o), opt_off + len as u64)
            }
            pe::IMAGE_NT_OPTIONAL_HDR64_MAGIC => {
                let len = size_of::<pe::ImageOptionalHeader64>();
                let raw = hdr(opt_off, len, "optional header")?;
                let o: &pe::ImageOptionalHeader64 = pod(&raw, opt_off, "optional header")?;
                (Format::Pe32Plus, optional(o), opt_off + len as u64)
            }
            other => {
                return Err(PeError::BadMagic {
                    what: "optional header magic",
                    offset: opt_off,
                    found: other.into(),
                });
            }
        };
        let count = optional.number_of_rva_and_sizes.min(16) as usize;
        let dir_raw = hdr(dirs_off, count * 8, "data directories")?;
        let data_directories = (0..count)
            .map(|i| {
                let d = &dir_raw[i * 8..i * 8 + 8];
                DataDirectory {
                    index: i,
                    name: DATA_DIRECTORY_NAMES[i],
                    virtual_address: u32::from_le_bytes([d[0], d[1], d[2], d[3]]),
                    size: u32::from_le_bytes([d[4], d[5], d[6], d[7]]),
                }
            })
            .collect();
        let section_table_offset = opt_off + u64::from(file_header.size_of_optional_header);
        // A section table running past the view (e.g. 65535 declared sections) is read as far
        // as it goes; `sections().len()` then is less than `NumberOfSections`.
        let declared = usize::from(file_header.number_of_sections);
        let limit = if pad {
            (data_len_u64(bytes).max(HEADER_PAGE)).saturating_sub(section_table_offset)
        } else {
            data_len_u64(bytes).saturating_sub(section_table_offset)
        };
        let n = declared.min((limit / 40) as usize);
        let table = hdr(
            section_table_offset,
            n * size_of::<pe::ImageSectionHeader>(),
            "section table",
        )?;
        let sections = table
            .chunks_exact(size_of::<pe::ImageSectionHeader>())
            .enumerate()
            .map(|(i, raw)| {
                let at = section_table_offset + 40 * i as u64;
                pod(raw, at, "section header").map(|h| Section::from_raw(i, h))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PeImage {
            data: bytes,
            layout,
            format,
            dos: DosHeader { e_magic, e_lfanew },
            file_header,
            optional,
            optional_header_offset: opt_off,
            data_directories,
            section_table_offset,
            sections,
        })
    }

    /// The byte view.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }
    /// The layout given to [`PeImage::parse`].
    pub fn layout(&self) -> Layout {
        self.layout
    }
    /// PE32 or PE32+.
    pub fn format(&self) -> Format {
        self.format
    }
    /// DOS header fields.
    pub fn dos_header(&self) -> &DosHeader {
        &self.dos
    }
    /// File header.
    pub fn file_header(&self) -> &FileHeader {
        &self.file_header
    }
    /// Optional header (without data directories).
    pub fn optional_header(&self) -> &OptionalHeader {
        &self.optional
    }
    /// `FileHeader.Machine`.
    pub fn machine(&self) -> u16 {
        self.file_header.machine
    }
    /// `OptionalHeader.ImageBase` as read from the view (in memory the loader has written the
    /// actual base here; see [`PeImage::actual_base`]).
    pub fn image_base(&self) -> u64 {
        self.optional.image_base
    }
    /// Where the image is: the header's `ImageBase` in file layout, the caller's base in loaded
    /// layout. Callback RVAs are relative to this.
    pub fn actual_base(&self) -> u64 {
        match self.layout {
            Layout::File => self.optional.image_base,
            Layout::Loaded { base } => base,
        }
    }
    /// `AddressOfEntryPoint` (an RVA).
    pub fn entry_point_rva(&self) -> u32 {
        self.optional.address_of_entry_point
    }
    /// `SizeOfImage`.
    pub fn size_of_image(&self) -> u32 {
        self.optional.size_of_image
    }
    /// `SizeOfHeaders`.
    pub fn size_of_headers(&self) -> u32 {
        self.optional.size_of_headers
    }
    /// The section table as far as the view holds it (see [`PeImage::section_table_truncated`]).
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }
    /// Fewer section headers were readable than `NumberOfSections` declares.
    pub fn section_table_truncated(&self) -> bool {
        self.sections.len() < usize::from(self.file_header.number_of_sections)
    }
    /// All present data directories (`min(NumberOfRvaAndSizes, 16)` of them).
    pub fn data_directories(&self) -> &[DataDirectory] {
        &self.data_directories
    }
    /// Data directory `index`, if present.
    pub fn data_directory(&self, index: usize) -> Option<&DataDirectory> {
        self.data_directories.get(index)
    }
    /// Offset (= RVA) of the optional header in the view.
    pub fn optional_header_offset(&self) -> u64 {
        self.optional_header_offset
    }
    /// Offset (= RVA) of data directory entry `index` (whether present or not).
    pub fn data_directory_offset(&self, index: usize) -> u64 {
        let fixed = match self.format {
            Format::Pe32 => size_of::<pe::ImageOptionalHeader32>(),
            Format::Pe32Plus => size_of::<pe::ImageOptionalHeader64>(),
        } as u64;
        self.optional_header_offset + fixed + 8 * index as u64
    }
    /// Offset (= RVA) of the section table.
    pub fn section_table_offset(&self) -> u64 {
        self.section_table_offset
    }

    /// The section whose virtual extent contains `rva` (first in table order).
    pub fn section_for_rva(&self, rva: u64) -> Option<&Section> {
        let align = self.optional.section_alignment;
        self.sections.iter().find(|s| s.contains_rva(rva, align))
    }

    /// `va - actual_base` when that lies inside `[0, SizeOfImage)`.
    pub fn va_to_rva(&self, va: u64) -> Option<u64> {
        let rva = va.checked_sub(self.actual_base())?;
        (rva < u64::from(self.optional.size_of_image)).then_some(rva)
    }

    /// Read bytes at `rva` into `buf`; returns how many leading bytes were read. Regions the
    /// loader zero-fills (past a section's raw data, rest of the header page) read as zeros;
    /// unmapped RVAs stop the read.
    pub fn read_rva(&self, rva: u64, buf: &mut [u8]) -> usize {
        match self.layout {
            Layout::Loaded { .. } => copy_from(self.data, rva, buf),
            Layout::File => {
                let mut done = 0usize;
                // Every iteration consumes at least one byte or stops.
                while done < buf.len() {
                    let Some(at) = rva.checked_add(done as u64) else {
                        break;
                    };
                    let want = (buf.len() - done) as u64;
                    let got = match self.file_chunk(at) {
                        Chunk::Unmapped => 0,
                        Chunk::Zero { len } => {
                            let n = len.min(want) as usize;
                            buf[done..done + n].fill(0);
                            n
                        }
                        Chunk::Data { offset, len } => {
                            let n = len.min(want) as usize;
                            let dst = &mut buf[done..done + n];
                            let copied = copy_from(self.data, offset, dst);
                            // Past the end of the file the loader's page is zero.
                            dst[copied..].fill(0);
                            n
                        }
                    };
                    if got == 0 {
                        break;
                    }
                    done += got;
                }
                done
            }
        }
    }

    /// Bytes at `rva`, borrowed from the view when contiguous there, else copied.
    /// `None` when fewer than `len` bytes are readable.
    pub fn rva_bytes(&self, rva: u64, len: usize) -> Option<Cow<'a, [u8]>> {
        let offset = match self.layout {
            Layout::Loaded { .. } => Some(rva),
            Layout::File => match self.file_chunk(rva) {
                Chunk::Data { offset, len: l } if l >= len as u64 => Some(offset),
                _ => None,
            },
        };
        if let Some(offset) = offset
            && let Ok(start) = usize::try_from(offset)
            && let Some(end) = start.checked_add(len)
            && end <= self.data.len()
        {
            return Some(Cow::Borrowed(&self.data[start..end]));
        }
        // Cap the copy by the view size: a read cannot produce more than the image holds.
        if len
            > self
                .data
                .len()
                .saturating_add(HEADER_PAGE as usize)
                .max(1 << 20)
        {
            return None;
        }
        let mut buf = vec![0u8; len];
        (self.read_rva(rva, &mut buf) == len).then_some(Cow::Owned(buf))
    }

    /// Read a little-endian VA-width value (4 bytes in PE32, 8 in PE32+) at `rva`.
    pub fn read_va_field_rva(&self, rva: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        let w = self.format.va_width();
        (self.read_rva(rva, &mut b[..w]) == w).then(|| u64::from_le_bytes(b))
    }

    /// Read a little-endian u32 at `rva`.
    pub fn read_u32_rva(&self, rva: u64) -> Option<u32> {
        let mut b = [0u8; 4];
        (self.read_rva(rva, &mut b) == 4).then(|| u32::from_le_bytes(b))
    }

    /// Map an RVA to a file chunk (file layout).
    fn file_chunk(&self, rva: u64) -> Chunk {
        let salign = self.optional.section_alignment;
        let falign = self.optional.file_alignment;
        let image_size = u64::from(self.optional.size_of_image);
        if u64::from(salign) < 0x1000 {
            // Low-alignment image: the loader maps the file flat (RVA == file offset).
            if rva < self.data.len() as u64 {
                return Chunk::Data {
                    offset: rva,
                    len: self.data.len() as u64 - rva,
                };
            }
            if rva < image_size {
                return Chunk::Zero {
                    len: image_size - rva,
                };
            }
            return Chunk::Unmapped;
        }
        if let Some(s) = self.section_for_rva(rva) {
            let off_in = rva - u64::from(s.virtual_address);
            let extent = s.virtual_extent(salign);
            let ptr = if falign >= 0x200 {
                s.pointer_to_raw_data & !0x1ff
            } else {
                s.pointer_to_raw_data
            };
            let raw = u64::from(s.size_of_raw_data).min(extent);
            if off_in < raw {
                return Chunk::Data {
                    offset: u64::from(ptr) + off_in,
                    len: raw - off_in,
                };
            }
            return Chunk::Zero {
                len: extent - off_in,
            };
        }
        // The header region: SizeOfHeaders rounded up to the section alignment (at least one
        // byte), cut at the first section, mapped from file offset 0. Corkami foldedhdr.exe
        // (SizeOfHeaders 44, NT headers at 0xF80) shows the loader maps this whole region.
        let headers = u64::from(self.optional.size_of_headers);
        let first_section = self
            .sections
            .iter()
            .map(|s| u64::from(s.virtual_address))
            .min()
            .unwrap_or(u64::MAX);
        let header_align = if salign.is_power_of_two() {
            u64::from(salign)
        } else {
            1
        };
        let header_map_end = align_up(headers.max(1), header_align).min(first_section);
        if rva < header_map_end {
            return Chunk::Data {
                offset: rva,
                len: header_map_end - rva,
            };
        }
        Chunk::Unmapped
    }
}

fn data_len_u64(data: &[u8]) -> u64 {
    data.len() as u64
}

fn copy_from(data: &[u8], offset: u64, buf: &mut [u8]) -> usize {
    let Ok(start) = usize::try_from(offset) else {
        return 0;
    };
    if start >= data.len() {
        return 0;
    }
    let n = buf.len().min(data.len() - start);
    buf[..n].copy_from_slice(&data[start..start + n]);
    n
}

/// Read `len` header bytes at `offset`, zero-padding past the view when `pad` (file layout) as
/// long as the structure ends inside the header page.
fn read_header_bytes(
    data: &[u8],
    offset: u64,
    len: usize,
    pad: bool,
    what: &'static str,
) -> Result<Vec<u8>, PeError> {
    let end = offset.checked_add(len as u64);
    let available = (data.len() as u64).saturating_sub(offset);
    let fits = end.is_some_and(|e| e <= data.len() as u64);
    let padded_ok = pad && end.is_some_and(|e| e <= HEADER_PAGE) && offset <= data.len() as u64;
    if !fits && !padded_ok {
        return Err(PeError::Truncated {
            what,
            offset,
            need: len as u64,
            available,
        });
    }
    let mut buf = vec![0u8; len];
    copy_from(data, offset, &mut buf);
    Ok(buf)
}

/// View a header buffer as a pod struct (all object::pe structs have alignment 1).
fn pod<'b, T: object::Pod>(
    bytes: &'b [u8],
    offset: u64,
    what: &'static str,
) -> Result<&'b T, PeError> {
    object::pod::from_bytes::<T>(bytes)
        .map(|(v, _)| v)
        .map_err(|()| PeError::Truncated {
            what,
            offset,
            need: size_of::<T>() as u64,
            available: bytes.len() as u64,
        })
}

/// The optional header of either width, through object's width-generic accessors.
fn optional(o: &impl ImageOptionalHeader) -> OptionalHeader {
    OptionalHeader {
        magic: o.magic(),
        major_linker_version: o.major_linker_version(),
        minor_linker_version: o.minor_linker_version(),
        size_of_code: o.size_of_code(),
        size_of_initialized_data: o.size_of_initialized_data(),
        size_of_uninitialized_data: o.size_of_uninitialized_data(),
        address_of_entry_point: o.address_of_entry_point(),
        base_of_code: o.base_of_code(),
        base_of_data: o.base_of_data(),
        image_base: o.image_base(),
        section_alignment: o.section_alignment(),
        file_alignment: o.file_alignment(),
        major_operating_system_version: o.major_operating_system_version(),
        minor_operating_system_version: o.minor_operating_system_version(),
        major_image_version: o.major_image_version(),
        minor_image_version: o.minor_image_version(),
        major_subsystem_version: o.major_subsystem_version(),
        minor_subsystem_version: o.minor_subsystem_version(),
        win32_version_value: o.win32_version_value(),
        size_of_image: o.size_of_image(),
        size_of_headers: o.size_of_headers(),
        check_sum: o.check_sum(),
        subsystem: o.subsystem().0,
        dll_characteristics: o.dll_characteristics().0,
        size_of_stack_reserve: o.size_of_stack_reserve(),
        size_of_stack_commit: o.size_of_stack_commit(),
        size_of_heap_reserve: o.size_of_heap_reserve(),
        size_of_heap_commit: o.size_of_heap_commit(),
        loader_flags: o.loader_flags(),
        number_of_rva_and_sizes: o.number_of_rva_and_sizes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_up_is_saturating() {
        assert_eq!(align_up(0x1001, 0x1000), 0x2000);
        assert_eq!(align_up(5, 0), 5);
        assert_eq!(align_up(u64::MAX, 0x1000), u64::MAX);
    }

    #[test]
    fn non_utf8_names_get_hex() {
        let (lossy, hex) = decode_name(b".t\xffx\0\0\0\0");
        assert_eq!(lossy, ".t\u{fffd}x");
        assert_eq!(hex.as_deref(), Some("2e74ff78"));
        assert_eq!(decode_name(b".text\0\0\0"), (".text".to_owned(), None));
    }

    #[test]
    fn rejects_non_pe() {
        assert!(matches!(
            PeImage::parse(b"not a PE at all", Layout::File),
            Err(PeError::BadMagic { .. }) | Err(PeError::Truncated { .. })
        ));
        assert!(matches!(
            PeImage::parse(&[], Layout::Loaded { base: 0x1000 }),
            Err(PeError::Truncated { offset: 0, .. })
        ));
    }
}
