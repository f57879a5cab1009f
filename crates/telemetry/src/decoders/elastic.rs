//! Elastic Endpoint events (ECS documents): API events (`event.dataset` =
//! `endpoint.events.api`, `process.Ext.api.*`, fields as listed in elastic/endpoint-package
//! `custom_documentation/doc/endpoint/api/windows/windows_api_threat_intelligence.md`) and
//! process start events (`endpoint.events.process`, `process.Ext.created_suspended`).
//!
//! Documents may be nested (`{"process":{"Ext":{"api":…}}}`) or use dotted keys
//! (`{"process.Ext.api.name":…}`); both are read.

use serde_json::{Map, Value};

use super::{RecordDecoder, norm_guid, parse_time, value_str};
use crate::stream::RawRecord;
use crate::{Event, EventKind, ProcessRef, SourceRef, protect};

pub(crate) struct ElasticDecoder;

/// Field lookup by dotted path, nested or flattened at any level.
fn get<'a>(v: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(x) = v.get(path) {
        return (!x.is_null()).then_some(x);
    }
    // Try every split point: "a.b.c" -> v["a"]["b.c"], v["a.b"]["c"], …
    let mut idx = 0;
    while let Some(pos) = path[idx..].find('.') {
        let cut = idx + pos;
        if let Some(Value::Object(inner)) = v.get(&path[..cut])
            && let Some(found) = get(inner, &path[cut + 1..])
        {
            return Some(found);
        }
        idx = cut + 1;
    }
    None
}

fn s(v: &Map<String, Value>, path: &str) -> Option<String> {
    get(v, path)
        .and_then(|x| match x {
            Value::Array(a) => a.first().and_then(value_str).map(|c| c.into_owned()),
            other => value_str(other).map(|c| c.into_owned()),
        })
        .filter(|x| !x.is_empty())
}

fn n(v: &Map<String, Value>, path: &str) -> Option<u64> {
    match get(v, path)? {
        Value::Number(x) => x.as_u64().or_else(|| x.as_i64().map(|i| i as u64)),
        Value::String(t) => super::parse_u64_strict(t),
        _ => None,
    }
}

fn b(v: &Map<String, Value>, path: &str) -> Option<bool> {
    match get(v, path)? {
        Value::Bool(x) => Some(*x),
        Value::String(t) => match t.as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Protection as letters (`RWX`), a `PAGE_*` name or a number.
fn prot(v: &Map<String, Value>, path: &str) -> Option<u32> {
    match get(v, path)? {
        Value::String(t) => protect::from_letters(t)
            .or_else(|| protect::from_name(t))
            .or_else(|| super::parse_u32(t)),
        Value::Number(x) => x.as_u64().and_then(|p| u32::try_from(p).ok()),
        _ => None,
    }
}

/// `COMMIT|RESERVE` -> `MEM_COMMIT | MEM_RESERVE`.
fn alloc_type(v: &Map<String, Value>, path: &str) -> Option<u32> {
    match get(v, path)? {
        Value::Number(x) => x.as_u64().and_then(|p| u32::try_from(p).ok()),
        Value::String(t) => {
            let mut out = 0u32;
            for part in t.split(['|', ' ', ',']).filter(|p| !p.is_empty()) {
                out |= match part
                    .trim_start_matches("MEM_")
                    .to_ascii_uppercase()
                    .as_str()
                {
                    "COMMIT" => 0x1000,
                    "RESERVE" => 0x2000,
                    "RESET" => 0x80000,
                    "TOP_DOWN" => 0x100000,
                    "PHYSICAL" => 0x400000,
                    "LARGE_PAGES" => 0x2000_0000,
                    _ => return super::parse_u32(t),
                };
            }
            (out != 0).then_some(out)
        }
        _ => None,
    }
}

fn process(v: &Map<String, Value>, prefix: &str) -> Option<ProcessRef> {
    let f = |k: &str| format!("{prefix}.{k}");
    let p = ProcessRef {
        pid: n(v, &f("pid")).and_then(|x| u32::try_from(x).ok()),
        tid: n(v, &f("thread.id")).and_then(|x| u32::try_from(x).ok()),
        guid: s(v, &f("entity_id")).map(|g| norm_guid(&g).filter(|_| g.contains('-')).unwrap_or(g)),
        start_time: s(v, &f("start")).and_then(|t| parse_time(&t)),
        image: s(v, &f("executable")).or_else(|| s(v, &f("name"))),
        command_line: s(v, &f("command_line")),
        user: None,
        created_suspended: None,
    };
    if p.is_empty() { None } else { Some(p) }
}

impl RecordDecoder for ElasticDecoder {
    fn decode(
        &mut self,
        rec: &RawRecord<'_>,
        base: &SourceRef,
        out: &mut Vec<Event>,
    ) -> Result<(), String> {
        let mut doc: Map<String, Value> = super::parse_json(rec.text)?;
        // Elasticsearch search hits wrap the document in `_source`.
        if let Some(Value::Object(src)) = doc.remove("_source") {
            doc = src;
        }
        let api = s(&doc, "process.Ext.api.name");
        let dataset = s(&doc, "event.dataset").or_else(|| s(&doc, "data_stream.dataset"));
        if api.is_none() && dataset.is_none() && get(&doc, "process").is_none() {
            return Err("not an Elastic Endpoint document: no `process` / `event.dataset`".into());
        }
        let mut source = base.clone();
        source.provider = s(&doc, "event.provider").or_else(|| dataset.clone());
        source.action = api.clone();
        if source.record_id.is_none() {
            source.record_id = s(&doc, "event.id");
        }
        let p = "process.Ext.api.parameters";
        let kind = if let Some(name) = &api {
            let l = name.to_ascii_lowercase();
            let address = n(&doc, &format!("{p}.address"));
            let size = n(&doc, &format!("{p}.size"));
            if l.contains("unmapview") {
                EventKind::RemoteUnmap { address }
            } else if l.contains("mapview") {
                EventKind::RemoteMapView {
                    address,
                    size,
                    protection: prot(&doc, &format!("{p}.protection")),
                }
            } else if l.contains("virtualalloc") || l.contains("allocatevirtualmemory") {
                EventKind::RemoteAlloc {
                    address,
                    size,
                    protection: prot(&doc, &format!("{p}.protection")),
                    alloc_type: alloc_type(&doc, &format!("{p}.allocation_type")),
                }
            } else if l.contains("virtualprotect") || l.contains("protectvirtualmemory") {
                EventKind::RemoteProtect {
                    address,
                    size,
                    new_protection: prot(&doc, &format!("{p}.protection")),
                    old_protection: prot(&doc, &format!("{p}.protection_old")),
                }
            } else if l.contains("writeprocessmemory") || l.contains("writevirtualmemory") {
                EventKind::RemoteWrite {
                    address,
                    size,
                    bytes: None,
                }
            } else if l.contains("readprocessmemory") || l.contains("readvirtualmemory") {
                EventKind::RemoteRead { address, size }
            } else if l.contains("setthreadcontext") || l.contains("setcontextthread") {
                let x64 = get(&doc, &format!("{p}.rip")).is_some();
                let r = |a: &str, b: &str| n(&doc, &format!("{p}.{}", if x64 { a } else { b }));
                EventKind::SetThreadContext {
                    tid: None,
                    pc: r("rip", "eip"),
                    sp: r("rsp", "esp"),
                    entry: r("rcx", "eax"),
                }
            } else if l.contains("queueuserapc") || l.contains("queueapcthread") {
                EventKind::QueueApc {
                    tid: None,
                    routine: n(&doc, &format!("{p}.procedure")),
                    argument: n(&doc, &format!("{p}.argument1")),
                }
            } else if l.contains("suspendthread") {
                EventKind::ThreadSuspend { tid: None }
            } else if l.contains("resumethread") {
                EventKind::ThreadResume { tid: None }
            } else if l.contains("suspendprocess") {
                EventKind::ProcessSuspend {}
            } else if l.contains("resumeprocess") {
                EventKind::ProcessResume {}
            } else if l.contains("createremotethread") || l.contains("createthreadex") {
                EventKind::ThreadCreate {
                    remote: Some(true),
                    tid: None,
                    start_address: n(&doc, &format!("{p}.address")),
                    win32_start_address: None,
                    start_module: None,
                    start_function: None,
                    suspended: None,
                    initial: Some(false),
                }
            } else {
                return Ok(());
            }
        } else {
            let is_process = dataset.as_deref().is_some_and(|d| d.ends_with(".process"))
                || s(&doc, "event.category").is_some_and(|c| c == "process");
            let is_start = s(&doc, "event.type").is_some_and(|t| t == "start")
                || s(&doc, "event.action").is_some_and(|a| a == "start" || a == "exec");
            if !(is_process && is_start) {
                return Ok(());
            }
            let parent = process(&doc, "process.parent");
            out.push(Event {
                host: s(&doc, "host.name").or_else(|| s(&doc, "host.hostname")),
                timestamp: s(&doc, "@timestamp").and_then(|t| parse_time(&t)),
                actor: parent,
                target: process(&doc, "process").map(|mut t| {
                    t.tid = None;
                    t.user = s(&doc, "user.name");
                    t.created_suspended = b(&doc, "process.Ext.created_suspended");
                    t
                }),
                kind: EventKind::ProcessCreate {
                    created_suspended: b(&doc, "process.Ext.created_suspended"),
                    creation_flags: None,
                },
                source,
            });
            return Ok(());
        };
        let mut target = process(&doc, "Target.process");
        if let Some(t) = &mut target {
            t.created_suspended = b(&doc, "Target.process.Ext.created_suspended");
        }
        let mut actor = process(&doc, "process");
        if let Some(a) = &mut actor {
            a.user = s(&doc, "user.name");
        }
        let ev = Event {
            host: s(&doc, "host.name").or_else(|| s(&doc, "host.hostname")),
            timestamp: s(&doc, "@timestamp").and_then(|t| parse_time(&t)),
            actor,
            target,
            kind,
            source,
        };
        out.push(ev);
        Ok(())
    }
}
