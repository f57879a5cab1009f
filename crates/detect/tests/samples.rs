//! The committed lab samples (`samples/*/`, real `wineserver -d2` traces of the Wine lab's
//! scenarios): every attack gives a full-sequence alert naming the right stages, every benign
//! control gives nothing above `low`. Runs without the lab.

use std::path::{Path, PathBuf};

use preentry_detect::{Alert, Config, Engine, Severity, Stage};
use preentry_telemetry::{Format, decode_file};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// Decode one trace and run the engine over it, with the sample directory as the place to find
/// the victim image (exact header/TLS ranges from `preentry-pe`).
fn hunt(trace: &Path, image_dir: &Path) -> (Vec<Alert>, u64) {
    let mut config = Config::default();
    config.approximation.image_dirs = vec![image_dir.to_path_buf()];
    let mut engine = Engine::new(config);
    let mut alerts = Vec::new();
    let mut errors = 0;
    // The lab traces are wineserver -d2 output (named explicitly: some begin with wineserver's
    // own start-up lines); gzip is decompressed by the decoder.
    let stream = decode_file(trace, Some(Format::WineTrace)).expect("open trace");
    for item in stream {
        match item {
            Ok(e) => alerts.extend(engine.push(e)),
            Err(_) => errors += 1,
        }
    }
    alerts.extend(engine.finish());
    (alerts, errors)
}

struct Sample {
    name: String,
    dir: PathBuf,
    trace: PathBuf,
    is_attack: bool,
    victim_exe: String,
    windows_pid: Option<u64>,
}

fn samples() -> Vec<Sample> {
    let root = workspace_root().join("samples");
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(&root) else {
        return out;
    };
    let mut dirs: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    dirs.sort();
    for dir in dirs {
        let Ok(text) = std::fs::read_to_string(dir.join("meta.json")) else {
            continue;
        };
        let meta: serde_json::Value = serde_json::from_str(&text).expect("meta.json");
        let trace = ["wineserver.trace.gz", "wineserver.trace"]
            .iter()
            .map(|t| dir.join(t))
            .find(|p| p.is_file());
        let Some(trace) = trace else { continue };
        out.push(Sample {
            name: dir.file_name().unwrap().to_string_lossy().into_owned(),
            is_attack: meta["is_attack"].as_bool().expect("is_attack"),
            victim_exe: meta["victim_exe"].as_str().unwrap_or("").to_string(),
            windows_pid: meta["windows_pid"].as_u64(),
            dir,
            trace,
        });
    }
    out
}

fn victim_alerts<'a>(alerts: &'a [Alert], victim: &str) -> Vec<&'a Alert> {
    alerts
        .iter()
        .filter(|a| {
            a.process
                .name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(victim))
        })
        .collect()
}

#[test]
fn committed_samples_attacks_alert_and_benign_stay_quiet() {
    let samples = samples();
    assert!(
        samples.iter().any(|s| s.is_attack) && samples.iter().any(|s| !s.is_attack),
        "expected committed attack and benign samples under samples/"
    );
    for s in &samples {
        let (alerts, errors) = hunt(&s.trace, &s.dir);
        // Bad records (e.g. non-UTF-8 trace lines) are skipped by the decoder, never fatal.
        eprintln!(
            "{}: {} alerts, {errors} undecodable records",
            s.name,
            alerts.len()
        );
        for a in &alerts {
            eprintln!("{}: {}", s.name, a.human());
        }
        if s.is_attack {
            let full: Vec<_> = victim_alerts(&alerts, &s.victim_exe)
                .into_iter()
                .filter(|a| a.event.action == "an1289_full_sequence")
                .collect();
            assert_eq!(
                full.len(),
                1,
                "{}: one full-sequence alert on the victim",
                s.name
            );
            let a = full[0];
            assert!(a.severity >= Severity::High, "{}: {:?}", s.name, a.severity);
            assert_eq!(
                a.stages,
                vec![
                    Stage::Hollowing,
                    Stage::HeaderOrTlsWrite,
                    Stage::PreEntryThread
                ],
                "{}",
                s.name
            );
            assert!(a.missing_stages.is_empty());
            if let Some(pid) = s.windows_pid {
                assert_eq!(
                    a.process.pid.map(u64::from),
                    Some(pid),
                    "{}: victim pid",
                    s.name
                );
            }
            assert!(a.evidence.iter().all(|e| e.event.source.line.is_some()));
        } else {
            let loud: Vec<_> = alerts
                .iter()
                .filter(|a| a.severity > Severity::Low)
                .collect();
            assert!(
                loud.is_empty(),
                "{}: benign control alerted: {loud:#?}",
                s.name
            );
        }
    }
}
