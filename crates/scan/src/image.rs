//! Header and TLS facts of one PE image, from a file on disk or from the header page of a
//! loaded image, and the relocation-normalised field diff between the two. Parsing is done by
//! the `object` crate's PE structures; this module only picks the fields the checks compare.
//! It never reads a process: the caller hands it bytes, or a closure that reads memory.

use object::LittleEndian as LE;
use object::pe;
use object::read::pe::{ImageNtHeaders, ImageOptionalHeader};

/// Most TLS callback slots read from one array (a hostile array may lack its NULL).
pub const MAX_CALLBACKS: usize = 64;

/// Index of the TLS data directory.
pub const TLS_DIRECTORY_INDEX: usize = 9;

/// Why bytes are not a PE image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a PE image: {0}")]
pub struct NotPe(pub String);

/// One section header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionFacts {
    /// Name (lossy UTF-8, NULs trimmed).
    pub name: String,
    /// RVA.
    pub virtual_address: u32,
    /// Virtual size.
    pub virtual_size: u32,
    /// Raw size.
    pub size_of_raw_data: u32,
    /// Raw pointer.
    pub pointer_to_raw_data: u32,
    /// Characteristics (`IMAGE_SCN_*`).
    pub characteristics: u32,
}

impl SectionFacts {
    /// Whether the RVA lies in this section (virtual extent, at least the raw size).
    pub fn contains_rva(&self, rva: u64) -> bool {
        let size = u64::from(self.virtual_size.max(self.size_of_raw_data));
        rva >= u64::from(self.virtual_address) && rva - u64::from(self.virtual_address) < size
    }

    /// IMAGE_SCN_MEM_EXECUTE or IMAGE_SCN_CNT_CODE.
    pub fn is_executable(&self) -> bool {
        self.characteristics & (pe::IMAGE_SCN_MEM_EXECUTE.0 | pe::IMAGE_SCN_CNT_CODE.0) != 0
    }
}

/// The header fields the checks compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderFacts {
    /// PE32+.
    pub is_64: bool,
    /// FileHeader.Machine.
    pub machine: u16,
    /// FileHeader.Characteristics.
    pub file_characteristics: u16,
    /// FileHeader.TimeDateStamp.
    pub time_date_stamp: u32,
    /// OptionalHeader.AddressOfEntryPoint (RVA).
    pub entry_point: u32,
    /// OptionalHeader.ImageBase.
    pub image_base: u64,
    /// OptionalHeader.SizeOfImage.
    pub size_of_image: u32,
    /// OptionalHeader.SizeOfHeaders.
    pub size_of_headers: u32,
    /// OptionalHeader.Subsystem.
    pub subsystem: u16,
    /// OptionalHeader.DllCharacteristics.
    pub dll_characteristics: u16,
    /// Data directories (RVA, size).
    pub data_directories: Vec<(u32, u32)>,
    /// Section table.
    pub sections: Vec<SectionFacts>,
}

/// IMAGE_TLS_DIRECTORY fields (widened to 64 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsFacts {
    /// StartAddressOfRawData (VA).
    pub start_address_of_raw_data: u64,
    /// EndAddressOfRawData (VA).
    pub end_address_of_raw_data: u64,
    /// AddressOfIndex (VA).
    pub address_of_index: u64,
    /// AddressOfCallBacks (VA).
    pub address_of_callbacks: u64,
    /// SizeOfZeroFill.
    pub size_of_zero_fill: u32,
    /// Characteristics.
    pub characteristics: u32,
}

impl TlsFacts {
    /// Size of the directory structure.
    pub fn struct_size(is_64: bool) -> usize {
        if is_64 { 40 } else { 24 }
    }

    /// Parses the structure from bytes.
    pub fn parse(bytes: &[u8], is_64: bool) -> Option<TlsFacts> {
        let u32_at = |o: usize| -> Option<u32> {
            Some(u32::from_le_bytes(bytes.get(o..o + 4)?.try_into().ok()?))
        };
        let u64_at = |o: usize| -> Option<u64> {
            Some(u64::from_le_bytes(bytes.get(o..o + 8)?.try_into().ok()?))
        };
        if is_64 {
            Some(TlsFacts {
                start_address_of_raw_data: u64_at(0)?,
                end_address_of_raw_data: u64_at(8)?,
                address_of_index: u64_at(16)?,
                address_of_callbacks: u64_at(24)?,
                size_of_zero_fill: u32_at(32)?,
                characteristics: u32_at(36)?,
            })
        } else {
            Some(TlsFacts {
                start_address_of_raw_data: u64::from(u32_at(0)?),
                end_address_of_raw_data: u64::from(u32_at(4)?),
                address_of_index: u64::from(u32_at(8)?),
                address_of_callbacks: u64::from(u32_at(12)?),
                size_of_zero_fill: u32_at(16)?,
                characteristics: u32_at(20)?,
            })
        }
    }
}

fn headers_generic<Pe: ImageNtHeaders>(data: &[u8]) -> Result<HeaderFacts, NotPe> {
    let err = |e: object::read::Error| NotPe(e.to_string());
    let dos = pe::ImageDosHeader::parse(data).map_err(err)?;
    let mut offset = u64::from(dos.nt_headers_offset());
    let (nt, dirs) = Pe::parse(data, &mut offset).map_err(err)?;
    let sections = nt.sections(data, offset).map_err(err)?;
    let opt = nt.optional_header();
    Ok(HeaderFacts {
        is_64: nt.is_type_64(),
        machine: nt.file_header().machine.get(LE).0,
        file_characteristics: nt.file_header().characteristics.get(LE).0,
        time_date_stamp: nt.file_header().time_date_stamp.get(LE),
        entry_point: opt.address_of_entry_point(),
        image_base: opt.image_base(),
        size_of_image: opt.size_of_image(),
        size_of_headers: opt.size_of_headers(),
        subsystem: opt.subsystem().0,
        dll_characteristics: opt.dll_characteristics().0,
        data_directories: dirs
            .iter()
            .take(16)
            .map(|d| (d.virtual_address.get(LE), d.size.get(LE)))
            .collect(),
        sections: sections
            .iter()
            .take(96)
            .map(|s| SectionFacts {
                name: String::from_utf8_lossy(s.raw_name())
                    .trim_end_matches('\0')
                    .to_string(),
                virtual_address: s.virtual_address.get(LE),
                virtual_size: s.virtual_size.get(LE),
                size_of_raw_data: s.size_of_raw_data.get(LE),
                pointer_to_raw_data: s.pointer_to_raw_data.get(LE),
                characteristics: s.characteristics.get(LE).0,
            })
            .collect(),
    })
}

impl HeaderFacts {
    /// Parses the headers at the start of `data` (a file, or the first page(s) of a loaded
    /// image: the header layout is the same).
    pub fn parse(data: &[u8]) -> Result<HeaderFacts, NotPe> {
        let magic =
            object::read::pe::optional_header_magic(data).map_err(|e| NotPe(e.to_string()))?;
        match magic {
            pe::IMAGE_NT_OPTIONAL_HDR64_MAGIC => headers_generic::<pe::ImageNtHeaders64>(data),
            pe::IMAGE_NT_OPTIONAL_HDR32_MAGIC => headers_generic::<pe::ImageNtHeaders32>(data),
            other => Err(NotPe(format!("optional header magic {other:#x}"))),
        }
    }

    /// DataDirectory[9] (RVA, size), `(0, 0)` when absent.
    pub fn tls_directory(&self) -> (u32, u32) {
        self.data_directories
            .get(TLS_DIRECTORY_INDEX)
            .copied()
            .unwrap_or((0, 0))
    }

    /// Pointer size in bytes.
    pub fn pointer_size(&self) -> usize {
        if self.is_64 { 8 } else { 4 }
    }

    /// The section holding an RVA.
    pub fn section_of(&self, rva: u64) -> Option<&SectionFacts> {
        self.sections.iter().find(|s| s.contains_rva(rva))
    }

    /// File offset of an RVA in a file-layout image.
    pub fn file_offset(&self, rva: u64) -> Option<u64> {
        if rva < u64::from(self.size_of_headers) {
            return Some(rva);
        }
        let s = self.sections.iter().find(|s| {
            rva >= u64::from(s.virtual_address)
                && rva - u64::from(s.virtual_address) < u64::from(s.size_of_raw_data)
        })?;
        Some(rva - u64::from(s.virtual_address) + u64::from(s.pointer_to_raw_data))
    }
}

/// The TLS directory and callbacks of a file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTls {
    /// The directory.
    pub directory: TlsFacts,
    /// Callback VAs (file's preferred base), up to the NULL or [`MAX_CALLBACKS`].
    pub callbacks: Vec<u64>,
}

/// Reads the TLS directory and callback array of a file-layout image. `None` when the file has
/// no TLS directory (or it is not readable in the file).
pub fn file_tls(file: &[u8], h: &HeaderFacts) -> Option<FileTls> {
    let (rva, _size) = h.tls_directory();
    if rva == 0 {
        return None;
    }
    let off = usize::try_from(h.file_offset(u64::from(rva))?).ok()?;
    let directory = TlsFacts::parse(file.get(off..)?, h.is_64)?;
    let mut callbacks = Vec::new();
    if directory.address_of_callbacks != 0 {
        let arr_rva = directory.address_of_callbacks.checked_sub(h.image_base);
        if let Some(mut o) = arr_rva
            .and_then(|r| h.file_offset(r))
            .and_then(|o| usize::try_from(o).ok())
        {
            let ps = h.pointer_size();
            for _ in 0..MAX_CALLBACKS {
                let Some(v) = read_ptr(file.get(o..o.saturating_add(ps)), ps) else {
                    break;
                };
                if v == 0 {
                    break;
                }
                callbacks.push(v);
                o = o.saturating_add(ps);
            }
        }
    }
    Some(FileTls {
        directory,
        callbacks,
    })
}

/// Reads a pointer of `ps` bytes.
pub fn read_ptr(bytes: Option<&[u8]>, ps: usize) -> Option<u64> {
    let b = bytes?;
    match ps {
        8 => Some(u64::from_le_bytes(b.get(..8)?.try_into().ok()?)),
        4 => Some(u64::from(u32::from_le_bytes(b.get(..4)?.try_into().ok()?))),
        _ => None,
    }
}

/// One field that differs between the file and memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDiff {
    /// Field name, e.g. `optional_header.address_of_entry_point`, `sections[0].virtual_size`.
    pub field: String,
    /// The file's value (relocated to the loaded base for VA fields), as text.
    pub disk: String,
    /// The value in memory, as text.
    pub memory: String,
}

fn push(out: &mut Vec<FieldDiff>, field: impl Into<String>, disk: String, memory: String) {
    if disk != memory {
        out.push(FieldDiff {
            field: field.into(),
            disk,
            memory,
        });
    }
}

fn hex(v: u64) -> String {
    format!("{v:#x}")
}

/// Field-level diff of two header sets. `loaded_base` is where the image is loaded: an
/// `image_base` in memory equal to it is the loader's relocation write, not a difference.
pub fn diff_headers(disk: &HeaderFacts, mem: &HeaderFacts, loaded_base: u64) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    push(
        &mut out,
        "file_header.machine",
        hex(disk.machine.into()),
        hex(mem.machine.into()),
    );
    push(
        &mut out,
        "file_header.characteristics",
        hex(disk.file_characteristics.into()),
        hex(mem.file_characteristics.into()),
    );
    push(
        &mut out,
        "file_header.time_date_stamp",
        hex(disk.time_date_stamp.into()),
        hex(mem.time_date_stamp.into()),
    );
    push(
        &mut out,
        "optional_header.address_of_entry_point",
        hex(disk.entry_point.into()),
        hex(mem.entry_point.into()),
    );
    if !(mem.image_base == loaded_base || mem.image_base == disk.image_base) {
        push(
            &mut out,
            "optional_header.image_base",
            hex(disk.image_base),
            hex(mem.image_base),
        );
    }
    push(
        &mut out,
        "optional_header.size_of_image",
        hex(disk.size_of_image.into()),
        hex(mem.size_of_image.into()),
    );
    push(
        &mut out,
        "optional_header.size_of_headers",
        hex(disk.size_of_headers.into()),
        hex(mem.size_of_headers.into()),
    );
    push(
        &mut out,
        "optional_header.subsystem",
        hex(disk.subsystem.into()),
        hex(mem.subsystem.into()),
    );
    push(
        &mut out,
        "optional_header.dll_characteristics",
        hex(disk.dll_characteristics.into()),
        hex(mem.dll_characteristics.into()),
    );
    let n = disk.data_directories.len().max(mem.data_directories.len());
    for i in 0..n.min(16) {
        let d = disk.data_directories.get(i).copied().unwrap_or((0, 0));
        let m = mem.data_directories.get(i).copied().unwrap_or((0, 0));
        let name = DATA_DIRECTORY_NAMES.get(i).copied().unwrap_or("unknown");
        push(
            &mut out,
            format!("data_directory.{name}.virtual_address"),
            hex(d.0.into()),
            hex(m.0.into()),
        );
        push(
            &mut out,
            format!("data_directory.{name}.size"),
            hex(d.1.into()),
            hex(m.1.into()),
        );
    }
    push(
        &mut out,
        "file_header.number_of_sections",
        disk.sections.len().to_string(),
        mem.sections.len().to_string(),
    );
    for (i, (d, m)) in disk.sections.iter().zip(mem.sections.iter()).enumerate() {
        push(
            &mut out,
            format!("section[{i}].name"),
            d.name.clone(),
            m.name.clone(),
        );
        push(
            &mut out,
            format!("section[{i}].virtual_address"),
            hex(d.virtual_address.into()),
            hex(m.virtual_address.into()),
        );
        push(
            &mut out,
            format!("section[{i}].virtual_size"),
            hex(d.virtual_size.into()),
            hex(m.virtual_size.into()),
        );
        push(
            &mut out,
            format!("section[{i}].characteristics"),
            hex(d.characteristics.into()),
            hex(m.characteristics.into()),
        );
    }
    out
}

/// Relocates a VA of the file to the loaded base (wrapping, as the loader does).
pub fn relocate(va: u64, file_base: u64, loaded_base: u64) -> u64 {
    if va == 0 {
        0
    } else {
        va.wrapping_add(loaded_base.wrapping_sub(file_base))
    }
}

/// Field-level diff of two TLS directories; the file's VAs are relocated first.
/// `AddressOfIndex` is compared as an address; the value the loader writes *at* it is not.
pub fn diff_tls(
    disk: &TlsFacts,
    mem: &TlsFacts,
    file_base: u64,
    loaded_base: u64,
) -> Vec<FieldDiff> {
    let r = |v| relocate(v, file_base, loaded_base);
    let mut out = Vec::new();
    push(
        &mut out,
        "tls.start_address_of_raw_data",
        hex(r(disk.start_address_of_raw_data)),
        hex(mem.start_address_of_raw_data),
    );
    push(
        &mut out,
        "tls.end_address_of_raw_data",
        hex(r(disk.end_address_of_raw_data)),
        hex(mem.end_address_of_raw_data),
    );
    push(
        &mut out,
        "tls.address_of_index",
        hex(r(disk.address_of_index)),
        hex(mem.address_of_index),
    );
    push(
        &mut out,
        "tls.address_of_callbacks",
        hex(r(disk.address_of_callbacks)),
        hex(mem.address_of_callbacks),
    );
    push(
        &mut out,
        "tls.size_of_zero_fill",
        hex(disk.size_of_zero_fill.into()),
        hex(mem.size_of_zero_fill.into()),
    );
    push(
        &mut out,
        "tls.characteristics",
        hex(disk.characteristics.into()),
        hex(mem.characteristics.into()),
    );
    out
}

/// Names of the 16 data directories as used in field names.
pub const DATA_DIRECTORY_NAMES: [&str; 16] = [
    "export",
    "import",
    "resource",
    "exception",
    "security",
    "base_reloc",
    "debug",
    "architecture",
    "global_ptr",
    "tls",
    "load_config",
    "bound_import",
    "iat",
    "delay_import",
    "clr_runtime_header",
    "reserved",
];
