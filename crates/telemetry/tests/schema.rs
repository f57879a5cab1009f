//! The JSON Schema in `schema/event.schema.json` matches what serde emits: every event kind,
//! every field name, and the JSON type of every value.

use std::collections::BTreeSet;
use std::path::PathBuf;

use preentry_telemetry::{Event, EventKind, Format, ProcessRef, SourceRef};
use serde_json::Value;

fn schema() -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schema/event.schema.json");
    let text = std::fs::read_to_string(&p).expect("schema file");
    serde_json::from_str(&text).expect("schema is JSON")
}

fn full_proc(pid: u32) -> ProcessRef {
    ProcessRef {
        pid: Some(pid),
        tid: Some(pid + 4),
        guid: Some("{0197231E-FC2D-6927-810B-000000000D00}".into()),
        start_time: Some("2025-11-27T07:22:22.031Z".parse().unwrap()),
        image: Some("C:\\Windows\\notepad.exe".into()),
        command_line: Some("notepad.exe x".into()),
        user: Some("S-1-5-18".into()),
        created_suspended: Some(true),
    }
}

/// One event of each kind with every optional field set.
fn all_kinds() -> Vec<EventKind> {
    vec![
        EventKind::ProcessCreate {
            created_suspended: Some(true),
            creation_flags: Some(4),
        },
        EventKind::ProcessExit { exit_code: Some(0) },
        EventKind::ImageLoad {
            image: Some("a.dll".into()),
            base: Some(0x1000),
            size: Some(0x2000),
            signed: Some(false),
        },
        EventKind::ProcessAccess {
            granted_access: Some(0x1fffff),
            call_trace: Some("x".into()),
        },
        EventKind::ProcessTampering {
            tamper_type: Some("Image is replaced".into()),
        },
        EventKind::RemoteAlloc {
            address: Some(1),
            size: Some(2),
            protection: Some(0x40),
            alloc_type: Some(0x3000),
        },
        EventKind::RemoteProtect {
            address: Some(1),
            size: Some(2),
            new_protection: Some(0x20),
            old_protection: Some(0x04),
        },
        EventKind::RemoteWrite {
            address: Some(1),
            size: Some(2),
            bytes: Some("4d5a".into()),
        },
        EventKind::RemoteRead {
            address: Some(1),
            size: Some(2),
        },
        EventKind::RemoteMapView {
            address: Some(1),
            size: Some(2),
            protection: Some(0x40),
        },
        EventKind::RemoteUnmap {
            address: Some(0x400000),
        },
        EventKind::SetThreadContext {
            tid: Some(4),
            pc: Some(0x401000),
            sp: Some(0x1000),
            entry: Some(0x402000),
        },
        EventKind::QueueApc {
            tid: Some(4),
            routine: Some(0x401000),
            argument: Some(0),
        },
        EventKind::ThreadCreate {
            remote: Some(true),
            tid: Some(8),
            start_address: Some(0x1000),
            win32_start_address: Some(0x2000),
            start_module: Some("m.dll".into()),
            start_function: Some("f".into()),
            suspended: Some(false),
            initial: Some(false),
        },
        EventKind::ThreadSuspend { tid: Some(3) },
        EventKind::ThreadResume { tid: Some(3) },
        EventKind::ProcessSuspend {},
        EventKind::ProcessResume {},
    ]
}

fn full_event(kind: EventKind) -> Event {
    Event {
        host: Some("h".into()),
        timestamp: Some("2025-11-27T07:22:22.033828Z".parse().unwrap()),
        actor: Some(full_proc(100)),
        target: Some(full_proc(200)),
        kind,
        source: SourceRef {
            format: Format::Evtx,
            path: Some("x.evtx".into()),
            record_id: Some("445923".into()),
            line: Some(1),
            offset: Some(0),
            provider: Some("Microsoft-Windows-Sysmon".into()),
            event_id: Some(10),
            action: Some("a".into()),
        },
    }
}

/// Resolve a `$ref` to `#/$defs/...`.
fn resolve<'a>(root: &'a Value, v: &'a Value) -> &'a Value {
    if let Some(r) = v.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/$defs/");
        return &root["$defs"][name];
    }
    v
}

fn json_type_ok(types: &Value, v: &Value) -> bool {
    let list: Vec<&str> = match types {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => return true,
    };
    list.iter().any(|t| match *t {
        "null" => v.is_null(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_u64() || v.is_i64(),
        "object" => v.is_object(),
        _ => false,
    })
}

/// Minimal structural check of `v` against `s` (properties, required, additionalProperties,
/// type, const, enum, oneOf by `type` tag). Returns the list of problems.
fn check(root: &Value, s: &Value, v: &Value, at: &str, problems: &mut Vec<String>) {
    let s = resolve(root, s);
    if let Some(alts) = s.get("oneOf").and_then(Value::as_array) {
        if v.is_null()
            && alts
                .iter()
                .any(|a| a.get("type") == Some(&Value::from("null")))
        {
            return;
        }
        // Event kinds: choose the alternative by its `type` const.
        let tag = v.get("type").cloned();
        let chosen = alts.iter().map(|a| resolve(root, a)).find(|a| {
            a.pointer("/properties/type/const").is_none()
                || a.pointer("/properties/type/const") == tag.as_ref()
        });
        match chosen {
            Some(a) if a.get("type") != Some(&Value::from("null")) => {
                check(root, a, v, at, problems)
            }
            _ => problems.push(format!("{at}: no oneOf alternative for {v}")),
        }
        return;
    }
    if let Some(t) = s.get("type")
        && !json_type_ok(t, v)
    {
        problems.push(format!("{at}: {v} is not {t}"));
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        problems.push(format!("{at}: {v} != const {c}"));
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        problems.push(format!("{at}: {v} not in enum"));
    }
    if let (Some(props), Some(obj)) = (
        s.get("properties").and_then(Value::as_object),
        v.as_object(),
    ) {
        for req in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(r) = req.as_str()
                && !obj.contains_key(r)
            {
                problems.push(format!("{at}: missing required {r}"));
            }
        }
        for (k, val) in obj {
            match props.get(k) {
                Some(ps) => check(root, ps, val, &format!("{at}.{k}"), problems),
                None => problems.push(format!("{at}: key `{k}` not in schema")),
            }
        }
    }
}

#[test]
fn every_kind_and_field_matches_schema() {
    let root = schema();
    let mut problems = Vec::new();
    let mut seen_kinds = BTreeSet::new();
    for kind in all_kinds() {
        let name = kind.type_name();
        let ev = full_event(kind);
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["kind"]["type"], Value::from(name));
        check(&root, &root, &v, "event", &mut problems);
        // Every property the schema lists for this kind is emitted when set.
        let alts = root["$defs"]["event_kind"]["oneOf"].as_array().unwrap();
        let alt = alts
            .iter()
            .find(|a| a["properties"]["type"]["const"] == name)
            .unwrap_or_else(|| panic!("kind {name} missing from schema"));
        let schema_keys: BTreeSet<&String> =
            alt["properties"].as_object().unwrap().keys().collect();
        let emitted: BTreeSet<&String> = v["kind"].as_object().unwrap().keys().collect();
        assert_eq!(schema_keys, emitted, "fields of {name}");
        seen_kinds.insert(name.to_string());
        // And the JSON round-trips.
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev);
    }
    for (def, sample) in [
        ("process_ref", serde_json::to_value(full_proc(1)).unwrap()),
        (
            "source_ref",
            serde_json::to_value(full_event(EventKind::ProcessResume {}).source).unwrap(),
        ),
    ] {
        let schema_keys: BTreeSet<&String> = root["$defs"][def]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        let emitted: BTreeSet<&String> = sample.as_object().unwrap().keys().collect();
        assert_eq!(schema_keys, emitted, "fields of {def}");
    }
    let schema_kinds: BTreeSet<String> = root["$defs"]["event_kind"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["properties"]["type"]["const"].as_str().map(String::from))
        .collect();
    assert_eq!(schema_kinds, seen_kinds);
    let formats: BTreeSet<String> = Format::ALL.iter().map(|f| f.name().to_string()).collect();
    let schema_formats: BTreeSet<String> =
        root["$defs"]["source_ref"]["properties"]["format"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
    assert_eq!(formats, schema_formats);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn minimal_event_validates_and_bad_event_does_not() {
    let root = schema();
    let ev = Event::new(
        EventKind::RemoteUnmap { address: None },
        SourceRef::new(Format::WineTrace),
    );
    let v = serde_json::to_value(&ev).unwrap();
    let mut problems = Vec::new();
    check(&root, &root, &v, "event", &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    let mut bad = v.clone();
    bad["kind"]["adress"] = Value::from(5);
    bad["source"]["format"] = Value::from("csv");
    let mut problems = Vec::new();
    check(&root, &root, &bad, "event", &mut problems);
    assert_eq!(problems.len(), 2, "{problems:?}");
}
