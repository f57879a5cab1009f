//! `preentry inspect FILE…`: PE and TLS facts of files on disk.
//!
//! One record per file; a file that cannot be read or parsed gives a record with `error` and the
//! other files are still processed (exit 2 when any failed, else 0).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use preentry_pe::{DataDirectory, Layout, NoOutside, PeImage, Section, TlsInfo, machine_name};
use serde::Serialize;

use crate::Outcome;

/// Arguments of `preentry inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// PE files to read (EXE, DLL, SYS; any name).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// One JSON object per line per file instead of the human table.
    #[arg(long)]
    pub json: bool,
}

/// The `inspect --json` record of one file (a documented output contract).
#[derive(Debug, Serialize)]
struct Record {
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    facts: Option<Facts>,
}

#[derive(Debug, Serialize)]
struct Facts {
    machine: &'static str,
    machine_code: u16,
    format: preentry_pe::Format,
    image_base: u64,
    entry_point_rva: u32,
    size_of_image: u32,
    size_of_headers: u32,
    section_alignment: u32,
    file_alignment: u32,
    sections: Vec<Section>,
    data_directories: Vec<DataDirectory>,
    tls: Option<TlsInfo>,
    /// Set when the TLS directory is declared but cannot be read (the rest of the facts stand).
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_error: Option<String>,
}

fn facts_of(bytes: &[u8]) -> Result<Facts, preentry_pe::PeError> {
    let image = PeImage::parse(bytes, Layout::File)?;
    let optional = image.optional_header();
    let (tls, tls_error) = match image.tls(&NoOutside) {
        Ok(tls) => (tls, None),
        Err(err) => (None, Some(err.to_string())),
    };
    Ok(Facts {
        machine: machine_name(image.machine()),
        machine_code: image.machine(),
        format: image.format(),
        image_base: image.image_base(),
        entry_point_rva: image.entry_point_rva(),
        size_of_image: image.size_of_image(),
        size_of_headers: image.size_of_headers(),
        section_alignment: optional.section_alignment,
        file_alignment: optional.file_alignment,
        sections: image.sections().to_vec(),
        data_directories: image.data_directories().to_vec(),
        tls,
        tls_error,
    })
}

fn record_of(path: &Path) -> Record {
    let shown = path.display().to_string();
    let facts = std::fs::read(path)
        .with_context(|| format!("cannot read {shown}"))
        .and_then(|bytes| facts_of(&bytes).with_context(|| format!("{shown}: not a readable PE")));
    match facts {
        Ok(facts) => Record {
            path: shown,
            error: None,
            facts: Some(facts),
        },
        Err(err) => Record {
            path: shown,
            error: Some(format!("{err:#}")),
            facts: None,
        },
    }
}

/// Run `preentry inspect`.
pub fn run(args: &InspectArgs) -> anyhow::Result<Outcome> {
    let mut failed = false;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for path in &args.files {
        let record = record_of(path);
        if let Some(error) = &record.error {
            failed = true;
            eprintln!("preentry: {error}");
        }
        if args.json {
            serde_json::to_writer(&mut out, &record)?;
            writeln!(out)?;
        } else if let Some(facts) = &record.facts {
            out.write_all(human(&record.path, facts).as_bytes())?;
        }
    }
    out.flush()?;
    Ok(if failed {
        Outcome::Error
    } else {
        Outcome::Clean
    })
}

fn section_flags(characteristics: u32) -> String {
    const READ: u32 = 0x4000_0000;
    const WRITE: u32 = 0x8000_0000;
    const EXECUTE: u32 = 0x2000_0000;
    let flag = |bit: u32, c: char| if characteristics & bit != 0 { c } else { '-' };
    [flag(READ, 'r'), flag(WRITE, 'w'), flag(EXECUTE, 'x')]
        .iter()
        .collect()
}

/// The human table of one file.
fn human(path: &str, f: &Facts) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{path}");
    let _ = writeln!(
        s,
        "  {} {}  image_base {:#x}  entry_point_rva {:#x}  size_of_image {:#x}  size_of_headers {:#x}",
        serde_json::to_value(f.format)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        f.machine,
        f.image_base,
        f.entry_point_rva,
        f.size_of_image,
        f.size_of_headers,
    );
    let _ = writeln!(s, "  sections ({}):", f.sections.len());
    for sec in &f.sections {
        let _ = writeln!(
            s,
            "    [{}] {:<8} rva {:#010x} vsize {:#010x} raw {:#010x}+{:#x} {:#010x} {}",
            sec.index,
            sec.name,
            sec.virtual_address,
            sec.virtual_size,
            sec.pointer_to_raw_data,
            sec.size_of_raw_data,
            sec.characteristics,
            section_flags(sec.characteristics),
        );
    }
    let dirs: Vec<String> = f
        .data_directories
        .iter()
        .filter(|d| d.virtual_address != 0 || d.size != 0)
        .map(|d| format!("{} {:#x}+{:#x}", d.name, d.virtual_address, d.size))
        .collect();
    let _ = writeln!(
        s,
        "  data directories: {}",
        if dirs.is_empty() {
            "none".into()
        } else {
            dirs.join(", ")
        }
    );
    match (&f.tls, &f.tls_error) {
        (_, Some(err)) => {
            let _ = writeln!(s, "  tls: unreadable: {err}");
        }
        (None, None) => {
            let _ = writeln!(s, "  tls: none");
        }
        (Some(tls), None) => human_tls(&mut s, tls),
    }
    s
}

fn place(rva: Option<u64>, section: Option<&str>, in_image: bool) -> String {
    match (rva, section) {
        (Some(rva), Some("")) => format!("rva {rva:#x} in an unnamed section"),
        (Some(rva), Some(sec)) => format!("rva {rva:#x} in {sec}"),
        (Some(rva), None) => format!("rva {rva:#x} in no section"),
        (None, _) if !in_image => "OUTSIDE the image".to_owned(),
        (None, _) => "in the image".to_owned(),
    }
}

fn human_tls(s: &mut String, tls: &TlsInfo) {
    let d = &tls.directory;
    let _ = writeln!(
        s,
        "  tls directory at {:#x} ({}), size {:#x}",
        d.va,
        place(d.rva, d.section.as_deref(), d.in_image),
        tls.directory_size
    );
    let _ = writeln!(
        s,
        "    raw data {:#x}..{:#x}  index @ {:#x}  zero fill {:#x}  characteristics {:#x}",
        tls.start_address_of_raw_data,
        tls.end_address_of_raw_data,
        tls.address_of_index,
        tls.size_of_zero_fill,
        tls.characteristics
    );
    let array = match &tls.array {
        Some(a) => {
            let mut where_ = place(a.rva, a.section.as_deref(), a.in_image);
            if a.in_import_address_table {
                where_.push_str(", inside an import address table");
            }
            where_
        }
        None => "no array".to_owned(),
    };
    let end = if tls.terminated {
        "ended by NULL".to_owned()
    } else if tls.hit_limit {
        format!(
            "NOT terminated: stopped at the {}-entry limit",
            preentry_pe::CALLBACK_LIMIT
        )
    } else {
        format!(
            "NOT terminated by NULL ({})",
            serde_json::to_string(&tls.end).unwrap_or_default()
        )
    };
    let _ = writeln!(
        s,
        "    callbacks array at {:#x} ({array}): {} entr{}, {end}",
        tls.address_of_callbacks,
        tls.callbacks.len(),
        if tls.callbacks.len() == 1 { "y" } else { "ies" }
    );
    for cb in &tls.callbacks {
        let exec = match cb.executable {
            Some(true) => ", executable",
            Some(false) => ", NOT executable",
            None => "",
        };
        let _ = writeln!(
            s,
            "      [{}] {:#x}  {}{exec}",
            cb.index,
            cb.va,
            place(cb.rva, cb.section.as_deref(), cb.in_image)
        );
    }
}
