//! `preentry hunt` / `preentry coverage` end to end: golden JSON lines and human output (insta)
//! on the real corpus and a committed lab sample, exit codes, bad inputs among good ones, stdin.

use std::io::Write;
use std::path::PathBuf;

use assert_cmd::Command;

fn corpus(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus")
        .join(rel)
}

fn workspace(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn corpus_present() -> bool {
    let present = corpus("evtx/EVTX-ATTACK-SAMPLES").is_dir();
    if !present {
        eprintln!("!!! SKIPPED: ../shared/corpus/evtx is absent; hunt CLI tests need the corpus");
    }
    present
}

/// Make output independent of the checkout and of timing.
fn normalise(text: &str) -> String {
    let root = corpus("").display().to_string();
    let ws = workspace("").display().to_string();
    let mut s = text
        .replace(&root, "<corpus>/")
        .replace(&ws, "<workspace>/");
    // "in 0.05s;" in the run summary.
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(i) = rest.find(" in ") {
        let (head, tail) = rest.split_at(i + 4);
        out.push_str(head);
        let digits = tail
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(tail.len());
        if digits > 0 && tail[digits..].starts_with("s;") {
            out.push_str("<T>");
            rest = &tail[digits..];
        } else {
            rest = tail;
        }
    }
    out.push_str(rest);
    s = out;
    s
}

fn run(args: &[&str], stdin: Option<Vec<u8>>) -> (i32, String, String) {
    let mut cmd = Command::cargo_bin("preentry").expect("binary");
    cmd.args(args);
    if let Some(input) = stdin {
        cmd.write_stdin(input);
    }
    let out = cmd.output().expect("run preentry");
    (
        out.status.code().unwrap_or(-1),
        normalise(&String::from_utf8_lossy(&out.stdout)),
        normalise(&String::from_utf8_lossy(&out.stderr)),
    )
}

const JJS: &str = "evtx/EVTX-ATTACK-SAMPLES/Defense_Evasion/apt10_jjs_sideloading_prochollowing_persist_as_service_sysmon_1_7_8_13.evtx";
const NOTEPAD: &str =
    "evtx/EVTX-ATTACK-SAMPLES/Execution/Sysmon_meterpreter_ReflectivePEInjection_to_notepad_.evtx";
const PSINJECT: &str =
    "evtx/EVTX-ATTACK-SAMPLES/Defense_Evasion/de_unmanagedpowershell_psinject_sysmon_7_8_10.evtx";
const CLEAN: &str = "evtx/EVTX-ATTACK-SAMPLES/Execution/exec_sysmon_1_lolbin_pcalua.evtx";

fn paths(rels: &[&str]) -> Vec<String> {
    rels.iter()
        .map(|r| corpus(r).display().to_string())
        .collect()
}

#[test]
fn json_lines_on_corpus_injections() {
    if !corpus_present() {
        return;
    }
    let files = paths(&[JJS, NOTEPAD, PSINJECT]);
    let mut args = vec!["hunt", "--json"];
    args.extend(files.iter().map(String::as_str));
    let (code, stdout, stderr) = run(&args, None);
    assert_eq!(code, 1, "alerts mean exit 1; stderr: {stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 3);
    for a in &lines {
        assert_eq!(a["event"]["kind"], "alert");
        assert_eq!(a["severity"], "low");
        assert_eq!(a["stages"], serde_json::json!(["pre_entry_thread"]));
        assert_eq!(a["host"]["name"], "IEWIN7");
        assert!(a["process"]["pid"].is_u64());
        assert_eq!(
            a["threat"]["technique"]["id"],
            serde_json::json!(["T1055.005", "T1055.012"])
        );
        let missing = a["missing_stages"].as_array().unwrap();
        assert!(
            missing
                .iter()
                .any(|m| m["stage"] == "header_or_tls_write" && m["observable"] == false)
        );
        for e in a["evidence"].as_array().unwrap() {
            assert!(e["record_id"].is_string());
            assert!(e["event"]["source"]["path"].is_string());
        }
    }
    insta::assert_snapshot!("hunt_json_corpus_injections", stdout);
    assert!(stderr.contains("3 alerts printed"), "{stderr}");
}

#[test]
fn human_summary_on_corpus_injections() {
    if !corpus_present() {
        return;
    }
    let files = paths(&[JJS, NOTEPAD, PSINJECT]);
    let mut args = vec!["hunt"];
    args.extend(files.iter().map(String::as_str));
    let (code, stdout, _) = run(&args, None);
    assert_eq!(code, 1);
    insta::assert_snapshot!("hunt_human_corpus_injections", stdout);
}

#[test]
fn lab_sample_full_sequence() {
    let trace = workspace("samples/tls-array-swap/wineserver.trace.gz");
    let dir = workspace("samples/tls-array-swap");
    if !trace.is_file() {
        eprintln!("!!! SKIPPED: samples/tls-array-swap is absent");
        return;
    }
    let (code, stdout, stderr) = run(
        &[
            "hunt",
            "--json",
            "--format",
            "wine_trace",
            "--image-dir",
            &dir.display().to_string(),
            &trace.display().to_string(),
        ],
        None,
    );
    assert_eq!(code, 1, "{stderr}");
    let alerts: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(a["event"]["action"], "an1289_full_sequence");
    assert_eq!(a["severity"], "critical");
    assert_eq!(
        a["stages"],
        serde_json::json!(["hollowing", "header_or_tls_write", "pre_entry_thread"])
    );
    assert_eq!(a["missing_stages"], serde_json::json!([]));
    assert_eq!(a["exact_ranges"], true);
    insta::assert_snapshot!("hunt_json_lab_tls_array_swap", stdout);
}

#[test]
fn clean_file_exits_zero_with_no_alert() {
    if !corpus_present() {
        return;
    }
    let (code, stdout, stderr) = run(
        &["hunt", "--json", &corpus(CLEAN).display().to_string()],
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
}

/// A truncated EVTX, a file of the wrong format, and a JSON-lines file with one invalid line,
/// beside good input: each problem is named with its file and line/offset, the rest is
/// processed (the alert from the good lines is still printed), exit 2.
#[test]
fn bad_inputs_are_named_and_the_rest_is_processed() {
    if !corpus_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // Truncated EVTX: the psinject recording cut inside its first chunk's records.
    let full = std::fs::read(corpus(PSINJECT)).unwrap();
    let truncated = tmp.path().join("truncated.evtx");
    std::fs::write(&truncated, &full[..full.len().min(4096 + 20_000)]).unwrap();
    // JSON lines (preentry format) of the jjs recording, with an invalid line in the middle.
    let (events, errors, _) = preentry_telemetry::decode_all(&corpus(JJS), None).unwrap();
    assert!(errors.is_empty());
    let mut jsonl = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if i == 3 {
            jsonl.extend_from_slice(b"{\"kind\": {\"type\": \"remote_write\", oops\n");
        }
        serde_json::to_writer(&mut jsonl, e).unwrap();
        jsonl.push(b'\n');
    }
    let lines = tmp.path().join("events.jsonl");
    std::fs::File::create(&lines)
        .unwrap()
        .write_all(&jsonl)
        .unwrap();
    // Wrong format: a PE file.
    let pe = corpus("pe/corkami-pocs/PE/bin/tls64.exe");

    let args = [
        "hunt".to_string(),
        "--json".to_string(),
        truncated.display().to_string(),
        lines.display().to_string(),
        pe.display().to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = run(&args, None);
    // Alerts win over errors (exit 1); the errors are still reported on stderr.
    assert_eq!(code, 1, "stderr: {stderr}");
    let tmp_s = tmp.path().display().to_string();
    let stderr = stderr.replace(&tmp_s, "<tmp>");
    assert!(stderr.contains("<tmp>/events.jsonl:4"), "{stderr}");
    assert!(stderr.contains("tls64.exe"), "{stderr}");
    assert!(stderr.contains("cannot recognise"), "{stderr}");
    // The good lines still give the jjs signal.
    assert!(stdout.contains("\"pid\":3908"), "{stdout}");
    // The truncated file still gives what its intact records hold, or a named error.
    assert!(
        stdout.contains("\"pid\":2840") || stderr.contains("<tmp>/truncated.evtx"),
        "{stdout}\n{stderr}"
    );
    // Errors alone, with no alert: exit 2.
    let pe_only = pe.display().to_string();
    let (code, stdout, stderr) = run(&["hunt", "--json", &pe_only], None);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(stdout.is_empty());
}

#[test]
fn stdin_json_lines() {
    if !corpus_present() {
        return;
    }
    let (events, _, _) = preentry_telemetry::decode_all(&corpus(JJS), None).unwrap();
    let mut jsonl = Vec::new();
    preentry_telemetry::write_jsonl(&mut jsonl, &events).unwrap();
    let (code, stdout, stderr) = run(&["hunt", "--json", "-"], Some(jsonl));
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stdout.lines().count(), 1);
    assert!(stdout.contains("\"pid\":3908"));
}

#[test]
fn min_severity_filters_and_bad_level_is_an_error() {
    if !corpus_present() {
        return;
    }
    let f = corpus(JJS).display().to_string();
    let (code, stdout, _) = run(&["hunt", "--json", "--min-severity", "medium", &f], None);
    assert_eq!(code, 0);
    assert!(stdout.is_empty());
    let (code, _, stderr) = run(&["hunt", "--min-severity", "loud", &f], None);
    assert_eq!(code, 2);
    assert!(stderr.contains("--min-severity"), "{stderr}");
}

#[test]
fn bad_config_is_an_error_naming_the_file() {
    if !corpus_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(&cfg, "[tunables]\nPayloadEntropyThreshold = 12\n").unwrap();
    let (code, _, stderr) = run(
        &[
            "hunt",
            "--config",
            &cfg.display().to_string(),
            &corpus(JJS).display().to_string(),
        ],
        None,
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("PayloadEntropyThreshold"),
        "{stderr}"
    );
}

#[test]
fn documented_default_config_is_the_default() {
    let text = std::fs::read_to_string(workspace("config/preentry.toml")).unwrap();
    let parsed = preentry_detect::Config::from_toml_str(&text, "config/preentry.toml").unwrap();
    assert_eq!(parsed, preentry_detect::Config::default());
}

#[test]
fn coverage_of_sysmon_says_writes_are_blind() {
    if !corpus_present() {
        return;
    }
    let (code, stdout, stderr) = run(&["coverage", &corpus(JJS).display().to_string()], None);
    assert_eq!(code, 0, "{stderr}");
    insta::assert_snapshot!("coverage_human_jjs", stdout);
    let (code, stdout, _) = run(
        &["coverage", "--json", &corpus(JJS).display().to_string()],
        None,
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let stages = v["stages"].as_array().unwrap();
    let vis = |name: &str| {
        stages
            .iter()
            .find(|s| s["stage"] == name)
            .map(|s| s["visibility"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(vis("hollowing"), "partial");
    assert_eq!(vis("header_or_tls_write"), "blind");
    assert_eq!(vis("pre_entry_thread"), "partial");
    assert_eq!(v["event_kinds"]["thread_create"], 1);
}

#[test]
fn coverage_of_the_lab_trace_sees_everything() {
    let trace = workspace("samples/tls-array-swap/wineserver.trace.gz");
    if !trace.is_file() {
        eprintln!("!!! SKIPPED: samples/tls-array-swap is absent");
        return;
    }
    let (code, stdout, stderr) = run(
        &[
            "coverage",
            "--json",
            "--format",
            "wine_trace",
            &trace.display().to_string(),
        ],
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for s in v["stages"].as_array().unwrap() {
        assert_eq!(s["visibility"], "observable", "{s}");
    }
    assert!(v["event_kinds"]["remote_write"].as_u64().unwrap() > 0);
}

#[test]
fn hunt_help() {
    let (code, stdout, _) = run(&["hunt", "--help"], None);
    assert_eq!(code, 0);
    insta::assert_snapshot!("hunt_help", stdout);
}
