//! `preentry scan` end to end on the committed lab samples: golden JSON and human output
//! (insta snapshots) and the exit-code contract. Runs without the Wine lab.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn scan(args: &[&str]) -> (i32, String, String) {
    let out = Command::cargo_bin("preentry")
        .unwrap_or_else(|e| panic!("binary: {e}"))
        .current_dir(root())
        .arg("scan")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sample_args(name: &str) -> Vec<String> {
    vec![
        "--dump".into(),
        format!("samples/{name}/victim.dmp.gz"),
        "--disk-root".into(),
        format!("samples/{name}"),
    ]
}

fn run_sample(name: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = sample_args(name);
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    scan(&refs)
}

#[test]
fn attack_sample_json_is_golden_and_exits_1() {
    let (code, stdout, stderr) = run_sample("tls-array-swap", &["--json"]);
    assert_eq!(code, 1, "{stderr}");
    let json: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    // The contract's fields.
    let p = &json["processes"][0];
    for key in [
        "pid",
        "windows_pid",
        "linux_pid",
        "image_path",
        "findings",
        "skipped_checks",
        "error",
    ] {
        assert!(p.get(key).is_some(), "missing {key}");
    }
    for f in p["findings"].as_array().into_iter().flatten() {
        for key in ["kind", "severity", "technique", "summary", "evidence"] {
            assert!(f.get(key).is_some(), "finding lacks {key}: {f}");
        }
    }
    insta::assert_snapshot!("scan_tls_array_swap_json", stdout);
}

#[test]
fn attack_sample_human_is_golden() {
    let (code, stdout, _) = run_sample("tls-array-swap", &["--verbose"]);
    assert_eq!(code, 1);
    insta::assert_snapshot!("scan_tls_array_swap_human", stdout);
}

#[test]
fn benign_sample_is_clean_and_exits_0() {
    let (code, stdout, stderr) = run_sample("benign-suspend-resume", &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    insta::assert_snapshot!("scan_benign_suspend_resume_human", stdout);
    let (code, json, _) = run_sample("benign-suspend-resume", &["--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["processes"][0]["findings"], serde_json::json!([]));
    assert!(v["processes"][0]["error"].is_null());
}

#[test]
fn unreadable_dump_is_a_per_process_error_exit_2() {
    let (code, stdout, _) = scan(&["--dump", "samples/no-such-sample/victim.dmp", "--json"]);
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}"));
    assert!(v["processes"][0]["error"].is_string(), "{stdout}");
}

#[test]
fn findings_win_over_errors_and_other_dumps_go_on() {
    let mut args = vec![
        "--dump",
        "samples/no-such-sample/victim.dmp",
        "samples/tls-array-swap/victim.dmp.gz",
        "--disk-root",
        "samples/tls-array-swap",
        "--json",
    ];
    let (code, stdout, _) = scan(&args);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["processes"].as_array().map(Vec::len), Some(2));
    assert!(v["processes"][0]["error"].is_string());
    assert!(v["processes"][1]["error"].is_null());
    // Human output is grouped by process and shows both.
    args.pop();
    let (_, human, _) = scan(&args);
    assert_eq!(
        human.matches("\n== process").count() + usize::from(human.starts_with("== process")),
        2,
        "{human}"
    );
}

#[test]
fn target_is_required() {
    let (code, _, stderr) = scan(&["--json"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--pid") || stderr.contains("required"),
        "{stderr}"
    );
}
