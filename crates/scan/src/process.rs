//! The scan of one process: gathers its images (loader list, PEB image, PE headers in private
//! memory), reads each image's headers and TLS data from memory, compares them with the file on
//! disk, and runs the TLS, header, hollowing and pre-entry checks. Reads only; a per-process
//! failure becomes `ProcessReport::error`, never a panic.

use std::path::{Path, PathBuf};

use preentry_memory::{Availability, ProcessMemory, Region, RegionKind, peb};
use serde_json::{Value, json};

use preentry_memory::pe_adapter::AsVaReader;
use preentry_pe::{ArrayEnd, FieldValue, ImageFacts, Layout, NoOutside, PeImage};

use crate::disk::DiskResolver;
use crate::model::{
    CallbackFact, Evidence, Finding, FindingKind, ModuleFacts, ProcessReport, Severity, T1055,
    T1055_005, hex_addr,
};

/// Options of a scan.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// Where disk files are found.
    pub resolver: DiskResolver,
}

/// Largest disk file read for comparison.
const MAX_DISK_FILE: u64 = 512 * 1024 * 1024;
/// Bytes of an image's header read from memory.
const HEADER_READ: u64 = 0x1000;
/// Most images considered per process (modules + PEB image + private PEs).
const MAX_IMAGES: usize = 2048;
/// Most private regions inspected for MZ headers / code per process.
const MAX_PRIVATE_REGIONS: usize = 65536;
/// Bytes of a private executable region sampled for non-zero content.
const CODE_SAMPLE: u64 = 0x10000;
/// Bytes of the initial thread's stack, from its stack pointer, searched for return addresses
/// into code outside every image.
const STACK_FRAME_SCAN: u64 = 0x10000;
/// Bytes of the initial thread's stack, from its stack pointer towards its base, searched for a
/// return address into the main image's code (the proof that the entry point was reached).
const STACK_ENTRY_SCAN: u64 = 0x10_0000;
/// Most frames outside every image listed in one finding.
const MAX_STACK_FRAMES: usize = 16;
/// How far below an address an enclosing PE header is looked for (64 KiB steps: images are
/// loaded at allocation-granularity bases).
const ENCLOSING_PE_SEARCH: u64 = 0x100_0000;
/// DataDirectory index of the CLR (COM descriptor) header.
const CLR_DIRECTORY: usize = 14;

/// Where an image came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImageOrigin {
    /// The loader's module list.
    Module,
    /// PEB.ImageBaseAddress (not in the module list).
    Peb,
    /// An MZ header found at the start of a private region.
    Private,
}

/// One image the scan looks at.
#[derive(Debug, Clone)]
struct Image {
    base: u64,
    size: u64,
    path: String,
    origin: ImageOrigin,
    main: bool,
    facts: Option<ImageFacts>,
}

impl Image {
    fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr - self.base < self.size
    }

    fn name(&self) -> &str {
        preentry_memory::file_name_of(&self.path)
    }
}

/// A disk file read for an image.
struct DiskImage {
    path: PathBuf,
    facts: ImageFacts,
}

/// Whether (and why) the process has not reached its entry point.
fn pre_entry_reason(mem: &dyn ProcessMemory, peb_ldr: Option<u64>) -> Option<String> {
    if peb_ldr == Some(0) {
        return Some("PEB.Ldr is NULL: the loader has not run".into());
    }
    if let Availability::Available(mods) = mem.modules()
        && mods.is_empty()
        && peb_ldr.is_none()
    {
        return Some("the module list is empty: the loader has not run".into());
    }
    None
}

fn ev(pairs: Vec<(&str, Value)>) -> Evidence {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn region_evidence(region: Option<&Region>) -> Vec<(&'static str, Value)> {
    match region {
        Some(r) => vec![
            ("region_base", json!(hex_addr(r.base))),
            ("region_size", json!(hex_addr(r.size))),
            ("protection", json!(r.protection.short())),
            ("region_kind", json!(kind_name(r.kind))),
        ],
        None => vec![],
    }
}

fn kind_name(kind: RegionKind) -> &'static str {
    match kind {
        RegionKind::Image => "image",
        RegionKind::Mapped => "mapped",
        RegionKind::Private => "private",
        RegionKind::Unknown => "unknown",
    }
}

/// Header facts of the image at `base`, read from memory: the header page as a partial
/// loaded-layout view, everything beyond it (TLS directory, callback array, even outside the
/// image) through the source.
fn read_facts(mem: &dyn ProcessMemory, base: u64) -> Result<ImageFacts, String> {
    let buf = mem
        .read_range(base, HEADER_READ, HEADER_READ)
        .map_err(|e| e.to_string())?;
    if buf.result.is_empty() {
        return Err(format!("headers at {base:#x} are not readable"));
    }
    let image = PeImage::parse(&buf.bytes, Layout::Loaded { base })
        .map_err(|e| format!("at {base:#x}: {e}"))?;
    Ok(ImageFacts::from_image(&image, &AsVaReader(mem)))
}

/// Callback VAs of an image's TLS data.
fn callbacks_of(facts: &ImageFacts) -> Vec<u64> {
    facts
        .tls
        .as_ref()
        .map(|t| t.callbacks.iter().map(|c| c.va).collect())
        .unwrap_or_default()
}

/// A diff value as evidence text: integers as `0x…`, absent as `null`.
fn value_text(v: &FieldValue) -> Option<String> {
    match v {
        FieldValue::Int(i) => Some(hex_addr(*i)),
        FieldValue::Bool(b) => Some(b.to_string()),
        FieldValue::Text(t) => Some(t.clone()),
        FieldValue::Absent => None,
    }
}

fn read_disk(
    resolver: &DiskResolver,
    process_path: &str,
    mapped: Option<&Path>,
) -> Result<DiskImage, String> {
    let path = resolver.resolve(process_path, mapped)?;
    let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > MAX_DISK_FILE {
        return Err(format!(
            "{}: larger than {MAX_DISK_FILE} bytes",
            path.display()
        ));
    }
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if is_wine_builtin(&bytes) {
        return Err(format!(
            "{} is a Wine builtin DLL stub, not the image Wine loads",
            path.display()
        ));
    }
    let image =
        PeImage::parse(&bytes, Layout::File).map_err(|e| format!("{}: {e}", path.display()))?;
    let facts = ImageFacts::from_image(&image, &NoOutside);
    Ok(DiskImage { path, facts })
}

/// Wine's fake DLLs in a prefix carry "Wine placeholder DLL" after the DOS header.
fn is_wine_builtin(bytes: &[u8]) -> bool {
    bytes
        .get(0x40..0x60)
        .is_some_and(|b| b.starts_with(b"Wine placeholder DLL"))
}

/// Probes the source once more: `Some` when it can no longer be read at all (the process
/// exited or access was withdrawn). Unmapped memory is not such a failure.
fn liveness_error(mem: &dyn ProcessMemory) -> Option<String> {
    let addr = mem
        .identity()
        .peb_address
        .or_else(|| mem.memory_ranges().first().map(|r| r.start))?;
    let mut b = [0u8; 8];
    match mem.read(addr, &mut b) {
        Err(
            e @ (preentry_memory::MemoryError::ProcessGone { .. }
            | preentry_memory::MemoryError::AccessDenied { .. }),
        ) => Some(e.to_string()),
        _ => None,
    }
}

/// Scans one process. Never fails: errors are recorded in the report.
pub fn scan_process(mem: &dyn ProcessMemory, opts: &ScanOptions) -> ProcessReport {
    let mut report = ProcessReport::new();
    let id = mem.identity();
    report.pid = Some(u64::from(id.pid));
    report.windows_pid = id.windows_pid.map(u64::from);
    report.linux_pid = id.linux_pid.map(u64::from);
    report.image_path = id.image_path.clone();
    if let preentry_memory::SourceKind::Minidump { path } = &id.source {
        report.dump = Some(path.display().to_string());
    }
    let mut scanner = Scanner {
        mem,
        opts,
        report,
        images: Vec::new(),
        pre_entry: None,
    };
    scanner.run();
    let mut report = scanner.report;
    // A live process that exited or shut us out during the scan: the findings are partial.
    if let Some(err) = liveness_error(mem) {
        report.error = Some(format!("{err} (during the scan; results are partial)"));
    }
    report.sort_findings();
    report
}

struct Scanner<'a> {
    mem: &'a dyn ProcessMemory,
    opts: &'a ScanOptions,
    report: ProcessReport,
    images: Vec<Image>,
    pre_entry: Option<String>,
}

impl Scanner<'_> {
    fn regions(&self) -> Option<&[Region]> {
        self.mem.regions().available()
    }

    fn region_at(&self, addr: u64) -> Option<&Region> {
        self.mem.region_at(addr)
    }

    fn image_of(&self, addr: u64) -> Option<&Image> {
        self.images.iter().find(|i| i.contains(addr))
    }

    fn add(&mut self, f: Finding) {
        self.report.findings.push(f);
    }

    fn run(&mut self) {
        let id = self.mem.identity().clone();
        let peb_info = id.peb_address.and_then(|p| peb::read_peb(self.mem, p).ok());
        self.pre_entry = pre_entry_reason(self.mem, peb_info.as_ref().map(|p| p.ldr));
        if let Availability::Unavailable { reason } = self.mem.regions() {
            for check in [
                "tls.callback_region",
                "hollowing.image_backing",
                "hollowing.exe_mapping",
                "hollowing.pe_in_private_memory",
                "pre_entry.private_code",
            ] {
                self.report.skip(check, reason.clone());
            }
        }
        self.collect_images(&id);
        self.check_hollowing(&id);
        for idx in 0..self.images.len() {
            self.check_image(idx);
        }
        self.check_threads(&id);
        self.check_pre_entry_code();
        self.check_initial_thread_code();
    }

    /// Gathers images: the module list, the PEB image, MZ headers at private region starts.
    fn collect_images(&mut self, id: &preentry_memory::ProcessIdentity) {
        match self.mem.modules() {
            Availability::Available(mods) => {
                for m in mods.iter().take(MAX_IMAGES) {
                    let main = Some(m.base) == id.peb_image_base;
                    self.images.push(Image {
                        base: m.base,
                        size: m.size,
                        path: m.path.clone(),
                        origin: ImageOrigin::Module,
                        main,
                        facts: None,
                    });
                }
            }
            Availability::Unavailable { reason } => {
                self.report.skip("modules", reason);
            }
        }
        match id.peb_image_base {
            Some(base) if base != 0 => {
                if let Some(img) = self.images.iter_mut().find(|i| i.base == base) {
                    img.main = true;
                } else {
                    self.images.push(Image {
                        base,
                        size: 0,
                        path: id.image_path.clone().unwrap_or_default(),
                        origin: ImageOrigin::Peb,
                        main: true,
                        facts: None,
                    });
                }
            }
            _ => self.report.skip(
                "hollowing.peb_image",
                "PEB.ImageBaseAddress is not known for this process",
            ),
        }
        // Private regions starting with a PE header.
        let private_bases: Vec<u64> = self
            .regions()
            .map(|rs| {
                rs.iter()
                    .filter(|r| r.kind == RegionKind::Private && r.protection.readable())
                    .take(MAX_PRIVATE_REGIONS)
                    .map(|r| r.base)
                    .collect()
            })
            .unwrap_or_default();
        for base in private_bases {
            if self.images.len() >= MAX_IMAGES {
                break;
            }
            if self.images.iter().any(|i| i.base == base) {
                continue;
            }
            let mut mz = [0u8; 2];
            if self.mem.read_exact_at(base, &mut mz).is_err() || &mz != b"MZ" {
                continue;
            }
            if let Ok(h) = read_facts(self.mem, base) {
                self.images.push(Image {
                    base,
                    size: u64::from(h.size_of_image),
                    path: format!("<private image at {base:#x}>"),
                    origin: ImageOrigin::Private,
                    main: false,
                    facts: Some(h),
                });
            }
        }
        // Headers of every image; sizes for those the module list did not size.
        for img in self.images.iter_mut() {
            if img.facts.is_none() {
                img.facts = read_facts(self.mem, img.base).ok();
            }
            if img.size == 0
                && let Some(h) = &img.facts
            {
                img.size = u64::from(h.size_of_image);
            }
        }
    }

    fn mapped_path_of(&self, base: u64) -> Option<PathBuf> {
        let r = self.region_at(base)?;
        match r.kind {
            RegionKind::Image | RegionKind::Mapped => r.path.clone(),
            _ => None,
        }
    }

    /// The host path of the process's exe, when it can be resolved.
    fn exe_host_path(&self, id: &preentry_memory::ProcessIdentity) -> Option<PathBuf> {
        let path = id.image_path.as_deref()?;
        let mapped = id.peb_image_base.and_then(|b| self.mapped_path_of(b));
        self.opts.resolver.resolve(path, mapped.as_deref()).ok()
    }

    /// Hollowing: the PEB image's backing and contents against the exe file.
    fn check_hollowing(&mut self, id: &preentry_memory::ProcessIdentity) {
        let Some(base) = id.peb_image_base.filter(|b| *b != 0) else {
            return;
        };
        let exe_path = id.image_path.clone().unwrap_or_default();
        let exe_host = self.exe_host_path(id);
        let main_facts = self
            .images
            .iter()
            .find(|i| i.main)
            .and_then(|i| i.facts.clone());

        // Exe mappings (live sources with file paths).
        let mut exe_mapped_at: Vec<u64> = Vec::new();
        let mut have_paths = false;
        if let (Some(regions), Some(host)) = (self.regions(), exe_host.as_ref()) {
            let canon = std::fs::canonicalize(host).unwrap_or_else(|_| host.clone());
            for r in regions {
                if let Some(p) = &r.path {
                    have_paths = true;
                    // A region names the exe either by a host path (live Wine) or by the same
                    // Windows path the PEB gives (a dump scanned elsewhere, e.g. with
                    // --disk-root), which names no host file.
                    let same_windows_path =
                        !exe_path.is_empty() && p.to_string_lossy().eq_ignore_ascii_case(&exe_path);
                    let pc = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
                    if same_windows_path || pc == canon {
                        exe_mapped_at.push(r.base);
                    }
                }
            }
        }
        let region = self.region_at(base).cloned();
        let disk = if exe_path.is_empty() {
            Err("the process names no image path".to_string())
        } else {
            read_disk(&self.opts.resolver, &exe_path, exe_host.as_deref())
        };

        // Content comparison: identity fields of the headers.
        let mut mismatch_fields: Vec<FieldDiff> = Vec::new();
        match (&disk, &main_facts) {
            (Ok(d), Some(m)) => {
                mismatch_fields = preentry_pe::diff(&d.facts.relocated_to(base), m)
                    .into_iter()
                    .filter(|f| is_identity_field(&f.field))
                    .map(|f| FieldDiff::from_pe(&f))
                    .collect();
            }
            (Err(reason), _) => self
                .report
                .skip("hollowing.main_image_vs_disk", reason.clone()),
            (_, None) => self.report.skip(
                "hollowing.main_image_vs_disk",
                format!("no PE header readable at PEB.ImageBaseAddress {base:#x}"),
            ),
        }

        let backed_by_exe = match &region {
            Some(r) if matches!(r.kind, RegionKind::Image | RegionKind::Mapped) => {
                exe_mapped_at.contains(&r.base) || !have_paths
            }
            Some(_) => false,
            None => true, // unknown: decided by content below
        };
        let region_private_writable_exec = region
            .as_ref()
            .is_some_and(|r| r.kind == RegionKind::Private && r.protection.writable());
        // A file rebuilt or updated since the process started differs from the loaded image in
        // its link time stamp only: that alone is not a different image.
        let structural_mismatch = mismatch_fields.iter().any(|f| f.field != TIME_DATE_STAMP);
        let hollowed = structural_mismatch
            || (region.is_some() && !backed_by_exe && region_private_writable_exec);
        if hollowed {
            let mut e = vec![
                ("image_base", json!(hex_addr(base))),
                ("exe_path", json!(exe_path)),
                (
                    "exe_mapped_at",
                    json!(
                        exe_mapped_at
                            .iter()
                            .map(|b| hex_addr(*b))
                            .collect::<Vec<_>>()
                    ),
                ),
                (
                    "header_mismatch",
                    json!(
                        mismatch_fields
                            .iter()
                            .map(|f| f.field.clone())
                            .collect::<Vec<_>>()
                    ),
                ),
            ];
            e.extend(region_evidence(region.as_ref()));
            if let Some(r) = &region {
                e.push((
                    "region_path",
                    json!(r.path.as_ref().map(|p| p.display().to_string())),
                ));
            }
            self.add(Finding::new(
                FindingKind::HollowedImage,
                format!(
                    "PEB.ImageBaseAddress {base:#x} holds an image that is not the mapped exe file {exe_path}"
                ),
                ev(e),
            ));
            if let Some(img) = self.images.iter_mut().find(|i| i.main) {
                img.path = format!("<hollowed image at {base:#x}>");
            }
        }
        if !mismatch_fields.is_empty()
            && let Ok(d) = &disk
        {
            let fields = mismatch_fields
                .iter()
                .map(|f| f.field.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let (summary, severity) = if structural_mismatch {
                (
                    format!(
                        "the main image at {base:#x} does not match {}: {fields}",
                        d.path.display()
                    ),
                    FindingKind::MainImageMismatch.default_severity(),
                )
            } else {
                (
                    format!(
                        "the main image at {base:#x} differs from {} only in its link time stamp: the file was rebuilt or replaced after the process started, or is not the file it ran from",
                        d.path.display()
                    ),
                    Severity::Medium,
                )
            };
            self.add(
                Finding::new(
                    FindingKind::MainImageMismatch,
                    summary,
                    ev(vec![
                        ("image_base", json!(hex_addr(base))),
                        ("exe_path", json!(exe_path)),
                        ("disk_file", json!(d.path.display().to_string())),
                        (
                            "fields",
                            json!(mismatch_fields
                            .iter()
                            .map(|f| json!({"field": f.field, "disk": f.disk, "memory": f.memory}))
                            .collect::<Vec<_>>()),
                        ),
                    ]),
                )
                .with_severity(severity),
            );
        }
        if have_paths && exe_host.is_some() && exe_mapped_at.is_empty() {
            self.add(Finding::new(
                FindingKind::ExeMappingMissing,
                format!("no region maps the process's exe file {exe_path}"),
                ev(vec![
                    ("exe_path", json!(exe_path)),
                    ("image_base", json!(hex_addr(base))),
                ]),
            ));
        } else if exe_host.is_none() && self.regions().is_some() {
            self.report.skip(
                "hollowing.exe_mapping",
                format!("the exe file {exe_path} could not be found on this machine"),
            );
        }
        // Private PE images other than the PEB image.
        let privates: Vec<(u64, u64, Option<ImageFacts>)> = self
            .images
            .iter()
            .filter(|i| i.origin == ImageOrigin::Private && i.base != base)
            .map(|i| (i.base, i.size, i.facts.clone()))
            .collect();
        for (pbase, psize, h) in privates {
            let region = self.region_at(pbase).cloned();
            let mut e = vec![
                ("address", json!(hex_addr(pbase))),
                ("size_of_image", json!(hex_addr(psize))),
            ];
            if let Some(h) = &h {
                e.push((
                    "entry_point",
                    json!(hex_addr(pbase.wrapping_add(u64::from(h.entry_point_rva)))),
                ));
            }
            e.extend(region_evidence(region.as_ref()));
            self.add(Finding::new(
                FindingKind::PeInPrivateMemory,
                format!("a PE image lives in private memory at {pbase:#x}"),
                ev(e),
            ));
        }
    }

    /// TLS and header checks of one image.
    fn check_image(&mut self, idx: usize) {
        let Some(img) = self.images.get(idx).cloned() else {
            return;
        };
        let name = img.name().to_string();
        let mut facts = ModuleFacts {
            path: img.path.clone(),
            base: hex_addr(img.base),
            main: img.main,
            disk_file: None,
            tls_directory: None,
            tls_callbacks: Vec::new(),
        };
        let Some(mem_f) = img.facts.clone() else {
            self.report.skip(
                format!("headers@{name}"),
                format!("no PE header readable at {:#x}", img.base),
            );
            self.report.modules.push(facts);
            return;
        };
        let hollowed_main = img.main
            && self
                .report
                .findings
                .iter()
                .any(|f| f.kind == FindingKind::HollowedImage);
        let unbacked = hollowed_main || img.origin == ImageOrigin::Private;

        // Disk file (not for images that no file backs).
        let disk = if unbacked {
            Err("the image is not backed by a file".to_string())
        } else {
            let mapped = self.mapped_path_of(img.base);
            read_disk(&self.opts.resolver, &img.path, mapped.as_deref())
        };
        if let Ok(d) = &disk {
            facts.disk_file = Some(d.path.display().to_string());
        } else if let Err(reason) = &disk
            && !unbacked
        {
            self.report
                .skip(format!("tls.disk_diff@{name}"), reason.clone());
            self.report
                .skip(format!("headers.disk_diff@{name}"), reason.clone());
        }

        // TLS in memory (read by preentry-pe through the source; the loader ignores Size).
        if let Some(err) = &mem_f.tls_error {
            self.report
                .skip(format!("tls.directory@{name}"), err.clone());
        }
        let callbacks = callbacks_of(&mem_f);
        if let Some(t) = &mem_f.tls {
            facts.tls_directory = Some(hex_addr(t.directory.va));
            match t.end {
                ArrayEnd::Unreadable { va, index } => self.report.skip(
                    format!("tls.callbacks@{name}"),
                    format!("callback slot {index} at {va:#x} is not readable"),
                ),
                ArrayEnd::Limit { entries } => self.report.skip(
                    format!("tls.callbacks@{name}"),
                    format!("more than {entries} callbacks without a NULL entry; stopped"),
                ),
                ArrayEnd::NoArray | ArrayEnd::Null { .. } => {}
            }
        }

        // Disk comparisons: the file relocated to the loaded base, field by field.
        let mut modified = false;
        if let Ok(d) = &disk {
            let expected = d.facts.relocated_to(img.base);
            let diffs = preentry_pe::diff(&expected, &mem_f);
            let array_moved = diffs.iter().any(|f| f.field == "tls.address_of_callbacks");
            let main_mismatch = img.main
                && self
                    .report
                    .findings
                    .iter()
                    .any(|x| x.kind == FindingKind::MainImageMismatch);
            for pf in &diffs {
                let f = FieldDiff::from_pe(pf);
                let field = f.field.as_str();
                if field == "optional_header.image_base"
                    && matches!(pf.observed, FieldValue::Int(v) if v == img.base || v == d.facts.image_base)
                {
                    continue; // the loader's relocation write, or Wine leaving the file's value
                }
                if field == "tls_error" {
                    continue; // reported as a skipped check
                }
                let (kind, severity) = if field.starts_with("data_directory.tls.") {
                    (FindingKind::TlsDataDirectoryModified, Severity::High)
                } else if field == "tls" {
                    if pf.expected == FieldValue::Absent {
                        modified = true;
                        self.add(Finding::new(
                            FindingKind::TlsDirectoryAdded,
                            format!(
                                "{name} at {:#x} has a TLS directory in memory but {} has none",
                                img.base,
                                d.path.display()
                            ),
                            ev(vec![
                                ("module", json!(img.path)),
                                ("module_base", json!(hex_addr(img.base))),
                                ("tls_directory", json!(facts.tls_directory)),
                                (
                                    "callbacks",
                                    json!(
                                        callbacks.iter().map(|c| hex_addr(*c)).collect::<Vec<_>>()
                                    ),
                                ),
                                ("disk_file", json!(d.path.display().to_string())),
                            ]),
                        ));
                        continue;
                    }
                    (FindingKind::TlsDirectoryModified, Severity::High)
                } else if field.starts_with("tls.callbacks") {
                    if array_moved {
                        continue; // one swapped array, reported once with both arrays
                    }
                    (FindingKind::TlsCallbackArrayModified, Severity::High)
                } else if field.starts_with("tls.") {
                    (FindingKind::TlsDirectoryModified, Severity::High)
                } else if main_mismatch && is_identity_field(field) {
                    continue; // part of main_image_mismatch
                } else if field == "optional_header.address_of_entry_point" {
                    (FindingKind::HeaderFieldModified, Severity::High)
                } else {
                    (FindingKind::HeaderFieldModified, Severity::Medium)
                };
                if kind != FindingKind::HeaderFieldModified {
                    modified = true;
                }
                let mut finding = self.field_finding(kind, &img, &d.path, &f, severity);
                if field == "tls.address_of_callbacks" {
                    finding.evidence.insert(
                        "disk_callbacks".into(),
                        json!(
                            callbacks_of(&expected)
                                .iter()
                                .map(|c| hex_addr(*c))
                                .collect::<Vec<_>>()
                        ),
                    );
                    finding.evidence.insert(
                        "memory_callbacks".into(),
                        json!(callbacks.iter().map(|c| hex_addr(*c)).collect::<Vec<_>>()),
                    );
                }
                self.add(finding);
            }
        }

        // Unbacked images carrying TLS callbacks (the hollowing payload's).
        if unbacked && img.main && !callbacks.is_empty() {
            self.add(Finding::new(
                FindingKind::TlsCallbackInUnbackedImage,
                format!(
                    "the image at {:#x}, not backed by the exe file, has {} TLS callback(s) that run before its entry point",
                    img.base,
                    callbacks.len()
                ),
                ev(vec![
                    ("image_base", json!(hex_addr(img.base))),
                    ("tls_directory", json!(facts.tls_directory)),
                    (
                        "callbacks",
                        json!(callbacks.iter().map(|c| hex_addr(*c)).collect::<Vec<_>>()),
                    ),
                ]),
            ));
        }

        // Where each callback points.
        for (slot, cb) in callbacks.iter().copied().enumerate() {
            let fact = self.classify_callback(&img, &mem_f, slot, cb, modified);
            facts.tls_callbacks.push(fact);
        }
        self.report.modules.push(facts);
    }

    fn field_finding(
        &self,
        kind: FindingKind,
        img: &Image,
        disk_path: &Path,
        f: &FieldDiff,
        severity: Severity,
    ) -> Finding {
        Finding::new(
            kind,
            format!(
                "{} of {} at {:#x} is {} in memory but {} on disk",
                f.field,
                img.name(),
                img.base,
                FieldDiff::text(&f.memory),
                FieldDiff::text(&f.disk)
            ),
            ev(vec![
                ("module", json!(img.path)),
                ("module_base", json!(hex_addr(img.base))),
                ("field", json!(f.field)),
                ("disk", json!(f.disk)),
                ("memory", json!(f.memory)),
                ("disk_file", json!(disk_path.display().to_string())),
            ]),
        )
        .with_severity(severity)
    }

    fn classify_callback(
        &mut self,
        img: &Image,
        mem_f: &ImageFacts,
        slot: usize,
        cb: u64,
        modified: bool,
    ) -> CallbackFact {
        let region = self.region_at(cb).cloned();
        let owner = self.image_of(cb).map(|i| (i.base, i.path.clone()));
        let in_own = img.contains(cb);
        // Section and its executability, from the in-memory section table.
        let location = in_own.then(|| mem_f.classify(cb, img.base));
        let section_name = location.as_ref().and_then(|l| l.section.clone());
        let section_executable = location.as_ref().and_then(|l| l.executable);
        let fact = CallbackFact {
            slot: u32::try_from(slot).unwrap_or(u32::MAX),
            address: hex_addr(cb),
            image: owner
                .as_ref()
                .map(|(_, p)| preentry_memory::file_name_of(p).to_string()),
            section: section_name.clone(),
            protection: region.as_ref().map(|r| r.protection.short()),
            region_kind: region.as_ref().map(|r| kind_name(r.kind).to_string()),
        };
        let name = img.name().to_string();
        let mut base_ev = vec![
            ("module", json!(img.path)),
            ("module_base", json!(hex_addr(img.base))),
            ("slot", json!(slot)),
            ("callback", json!(hex_addr(cb))),
            (
                "callback_image",
                json!(owner.as_ref().map(|(_, p)| p.clone())),
            ),
            ("tls_modified", json!(modified)),
        ];
        base_ev.extend(region_evidence(region.as_ref()));

        if !in_own {
            let rwx = region
                .as_ref()
                .is_some_and(|r| r.protection.writable_executable());
            let private = region
                .as_ref()
                .is_some_and(|r| r.kind == RegionKind::Private);
            let (kind, what) = if rwx {
                (
                    FindingKind::TlsCallbackInRwxMemory,
                    "writable and executable memory",
                )
            } else if private && owner.is_none() {
                (FindingKind::TlsCallbackInPrivateMemory, "private memory")
            } else if owner.is_none() {
                (
                    FindingKind::TlsCallbackOutsideImage,
                    "memory outside every image",
                )
            } else {
                (FindingKind::TlsCallbackOutsideImage, "another image")
            };
            let sev = if modified && (rwx || private || (region.is_none() && owner.is_none())) {
                Severity::Critical
            } else if owner.is_some() && !rwx {
                Severity::Low
            } else {
                kind.default_severity()
            };
            // A callback into another loaded module is an oddity, not by itself an attack.
            self.add(
                Finding::new(
                    kind,
                    format!("TLS callback {slot} of {name} points into {what} at {cb:#x}"),
                    ev(base_ev.clone()),
                )
                .with_severity(sev),
            );
            if let Some(reason) = self.pre_entry.clone() {
                let mut e = base_ev.clone();
                e.push(("pre_entry_reason", json!(reason)));
                self.add(Finding::new(
                    FindingKind::TlsCallbackOutsideModulePreEntry,
                    format!(
                        "TLS callback {slot} of {name} points outside its module at {cb:#x} before the entry point ran"
                    ),
                    ev(e),
                ));
            }
        } else {
            let not_exec_section = section_executable == Some(false);
            let not_exec_region = region.as_ref().is_some_and(|r| !r.protection.executable());
            if not_exec_section || not_exec_region {
                let mut e = base_ev;
                e.push(("section", json!(section_name)));
                self.add(Finding::new(
                    FindingKind::TlsCallbackNotExecutable,
                    format!(
                        "TLS callback {slot} of {name} points at {cb:#x}, in {} that is not executable",
                        if not_exec_section { "a section" } else { "memory" }
                    ),
                    ev(e),
                ));
            }
        }
        fact
    }

    /// Threads: initial thread context before the entry point, start addresses.
    fn check_threads(&mut self, id: &preentry_memory::ProcessIdentity) {
        let threads = match self.mem.threads() {
            Availability::Available(t) => t.to_vec(),
            Availability::Unavailable { reason } => {
                self.report.skip("pre_entry.threads", reason);
                return;
            }
        };
        // Start addresses in private memory.
        let mut seen_start_unavailable = false;
        for t in &threads {
            match &t.start_address {
                Availability::Available(start) => {
                    let start = *start;
                    let region = self.region_at(start).cloned();
                    if self.image_of(start).is_none()
                        && region
                            .as_ref()
                            .is_some_and(|r| r.kind == RegionKind::Private)
                    {
                        let mut e = vec![
                            ("thread", json!(t.tid)),
                            ("start_address", json!(hex_addr(start))),
                        ];
                        e.extend(region_evidence(region.as_ref()));
                        self.add(Finding::new(
                            FindingKind::ThreadStartInPrivateMemory,
                            format!("thread {} starts in private memory at {start:#x}", t.tid),
                            ev(e),
                        ));
                    }
                }
                Availability::Unavailable { reason } => {
                    if !seen_start_unavailable {
                        seen_start_unavailable = true;
                        self.report.skip("pre_entry.thread_start", reason.clone());
                    }
                }
            }
        }
        // The initial thread before the entry point.
        let Some(reason) = self.pre_entry.clone() else {
            return;
        };
        let Some(base) = id.peb_image_base.filter(|b| *b != 0) else {
            return;
        };
        // Expected entry: the exe file's, relocated to the PEB base; else the in-memory header's.
        let exe_entry = id
            .image_path
            .as_deref()
            .and_then(|p| {
                read_disk(&self.opts.resolver, p, self.mapped_path_of(base).as_deref()).ok()
            })
            .map(|d| base.wrapping_add(u64::from(d.facts.entry_point_rva)));
        let mem_entry = self
            .images
            .iter()
            .find(|i| i.main)
            .and_then(|i| i.facts.as_ref())
            .map(|h| base.wrapping_add(u64::from(h.entry_point_rva)));
        let Some(expected) = exe_entry.or(mem_entry) else {
            self.report.skip(
                "pre_entry.initial_thread",
                "the image's entry point is not known (no header, no disk file)",
            );
            return;
        };
        let Some(initial) = threads.first() else {
            return;
        };
        let Availability::Available(ctx) = &initial.context else {
            self.report.skip(
                "pre_entry.initial_thread",
                initial
                    .context
                    .reason()
                    .unwrap_or("no thread context")
                    .to_string(),
            );
            return;
        };
        let peb_ok = id.peb_address.is_none_or(|p| ctx.rdx == p);
        if ctx.kind == preentry_memory::ContextKind::PendingInitial {
            // Wine keeps a SetThreadContext made while the thread is suspended in wineserver:
            // the registers read here may be stale either way, so no verdict from them.
            self.report.skip(
                "pre_entry.initial_thread",
                "live Wine view of a not-yet-started thread: a SetThreadContext made while it is \
                 suspended is held by wineserver and not visible here (a minidump shows it)",
            );
            return;
        }
        if ctx.rcx != expected || !peb_ok {
            self.add(Finding::new(
                FindingKind::InitialThreadContextModified,
                format!(
                    "the initial thread {} would start at {:#x}, not at the image's entry point {expected:#x}",
                    initial.tid, ctx.rcx
                ),
                ev(vec![
                    ("thread", json!(initial.tid)),
                    ("rip", json!(hex_addr(ctx.rip))),
                    ("rcx", json!(hex_addr(ctx.rcx))),
                    ("rdx", json!(hex_addr(ctx.rdx))),
                    ("expected_entry", json!(hex_addr(expected))),
                    ("peb", json!(id.peb_address.map(hex_addr))),
                    ("pre_entry_reason", json!(reason)),
                ]),
            ));
        }
    }

    /// The base of a PE image whose headers (read from memory) cover `addr`: looked for at the
    /// 64 KiB-aligned addresses below it, so images the module list and the region list do not
    /// name (a minidump taken before the loader ran has neither) are still known by content.
    fn enclosing_pe(&self, addr: u64) -> Option<u64> {
        let mut base = addr & !0xFFFF;
        let lowest = addr.saturating_sub(ENCLOSING_PE_SEARCH);
        while base >= lowest {
            let mut mz = [0u8; 2];
            if self.mem.read_exact_at(base, &mut mz).is_ok()
                && &mz == b"MZ"
                && let Ok(h) = read_facts(self.mem, base)
                && addr - base < u64::from(h.size_of_image)
            {
                return Some(base);
            }
            base = base.checked_sub(0x10000)?;
        }
        None
    }

    /// Whether `addr` is code of the main image: executable memory (live) or, without a
    /// region list, an executable section of its in-memory section table.
    fn in_main_code(&self, main: &Image, addr: u64) -> bool {
        if !main.contains(addr) {
            return false;
        }
        if self.regions().is_some() {
            return self
                .region_at(addr)
                .is_some_and(|r| r.protection.executable());
        }
        main.facts
            .as_ref()
            .is_some_and(|f| f.classify(addr, main.base).executable == Some(true))
    }

    /// Whether `addr` lies outside every image in memory that can hold code: live, an executable
    /// region that is no image mapping; without a region list, any captured memory (whether it
    /// is executable is not known).
    fn outside_images_code(&self, addr: u64) -> Option<Option<&Region>> {
        if self.image_of(addr).is_some() {
            return None;
        }
        let region = if self.regions().is_some() {
            let r = self.region_at(addr)?;
            if !r.protection.executable() || r.kind == RegionKind::Image {
                return None;
            }
            Some(r)
        } else {
            let captured = self.mem.memory_ranges();
            let idx = captured.partition_point(|r| r.end <= addr);
            if !captured.get(idx).is_some_and(|r| r.contains(&addr)) {
                return None;
            }
            None
        };
        if self.enclosing_pe(addr).is_some() {
            return None;
        }
        Some(region)
    }

    /// The initial thread executing injected code before the entry point: its instruction
    /// pointer, or a return address in the top [`STACK_FRAME_SCAN`] bytes of its stack, lies in
    /// code outside every image, and no return address into the main image's code lies between
    /// its stack pointer and its stack base (the entry point has not been called).
    fn check_initial_thread_code(&mut self) {
        const CHECK: &str = "pre_entry.initial_thread_code";
        let Availability::Available(threads) = self.mem.threads() else {
            return; // listed as pre_entry.threads
        };
        let Some(initial) = threads.first().cloned() else {
            return;
        };
        let ctx = match &initial.context {
            Availability::Available(c) => c.clone(),
            Availability::Unavailable { reason } => {
                self.report.skip(CHECK, reason.clone());
                return;
            }
        };
        if ctx.kind == preentry_memory::ContextKind::PendingInitial {
            return; // not started: no frame of its own yet (see pre_entry.initial_thread)
        }
        let Some(main) = self.images.iter().find(|i| i.main).cloned() else {
            self.report
                .skip(CHECK, "the main image (PEB.ImageBaseAddress) is not known");
            return;
        };
        let clr = main.facts.as_ref().is_some_and(|f| {
            f.data_directories
                .iter()
                .any(|d| d.index == CLR_DIRECTORY && d.virtual_address != 0)
        });
        if clr {
            self.report.skip(
                CHECK,
                "a .NET exe: its entry point runs in mscoree and JIT code, so the absence of exe \
                 frames does not mean the entry point was not reached",
            );
            return;
        }
        let rsp = ctx.rsp;
        let stack_end = match &initial.stack {
            Some(s) if s.contains(&rsp) => s.end,
            _ => rsp.saturating_add(STACK_FRAME_SCAN),
        };
        let want = stack_end.saturating_sub(rsp);
        let Ok(buf) = self.mem.read_range(rsp, want, STACK_ENTRY_SCAN) else {
            self.report
                .skip(CHECK, format!("the stack at {rsp:#x} could not be read"));
            return;
        };
        let executable_known = self.regions().is_some();
        // (address, stack offset or None for rip, region)
        let mut frames: Vec<(u64, Option<u64>, Option<Region>)> = Vec::new();
        let mut main_frame: Option<(u64, Option<u64>)> = None;
        if self.in_main_code(&main, ctx.rip) {
            main_frame = Some((ctx.rip, None));
        } else if let Some(region) = self.outside_images_code(ctx.rip) {
            frames.push((ctx.rip, None, region.cloned()));
        }
        let mut scanned: u64 = 0;
        for (i, q) in buf.bytes.chunks_exact(8).enumerate() {
            if main_frame.is_some() {
                break;
            }
            let off = u64::try_from(i).unwrap_or(u64::MAX).saturating_mul(8);
            scanned = off.saturating_add(8);
            let mut word = [0u8; 8];
            word.copy_from_slice(q);
            let v = u64::from_le_bytes(word);
            if v < 0x10000 {
                continue;
            }
            if main.contains(v) {
                if self.in_main_code(&main, v) && call_preceded(self.mem, v) {
                    main_frame = Some((v, Some(off)));
                }
                continue;
            }
            if off >= STACK_FRAME_SCAN || frames.len() >= MAX_STACK_FRAMES {
                continue;
            }
            // Cheapest tests first: a known image, then one 7-byte read.
            if self.image_of(v).is_some() || !call_preceded(self.mem, v) {
                continue;
            }
            if let Some(region) = self.outside_images_code(v) {
                frames.push((v, Some(off), region.cloned()));
            }
        }
        if frames.is_empty() || main_frame.is_some() {
            return;
        }
        let reason = match self.pre_entry.clone() {
            Some(r) => r,
            None => format!(
                "no return address into the code of {} within {scanned:#x} bytes of the initial \
                 thread's stack ({rsp:#x}..{:#x}): its entry point has not been called",
                main.name(),
                rsp.saturating_add(scanned)
            ),
        };
        let first = frames.first().map(|f| f.0).unwrap_or_default();
        let frame_ev: Vec<Value> = frames
            .iter()
            .map(|(addr, off, region)| {
                let mut e = ev(vec![
                    ("address", json!(hex_addr(*addr))),
                    ("stack_offset", json!(off.map(hex_addr))),
                ]);
                for (k, v) in region_evidence(region.as_ref()) {
                    e.insert(k.to_string(), v);
                }
                Value::Object(e)
            })
            .collect();
        let context_kind = match ctx.kind {
            preentry_memory::ContextKind::Captured => "captured",
            preentry_memory::ContextKind::LastSystemCall => "last_system_call",
            preentry_memory::ContextKind::PendingInitial => "pending_initial",
        };
        let executable_note = if executable_known {
            "every address lies in executable memory that is no image mapping"
        } else {
            "no region list (a Wine minidump): the addresses lie in captured memory outside every \
             image found by PEB, module list and MZ headers, and follow a call instruction; \
             whether that memory is executable cannot be decided"
        };
        // TLS callbacks outside every image also run injected code on this thread before the
        // entry point: then the frames may be theirs (T1055.005), not an APC's (T1055.004).
        let tls_outside: Vec<String> = self
            .report
            .modules
            .iter()
            .flat_map(|m| m.tls_callbacks.iter())
            .filter(|c| c.image.is_none())
            .map(|c| c.address.clone())
            .collect();
        let mut finding = Finding::new(
            FindingKind::PreEntryThreadInPrivateCode,
            format!(
                "the initial thread {} runs code outside every image ({first:#x}) before the process reached its entry point",
                initial.tid
            ),
            ev(vec![
                ("thread", json!(initial.tid)),
                ("context_kind", json!(context_kind)),
                ("rip", json!(hex_addr(ctx.rip))),
                ("rsp", json!(hex_addr(rsp))),
                ("frames", Value::Array(frame_ev)),
                ("stack_scanned", json!(hex_addr(scanned))),
                ("executable_known", json!(executable_known)),
                ("executable_note", json!(executable_note)),
                ("pre_entry_reason", json!(reason)),
                ("tls_callbacks_outside_images", json!(tls_outside)),
            ]),
        );
        if !tls_outside.is_empty() {
            finding.technique = vec![T1055_005.to_string(), T1055.to_string()];
        }
        self.add(finding);
    }

    /// Private executable memory with code before the entry point.
    fn check_pre_entry_code(&mut self) {
        let Some(reason) = self.pre_entry.clone() else {
            return;
        };
        let Some(regions) = self.regions() else {
            return;
        };
        let candidates: Vec<Region> = regions
            .iter()
            .filter(|r| {
                r.kind == RegionKind::Private
                    && r.protection.executable()
                    && r.protection.writable()
                    && r.pseudo_path.is_none()
            })
            .take(MAX_PRIVATE_REGIONS)
            .cloned()
            .collect();
        for r in candidates {
            if self.image_of(r.base).is_some() {
                continue;
            }
            let Ok(buf) = self.mem.read_range(r.base, r.size, CODE_SAMPLE) else {
                continue;
            };
            let nonzero = buf.bytes.iter().filter(|b| **b != 0).count();
            if nonzero == 0 {
                continue;
            }
            let mut e = region_evidence(Some(&r));
            e.push(("nonzero_bytes", json!(nonzero)));
            e.push(("pre_entry_reason", json!(reason)));
            self.add(Finding::new(
                FindingKind::PreEntryPrivateCode,
                format!(
                    "private {} memory at {:#x} holds code before the process reached its entry point",
                    r.protection.short(),
                    r.base
                ),
                ev(e),
            ));
        }
    }
}

/// Whether the instruction ending just before `ret_addr` is a near call (`E8 rel32`, or `FF /2`
/// in any of its register/memory forms, with or without a REX prefix): the test that tells a
/// return address from any other pointer on a stack. Reads 7 bytes; unreadable means no.
fn call_preceded(mem: &dyn ProcessMemory, ret_addr: u64) -> bool {
    let Some(at) = ret_addr.checked_sub(7) else {
        return false;
    };
    let mut b = [0u8; 7];
    if mem.read_exact_at(at, &mut b).is_err() {
        return false;
    }
    if b[2] == 0xE8 {
        return true;
    }
    // FF /2: ModRM (and SIB, displacement) decide the length; it must end at ret_addr.
    [2usize, 3, 4, 6, 7].into_iter().any(|len| {
        let i = 7 - len;
        let (Some(&op), Some(&modrm)) = (b.get(i), b.get(i + 1)) else {
            return false;
        };
        if op != 0xFF || (modrm >> 3) & 7 != 2 {
            return false;
        }
        let rm = modrm & 7;
        let sib_base_disp32 = b.get(i + 2).is_some_and(|sib| sib & 7 == 5);
        let decoded = match modrm >> 6 {
            3 => 2,
            0 if rm == 5 => 6,
            0 if rm == 4 => {
                if sib_base_disp32 {
                    7
                } else {
                    3
                }
            }
            0 => 2,
            1 if rm == 4 => 4,
            1 => 3,
            _ if rm == 4 => 7,
            _ => 6,
        };
        decoded == len
    })
}

/// One differing field, as evidence text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldDiff {
    field: String,
    disk: Option<String>,
    memory: Option<String>,
}

impl FieldDiff {
    fn from_pe(f: &preentry_pe::FieldDiff) -> Self {
        FieldDiff {
            field: f.field.clone(),
            disk: value_text(&f.expected),
            memory: value_text(&f.observed),
        }
    }

    fn text(v: &Option<String>) -> &str {
        v.as_deref().unwrap_or("absent")
    }
}

/// Fields whose difference means "a different image", not a patched header.
/// The link time stamp: an identity field, but on its own it does not make another image.
const TIME_DATE_STAMP: &str = "file_header.time_date_stamp";

fn is_identity_field(field: &str) -> bool {
    field == "optional_header.size_of_image"
        || field == "file_header.number_of_sections"
        || field == "file_header.machine"
        || field == TIME_DATE_STAMP
        || (field.starts_with("section[")
            && (field.ends_with(']')
                || field.ends_with(".virtual_address")
                || field.ends_with(".virtual_size")
                || field.ends_with(".name")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeProcess, corpus};
    use preentry_memory::Protection;
    use preentry_pe::synth::{LoadedImage, TlsField};

    const VICTIM: &str = "pe/goblin/tests/bins/pe/lld_with_tls_64.exe.bin";
    const NO_TLS: &str = "pe/goblin/tests/bins/pe/lld_no_tls_64.exe.bin";
    const PAYLOAD: &str = "pe/corkami-pocs/PE/bin/tls64.exe";
    const BASE: u64 = 0x1_4000_0000;
    const PEB: u64 = 0x7fff_0000;
    const PRIVATE: u64 = 0x20_0000;

    fn file(rel: &str) -> Vec<u8> {
        std::fs::read(corpus(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    fn opts() -> ScanOptions {
        ScanOptions {
            resolver: DiskResolver {
                disk_root: Some(corpus("pe/goblin/tests/bins/pe")),
                wine_prefix: None,
            },
        }
    }

    /// A process whose exe is `rel`, loaded at BASE as a file-backed image; loader ran
    /// (`ldr != 0`) unless `pre_entry`.
    fn process_with(rel: &str, img: &LoadedImage, pre_entry: bool) -> FakeProcess {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        let win_path = format!(r"C:\lab\{name}");
        let mut p = FakeProcess::new(&win_path, PEB);
        p.map(
            BASE,
            img.bytes.clone(),
            RegionKind::Image,
            Protection::EXECUTE_READ,
            Some(corpus(rel)),
        );
        p.set_peb(BASE, if pre_entry { 0 } else { PEB + 0x800 });
        if !pre_entry {
            p.modules = Some(vec![preentry_memory::Module::new(
                BASE,
                img.bytes.len() as u64,
                win_path,
                None,
            )]);
        } else {
            p.modules = Some(Vec::new());
        }
        p
    }

    fn victim() -> LoadedImage {
        LoadedImage::map(&file(VICTIM), BASE).unwrap_or_else(|e| panic!("{e}"))
    }

    fn kinds(r: &ProcessReport) -> Vec<(FindingKind, Severity)> {
        r.findings.iter().map(|f| (f.kind, f.severity)).collect()
    }

    fn field_of(r: &ProcessReport, kind: FindingKind) -> Vec<String> {
        r.findings
            .iter()
            .filter(|f| f.kind == kind)
            .filter_map(|f| {
                f.evidence
                    .get("field")
                    .and_then(|v| v.as_str())
                    .map(String::from)
            })
            .collect()
    }

    /// Private RWX memory with a code stub and (optionally) a callback array after it.
    fn add_private_rwx(p: &mut FakeProcess) -> (u64, u64) {
        let mut page = vec![0u8; 0x1000];
        page[0] = 0x49; // mov r9, imm64 … (the lab stub's first bytes)
        page[1] = 0xB9;
        p.map(
            PRIVATE,
            page,
            RegionKind::Private,
            Protection::EXECUTE_READWRITE,
            None,
        );
        (PRIVATE, PRIVATE + 0x800)
    }

    #[test]
    fn clean_image_has_no_findings_and_lists_callbacks() {
        let img = victim();
        let p = process_with(VICTIM, &img, false);
        let r = scan_process(&p, &opts());
        assert!(r.findings.is_empty(), "{:#?}", r.findings);
        let main = r
            .modules
            .iter()
            .find(|m| m.main)
            .unwrap_or_else(|| panic!("no main"));
        assert_eq!(main.tls_callbacks.len(), 1, "{main:?}");
        assert_eq!(main.tls_callbacks[0].section.as_deref(), Some(".text"));
        assert!(main.disk_file.is_some());
    }

    #[test]
    fn time_stamp_only_difference_is_not_hollowing() {
        // The file on disk was relinked after the process started: same layout, new time stamp.
        let mut img = victim();
        let e_lfanew = u64::from(u32::from_le_bytes(
            img.bytes[0x3c..0x40].try_into().unwrap_or_default(),
        ));
        let stamp = e_lfanew + 8;
        let old = u32::from_le_bytes(
            img.bytes[stamp as usize..stamp as usize + 4]
                .try_into()
                .unwrap_or_default(),
        );
        img.write_width(stamp, 4, u64::from(old ^ 0x5a5a));
        let p = process_with(VICTIM, &img, false);
        let r = scan_process(&p, &opts());
        let k: Vec<FindingKind> = r.findings.iter().map(|f| f.kind).collect();
        assert!(!k.contains(&FindingKind::HollowedImage), "{k:?}");
        let m = r
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::MainImageMismatch)
            .unwrap_or_else(|| panic!("no main_image_mismatch in {k:?}"));
        assert_eq!(m.severity, Severity::Medium);
        assert!(m.summary.contains("time stamp"), "{}", m.summary);
    }

    #[test]
    fn array_swap_is_directory_change_plus_rwx_callback() {
        let mut img = victim();
        let (stub, array) = (PRIVATE, PRIVATE + 0x800);
        img.set_tls_field(TlsField::AddressOfCallbacks, array)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut p = process_with(VICTIM, &img, false);
        add_private_rwx(&mut p);
        let mut arr = stub.to_le_bytes().to_vec();
        arr.extend_from_slice(&0x1_4000_1000u64.to_le_bytes());
        p.write(array, &arr);
        let r = scan_process(&p, &opts());
        assert_eq!(
            field_of(&r, FindingKind::TlsDirectoryModified),
            vec!["tls.address_of_callbacks"],
            "{:#?}",
            r.findings
        );
        assert!(
            kinds(&r).contains(&(FindingKind::TlsCallbackInRwxMemory, Severity::Critical)),
            "{:#?}",
            r.findings
        );
    }

    #[test]
    fn slot_overwrite_names_the_slot() {
        let mut img = victim();
        img.set_callback(0, PRIVATE)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut p = process_with(VICTIM, &img, false);
        add_private_rwx(&mut p);
        let r = scan_process(&p, &opts());
        assert_eq!(
            field_of(&r, FindingKind::TlsCallbackArrayModified),
            vec!["tls.callbacks[0]"]
        );
        assert!(field_of(&r, FindingKind::TlsDirectoryModified).is_empty());
        assert_eq!(r.max_severity(), Some(Severity::Critical));
    }

    #[test]
    fn directory_redirect_names_data_directory_9() {
        let mut img = victim();
        let rva = img.tls_directory_rva().ok().flatten().unwrap_or(0) as u32;
        // Copy the directory 0x100 bytes further and point DataDirectory[9] there.
        let at = rva as usize;
        let copy: Vec<u8> = img.bytes[at..at + 40].to_vec();
        let new_rva = 0x1e00u32;
        img.bytes[new_rva as usize..new_rva as usize + 40].copy_from_slice(&copy);
        img.set_data_directory(9, new_rva, 40)
            .unwrap_or_else(|e| panic!("{e}"));
        let p = process_with(VICTIM, &img, false);
        let r = scan_process(&p, &opts());
        assert!(
            field_of(&r, FindingKind::TlsDataDirectoryModified)
                .contains(&"data_directory.tls.virtual_address".to_string()),
            "{:#?}",
            r.findings
        );
    }

    #[test]
    fn tls_directory_added_where_file_has_none() {
        let no_tls = file(NO_TLS);
        let mut img = LoadedImage::map(&no_tls, BASE).unwrap_or_else(|e| panic!("{e}"));
        // Reuse the TLS directory layout of the victim: directory at 0x1e00, array at 0x1e40.
        let mut dir = vec![0u8; 40];
        dir[24..32].copy_from_slice(&(BASE + 0x1e40).to_le_bytes());
        img.bytes[0x1e00..0x1e28].copy_from_slice(&dir);
        img.bytes[0x1e40..0x1e48].copy_from_slice(&PRIVATE.to_le_bytes());
        img.set_data_directory(9, 0x1e00, 40)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut p = process_with(NO_TLS, &img, true);
        add_private_rwx(&mut p);
        let r = scan_process(&p, &opts());
        let k = kinds(&r);
        assert!(
            k.iter().any(|(k, _)| *k == FindingKind::TlsDirectoryAdded),
            "{k:?}"
        );
        assert!(
            k.iter()
                .any(|(k, _)| *k == FindingKind::TlsCallbackOutsideModulePreEntry),
            "{k:?}"
        );
        assert!(
            k.iter()
                .any(|(k, _)| *k == FindingKind::PreEntryPrivateCode),
            "{k:?}"
        );
    }

    #[test]
    fn hollowed_image_in_private_rwx_memory() {
        // The exe file is the victim, but PEB.ImageBaseAddress points at the payload written
        // into private RWX memory, and the exe is mapped nowhere.
        let payload = file(PAYLOAD);
        let pimg = LoadedImage::map(&payload, 0x40_0000).unwrap_or_else(|e| panic!("{e}"));
        let mut p = FakeProcess::new(r"C:\lab\lld_with_tls_64.exe.bin", PEB);
        p.map(
            0x40_0000,
            pimg.bytes.clone(),
            RegionKind::Private,
            Protection::EXECUTE_READWRITE,
            None,
        );
        p.map(
            0x9_0000,
            vec![1; 16],
            RegionKind::Mapped,
            Protection::READONLY,
            Some(corpus(NO_TLS)),
        );
        p.set_peb(0x40_0000, 0);
        p.modules = Some(Vec::new());
        let r = scan_process(&p, &opts());
        let k: Vec<FindingKind> = r.findings.iter().map(|f| f.kind).collect();
        for want in [
            FindingKind::HollowedImage,
            FindingKind::MainImageMismatch,
            FindingKind::ExeMappingMissing,
            FindingKind::TlsCallbackInUnbackedImage,
        ] {
            assert!(k.contains(&want), "{want} missing from {k:?}");
        }
        // No disk diffs of the payload against the victim's file.
        assert!(!k.contains(&FindingKind::TlsDirectoryModified), "{k:?}");
    }

    #[test]
    fn hollowing_verdict_without_region_list() {
        // Same as above but from a dump with no MemoryInfoList: contents still prove it.
        let payload = file(PAYLOAD);
        let pimg = LoadedImage::map(&payload, 0x40_0000).unwrap_or_else(|e| panic!("{e}"));
        let mut p = FakeProcess::new(r"C:\lab\lld_with_tls_64.exe.bin", PEB);
        p.map(
            0x40_0000,
            pimg.bytes.clone(),
            RegionKind::Private,
            Protection::EXECUTE_READWRITE,
            None,
        );
        p.set_peb(0x40_0000, 0);
        p.regions_known = false;
        let r = scan_process(&p, &opts());
        let k: Vec<FindingKind> = r.findings.iter().map(|f| f.kind).collect();
        assert!(k.contains(&FindingKind::HollowedImage), "{k:?}");
        assert!(
            k.contains(&FindingKind::TlsCallbackInUnbackedImage),
            "{k:?}"
        );
        assert!(
            r.skipped_checks
                .iter()
                .any(|s| s.check == "hollowing.exe_mapping")
        );
    }

    #[test]
    fn initial_thread_context_checked_before_entry() {
        let img = victim();
        let mut p = process_with(VICTIM, &img, true);
        let entry = BASE + 0x1010;
        p.thread(1, 0x7bc0_0000, entry, PEB);
        let r = scan_process(&p, &opts());
        assert!(r.findings.is_empty(), "{:#?}", r.findings);
        p.threads.clear();
        p.thread(1, 0x7bc0_0000, PRIVATE, PEB);
        let r = scan_process(&p, &opts());
        assert_eq!(
            kinds(&r),
            vec![(FindingKind::InitialThreadContextModified, Severity::High)]
        );
        // A live Wine pending context proves nothing either way: skipped, not judged.
        if let Availability::Available(ctx) = &mut p.threads[0].context {
            ctx.kind = preentry_memory::ContextKind::PendingInitial;
        }
        let r = scan_process(&p, &opts());
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert!(
            r.skipped_checks
                .iter()
                .any(|s| s.check == "pre_entry.initial_thread")
        );
    }

    #[test]
    fn entry_point_patch_is_a_header_finding() {
        let mut img = victim();
        img.set_entry_point(0x1000)
            .unwrap_or_else(|e| panic!("{e}"));
        let p = process_with(VICTIM, &img, false);
        let r = scan_process(&p, &opts());
        assert_eq!(
            field_of(&r, FindingKind::HeaderFieldModified),
            vec!["optional_header.address_of_entry_point"]
        );
    }

    #[test]
    fn missing_disk_file_is_skipped_but_memory_facts_remain() {
        let mut img = victim();
        img.set_callback(0, PRIVATE)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut p = process_with(VICTIM, &img, false);
        add_private_rwx(&mut p);
        let o = ScanOptions {
            resolver: DiskResolver {
                disk_root: Some(corpus("pe/corkami-pocs/PE/bin")),
                wine_prefix: None,
            },
        };
        let r = scan_process(&p, &o);
        assert!(
            r.skipped_checks
                .iter()
                .any(|s| s.check.starts_with("tls.disk_diff@"))
        );
        assert!(field_of(&r, FindingKind::TlsCallbackArrayModified).is_empty());
        // Memory-only: the callback still points into private RWX memory.
        assert!(
            kinds(&r).contains(&(FindingKind::TlsCallbackInRwxMemory, Severity::Medium)),
            "{:#?}",
            r.findings
        );
    }

    #[test]
    fn thread_start_in_private_memory_is_reported() {
        let img = victim();
        let mut p = process_with(VICTIM, &img, false);
        add_private_rwx(&mut p);
        p.thread(1, BASE + 0x1010, 0, 0);
        p.threads[0].start_address = Availability::Available(PRIVATE + 0x10);
        let r = scan_process(&p, &opts());
        assert_eq!(
            kinds(&r),
            vec![(FindingKind::ThreadStartInPrivateMemory, Severity::High)]
        );
        // A start inside the image is normal.
        p.threads[0].start_address = Availability::Available(BASE + 0x1010);
        assert!(scan_process(&p, &opts()).findings.is_empty());
    }

    #[test]
    fn pe_in_private_memory_is_reported() {
        let img = victim();
        let mut p = process_with(VICTIM, &img, false);
        let payload = LoadedImage::map(&file(PAYLOAD), 0x40_0000).unwrap_or_else(|e| panic!("{e}"));
        p.map(
            0x40_0000,
            payload.bytes.clone(),
            RegionKind::Private,
            Protection::EXECUTE_READWRITE,
            None,
        );
        let r = scan_process(&p, &opts());
        let k: Vec<FindingKind> = r.findings.iter().map(|f| f.kind).collect();
        assert!(k.contains(&FindingKind::PeInPrivateMemory), "{k:?}");
        assert!(!k.contains(&FindingKind::HollowedImage), "{k:?}");
        // The same bytes as a file-backed image are no finding.
        let mut q = process_with(VICTIM, &img, false);
        q.map(
            0x40_0000,
            payload.bytes.clone(),
            RegionKind::Image,
            Protection::EXECUTE_READ,
            Some(corpus(PAYLOAD)),
        );
        assert!(scan_process(&q, &opts()).findings.is_empty());
    }

    #[test]
    fn callback_into_non_executable_section_is_reported() {
        let mut img = victim();
        // Point slot 0 at the headers page of the image (inside the module, not code).
        img.set_callback(0, BASE + 0x100)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut p = process_with(VICTIM, &img, false);
        for r in p.regions.iter_mut().filter(|r| r.base == BASE) {
            r.protection = Protection(Protection::READONLY);
        }
        let r = scan_process(&p, &opts());
        let k: Vec<FindingKind> = r.findings.iter().map(|f| f.kind).collect();
        assert!(k.contains(&FindingKind::TlsCallbackNotExecutable), "{k:?}");
        assert!(k.contains(&FindingKind::TlsCallbackArrayModified), "{k:?}");
    }

    const STACK: u64 = 0x30_0000;
    const STACK_TOP: u64 = STACK + 0x1000;

    /// The initial thread blocked in a system call (rip outside the fake's memory, as in a
    /// DLL the fake does not map), `frames` as the qwords from its stack pointer upwards.
    fn blocked_initial_thread(p: &mut FakeProcess, frames: &[u64]) {
        let mut stack = vec![0u8; 0x2000];
        for (i, f) in frames.iter().enumerate() {
            let at = 0x1000 + i * 8;
            stack[at..at + 8].copy_from_slice(&f.to_le_bytes());
        }
        p.map(
            STACK,
            stack,
            RegionKind::Private,
            Protection::READWRITE,
            None,
        );
        p.thread(7, 0x7b00_1234, 0, 0);
        if let Availability::Available(ctx) = &mut p.threads[0].context {
            ctx.rsp = STACK_TOP;
            ctx.kind = preentry_memory::ContextKind::LastSystemCall;
        }
        p.threads[0].stack = Some(STACK..STACK + 0x2000);
    }

    /// Private RWX code as the early-bird APC leaves it: a `call` at +0x100 whose return
    /// address is +0x105.
    fn add_injected_code(p: &mut FakeProcess) -> u64 {
        add_private_rwx(p);
        p.write(PRIVATE + 0x100, &[0xE8, 0x10, 0x20, 0x00, 0x00]);
        PRIVATE + 0x105
    }

    fn thread_code_findings(r: &ProcessReport) -> Vec<&Finding> {
        r.findings
            .iter()
            .filter(|f| f.kind == FindingKind::PreEntryThreadInPrivateCode)
            .collect()
    }

    #[test]
    fn initial_thread_returning_into_injected_code_before_entry() {
        let img = victim();
        // The loader ran (module list, PEB.Ldr set), as at the end of loader start-up when
        // the early-bird APC is delivered.
        let mut p = process_with(VICTIM, &img, false);
        let ret = add_injected_code(&mut p);
        // A pointer into the injected code that no call precedes, the image base and the
        // entry point (both on a real pre-entry stack, neither a return address), the frame.
        blocked_initial_thread(&mut p, &[PRIVATE + 0x200, BASE, BASE + 0x1010, ret, 0]);
        for regions in [true, false] {
            p.regions_known = regions;
            let r = scan_process(&p, &opts());
            let found = thread_code_findings(&r);
            assert_eq!(found.len(), 1, "regions {regions}: {:#?}", r.findings);
            let f = found[0];
            assert_eq!(f.severity, Severity::High);
            assert!(f.technique.iter().any(|t| t == "T1055.004"));
            let frames: Vec<&str> = f.evidence["frames"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x["address"].as_str()).collect())
                .unwrap_or_default();
            assert_eq!(frames, vec![hex_addr(ret).as_str()], "{f:#?}");
            assert_eq!(f.evidence["executable_known"], json!(regions));
            assert_eq!(f.evidence["thread"], json!(7));
        }
    }

    #[test]
    fn injected_tls_callback_frames_are_attributed_to_tls() {
        // tls-array-swap at in-callback: the same frames, but a TLS callback points into the
        // injected code, which then is the likelier way in (T1055.005, not an APC).
        let mut img = victim();
        img.set_callback(0, PRIVATE)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut p = process_with(VICTIM, &img, false);
        let ret = add_injected_code(&mut p);
        blocked_initial_thread(&mut p, &[ret, 0]);
        let r = scan_process(&p, &opts());
        let found = thread_code_findings(&r);
        assert_eq!(found.len(), 1, "{:#?}", r.findings);
        assert_eq!(found[0].technique, vec!["T1055.005", "T1055"]);
        assert_eq!(
            found[0].evidence["tls_callbacks_outside_images"],
            json!([hex_addr(PRIVATE)])
        );
    }

    #[test]
    fn jit_called_from_main_is_not_pre_entry() {
        // benign-jit: main calls its JIT code, so the stack also holds a return address into
        // the exe's .text: the entry point was reached.
        let img = victim();
        let mut p = process_with(VICTIM, &img, false);
        let ret = add_injected_code(&mut p);
        p.write(BASE + 0x1100, &[0xFF, 0x15, 0x00, 0x10, 0x00, 0x00]); // call [rip+0x1000]
        blocked_initial_thread(&mut p, &[ret, 0, BASE + 0x1106, 0]);
        for regions in [true, false] {
            p.regions_known = regions;
            let r = scan_process(&p, &opts());
            assert!(
                thread_code_findings(&r).is_empty(),
                "regions {regions}: {:#?}",
                r.findings
            );
        }
        // Without the exe frame the same stack is pre-entry execution of injected code.
        p.threads.clear();
        blocked_initial_thread(&mut p, &[ret, 0, 0, 0]);
        p.regions_known = true;
        assert_eq!(thread_code_findings(&scan_process(&p, &opts())).len(), 1);
    }

    #[test]
    fn return_into_an_unlisted_image_is_not_injected_code() {
        // A dump taken before the loader ran has no module list and no region list: ntdll is
        // known only by its MZ header, found below the return address.
        let img = victim();
        let mut p = process_with(VICTIM, &img, true);
        let dll = LoadedImage::map(&file(PAYLOAD), 0x40_0000).unwrap_or_else(|e| panic!("{e}"));
        p.map(
            0x40_0000,
            dll.bytes.clone(),
            RegionKind::Image,
            Protection::EXECUTE_READ,
            Some(corpus(PAYLOAD)),
        );
        p.write(0x40_1000, &[0xFF, 0xD0]); // call rax
        blocked_initial_thread(&mut p, &[0x40_1002, 0]);
        p.regions_known = false;
        let r = scan_process(&p, &opts());
        assert!(thread_code_findings(&r).is_empty(), "{:#?}", r.findings);
        // Private memory with no header: the same return address is injected code.
        let ret = add_injected_code(&mut p);
        p.threads.clear();
        blocked_initial_thread(&mut p, &[ret, 0]);
        let r = scan_process(&p, &opts());
        let found = thread_code_findings(&r);
        assert_eq!(found.len(), 1, "{:#?}", r.findings);
        assert_eq!(
            found[0].evidence["pre_entry_reason"],
            json!("PEB.Ldr is NULL: the loader has not run")
        );
    }

    #[test]
    fn call_preceded_recognises_near_calls_only() {
        let mut p = FakeProcess::new(r"C:\x.exe", PEB);
        let code: Vec<(Vec<u8>, bool)> = vec![
            (vec![0xE8, 1, 2, 3, 4], true),             // call rel32
            (vec![0xFF, 0xD0], true),                   // call rax
            (vec![0x41, 0xFF, 0xD3], true),             // call r11
            (vec![0xFF, 0x15, 1, 2, 3, 4], true),       // call [rip+disp32]
            (vec![0xFF, 0x54, 0x24, 0x08], true),       // call [rsp+8]
            (vec![0xFF, 0x94, 0x24, 1, 2, 0, 0], true), // call [rsp+disp32]
            (vec![0xFF, 0x50, 0x10], true),             // call [rax+0x10]
            (vec![0xFF, 0xE0], false),                  // jmp rax
            (vec![0x48, 0x89, 0xC8], false),            // mov rax, rcx
            (vec![0xFF, 0x15, 1, 2, 3], false),         // truncated form
        ];
        let mut page = vec![0x90u8; 0x1000];
        let mut rets = Vec::new();
        for (i, (bytes, want)) in code.iter().enumerate() {
            let end = 0x10 * (i + 1) + 8;
            page[end - bytes.len()..end].copy_from_slice(bytes);
            rets.push((PRIVATE + end as u64, *want));
        }
        p.map(
            PRIVATE,
            page,
            RegionKind::Private,
            Protection::EXECUTE_READ,
            None,
        );
        for (ret, want) in rets {
            assert_eq!(call_preceded(&p, ret), want, "at {ret:#x}");
        }
        assert!(!call_preceded(&p, 3));
        assert!(!call_preceded(&p, PRIVATE + 2)); // bytes before the region are unreadable
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Hostile memory: any bytes anywhere in the image's headers, TLS directory and
        /// callback array, any PEB image base. The scan must not panic and must stay bounded.
        #[test]
        fn hostile_images_never_panic(
            edits in proptest::collection::vec((0usize..0x2000, proptest::num::u8::ANY), 0..64),
            qwords in proptest::collection::vec((0usize..0x1ff8, proptest::num::u64::ANY), 0..8),
            peb_base in proptest::sample::select(vec![BASE, BASE + 0x10, PRIVATE, 0, u64::MAX - 4]),
            pre_entry in proptest::bool::ANY,
        ) {
            let mut img = victim();
            for (at, v) in edits {
                if let Some(b) = img.bytes.get_mut(at) { *b = v; }
            }
            for (at, v) in qwords {
                if let Some(b) = img.bytes.get_mut(at..at + 8) { b.copy_from_slice(&v.to_le_bytes()); }
            }
            let mut p = process_with(VICTIM, &img, pre_entry);
            add_private_rwx(&mut p);
            p.set_peb(peb_base, if pre_entry { 0 } else { PEB + 0x800 });
            p.thread(1, BASE, BASE + 0x1010, PEB);
            let r = scan_process(&p, &opts());
            proptest::prop_assert!(r.findings.len() < 4096);
            proptest::prop_assert!(r.findings.windows(2).all(|w| w[0].severity >= w[1].severity));
        }
    }
}
