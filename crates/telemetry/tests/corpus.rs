//! Decoders against the real third-party corpus (read in place from `../shared/corpus`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use preentry_telemetry::{
    DecodeError, DecodeStats, Event, EventKind, Format, decode_all, decode_file, decode_reader,
    write_jsonl,
};

fn corpus(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus")
        .join(rel)
}

fn decode(rel: &str) -> (Vec<Event>, Vec<DecodeError>, DecodeStats, Format) {
    let p = corpus(rel);
    let mut s = decode_file(&p, None).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let f = s.format();
    let (mut ev, mut er) = (Vec::new(), Vec::new());
    for x in &mut s {
        match x {
            Ok(e) => ev.push(e),
            Err(e) => er.push(e),
        }
    }
    (ev, er, s.stats(), f)
}

/// The event without where it was read from (format, path, line, offset).
fn content(e: &Event) -> Event {
    let mut c = e.clone();
    c.source.format = Format::Preentry;
    c.source.path = None;
    c.source.line = None;
    c.source.offset = None;
    c
}

fn kinds(ev: &[Event]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for e in ev {
        *m.entry(e.kind.type_name()).or_default() += 1;
    }
    m
}

fn files_with_ext(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            files_with_ext(&p, ext, out);
        } else if p.extension().is_some_and(|e| e == ext) {
            out.push(p);
        }
    }
}

#[test]
fn sigma_regression_evtx_and_json_twin_decode_identically() {
    let mut evtx = Vec::new();
    files_with_ext(&corpus("evtx/sigma-regression"), "evtx", &mut evtx);
    evtx.sort();
    assert!(evtx.len() >= 4, "{evtx:?}");
    for e in &evtx {
        let j = e.with_extension("json");
        let (a, ea, sa) = decode_all(e, None).unwrap();
        let (b, eb, sb) = decode_all(&j, None).unwrap();
        assert!(ea.is_empty() && eb.is_empty(), "{ea:?} {eb:?}");
        assert!(!a.is_empty(), "{}", e.display());
        assert_eq!(a[0].source.format, Format::Evtx);
        assert_eq!(b[0].source.format, Format::WinEventJson);
        let ca: Vec<Event> = a.iter().map(content).collect();
        let cb: Vec<Event> = b.iter().map(content).collect();
        assert_eq!(ca, cb, "{} vs its JSON twin", e.display());
        assert_eq!(sa.events, sb.events);
        // Record ids and hosts are real values, not defaults.
        assert!(
            a.iter()
                .all(|x| x.source.record_id.is_some() && x.host.is_some())
        );
    }
}

#[test]
fn sigma_regression_process_access_fields() {
    let (ev, er, _, _) = decode(
        "evtx/sigma-regression/regression_data/rules/windows/process_access/proc_access_win_werfaultsecure_msmpeng_access/387df17d-3b04-448f-8669-9e7fd5e5fd8c.evtx",
    );
    assert!(er.is_empty());
    assert_eq!(ev.len(), 1);
    let e = &ev[0];
    assert_eq!(e.source.record_id.as_deref(), Some("445923"));
    assert_eq!(e.host.as_deref(), Some("swachchhanda"));
    assert_eq!(e.timestamp.unwrap().to_string(), "2025-11-27T07:22:22.031Z");
    let a = e.actor.as_ref().unwrap();
    assert_eq!(a.pid, Some(7224));
    assert_eq!(a.tid, Some(4144));
    assert_eq!(
        a.guid.as_deref(),
        Some("{0197231E-FC2D-6927-810B-000000000D00}")
    );
    let t = e.target.as_ref().unwrap();
    assert_eq!(t.pid, Some(3472));
    assert!(t.image.as_deref().unwrap().ends_with("MsMpEng.exe"));
    match &e.kind {
        EventKind::ProcessAccess {
            granted_access,
            call_trace,
        } => {
            assert_eq!(*granted_access, Some(0x1fffff));
            assert!(call_trace.as_deref().unwrap().contains("dbgcore.DLL"));
        }
        k => panic!("{k:?}"),
    }
}

#[test]
fn every_omerbenamram_sample_is_read_without_aborting() {
    let dir = corpus("evtx/omerbenamram-evtx/samples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(files.len() >= 12);
    let mut total = DecodeStats::default();
    let mut report = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        // binxml.dat is a bare BinXML fragment, not an EVTX file: forced as EVTX it must fail
        // cleanly at the file header, and without a format it is not recognised.
        let stream = decode_file(f, Some(Format::Evtx));
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                assert_eq!(name, "binxml.dat", "{e}");
                assert!(e.to_string().contains("binxml.dat"), "{e}");
                assert!(matches!(
                    decode_file(f, None),
                    Err(DecodeError::UnknownFormat { .. })
                ));
                continue;
            }
        };
        let mut errors = 0;
        for item in &mut stream {
            if let Err(e) = item {
                errors += 1;
                // Every error names the file and where in it.
                let msg = e.to_string();
                assert!(msg.contains(&name) && msg.contains("offset"), "{msg}");
            }
        }
        let s = stream.stats();
        assert_eq!(s.errors, errors);
        assert!(s.records > 0, "{name}: no records");
        report.push(format!(
            "{name}: records={} events={} skipped={} errors={}",
            s.records, s.events, s.skipped, s.errors
        ));
        total.records += s.records;
        total.errors += s.errors;
        total.events += s.events;
    }
    eprintln!("{}", report.join("\n"));
    // The broken samples are broken: their bad chunks/records are counted, the rest is read.
    let line = |n: &str| report.iter().find(|l| l.starts_with(n)).unwrap().clone();
    assert!(!line("sample_with_a_bad_chunk_magic.evtx").ends_with("errors=0"));
    assert!(!line("sample-with-zero-data-size-event.evtx").ends_with("errors=0"));
    assert!(line("sample_with_a_bad_chunk_magic.evtx").contains("records=301"));
    // sysmon.evtx carries Sysmon events of the kinds we map.
    let (ev, _, _, _) = decode("evtx/omerbenamram-evtx/samples/sysmon.evtx");
    let k = kinds(&ev);
    assert!(k.get("process_create").copied().unwrap_or(0) > 0, "{k:?}");
    assert!(total.records > 7000, "{total:?}");
}

#[test]
fn jjs_hollowing_into_svchost() {
    let (ev, er, st, f) = decode(
        "evtx/EVTX-ATTACK-SAMPLES/Defense_Evasion/apt10_jjs_sideloading_prochollowing_persist_as_service_sysmon_1_7_8_13.evtx",
    );
    assert_eq!(f, Format::Evtx);
    assert!(er.is_empty());
    assert_eq!(st.records, 11);
    // Sysmon 13 (registry) is not AN1289's business: skipped, not an error.
    assert!(st.skipped > 0);
    let remote: Vec<&Event> = ev
        .iter()
        .filter(|e| matches!(e.kind, EventKind::ThreadCreate { .. }))
        .collect();
    assert_eq!(remote.len(), 1);
    let e = remote[0];
    assert!(
        e.actor
            .as_ref()
            .unwrap()
            .image
            .as_deref()
            .unwrap()
            .ends_with("jjs.exe")
    );
    assert!(
        e.target
            .as_ref()
            .unwrap()
            .image
            .as_deref()
            .unwrap()
            .ends_with("svchost.exe")
    );
    assert_eq!(e.is_cross_process(), Some(true));
    match &e.kind {
        EventKind::ThreadCreate {
            remote,
            start_address,
            start_module,
            ..
        } => {
            assert_eq!(*remote, Some(true));
            assert_eq!(*start_address, Some(0x60000));
            // Empty StartModule: the thread starts in memory no image backs.
            assert_eq!(start_module.as_deref(), Some(""));
        }
        _ => unreachable!(),
    }
    // jjs.exe was created (Sysmon 1) before it injected: guid links the two.
    let create = ev
        .iter()
        .find(|x| {
            matches!(x.kind, EventKind::ProcessCreate { .. })
                && x.target.as_ref().unwrap().guid == e.actor.as_ref().unwrap().guid
        })
        .expect("creation of the injecting jjs.exe");
    assert!(create.timestamp <= e.timestamp);
    assert!(kinds(&ev).contains_key("image_load"));
}

#[test]
fn reflective_pe_injection_into_notepad() {
    let (ev, er, _, _) = decode(
        "evtx/EVTX-ATTACK-SAMPLES/Execution/Sysmon_meterpreter_ReflectivePEInjection_to_notepad_.evtx",
    );
    assert!(er.is_empty());
    let k = kinds(&ev);
    assert!(k["thread_create"] >= 8 && k["process_access"] >= 2, "{k:?}");
    // An access from inside notepad with unbacked frames in its call trace.
    let unbacked = ev.iter().any(|e| match &e.kind {
        EventKind::ProcessAccess {
            call_trace: Some(t),
            granted_access,
        } => {
            t.contains("UNKNOWN(")
                && e.actor.as_ref().unwrap().image.as_deref()
                    == Some("C:\\Windows\\system32\\notepad.exe")
                && *granted_access == Some(0x1fffff)
        }
        _ => false,
    });
    assert!(unbacked);
    assert!(ev.iter().any(|e| {
        matches!(&e.kind,
        EventKind::ThreadCreate { start_module: Some(m), .. } if m.is_empty())
            && e.target
                .as_ref()
                .unwrap()
                .image
                .as_deref()
                .unwrap()
                .ends_with("notepad.exe")
    }));
}

#[test]
fn psinject_sysmon_7_8_10() {
    let (ev, er, st, _) = decode(
        "evtx/EVTX-ATTACK-SAMPLES/Defense_Evasion/de_unmanagedpowershell_psinject_sysmon_7_8_10.evtx",
    );
    assert!(er.is_empty());
    let k = kinds(&ev);
    assert!(
        k.contains_key("image_load")
            && k.contains_key("thread_create")
            && k.contains_key("process_access"),
        "{k:?}"
    );
    assert_eq!(st.events + st.skipped, st.records);
}

#[test]
fn otrf_flat_variants() {
    // 2020 NXLog variant: integer Keywords, RecordNumber.
    let (ev, er, st, f) = decode(
        "datasets/OTRF-Security-Datasets/_derived/empire_psinject_PEinjection.sysmon_1_8_10.jsonl",
    );
    assert_eq!(f, Format::WinEventJson);
    assert!(er.is_empty());
    assert_eq!(st.records, 650);
    let k = kinds(&ev);
    assert_eq!(
        (k["process_create"], k["thread_create"], k["process_access"]),
        (1, 88, 561)
    );
    let t = ev
        .iter()
        .find(|e| e.source.record_id.as_deref() == Some("766720"))
        .unwrap();
    assert_eq!(t.host.as_deref(), Some("WORKSTATION5.theshire.local"));
    assert_eq!(t.actor.as_ref().unwrap().pid, Some(6008));
    assert_eq!(t.target.as_ref().unwrap().pid, Some(2576));
    assert_eq!(
        t.actor.as_ref().unwrap().guid.as_deref(),
        Some("{297BC33E-9DE2-5F2D-2208-000000000400}")
    );
    match &t.kind {
        EventKind::ThreadCreate {
            start_address,
            start_module,
            tid,
            ..
        } => {
            assert_eq!(*start_address, Some(0x000002AF644C0000));
            assert_eq!(start_module.as_deref(), Some(""));
            assert_eq!(*tid, Some(3004));
        }
        k => panic!("{k:?}"),
    }
    // UtcTime is the event time.
    assert_eq!(t.timestamp.unwrap().to_string(), "2020-08-07T18:32:45.564Z");

    // Newer variant: string Task/Level, hex Keywords, no record number.
    let (ev, er, _, _) = decode(
        "datasets/OTRF-Security-Datasets/_derived/psh_mavinject_dll_notepad.sysmon_1_8_10.jsonl",
    );
    assert!(er.is_empty());
    let inj = ev
        .iter()
        .find(|e| matches!(e.kind, EventKind::ThreadCreate { .. }))
        .unwrap();
    assert!(
        inj.actor
            .as_ref()
            .unwrap()
            .image
            .as_deref()
            .unwrap()
            .ends_with("mavinject.exe")
    );
    assert!(
        matches!(&inj.kind, EventKind::ThreadCreate { start_function: Some(f), .. } if f == "LoadLibraryW")
    );

    // The one Sysmon 25 of the corpus.
    let (ev, er, _, _) = decode(
        "datasets/OTRF-Security-Datasets/_derived/sysmon25_process_tampering_record_from_cmd_psh_stop_netprofm_eventlog_after_reboot.jsonl",
    );
    assert!(er.is_empty());
    assert_eq!(ev.len(), 1);
    assert_eq!(
        ev[0].kind,
        EventKind::ProcessTampering {
            tamper_type: Some("Image is locked for access".into())
        }
    );
    assert_eq!(ev[0].target.as_ref().unwrap().pid, Some(1840));
    assert_eq!(
        ev[0].target.as_ref().unwrap().image.as_deref(),
        Some("<unknown process>")
    );
}

#[test]
fn rededr_threat_intelligence_recording() {
    let (ev, er, st, f) = decode("etw/RedEdr/Data/rededr-redtest-2-etwti-defender.json");
    assert_eq!(f, Format::EtwJson);
    assert!(er.is_empty(), "{er:?}");
    assert_eq!(st.records, 558);
    let k = kinds(&ev);
    assert_eq!(k["remote_read"], 505);
    assert_eq!(k["remote_alloc"], 1);
    assert_eq!(k["remote_protect"], 1);
    assert_eq!(k["process_suspend"] + k["process_resume"], 7);
    let alloc = ev
        .iter()
        .find(|e| matches!(e.kind, EventKind::RemoteAlloc { .. }))
        .unwrap();
    assert_eq!(
        alloc.kind,
        EventKind::RemoteAlloc {
            address: Some(2962240045056),
            size: Some(5),
            protection: Some(0x40),
            alloc_type: Some(0x3000),
        }
    );
    assert_eq!(alloc.actor.as_ref().unwrap().pid, Some(9228));
    assert_eq!(alloc.actor.as_ref().unwrap().tid, Some(11736));
    assert_eq!(alloc.target.as_ref().unwrap().pid, Some(7292));
    assert!(alloc.actor.as_ref().unwrap().start_time.is_some());
    assert_eq!(alloc.source.event_id, Some(1));
    assert_eq!(
        alloc.source.provider.as_deref(),
        Some("Microsoft-Windows-Threat-Intelligence")
    );
    let prot = ev
        .iter()
        .find(|e| matches!(e.kind, EventKind::RemoteProtect { .. }))
        .unwrap();
    assert!(matches!(
        prot.kind,
        EventKind::RemoteProtect {
            new_protection: Some(0x20),
            old_protection: Some(0x40),
            ..
        }
    ));
    assert!(alloc.timestamp.unwrap() <= prot.timestamp.unwrap());
    // Kernel callbacks: the process creation of the observed redtest.exe.
    let pc = ev
        .iter()
        .find(|e| matches!(e.kind, EventKind::ProcessCreate { .. }))
        .unwrap();
    assert_eq!(pc.target.as_ref().unwrap().pid, Some(9228));
    assert_eq!(pc.actor.as_ref().unwrap().pid, Some(4732));
    // redtest's threads: the first is its initial thread (created by cmd.exe), the rest its own.
    let threads: Vec<&Event> = ev
        .iter()
        .filter(|e| {
            matches!(e.kind, EventKind::ThreadCreate { .. })
                && e.target.as_ref().unwrap().pid == Some(9228)
        })
        .collect();
    assert!(threads.len() > 1);
    assert!(matches!(
        threads[0].kind,
        EventKind::ThreadCreate {
            initial: Some(true),
            remote: Some(true),
            ..
        }
    ));
    assert!(threads[1..].iter().all(|e| matches!(
        e.kind,
        EventKind::ThreadCreate {
            initial: Some(false),
            ..
        }
    )));
    // process_query loaded_dll: image loads with base and size.
    assert!(ev.iter().any(|e| matches!(
        &e.kind,
        EventKind::ImageLoad {
            base: Some(140696170725376),
            size: Some(176128),
            ..
        }
    )));
}

#[test]
fn rededr_kernel_process_unit_test_recording() {
    let (ev, er, _, _) = decode("etw/RedEdr/UnitTests/notepad.json");
    assert!(er.is_empty(), "{er:?}");
    let st = ev
        .iter()
        .find(|e| e.source.action.as_deref() == Some("StartThread"))
        .unwrap();
    assert_eq!(
        st.kind,
        EventKind::ThreadCreate {
            remote: Some(false),
            tid: Some(14644),
            start_address: Some(0x00000121360F95F0),
            win32_start_address: Some(0x00000121360F99B0),
            start_module: None,
            start_function: None,
            suspended: None,
            initial: Some(false),
        }
    );
    assert_eq!(st.target.as_ref().unwrap().pid, Some(1704));
    assert_eq!(st.actor.as_ref().unwrap().tid, Some(2524));
    assert!(ev.iter().any(|e| e.source.action.as_deref() == Some("LoadImage")
        && matches!(&e.kind, EventKind::ImageLoad { image: Some(i), .. } if i.ends_with("notepad.exe"))));
    // DLL-hook records (in-process NtProtectVirtualMemory on the pseudo handle).
    let hooks = ev
        .iter()
        .filter(|e| e.source.action.as_deref() == Some("ProtectVirtualMemory"))
        .count();
    assert_eq!(hooks, 55);
}

#[test]
fn preentry_jsonl_round_trip_over_corpus() {
    let mut all = Vec::new();
    for rel in [
        "evtx/EVTX-ATTACK-SAMPLES/Defense_Evasion/apt10_jjs_sideloading_prochollowing_persist_as_service_sysmon_1_7_8_13.evtx",
        "etw/RedEdr/Data/rededr-redtest-2-etwti-defender.json",
        "datasets/OTRF-Security-Datasets/_derived/psh_mavinject_dll_notepad.sysmon_1_8_10.jsonl",
    ] {
        all.extend(decode(rel).0);
    }
    let mut buf = Vec::new();
    write_jsonl(&mut buf, &all).unwrap();
    let mut s = decode_reader(std::io::Cursor::new(buf), None, None).unwrap();
    assert_eq!(s.format(), Format::Preentry);
    let back: Vec<Event> = (&mut s).map(|e| e.unwrap()).collect();
    assert_eq!(back, all);
    assert_eq!(s.stats().events as usize, all.len());
}

#[test]
fn evtx_dump_json_output_with_record_headers() {
    // `evtx_dump -o json` writes `Record N` before each pretty-printed record.
    let mut twins = Vec::new();
    files_with_ext(&corpus("evtx/sigma-regression"), "json", &mut twins);
    twins.sort();
    let mut body = Vec::new();
    let mut expected = Vec::new();
    for (i, j) in twins.iter().enumerate() {
        body.extend_from_slice(format!("Record {}\n", i + 1).as_bytes());
        body.extend_from_slice(&std::fs::read(j).unwrap());
        body.push(b'\n');
        expected.extend(decode_all(j, None).unwrap().0.iter().map(content));
    }
    body.extend_from_slice(b"not a header\n");
    let mut s = decode_reader(std::io::Cursor::new(body), Some("dump.json"), None).unwrap();
    assert_eq!(s.format(), Format::WinEventJson);
    let items: Vec<_> = (&mut s).collect();
    let got: Vec<Event> = items
        .iter()
        .filter_map(|i| i.as_ref().ok())
        .map(content)
        .collect();
    let errs: Vec<String> = items
        .iter()
        .filter_map(|i| i.as_ref().err())
        .map(|e| e.to_string())
        .collect();
    assert_eq!(got, expected);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("not a header"), "{errs:?}");
}
