//! Formats the corpus lacks (Defender, Elastic, SilkETW): documented example records kept under
//! `tests/data/` (see its README for where each field is documented).

use std::path::PathBuf;

use preentry_telemetry::{Event, EventKind, Format, decode_all};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn by_action<'a>(ev: &'a [Event], action: &str) -> &'a Event {
    ev.iter()
        .find(|e| e.source.action.as_deref() == Some(action))
        .unwrap_or_else(|| panic!("no {action}"))
}

#[test]
fn defender_device_events() {
    let (ev, er, st) = decode_all(&data("defender_deviceevents.jsonl"), None).unwrap();
    assert!(er.is_empty(), "{er:?}");
    assert_eq!(ev[0].source.format, Format::Defender);
    assert_eq!(st.records, 9);
    assert_eq!(st.events, 8);
    assert_eq!(st.skipped, 1); // LdapSearch
    let w = by_action(&ev, "WriteProcessMemoryApiCall");
    assert_eq!(
        w.kind,
        EventKind::RemoteWrite {
            address: None,
            size: Some(135168),
            bytes: None
        }
    );
    assert_eq!(w.host.as_deref(), Some("ws01.contoso.local"));
    assert_eq!(w.source.record_id.as_deref(), Some("1002"));
    let a = w.actor.as_ref().unwrap();
    assert_eq!(a.pid, Some(3960));
    assert_eq!(
        a.image.as_deref(),
        Some("c:\\users\\alice\\downloads\\loader.exe")
    );
    assert!(a.start_time.is_some());
    let t = w.target.as_ref().unwrap();
    assert_eq!(t.pid, Some(4412));
    assert_eq!(
        t.image.as_deref(),
        Some("C:\\Windows\\System32\\svchost.exe")
    );
    assert_eq!(t.start_time.unwrap().to_string(), "2024-03-05T10:15:00.9Z");
    assert_eq!(
        w.timestamp.unwrap().to_string(),
        "2024-03-05T10:15:01.2234567Z"
    );

    let alloc = by_action(&ev, "NtAllocateVirtualMemoryRemoteApiCall");
    assert_eq!(
        alloc.kind,
        EventKind::RemoteAlloc {
            address: Some(0x400000),
            size: Some(135168),
            protection: Some(0x40),
            alloc_type: None
        }
    );
    assert!(matches!(
        by_action(&ev, "SetThreadContextRemoteApiCall").kind,
        EventKind::SetThreadContext { .. }
    ));
    assert!(matches!(
        by_action(&ev, "QueueUserApcRemoteApiCall").kind,
        EventKind::QueueApc { .. }
    ));
    assert!(matches!(
        by_action(&ev, "NtMapViewOfSectionRemoteApiCall").kind,
        EventKind::RemoteMapView { .. }
    ));
    assert!(matches!(
        by_action(&ev, "MemoryRemoteProtect").kind,
        EventKind::RemoteProtect { .. }
    ));
    assert!(matches!(
        by_action(&ev, "ReadProcessMemoryApiCall").kind,
        EventKind::RemoteRead { size: Some(8), .. }
    ));
    // Kusto export spelling (ReportId_long / AdditionalFields_string); image from AdditionalFields
    // when FolderPath is absent is not needed here since FolderPath is present.
    let crt = by_action(&ev, "CreateRemoteThreadApiCall");
    assert_eq!(crt.source.record_id.as_deref(), Some("1005"));
    assert_eq!(
        crt.target.as_ref().unwrap().command_line.as_deref(),
        Some("notepad.exe")
    );
    assert!(matches!(
        crt.kind,
        EventKind::ThreadCreate {
            remote: Some(true),
            ..
        }
    ));
}

#[test]
fn defender_api_response_shape() {
    let (ev, er, st) = decode_all(&data("defender_api_response.json"), None).unwrap();
    assert!(er.is_empty(), "{er:?}");
    assert_eq!(st.records, 1);
    assert_eq!(ev.len(), 2);
    assert!(matches!(
        ev[0].kind,
        EventKind::RemoteWrite {
            size: Some(4096),
            ..
        }
    ));
    assert_eq!(
        ev[1].target.as_ref().unwrap().image.as_deref(),
        Some("svchost.exe")
    );
}

#[test]
fn elastic_endpoint_api_events() {
    let (ev, er, st) = decode_all(&data("elastic_api_events.jsonl"), None).unwrap();
    assert!(er.is_empty(), "{er:?}");
    assert_eq!(ev[0].source.format, Format::ElasticEndpoint);
    assert_eq!(st.records, 8);
    assert_eq!(st.skipped, 1); // GetAsyncKeyState
    // Process start with created_suspended.
    let pc = &ev[0];
    assert_eq!(
        pc.kind,
        EventKind::ProcessCreate {
            created_suspended: Some(true),
            creation_flags: None
        }
    );
    assert_eq!(pc.actor.as_ref().unwrap().pid, Some(3300));
    assert_eq!(pc.target.as_ref().unwrap().pid, Some(6120));
    assert_eq!(pc.source.record_id.as_deref(), Some("NMn2k4Qp0AAAAAAA"));
    let alloc = by_action(&ev, "VirtualAllocEx");
    assert_eq!(
        alloc.kind,
        EventKind::RemoteAlloc {
            address: Some(0x400000),
            size: Some(0x21000),
            protection: Some(0x40),
            alloc_type: Some(0x3000)
        }
    );
    assert_eq!(alloc.actor.as_ref().unwrap().tid, Some(3304));
    assert_eq!(alloc.target.as_ref().unwrap().created_suspended, Some(true));
    assert_eq!(
        alloc.source.provider.as_deref(),
        Some("Microsoft-Windows-Threat-Intelligence")
    );
    assert_eq!(
        by_action(&ev, "WriteProcessMemory").kind,
        EventKind::RemoteWrite {
            address: Some(0x400000),
            size: Some(0x21000),
            bytes: None
        }
    );
    assert_eq!(
        by_action(&ev, "SetThreadContext").kind,
        EventKind::SetThreadContext {
            tid: None,
            pc: Some(140733193388032),
            sp: Some(0x100000),
            entry: Some(0x401000)
        }
    );
    assert_eq!(
        by_action(&ev, "VirtualProtectEx").kind,
        EventKind::RemoteProtect {
            address: Some(0x401000),
            size: Some(4096),
            new_protection: Some(0x20),
            old_protection: Some(0x40)
        }
    );
    assert_eq!(
        by_action(&ev, "QueueUserAPC").kind,
        EventKind::QueueApc {
            tid: None,
            routine: Some(0x401000),
            argument: Some(0)
        }
    );
    // Dotted-key document.
    let mv = by_action(&ev, "MapViewOfSection");
    assert_eq!(
        mv.kind,
        EventKind::RemoteMapView {
            address: Some(0x500000),
            size: Some(8192),
            protection: Some(0x04)
        }
    );
    assert_eq!(mv.target.as_ref().unwrap().pid, Some(6120));
    assert_eq!(mv.host.as_deref(), Some("win10-lab"));
}

#[test]
fn silketw_kernel_process_and_threat_intelligence() {
    let (ev, er, st) = decode_all(&data("silketw_kernel_process.jsonl"), None).unwrap();
    assert!(er.is_empty(), "{er:?}");
    assert_eq!(st.records, 4);
    assert_eq!(st.skipped, 1); // ThreadStop
    assert_eq!(ev[0].source.format, Format::EtwJson);
    let ts = by_action(&ev, "ThreadStart/Start");
    assert_eq!(
        ts.kind,
        EventKind::ThreadCreate {
            remote: Some(true),
            tid: Some(12040),
            start_address: Some(0x1f0000),
            win32_start_address: Some(0x1f0000),
            start_module: None,
            start_function: None,
            suspended: None,
            initial: None,
        }
    );
    assert_eq!(ts.actor.as_ref().unwrap().pid, Some(7080));
    assert_eq!(ts.actor.as_ref().unwrap().tid, Some(7100));
    assert_eq!(ts.target.as_ref().unwrap().pid, Some(8416));
    assert_eq!(ts.timestamp.unwrap().to_string(), "2019-03-03T17:58:15Z");
    let il = by_action(&ev, "ImageLoad");
    assert!(
        matches!(&il.kind, EventKind::ImageLoad { base: Some(0x7ffe2a1b0000), size: Some(0x1f8000), image: Some(i), .. } if i.ends_with("ntdll.dll"))
    );
    let w = by_action(&ev, "KERNEL_THREATINT_TASK_WRITEVM");
    assert_eq!(
        w.kind,
        EventKind::RemoteWrite {
            address: Some(0x1f0000),
            size: Some(4096),
            bytes: None
        }
    );
    assert_eq!(w.actor.as_ref().unwrap().pid, Some(7080));
    assert_eq!(w.target.as_ref().unwrap().pid, Some(8416));
}
