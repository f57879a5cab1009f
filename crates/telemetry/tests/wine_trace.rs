//! The lab's telemetry trace (`wineserver -f -d2`): a real excerpt (tests/data/README.md) and,
//! when present, the lab's committed samples.

use std::io::Write;
use std::path::PathBuf;

use preentry_telemetry::{Event, EventKind, Format, decode_all, decode_file};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn kinds_in_order(ev: &[Event]) -> Vec<&'static str> {
    ev.iter().map(|e| e.kind.type_name()).collect()
}

#[test]
fn injection_sequence_from_real_trace() {
    let (ev, er, st) = decode_all(&data("wine_inj_trace.txt"), None).unwrap();
    assert!(er.is_empty(), "{er:?}");
    assert_eq!(ev[0].source.format, Format::WineTrace);
    assert_eq!(st.records, 1502);
    let parent = 0x20;
    let child = 0xe0;
    let main_tid = 0xe4;
    // Everything the parent did to the child, in trace order.
    let cross: Vec<&Event> = ev
        .iter()
        .filter(|e| {
            e.actor.as_ref().and_then(|a| a.pid) == Some(parent)
                && e.target.as_ref().and_then(|t| t.pid) == Some(child)
        })
        .collect();
    let seq: Vec<&str> = cross.iter().map(|e| e.kind.type_name()).collect();
    assert_eq!(
        seq,
        [
            "process_create",
            "thread_create",
            "remote_alloc",
            "remote_write",
            "remote_protect",
            "set_thread_context",
            "queue_apc",
            "remote_alloc",
            "thread_create",
            "remote_map_view",
            "remote_unmap",
            "thread_suspend",
            "thread_resume",
            "thread_resume",
            "thread_resume",
        ]
    );
    assert_eq!(
        cross[0].kind,
        EventKind::ProcessCreate {
            created_suspended: Some(true),
            creation_flags: Some(0x200)
        }
    );
    // The child's first thread, made by the creator as part of process creation.
    assert!(matches!(
        cross[1].kind,
        EventKind::ThreadCreate {
            initial: Some(true),
            remote: Some(true),
            suspended: Some(true),
            ..
        }
    ));
    assert!(matches!(
        cross[8].kind,
        EventKind::ThreadCreate {
            initial: Some(false),
            ..
        }
    ));
    let t = cross[0].target.as_ref().unwrap();
    assert!(t.image.as_deref().unwrap().ends_with("inj.exe"));
    assert!(t.command_line.as_deref().unwrap().ends_with(" child"));
    assert_eq!(
        cross[2].kind,
        EventKind::RemoteAlloc {
            address: Some(0x340000),
            size: Some(0x2000),
            protection: Some(0x04),
            alloc_type: Some(0x3000)
        }
    );
    match &cross[3].kind {
        EventKind::RemoteWrite {
            address,
            size,
            bytes,
        } => {
            assert_eq!(*address, Some(0x340000));
            assert_eq!(*size, Some(64));
            let b = bytes.as_deref().unwrap();
            assert_eq!(b.len(), 128);
            assert!(b.starts_with("4d5ac3"));
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(
        cross[4].kind,
        EventKind::RemoteProtect {
            address: Some(0x340000),
            size: Some(0x1000),
            new_protection: Some(0x20),
            old_protection: Some(0x04)
        }
    );
    match &cross[5].kind {
        EventKind::SetThreadContext { tid, entry, pc, .. } => {
            assert_eq!(*tid, Some(main_tid));
            assert_eq!(*entry, Some(0x340000));
            assert!(pc.is_some());
        }
        k => panic!("{k:?}"),
    }
    assert!(
        matches!(cross[6].kind, EventKind::QueueApc { tid: Some(t), argument: Some(0x340000), .. } if t == main_tid)
    );
    assert!(matches!(
        cross[7].kind,
        EventKind::RemoteAlloc {
            protection: Some(0x40),
            ..
        }
    ));
    assert!(matches!(
        cross[8].kind,
        EventKind::ThreadCreate {
            remote: Some(true),
            tid: Some(0xe8),
            suspended: Some(true),
            start_address: Some(_),
            ..
        }
    ));
    assert_eq!(
        cross[9].kind,
        EventKind::RemoteMapView {
            address: Some(0x660000),
            size: Some(0x1000),
            protection: Some(0x40)
        }
    );
    // The failed unmap of private memory (NOT_MAPPED_VIEW) is not an event; the view's is.
    assert_eq!(
        cross[10].kind,
        EventKind::RemoteUnmap {
            address: Some(0x660000)
        }
    );
    assert_eq!(
        cross[11].kind,
        EventKind::ThreadSuspend {
            tid: Some(main_tid)
        }
    );
    assert_eq!(cross[14].kind, EventKind::ThreadResume { tid: Some(0xe8) });
    // Lines are those of the requests, in increasing order except the APC results, which are
    // reported at the line of their queue_apc.
    assert!(
        cross
            .iter()
            .all(|e| e.source.line.is_some() && e.source.record_id.is_some())
    );
    // The child crashed on the fake code: its exit is seen with the status.
    assert!(ev.iter().any(|e| e.kind
        == EventKind::ProcessExit {
            exit_code: Some(-1073741819)
        }
        && e.target.as_ref().unwrap().pid == Some(child)));
    assert!(kinds_in_order(&ev).len() >= cross.len());
    // The child's loader maps its own image views: the exe at its preferred base, then ntdll.
    let loads: Vec<&Event> = ev
        .iter()
        .filter(|e| {
            matches!(e.kind, EventKind::ImageLoad { .. })
                && e.target.as_ref().unwrap().pid == Some(child)
        })
        .collect();
    assert!(
        matches!(&loads[0].kind, EventKind::ImageLoad { image: Some(i), base: Some(0x140000000), size: Some(0x3f000), .. }
        if i.ends_with("inj.exe")),
        "{:?}",
        loads[0].kind
    );
    assert!(loads.iter().any(|e| matches!(&e.kind, EventKind::ImageLoad { image: Some(i), .. } if i.ends_with("ntdll.dll"))));
    // The child running the parent's unmap APC is not reported as unmapping by itself.
    assert!(!ev.iter().any(|e| e.kind
        == EventKind::RemoteUnmap {
            address: Some(0x660000)
        }
        && e.actor.as_ref().unwrap().pid == Some(child)));
}

#[test]
fn gzip_trace_decodes_the_same() {
    let plain = std::fs::read(data("wine_inj_trace.txt")).unwrap();
    let mut gz = tempfile::Builder::new()
        .suffix(".trace.gz")
        .tempfile()
        .unwrap();
    {
        let mut enc = flate2_encoder(gz.as_file_mut());
        enc.write_all(&plain).unwrap();
        enc.finish().unwrap();
    }
    let (a, _, _) = decode_all(&data("wine_inj_trace.txt"), None).unwrap();
    let (b, er, _) = decode_all(gz.path(), None).unwrap();
    assert!(er.is_empty());
    let strip = |v: Vec<Event>| -> Vec<Event> {
        v.into_iter()
            .map(|mut e| {
                e.source.path = None;
                e
            })
            .collect()
    };
    assert_eq!(strip(a), strip(b));
}

fn flate2_encoder<W: Write>(w: W) -> GzEncoder<W> {
    GzEncoder::new(w, flate2::Compression::fast())
}
use flate2::write::GzEncoder;

fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../samples")
        .join(name)
}

fn meta(name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(sample(name).join("meta.json")).unwrap()).unwrap()
}

fn hex_field(detail: &str, key: &str) -> u64 {
    let v = detail
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} in {detail}"));
    u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap()
}

/// Everything other processes did to the victim, from the lab's committed trace.
fn into_victim(name: &str) -> (Vec<Event>, serde_json::Value) {
    let m = meta(name);
    let mut s = decode_file(&sample(name).join("wineserver.trace.gz"), None).unwrap();
    assert_eq!(s.format(), Format::WineTrace);
    let ev: Vec<Event> = (&mut s).map(|e| e.unwrap()).collect();
    assert_eq!(s.stats().errors, 0);
    let victim = m["windows_pid"].as_u64().unwrap() as u32;
    let cross = ev
        .into_iter()
        .filter(|e| {
            e.target.as_ref().and_then(|t| t.pid) == Some(victim)
                && e.actor.as_ref().and_then(|a| a.pid) != Some(victim)
        })
        .collect();
    (cross, m)
}

#[test]
fn lab_tls_array_swap_trace() {
    let (ev, m) = into_victim("tls-array-swap");
    let detail = m["attacker_detail"].as_str().unwrap();
    let tls_dir = hex_field(detail, "tls_directory");
    let new_array = hex_field(detail, "new_array");
    let injected = hex_field(detail, "injected");
    let tid = m["windows_tid"].as_u64().unwrap() as u32;
    assert_eq!(
        ev[0].kind,
        EventKind::ProcessCreate {
            created_suspended: Some(true),
            creation_flags: Some(0x200)
        }
    );
    assert!(
        ev[0]
            .target
            .as_ref()
            .unwrap()
            .image
            .as_deref()
            .unwrap()
            .ends_with("victim-tls.exe")
    );
    // RWX memory for the injected callback, its code written there.
    assert!(ev.iter().any(|e| matches!(e.kind,
        EventKind::RemoteAlloc { address: Some(a), protection: Some(0x40), .. } if a == injected)));
    assert!(ev.iter().any(|e| matches!(e.kind,
        EventKind::RemoteWrite { address: Some(a), .. } if a == injected)));
    // IMAGE_TLS_DIRECTORY64.AddressOfCallBacks (+0x18) rewritten to the new array.
    let patch = ev
        .iter()
        .find(|e| matches!(e.kind, EventKind::RemoteWrite { address: Some(a), .. } if a == tls_dir + 0x18))
        .expect("AddressOfCallBacks write");
    match &patch.kind {
        EventKind::RemoteWrite { size, bytes, .. } => {
            assert_eq!(*size, Some(8));
            assert_eq!(
                bytes.as_deref(),
                Some(hex::encode(new_array.to_le_bytes()).as_str())
            );
        }
        _ => unreachable!(),
    }
    // The new array holds the injected callback first.
    assert!(ev.iter().any(|e| matches!(&e.kind,
        EventKind::RemoteWrite { address: Some(a), bytes: Some(b), .. }
            if *a == new_array && b.starts_with(&hex::encode(injected.to_le_bytes())))));
    // The victim's own image view at its base (meta.json `image_base`).
    let image_base = u64::from_str_radix(
        m["image_base"].as_str().unwrap().trim_start_matches("0x"),
        16,
    )
    .unwrap();
    let victim = m["windows_pid"].as_u64().unwrap() as u32;
    let mut s = decode_file(&sample("tls-array-swap").join("wineserver.trace.gz"), None).unwrap();
    assert!((&mut s).filter_map(Result::ok).any(|e| matches!(&e.kind,
        EventKind::ImageLoad { image: Some(i), base: Some(b), .. } if *b == image_base && i.ends_with("victim-tls.exe"))
        && e.target.as_ref().unwrap().pid == Some(victim)));
    // Then the suspended thread is resumed, after all of that.
    let last = ev.last().unwrap();
    assert_eq!(last.kind, EventKind::ThreadResume { tid: Some(tid) });
    assert!(last.source.line > patch.source.line);
}

#[test]
fn lab_benign_suspend_resume_trace() {
    let (ev, m) = into_victim("benign-suspend-resume");
    assert_eq!(m["is_attack"], false);
    let kinds: Vec<&str> = ev.iter().map(|e| e.kind.type_name()).collect();
    // Created suspended and resumed; nothing written, allocated or redirected in between.
    assert_eq!(kinds.first(), Some(&"process_create"));
    assert_eq!(kinds.last(), Some(&"thread_resume"));
    assert!(
        !kinds.iter().any(|k| matches!(
            *k,
            "remote_write"
                | "remote_alloc"
                | "remote_protect"
                | "set_thread_context"
                | "queue_apc"
                | "remote_map_view"
        )),
        "{kinds:?}"
    );
}
