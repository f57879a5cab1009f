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

/// The lab's committed samples (`samples/*/wineserver.trace.gz`), when the lab has produced them.
#[test]
fn lab_samples_decode_cleanly_when_present() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../samples");
    let Ok(dirs) = std::fs::read_dir(&root) else {
        return;
    };
    for d in dirs.flatten() {
        let trace = d.path().join("wineserver.trace.gz");
        if !trace.exists() {
            continue;
        }
        let mut s = decode_file(&trace, None).unwrap();
        assert_eq!(s.format(), Format::WineTrace);
        let ev: Vec<Event> = (&mut s).filter_map(Result::ok).collect();
        assert_eq!(s.stats().errors, 0, "{}", trace.display());
        assert!(
            ev.iter()
                .any(|e| matches!(e.kind, EventKind::ProcessCreate { .. })),
            "{}",
            trace.display()
        );
    }
}
