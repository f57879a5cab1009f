//! `preentry inspect` end to end on real corpus files: golden JSON and human output, exit codes,
//! and one bad file among good ones.

use std::path::PathBuf;

use assert_cmd::Command;

fn corpus(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus")
        .join(rel)
}

fn corpus_present() -> bool {
    let present = corpus("pe").is_dir();
    if !present {
        eprintln!("!!! SKIPPED: ../shared/corpus/pe is absent; inspect CLI tests need the corpus");
    }
    present
}

/// Paths in output are made relative to the corpus so snapshots do not depend on the checkout.
fn normalise(text: &str) -> String {
    let root = corpus("").display().to_string();
    text.replace(&root, "<corpus>/")
}

fn inspect(args: &[&str], files: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::cargo_bin("preentry").expect("binary");
    cmd.arg("inspect").args(args);
    for f in files {
        cmd.arg(corpus(f));
    }
    let out = cmd.output().expect("run preentry");
    (
        out.status.code().unwrap_or(-1),
        normalise(&String::from_utf8_lossy(&out.stdout)),
        normalise(&String::from_utf8_lossy(&out.stderr)),
    )
}

const TLS_EDGE_CASES: &[&str] = &[
    "pe/corkami-pocs/PE/bin/tls_import.exe",
    "pe/corkami-pocs/PE/bin/tls_obfuscation.exe",
    "pe/corkami-pocs/PE/bin/tls_reloc.exe",
    "pe/corkami-pocs/PE/bin/tls_onthefly.exe",
    "pe/corkami-pocs/PE/bin/tls_noEP.exe",
    "pe/corkami-pocs/PE/bin/tls64.exe",
    "pe/goblin/tests/bins/pe/lld_malformed_tls_callbacks_64.exe.bin",
    "pe/goblin/tests/bins/pe/lld_no_tls_64.exe.bin",
];

#[test]
fn json_contract_on_tls_edge_cases() {
    if !corpus_present() {
        return;
    }
    let (code, stdout, stderr) = inspect(&["--json"], TLS_EDGE_CASES);
    assert_eq!(code, 0, "stderr: {stderr}");
    let records: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(records.len(), TLS_EDGE_CASES.len());
    for r in &records {
        for key in [
            "path",
            "machine",
            "format",
            "image_base",
            "entry_point_rva",
            "size_of_image",
            "sections",
            "tls",
        ] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
        for s in r["sections"].as_array().expect("sections") {
            for key in ["name", "virtual_address", "virtual_size", "characteristics"] {
                assert!(s.get(key).is_some(), "section.{key} missing");
            }
        }
    }
    // goblin's lld_no_tls_64 has no TLS directory: `tls` is null, not absent.
    assert!(records[7]["tls"].is_null());
    // lld_malformed: the second slot points outside the image and has no section.
    let cb = &records[6]["tls"]["callbacks"];
    assert_eq!(cb[1]["rva"], serde_json::Value::Null);
    assert_eq!(cb[1]["section"], serde_json::Value::Null);
    assert_eq!(records[6]["tls"]["callbacks_terminated"], true);
    insta::assert_snapshot!("inspect_json_tls_edge_cases", stdout);
}

#[test]
fn human_table_on_tls_edge_cases() {
    if !corpus_present() {
        return;
    }
    let (code, stdout, _) = inspect(&[], TLS_EDGE_CASES);
    assert_eq!(code, 0);
    insta::assert_snapshot!("inspect_human_tls_edge_cases", stdout);
}

#[test]
fn bad_file_is_named_and_others_still_processed() {
    if !corpus_present() {
        return;
    }
    let (code, stdout, stderr) = inspect(
        &["--json"],
        &[
            "pe/corkami-pocs/PE/tls_obfuscation.asm",
            "pe/corkami-pocs/PE/bin/tls64.exe",
            "pe/does-not-exist.exe",
        ],
    );
    assert_eq!(code, 2, "a failed file makes exit 2");
    let records: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(records.len(), 3);
    assert!(
        records[0]["error"]
            .as_str()
            .expect("error")
            .contains("tls_obfuscation.asm")
    );
    assert!(
        records[0]["error"]
            .as_str()
            .expect("error")
            .contains("offset 0x0")
    );
    assert!(records[1].get("error").is_none());
    assert_eq!(records[1]["format"], "pe32+");
    assert!(
        records[2]["error"]
            .as_str()
            .expect("error")
            .contains("cannot read")
    );
    assert!(stderr.contains("does-not-exist.exe"));
}

#[test]
fn help_is_stable() {
    let out = Command::cargo_bin("preentry")
        .expect("binary")
        .args(["inspect", "--help"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    insta::assert_snapshot!("inspect_help", String::from_utf8_lossy(&out.stdout));
}
