//! Bad input: truncated files, the wrong format, invalid lines. Each gives a clear error naming the
//! file and line/offset, and the rest is processed. Plus a bounded fuzz-style property test that
//! no decoder panics on mutated corpus records.

use std::io::Cursor;
use std::io::Write;
use std::path::PathBuf;

use preentry_telemetry::{DecodeError, Event, Format, decode_all, decode_file, decode_reader};
use proptest::prelude::*;

fn corpus(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus")
        .join(rel)
}

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn temp_with(bytes: &[u8], suffix: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(suffix).tempfile().unwrap();
    f.write_all(bytes).unwrap();
    f.flush().unwrap();
    f
}

fn record_error(e: &DecodeError) -> (Option<u64>, Option<u64>, String) {
    match e {
        DecodeError::Record {
            line,
            offset,
            message,
            ..
        } => (*line, *offset, message.clone()),
        other => panic!("expected a record error, got {other}"),
    }
}

#[test]
fn truncated_json_array_reports_where_and_keeps_the_rest() {
    let full = std::fs::read(corpus(
        "etw/RedEdr/Data/rededr-redtest-2-etwti-defender.json",
    ))
    .unwrap();
    let cut = &full[..full.len() * 6 / 10];
    let f = temp_with(cut, ".json");
    let (ev, er, st) = decode_all(f.path(), None).unwrap();
    assert!(
        ev.len() > 100,
        "records before the cut are decoded: {}",
        ev.len()
    );
    assert_eq!(er.len(), 1, "{er:?}");
    let msg = er[0].to_string();
    assert!(msg.contains(&f.path().display().to_string()), "{msg}");
    assert!(msg.contains("truncated"), "{msg}");
    let (line, offset, _) = record_error(&er[0]);
    assert_eq!(line, Some(1)); // the array is one line
    assert!(offset.unwrap() > 0 && offset.unwrap() < cut.len() as u64);
    assert_eq!(st.errors, 1);
}

#[test]
fn truncated_pretty_json_object() {
    let full = std::fs::read(corpus(
        "evtx/sigma-regression/regression_data/rules/windows/process_access/proc_access_win_werfaultsecure_msmpeng_access/387df17d-3b04-448f-8669-9e7fd5e5fd8c.json",
    ))
    .unwrap();
    let f = temp_with(&full[..full.len() / 2], ".json");
    // Detected from the keys it has, forced or not: the truncation is reported.
    for format in [None, Some(Format::WinEventJson)] {
        let (ev, er, _) = decode_all(f.path(), format).unwrap();
        assert!(ev.is_empty());
        assert_eq!(er.len(), 1);
        let (line, offset, msg) = record_error(&er[0]);
        assert_eq!((line, offset), (Some(1), Some(0)));
        assert!(msg.contains("truncated"), "{msg}");
    }
}

#[test]
fn truncated_evtx_reports_the_partial_chunk() {
    let full = std::fs::read(corpus(
        "evtx/omerbenamram-evtx/samples/security_bad_string_cache.evtx",
    ))
    .unwrap();
    let cut = 4096 + 65536 * 3 + 20000;
    let f = temp_with(&full[..cut], ".evtx");
    let (_, er, st) = decode_all(f.path(), None).unwrap();
    assert!(st.records > 200, "{st:?}");
    assert_eq!(er.len(), 1, "{er:?}");
    let msg = er[0].to_string();
    assert!(
        msg.contains("truncated") && msg.contains("chunk 3"),
        "{msg}"
    );
    let (_, offset, _) = record_error(&er[0]);
    assert_eq!(offset, Some(4096 + 65536 * 3));
    // Cut inside the file header: not readable at all, said so at open.
    let g = temp_with(&full[..3000], ".evtx");
    let e = decode_file(g.path(), None).err().expect("header too short");
    assert!(e.to_string().contains("file header"), "{e}");
}

#[test]
fn invalid_json_line_names_its_line_and_the_rest_is_decoded() {
    let text = std::fs::read_to_string(corpus(
        "datasets/OTRF-Security-Datasets/_derived/psh_mavinject_dll_notepad.sysmon_1_8_10.jsonl",
    ))
    .unwrap();
    let mut lines: Vec<&str> = text.lines().take(20).collect();
    lines.insert(
        4,
        "{\"EventID\": 10, \"SourceName\": \"Microsoft-Windows-Sysmon\", broken",
    );
    let body = lines.join("\n");
    let f = temp_with(body.as_bytes(), ".jsonl");
    let (ev, er, st) = decode_all(f.path(), None).unwrap();
    assert_eq!(ev.len(), 20);
    assert_eq!(er.len(), 1);
    let (line, offset, msg) = record_error(&er[0]);
    assert_eq!(line, Some(5));
    let expected_offset: usize = lines[..4].iter().map(|l| l.len() + 1).sum();
    assert_eq!(offset, Some(expected_offset as u64));
    assert!(msg.contains("invalid JSON"), "{msg}");
    assert!(er[0].to_string().contains(":5 (byte offset"), "{}", er[0]);
    assert_eq!((st.records, st.errors), (21, 1));
}

#[test]
fn non_utf8_line_is_an_error_not_the_end() {
    let mut body = b"{\"ActionType\":\"LdapSearch\"}\n".to_vec();
    body.extend_from_slice(b"{\"ActionType\":\"\xff\xfe\"}\n");
    body.extend_from_slice(
        std::fs::read(data("defender_deviceevents.jsonl"))
            .unwrap()
            .as_slice(),
    );
    let mut s = decode_reader(Cursor::new(body), Some("mixed.jsonl"), None).unwrap();
    let items: Vec<_> = (&mut s).collect();
    let errs: Vec<String> = items
        .iter()
        .filter_map(|i| i.as_ref().err())
        .map(|e| e.to_string())
        .collect();
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("mixed.jsonl:2"), "{}", errs[0]);
    assert_eq!(s.stats().events, 8);
}

#[test]
fn wrong_format_gives_clear_errors() {
    // Sysmon JSON lines forced through the Defender decoder: every line says why.
    let p = corpus(
        "datasets/OTRF-Security-Datasets/_derived/sysmon25_process_tampering_record_from_cmd_psh_stop_netprofm_eventlog_after_reboot.jsonl",
    );
    let (ev, er, _) = decode_all(&p, Some(Format::Defender)).unwrap();
    assert!(ev.is_empty());
    assert_eq!(er.len(), 1);
    let msg = er[0].to_string();
    assert!(
        msg.contains("sysmon25_process_tampering")
            && msg.contains(":1")
            && msg.contains("ActionType"),
        "{msg}"
    );
    // JSON forced as a Wine trace: one error for the whole input.
    let (ev, er, _) = decode_all(&p, Some(Format::WineTrace)).unwrap();
    assert!(ev.is_empty());
    assert_eq!(er.len(), 1);
    assert!(er[0].to_string().contains("not a Wine trace"), "{}", er[0]);
    // A Wine trace forced as EVTX: refused at open with the file named.
    let e = decode_file(&data("wine_inj_trace.txt"), Some(Format::Evtx))
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("wine_inj_trace.txt") && e.to_string().contains("EVTX"),
        "{e}"
    );
    // Unrecognisable content without --format.
    let f = temp_with(b"just some\ntext lines\n", ".txt");
    let e = decode_file(f.path(), None).err().unwrap();
    assert!(matches!(e, DecodeError::UnknownFormat { .. }));
    assert!(e.to_string().contains("--format"), "{e}");
    // A missing file.
    let e = decode_file(&data("no-such-file.jsonl"), None)
        .err()
        .unwrap();
    assert!(matches!(e, DecodeError::Io { .. }) && e.to_string().contains("no-such-file.jsonl"));
}

/// Sample records of every text format, from the corpus and the documented examples.
fn sample_lines() -> Vec<(Format, Vec<u8>)> {
    let mut out = Vec::new();
    let take = |p: PathBuf, n: usize| -> Vec<Vec<u8>> {
        std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(n)
            .map(|l| l.as_bytes().to_vec())
            .collect()
    };
    for l in take(
        corpus(
            "datasets/OTRF-Security-Datasets/_derived/empire_psinject_PEinjection.sysmon_1_8_10.jsonl",
        ),
        3,
    ) {
        out.push((Format::WinEventJson, l));
    }
    let sigma = std::fs::read(corpus(
        "evtx/sigma-regression/regression_data/rules/windows/process_access/proc_access_win_werfaultsecure_msmpeng_access/387df17d-3b04-448f-8669-9e7fd5e5fd8c.json",
    ))
    .unwrap();
    out.push((Format::WinEventJson, sigma));
    let rededr: serde_json::Value = serde_json::from_slice(
        &std::fs::read(corpus(
            "etw/RedEdr/Data/rededr-redtest-2-etwti-defender.json",
        ))
        .unwrap(),
    )
    .unwrap();
    for v in rededr
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["type"] != "meta")
        .take(40)
        .step_by(8)
    {
        out.push((Format::EtwJson, serde_json::to_vec(v).unwrap()));
    }
    for (f, name) in [
        (Format::Defender, "defender_deviceevents.jsonl"),
        (Format::ElasticEndpoint, "elastic_api_events.jsonl"),
        (Format::EtwJson, "silketw_kernel_process.jsonl"),
    ] {
        for l in take(data(name), 4) {
            out.push((f, l));
        }
    }
    let wine = std::fs::read_to_string(data("wine_inj_trace.txt")).unwrap();
    let w: Vec<&str> = wine.lines().collect();
    out.push((
        Format::WineTrace,
        w[..300.min(w.len())].join("\n").into_bytes(),
    ));
    out
}

/// Decode to the end with the forced format and with auto-detection; the counters must add up.
fn drain(format: Format, bytes: Vec<u8>) {
    for f in [Some(format), None] {
        if let Ok(mut s) = decode_reader(Cursor::new(bytes.clone()), Some("fuzz"), f) {
            let mut errors = 0u64;
            let mut events = 0u64;
            for item in (&mut s).take(100_000) {
                match item {
                    Ok(_) => events += 1,
                    Err(_) => errors += 1,
                }
            }
            let st = s.stats();
            assert_eq!((st.events, st.errors), (events, errors));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, max_shrink_iters: 64, .. ProptestConfig::default() })]

    #[test]
    fn no_text_decoder_panics_on_mutated_records(
        pick in 0usize..64,
        edits in proptest::collection::vec((any::<u16>(), any::<u8>(), 0u8..4), 1..12),
        cut in proptest::option::of(any::<u16>()),
    ) {
        let samples = sample_lines();
        let (format, mut bytes) = samples[pick % samples.len()].clone();
        for (pos, byte, op) in edits {
            if bytes.is_empty() { bytes.push(byte); continue; }
            let i = pos as usize % bytes.len();
            match op {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                2 => { bytes.remove(i); }
                _ => bytes[i] = b"{}[]\",:0x\\\n"[byte as usize % 11],
            }
        }
        if let Some(c) = cut {
            let c = c as usize % (bytes.len() + 1);
            bytes.truncate(c);
        }
        drain(format, bytes);
    }

    #[test]
    fn evtx_decoder_survives_corrupted_bytes(
        edits in proptest::collection::vec((any::<u32>(), any::<u8>()), 1..24),
        cut in proptest::option::of(any::<u32>()),
    ) {
        let mut bytes = std::fs::read(corpus(
            "evtx/sigma-regression/regression_data/rules/windows/process_access/proc_access_win_werfaultsecure_msmpeng_access/387df17d-3b04-448f-8669-9e7fd5e5fd8c.evtx",
        )).unwrap();
        for (pos, byte) in edits {
            // Aim most edits at the first chunk's header and records.
            let span = if pos % 4 == 0 { bytes.len() } else { 4096 + 8192 };
            let i = (pos as usize) % span.min(bytes.len());
            bytes[i] = byte;
        }
        if let Some(c) = cut {
            let c = (c as usize) % (bytes.len() + 1);
            bytes.truncate(c);
        }
        let _: Vec<Result<Event, DecodeError>> = match decode_reader(Cursor::new(bytes), Some("fuzz.evtx"), Some(Format::Evtx)) {
            Ok(s) => s.take(100_000).collect(),
            Err(_) => Vec::new(),
        };
    }
}
