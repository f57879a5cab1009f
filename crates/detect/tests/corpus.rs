//! The real third-party corpus (`../shared/corpus`, read in place): Sysmon recordings of
//! hollowing and injection give partial-sequence signals that name the missing memory-write
//! stage as not observable (Sysmon logs no memory writes); clean recordings give nothing.

use std::path::{Path, PathBuf};

use preentry_detect::{Alert, Config, Engine, Severity, Stage, Visibility};
use preentry_telemetry::decode_file;

fn corpus(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus")
        .join(rel)
}

fn hunt(files: &[&str]) -> Vec<Alert> {
    let mut engine = Engine::new(Config::default());
    let mut alerts = Vec::new();
    for f in files {
        let path = corpus(f);
        assert!(path.is_file(), "corpus file missing: {}", path.display());
        // Undecodable records are the telemetry tests' business; the good ones are hunted.
        for e in decode_file(&path, None).expect("open").flatten() {
            alerts.extend(engine.push(e));
        }
    }
    alerts.extend(engine.finish());
    alerts
}

const ATTACK: &str = "evtx/EVTX-ATTACK-SAMPLES";

fn assert_partial_write_unobservable(a: &Alert) {
    assert_eq!(a.event.kind, "alert");
    assert_eq!(a.event.action, "an1289_partial_sequence");
    assert_eq!(a.stages, vec![Stage::PreEntryThread]);
    assert!(a.severity <= Severity::Low && a.severity >= Severity::Info);
    let write = a
        .missing_stages
        .iter()
        .find(|m| m.stage == Stage::HeaderOrTlsWrite)
        .expect("memory-write stage named as missing");
    assert!(!write.observable, "Sysmon cannot see memory writes");
    assert_eq!(write.visibility, Visibility::Blind);
    let hollow = a
        .missing_stages
        .iter()
        .find(|m| m.stage == Stage::Hollowing)
        .expect("hollowing named as missing");
    assert_eq!(hollow.visibility, Visibility::Partial);
    assert!(a.evidence.iter().all(|e| e.record_id.is_some()));
    assert!(a.threat.technique.id.contains(&"T1055.012"));
}

#[test]
fn jjs_hollowing_into_svchost_is_partial_with_blind_write_stage() {
    let alerts = hunt(&[&format!(
        "{ATTACK}/Defense_Evasion/apt10_jjs_sideloading_prochollowing_persist_as_service_sysmon_1_7_8_13.evtx"
    )]);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_partial_write_unobservable(a);
    assert_eq!(a.process.pid, Some(3908));
    assert_eq!(a.process.name.as_deref(), Some("svchost.exe"));
    assert_eq!(
        a.process
            .parent
            .as_ref()
            .and_then(|p| p.executable.as_deref()),
        Some(r"C:\Users\IEUser\Desktop\info.rar\jjs.exe")
    );
    // The unbacked remote thread (Sysmon 8, record 4865) came before any sign svchost ran.
    let thread = a
        .evidence
        .iter()
        .find(|e| e.stage == Some(Stage::PreEntryThread))
        .unwrap();
    assert_eq!(thread.record_id.as_deref(), Some("4865"));
    assert_eq!(thread.indicator, "unbacked_thread_start");
    assert!(
        thread
            .detail
            .as_deref()
            .unwrap()
            .contains("before the target's first run")
    );
}

#[test]
fn reflective_pe_injection_into_notepad_is_partial() {
    let alerts = hunt(&[&format!(
        "{ATTACK}/Execution/Sysmon_meterpreter_ReflectivePEInjection_to_notepad_.evtx"
    )]);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_partial_write_unobservable(a);
    assert_eq!(a.process.pid, Some(1632));
    // notepad's start is not in the file: the timing is said to be unknown.
    assert!(a.evidence.iter().any(|e| {
        e.detail
            .as_deref()
            .is_some_and(|d| d.contains("timing unknown"))
    }));
    // Sysmon 10 with UNKNOWN frames is kept as context.
    assert!(
        a.evidence
            .iter()
            .any(|e| e.indicator == "process_access_for_injection"
                && e.record_id.as_deref() == Some("8342"))
    );
}

#[test]
fn psinject_into_notepad_is_partial() {
    let alerts = hunt(&[&format!(
        "{ATTACK}/Defense_Evasion/de_unmanagedpowershell_psinject_sysmon_7_8_10.evtx"
    )]);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_partial_write_unobservable(&alerts[0]);
    assert_eq!(alerts[0].process.pid, Some(2840));
}

#[test]
fn the_three_together_across_time_give_the_same_three_signals() {
    // Files covering different months, fed in non-chronological order: the engine restarts its
    // clock on the time jump instead of evicting everything as idle.
    let alerts = hunt(&[
        &format!(
            "{ATTACK}/Defense_Evasion/apt10_jjs_sideloading_prochollowing_persist_as_service_sysmon_1_7_8_13.evtx"
        ),
        &format!("{ATTACK}/Execution/Sysmon_meterpreter_ReflectivePEInjection_to_notepad_.evtx"),
        &format!("{ATTACK}/Defense_Evasion/de_unmanagedpowershell_psinject_sysmon_7_8_10.evtx"),
    ]);
    let mut pids: Vec<u32> = alerts.iter().filter_map(|a| a.process.pid).collect();
    pids.sort();
    assert_eq!(pids, vec![1632, 2840, 3908]);
}

/// Clean recordings: benign activity (lolbin execution, process suspension by a
/// debugger-like tool, PPID spoofing and herpaderping that involve no memory-write or
/// pre-entry thread, Sigma regression Sysmon samples, the evtx crate's sysmon.evtx).
#[test]
fn clean_files_give_nothing() {
    for f in [
        format!("{ATTACK}/Execution/exec_sysmon_1_lolbin_pcalua.evtx"),
        format!("{ATTACK}/Defense_Evasion/process_suspend_sysmon_10_ga_800.evtx"),
        format!("{ATTACK}/Defense_Evasion/sysmon_10_1_ppid_spoofing.evtx"),
        format!("{ATTACK}/Defense_Evasion/DE_ProcessHerpaderping_Sysmon_11_10_1_7.evtx"),
        "evtx/omerbenamram-evtx/samples/sysmon.evtx".to_string(),
    ] {
        let alerts = hunt(&[&f]);
        assert!(alerts.is_empty(), "{f}: {alerts:#?}");
    }
}

/// Bounded state on real data: with room for one target only, the whole EVTX corpus is hunted
/// with every eviction counted, and the three injection signals still come out (each target is
/// closed, and reported, when evicted).
#[test]
fn capacity_bound_evicts_and_counts_without_losing_signals() {
    let mut config = Config::default();
    config.engine.max_tracked_processes = 1;
    let mut engine = Engine::new(config);
    let mut alerts = Vec::new();
    let mut files = Vec::new();
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "evtx") {
                out.push(p);
            }
        }
    }
    walk(&corpus(ATTACK), &mut files);
    assert!(files.len() > 5);
    for f in &files {
        for e in decode_file(f, None).expect("open").flatten() {
            alerts.extend(engine.push(e));
        }
    }
    alerts.extend(engine.finish());
    let stats = engine.stats().clone();
    assert!(stats.evicted_capacity > 10, "{stats:?}");
    assert!(stats.processes_peak <= 2, "{stats:?}");
    assert_eq!(stats.events_in, stats.events_processed);
    let mut pids: Vec<u32> = alerts.iter().filter_map(|a| a.process.pid).collect();
    pids.sort();
    pids.dedup();
    for pid in [1632, 2840, 3908] {
        assert!(pids.contains(&pid), "{pid} missing from {pids:?}");
    }
    assert!(alerts.iter().any(|a| a.closed_by == "evicted_capacity"));
}

/// TargetProcessFilter on real data: watching only svchost.exe keeps the jjs signal and drops
/// the notepad ones.
#[test]
fn target_process_filter_restricts_targets() {
    let mut config = Config::default();
    config.tunables.target_process_filter = vec!["svchost.exe".into()];
    let mut engine = Engine::new(config);
    let mut alerts = Vec::new();
    for f in [
        format!(
            "{ATTACK}/Defense_Evasion/apt10_jjs_sideloading_prochollowing_persist_as_service_sysmon_1_7_8_13.evtx"
        ),
        format!("{ATTACK}/Execution/Sysmon_meterpreter_ReflectivePEInjection_to_notepad_.evtx"),
    ] {
        for e in decode_file(&corpus(&f), None).expect("open").flatten() {
            alerts.extend(engine.push(e));
        }
    }
    alerts.extend(engine.finish());
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].process.pid, Some(3908));
    assert!(engine.stats().events_filtered > 0);
}

/// Allowlist on real data: declaring jjs.exe a known tool caps its child's signal at info.
#[test]
fn allowlisted_actor_caps_at_info() {
    let mut config = Config::default();
    config.allowlist.images.push("jjs.exe".into());
    let mut engine = Engine::new(config);
    let mut alerts = Vec::new();
    let f = format!(
        "{ATTACK}/Defense_Evasion/apt10_jjs_sideloading_prochollowing_persist_as_service_sysmon_1_7_8_13.evtx"
    );
    for e in decode_file(&corpus(&f), None).expect("open").flatten() {
        alerts.extend(engine.push(e));
    }
    alerts.extend(engine.finish());
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].severity, Severity::Info);
    assert!(
        alerts[0]
            .allowlisted
            .as_deref()
            .unwrap()
            .contains("jjs.exe")
    );
}

/// Out-of-order arrival on real data: the jjs recording (under 5 s of event time) fed in
/// reverse gives the same signal as in order, because the reorder buffer (default lateness 5 s)
/// puts the process creation back before the remote thread.
#[test]
fn reversed_arrival_within_lateness_gives_the_same_signal() {
    let path = corpus(&format!(
        "{ATTACK}/Defense_Evasion/apt10_jjs_sideloading_prochollowing_persist_as_service_sysmon_1_7_8_13.evtx"
    ));
    let mut events: Vec<_> = decode_file(&path, None).expect("open").flatten().collect();
    let run = |events: Vec<preentry_telemetry::Event>| {
        let mut engine = Engine::new(Config::default());
        let mut alerts = Vec::new();
        for e in events {
            alerts.extend(engine.push(e));
        }
        alerts.extend(engine.finish());
        (alerts, engine.stats().reorder)
    };
    let (in_order, _) = run(events.clone());
    events.reverse();
    let (reversed, stats) = run(events);
    assert_eq!(stats.late, 0);
    assert_eq!(in_order.len(), 1);
    assert_eq!(reversed.len(), 1);
    assert_eq!(
        in_order[0].to_json_line(),
        reversed[0].to_json_line(),
        "same alert whatever the arrival order"
    );
    assert!(reversed[0].evidence.iter().any(|e| {
        e.detail
            .as_deref()
            .is_some_and(|d| d.contains("before the target's first run"))
    }));
}
