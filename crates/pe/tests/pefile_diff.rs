//! Differential test against pefile over every PE file in `../shared/corpus/pe`.
//!
//! Wherever pefile parses a file, image base, entry point, section count, the TLS directory
//! fields, the callback list and the section each callback lies in must agree exactly with ours
//! (file layout). Differences by design are listed in `KNOWN` with the file and the reason (none
//! on the current corpus). `PREENTRY_PE_EXTRA_DIRS` (`:`-separated) adds directories, e.g. Wine's
//! PE DLLs. If python3/pefile is missing the test fails when `CI` is set and is
//! skipped loudly otherwise.

mod common;

use std::process::Command;

use preentry_pe::{ImageFacts, Layout, NoOutside, PeImage};
use serde_json::Value;

/// (file name, fact, reason) for documented differences.
const KNOWN: &[(&str, &str, &str)] = &[];

fn known(file: &str, fact: &str) -> Option<&'static str> {
    KNOWN
        .iter()
        .find(|(f, k, _)| *f == file && *k == fact)
        .map(|(_, _, r)| *r)
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn pefile_available() -> bool {
    Command::new(python())
        .args(["-c", "import pefile"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn agrees_with_pefile_on_corpus() {
    common::require_corpus();
    if !pefile_available() {
        let msg = "python3 with pefile not available: differential test against pefile SKIPPED";
        if std::env::var_os("CI").is_some() {
            panic!("{msg} (CI is set, so this is a failure)");
        }
        eprintln!("\n\n!!!!! {msg} !!!!!\n\n");
        return;
    }
    let files = common::corpus_and_extra_pe_files();
    assert!(
        files.len() >= 30,
        "expected the corkami and goblin PE files, found {}",
        files.len()
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pefile_facts.py");
    let mut theirs: Vec<Value> = Vec::new();
    for chunk in files.chunks(200) {
        let out = Command::new(python())
            .arg(script)
            .args(chunk)
            .output()
            .expect("run pefile_facts.py");
        assert!(
            out.status.success(),
            "pefile_facts.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let part: Vec<Value> = serde_json::from_slice(&out.stdout).expect("pefile JSON");
        theirs.extend(part);
    }
    assert_eq!(theirs.len(), files.len());

    let mut failures = Vec::new();
    let mut compared = 0usize;
    let mut tls_compared = 0usize;
    let mut known_hit = Vec::new();
    for (path, p) in files.iter().zip(&theirs) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(err) = p.get("error") {
            eprintln!("pefile refuses {name}: {err}");
            continue;
        }
        let bytes = std::fs::read(path).unwrap();
        let image = match PeImage::parse(&bytes, Layout::File) {
            Ok(i) => i,
            Err(e) => {
                failures.push(format!("{name}: pefile parses it, we do not: {e}"));
                continue;
            }
        };
        compared += 1;
        let ours = ImageFacts::from_image(&image, &NoOutside);
        let mut check = |fact: &str, ours: Value, theirs: &Value| {
            if &ours != theirs {
                match known(&name, fact) {
                    Some(reason) => known_hit.push(format!("{name}: {fact}: {reason}")),
                    None => failures.push(format!("{name}: {fact}: ours {ours} pefile {theirs}")),
                }
            }
        };
        check("image_base", ours.image_base.into(), &p["image_base"]);
        check(
            "entry_point",
            ours.entry_point_rva.into(),
            &p["entry_point"],
        );
        check(
            "number_of_sections",
            ours.file_header.number_of_sections.into(),
            &p["number_of_sections"],
        );
        check(
            "format",
            serde_json::to_value(ours.format).unwrap(),
            &p["format"],
        );
        let pt = &p["tls"];
        match (&ours.tls, pt.is_null()) {
            (None, true) => {}
            (Some(_), true) | (None, false) => check(
                "tls",
                Value::Bool(ours.tls.is_some()),
                &Value::Bool(!pt.is_null()),
            ),
            (Some(t), false) => {
                tls_compared += 1;
                for (field, v) in [
                    ("start_address_of_raw_data", t.start_address_of_raw_data),
                    ("end_address_of_raw_data", t.end_address_of_raw_data),
                    ("address_of_index", t.address_of_index),
                    ("address_of_callbacks", t.address_of_callbacks),
                    ("size_of_zero_fill", t.size_of_zero_fill.into()),
                    ("characteristics", t.characteristics.into()),
                ] {
                    check(&format!("tls.{field}"), v.into(), &pt[field]);
                }
                let cbs: Vec<Value> = t.callbacks.iter().map(|c| c.va.into()).collect();
                check("tls.callbacks", Value::Array(cbs), &pt["callbacks"]);
                let secs: Vec<Value> = t.callbacks.iter().map(|c| c.section_index.into()).collect();
                check(
                    "tls.callback_sections",
                    Value::Array(secs),
                    &pt["callback_sections"],
                );
            }
        }
    }
    for k in &known_hit {
        eprintln!("known difference: {k}");
    }
    eprintln!(
        "compared {compared} files with pefile ({tls_compared} with TLS), {} known differences",
        known_hit.len()
    );
    assert!(
        failures.is_empty(),
        "disagreements with pefile:\n{}",
        failures.join("\n")
    );
    assert!(compared >= 30, "too few files compared: {compared}");
    assert!(
        tls_compared >= 20,
        "too few TLS files compared: {tls_compared}"
    );
    // Every documented difference must still occur, or the list is stale.
    for (f, k, _) in KNOWN {
        assert!(
            known_hit
                .iter()
                .any(|h| h.starts_with(&format!("{f}: {k}:"))),
            "documented difference {f} {k} no longer occurs: remove it from KNOWN"
        );
    }
}
