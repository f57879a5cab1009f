//! Windows events (Sysmon, Security) from EVTX (rendered by the evtx crate as JSON) and from the
//! JSON shapes: evtx-crate JSON, Winlogbeat/ECS (`winlog.event_data`), OTRF flat (both variants).
//!
//! Every shape is first reduced to a [`WinRecord`] (envelope + flat `EventData`), then one mapper
//! turns Sysmon 1/5/7/8/10/25 and Security 4688/4689 into events.

use std::borrow::Cow;

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{RecordDecoder, norm_guid, parse_time, parse_u32, parse_u64_strict, value_str};
use crate::stream::RawRecord;
use crate::{Event, EventKind, ProcessRef, SourceRef};

/// Windows events; Threat-Intelligence / Kernel-Process events found here go to the ETW mapping.
#[derive(Default)]
pub(crate) struct WinEventDecoder {
    etw: super::etw::EtwDecoder,
}

/// A Windows event reduced to what the mapper needs.
#[derive(Debug, Default)]
pub(crate) struct WinRecord {
    pub provider: Option<String>,
    pub channel: Option<String>,
    pub event_id: Option<u32>,
    pub computer: Option<String>,
    pub time_created: Option<Timestamp>,
    pub record_id: Option<String>,
    /// `EventData` (or the flat record's fields), names as in the source.
    pub data: Vec<(String, String)>,
    /// Values are XML-escaped (OTRF 2020 NXLog variant).
    pub xml_escaped: bool,
}

impl WinRecord {
    /// Case-insensitive field lookup (`SourceProcessGUID` vs `SourceProcessGuid`).
    pub fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        let v = self
            .data
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())?;
        if self.xml_escaped && v.contains('&') {
            Some(Cow::Owned(xml_unescape(v)))
        } else {
            Some(Cow::Borrowed(v))
        }
    }

    /// A text field, trailing whitespace removed (exports disagree about keeping the trailing
    /// space Windows leaves on many command lines).
    fn string(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(|s| s.trim_end().to_string())
            .filter(|s| !s.is_empty())
    }

    fn u32(&self, name: &str) -> Option<u32> {
        self.get(name).and_then(|s| parse_u32(&s))
    }

    fn u64(&self, name: &str) -> Option<u64> {
        self.get(name).and_then(|s| parse_u64_strict(&s))
    }

    fn guid(&self, name: &str) -> Option<String> {
        self.get(name).and_then(|s| norm_guid(&s))
    }

    fn is_sysmon(&self) -> bool {
        let has = |s: &Option<String>| {
            s.as_deref()
                .is_some_and(|p| p.to_ascii_lowercase().contains("sysmon"))
        };
        has(&self.provider) || has(&self.channel)
    }

    fn is_security(&self) -> bool {
        self.provider
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case("Microsoft-Windows-Security-Auditing"))
            || self
                .channel
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case("Security"))
    }
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

// ---- evtx-crate JSON: {"Event":{"System":{…},"EventData":{…}}} ----

#[derive(Deserialize)]
struct Attrs<T> {
    #[serde(rename = "#attributes")]
    attributes: T,
}

#[derive(Deserialize)]
struct ProviderAttrs {
    #[serde(rename = "Name")]
    name: Option<String>,
}

#[derive(Deserialize)]
struct TimeAttrs {
    #[serde(rename = "SystemTime")]
    system_time: Option<String>,
}

#[derive(Deserialize)]
struct EvtxSystem {
    #[serde(rename = "Provider")]
    provider: Option<Attrs<ProviderAttrs>>,
    #[serde(rename = "EventID")]
    event_id: Option<Value>,
    #[serde(rename = "TimeCreated")]
    time_created: Option<Attrs<TimeAttrs>>,
    #[serde(rename = "EventRecordID")]
    event_record_id: Option<Value>,
    #[serde(rename = "Channel")]
    channel: Option<String>,
    #[serde(rename = "Computer")]
    computer: Option<String>,
}

#[derive(Deserialize)]
struct EvtxEvent {
    #[serde(rename = "System")]
    system: EvtxSystem,
    #[serde(rename = "EventData")]
    event_data: Option<Value>,
}

// ---- Winlogbeat / ECS ----

#[derive(Deserialize)]
struct Beat {
    #[serde(rename = "@timestamp")]
    timestamp: Option<String>,
    winlog: Winlog,
    host: Option<BeatHost>,
}

#[derive(Deserialize)]
struct BeatHost {
    name: Option<String>,
    hostname: Option<String>,
}

#[derive(Deserialize)]
struct Winlog {
    event_id: Option<Value>,
    provider_name: Option<String>,
    channel: Option<String>,
    computer_name: Option<String>,
    record_id: Option<Value>,
    event_data: Option<Map<String, Value>>,
}

fn push_data(out: &mut Vec<(String, String)>, map: Map<String, Value>) {
    for (k, v) in map {
        if let Some(s) = value_str(&v) {
            out.push((k, s.into_owned()));
        }
    }
}

/// evtx-crate `EventData`: an object of named values, or (unnamed) `{"Data": […]}`.
fn push_event_data(out: &mut Vec<(String, String)>, v: Value) {
    let Value::Object(map) = v else { return };
    for (k, v) in map {
        match v {
            // {"Data": {"#text": …}} (unnamed data), or a value with attributes:
            // {"#attributes": …, "#text": …}
            Value::Object(inner) => {
                if let Some(t) = inner.get("#text").and_then(value_str) {
                    out.push((k, t.into_owned()));
                }
            }
            other => {
                if let Some(s) = value_str(&other) {
                    out.push((k, s.into_owned()));
                }
            }
        }
    }
}

/// An event id given as a number, a string, or `{"#text": n}`.
fn event_id(v: &Value) -> Option<u32> {
    match v {
        Value::Object(o) => o.get("#text").and_then(super::value_u32),
        other => super::value_u32(other),
    }
}

/// Reduce any supported Windows-event JSON shape to a [`WinRecord`].
pub(crate) fn win_record(text: &str) -> Result<WinRecord, String> {
    let mut map: Map<String, Value> = super::parse_json(text)?;
    if let Some(ev) = map.remove("Event") {
        let ev: EvtxEvent =
            serde_json::from_value(ev).map_err(|e| format!("not an evtx-JSON event: {e}"))?;
        let mut r = WinRecord {
            provider: ev.system.provider.and_then(|p| p.attributes.name),
            channel: ev.system.channel,
            event_id: ev.system.event_id.as_ref().and_then(event_id),
            computer: ev.system.computer,
            time_created: ev
                .system
                .time_created
                .and_then(|t| t.attributes.system_time)
                .and_then(|t| parse_time(&t)),
            record_id: ev
                .system
                .event_record_id
                .as_ref()
                .and_then(value_str)
                .map(Cow::into_owned),
            ..WinRecord::default()
        };
        if let Some(d) = ev.event_data {
            push_event_data(&mut r.data, d);
        }
        return Ok(r);
    }
    if map.contains_key("winlog") {
        let beat: Beat = serde_json::from_value(Value::Object(map))
            .map_err(|e| format!("not a Winlogbeat event: {e}"))?;
        let w = beat.winlog;
        let mut r = WinRecord {
            provider: w.provider_name,
            channel: w.channel,
            event_id: w.event_id.as_ref().and_then(event_id),
            computer: w
                .computer_name
                .or_else(|| beat.host.and_then(|h| h.name.or(h.hostname))),
            time_created: beat.timestamp.and_then(|t| parse_time(&t)),
            record_id: w
                .record_id
                .as_ref()
                .and_then(value_str)
                .map(Cow::into_owned),
            ..WinRecord::default()
        };
        if let Some(d) = w.event_data {
            push_data(&mut r.data, d);
        }
        return Ok(r);
    }
    // OTRF flat: everything at the top level.
    let take_str = |map: &Map<String, Value>, keys: &[&str]| {
        keys.iter()
            .find_map(|k| map.get(*k).and_then(value_str).map(Cow::into_owned))
    };
    if !map.contains_key("EventID") {
        return Err("not a Windows event: no `Event`, `winlog` or `EventID` field".into());
    }
    let xml_escaped = map.get("Keywords").is_some_and(Value::is_number);
    let mut r = WinRecord {
        provider: take_str(&map, &["SourceName", "ProviderName", "Provider"]),
        channel: take_str(&map, &["Channel"]),
        event_id: map.get("EventID").and_then(event_id),
        computer: take_str(&map, &["Hostname", "Computer", "computer_name"]),
        time_created: take_str(&map, &["TimeCreated", "@timestamp"]).and_then(|t| parse_time(&t)),
        record_id: take_str(&map, &["RecordNumber", "EventRecordID", "RecordId"]),
        xml_escaped,
        ..WinRecord::default()
    };
    map.remove("Message");
    push_data(&mut r.data, map);
    Ok(r)
}

fn proc_ref(
    r: &WinRecord,
    pid: &str,
    guid: &str,
    image: &str,
    cmd: Option<&str>,
    user: Option<&str>,
) -> Option<ProcessRef> {
    let p = ProcessRef {
        pid: r.u32(pid),
        tid: None,
        guid: r.guid(guid),
        start_time: None,
        image: r.string(image),
        command_line: cmd.and_then(|c| r.string(c)),
        user: user.and_then(|u| r.string(u)),
        created_suspended: None,
    };
    if p.is_empty() { None } else { Some(p) }
}

/// Sysmon's `-` placeholder for an empty value.
fn dash_empty(s: Option<String>) -> Option<String> {
    s.map(|v| if v == "-" { String::new() } else { v })
}

/// Map one Windows record to events (Sysmon 1/5/7/8/10/25, Security 4688/4689).
pub(crate) fn map_record(r: &WinRecord, base: &SourceRef, out: &mut Vec<Event>) {
    let Some(id) = r.event_id else { return };
    let when = r
        .get("UtcTime")
        .and_then(|t| parse_time(&t))
        .or(r.time_created);
    let mut source = base.clone();
    source.provider = r.provider.clone().or_else(|| r.channel.clone());
    source.event_id = Some(id);
    // The record's own EventRecordID wins over the container's record number.
    if r.record_id.is_some() {
        source.record_id = r.record_id.clone();
    }
    let mut ev = |kind: EventKind, actor: Option<ProcessRef>, target: Option<ProcessRef>| {
        out.push(Event {
            host: r.computer.clone(),
            timestamp: when,
            actor,
            target,
            kind,
            source: source.clone(),
        });
    };
    if r.is_sysmon() {
        match id {
            1 => {
                let actor = proc_ref(
                    r,
                    "ParentProcessId",
                    "ParentProcessGuid",
                    "ParentImage",
                    Some("ParentCommandLine"),
                    Some("ParentUser"),
                );
                let target = proc_ref(
                    r,
                    "ProcessId",
                    "ProcessGuid",
                    "Image",
                    Some("CommandLine"),
                    Some("User"),
                )
                .map(|mut p| {
                    p.start_time = when;
                    p
                });
                ev(
                    EventKind::ProcessCreate {
                        created_suspended: None,
                        creation_flags: None,
                    },
                    actor,
                    target,
                );
            }
            5 => ev(
                EventKind::ProcessExit { exit_code: None },
                None,
                proc_ref(r, "ProcessId", "ProcessGuid", "Image", None, Some("User")),
            ),
            7 => ev(
                EventKind::ImageLoad {
                    image: r.string("ImageLoaded"),
                    base: None,
                    size: None,
                    signed: r.get("Signed").and_then(|s| match s.as_ref() {
                        "true" | "True" => Some(true),
                        "false" | "False" => Some(false),
                        _ => None,
                    }),
                },
                None,
                proc_ref(r, "ProcessId", "ProcessGuid", "Image", None, Some("User")),
            ),
            8 => ev(
                EventKind::ThreadCreate {
                    remote: Some(true),
                    tid: r.u32("NewThreadId"),
                    start_address: r.u64("StartAddress"),
                    win32_start_address: None,
                    start_module: dash_empty(r.get("StartModule").map(Cow::into_owned)),
                    start_function: dash_empty(r.get("StartFunction").map(Cow::into_owned)),
                    suspended: None,
                    initial: Some(false),
                },
                proc_ref(
                    r,
                    "SourceProcessId",
                    "SourceProcessGuid",
                    "SourceImage",
                    None,
                    Some("SourceUser"),
                ),
                proc_ref(
                    r,
                    "TargetProcessId",
                    "TargetProcessGuid",
                    "TargetImage",
                    None,
                    Some("TargetUser"),
                ),
            ),
            10 => {
                let actor = proc_ref(
                    r,
                    "SourceProcessId",
                    "SourceProcessGuid",
                    "SourceImage",
                    None,
                    Some("SourceUser"),
                )
                .map(|mut p| {
                    p.tid = r.u32("SourceThreadId");
                    p
                });
                ev(
                    EventKind::ProcessAccess {
                        granted_access: r.u32("GrantedAccess"),
                        call_trace: r.string("CallTrace"),
                    },
                    actor,
                    proc_ref(
                        r,
                        "TargetProcessId",
                        "TargetProcessGuid",
                        "TargetImage",
                        None,
                        Some("TargetUser"),
                    ),
                );
            }
            25 => ev(
                EventKind::ProcessTampering {
                    tamper_type: r.string("Type"),
                },
                None,
                proc_ref(r, "ProcessId", "ProcessGuid", "Image", None, Some("User")),
            ),
            _ => {}
        }
    } else if r.is_security() {
        match id {
            4688 => {
                let actor = ProcessRef {
                    pid: r.u32("ProcessId"),
                    image: r.string("ParentProcessName"),
                    user: r.string("SubjectUserName"),
                    ..ProcessRef::default()
                };
                let target = ProcessRef {
                    pid: r.u32("NewProcessId"),
                    image: r.string("NewProcessName"),
                    command_line: r.string("CommandLine"),
                    start_time: when,
                    user: r.string("TargetUserName").filter(|u| u != "-"),
                    ..ProcessRef::default()
                };
                ev(
                    EventKind::ProcessCreate {
                        created_suspended: None,
                        creation_flags: None,
                    },
                    (!actor.is_empty()).then_some(actor),
                    (!target.is_empty()).then_some(target),
                );
            }
            4689 => {
                let target = ProcessRef {
                    pid: r.u32("ProcessId"),
                    image: r.string("ProcessName"),
                    user: r.string("SubjectUserName"),
                    ..ProcessRef::default()
                };
                ev(
                    EventKind::ProcessExit {
                        exit_code: r.u64("Status").map(|s| s as i64),
                    },
                    None,
                    (!target.is_empty()).then_some(target),
                );
            }
            _ => {}
        }
    }
}

impl RecordDecoder for WinEventDecoder {
    fn decode(
        &mut self,
        rec: &RawRecord<'_>,
        base: &SourceRef,
        out: &mut Vec<Event>,
    ) -> Result<(), String> {
        let r = win_record(rec.text)?;
        if let Some(p) = r.provider.as_deref()
            && super::etw::is_etw_provider(p)
        {
            // ETW-TI / Kernel-Process saved as EVTX or shipped by Winlogbeat: same fields as the
            // ETW JSON, with the envelope's provider, id, time and host.
            let mut map = Map::new();
            for (k, v) in &r.data {
                map.insert(k.clone(), Value::String(v.clone()));
            }
            map.insert("ProviderName".into(), Value::String(p.to_string()));
            if let Some(id) = r.event_id {
                map.insert("EventID".into(), Value::from(id));
            }
            if let Some(t) = r.time_created {
                map.insert("TimeStamp".into(), Value::String(t.to_string()));
            }
            if let Some(c) = &r.computer {
                map.insert("Computer".into(), Value::String(c.clone()));
            }
            let mut b = base.clone();
            if r.record_id.is_some() {
                b.record_id = r.record_id.clone();
            }
            return self.etw.decode_map(map, &b, out);
        }
        map_record(&r, base, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Format;

    #[test]
    fn nxlog_values_are_unescaped() {
        let line = r#"{"EventID":25,"SourceName":"Microsoft-Windows-Sysmon","Keywords":-9223372036854775808,"ProcessId":"1840","Image":"&lt;unknown process&gt;","Type":"Image is replaced","UtcTime":"2022-08-08 19:49:01.465"}"#;
        let r = win_record(line).unwrap();
        let mut out = Vec::new();
        map_record(&r, &SourceRef::new(Format::WinEventJson), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].target.as_ref().unwrap().image.as_deref(),
            Some("<unknown process>")
        );
    }

    #[test]
    fn winlogbeat_shape() {
        let line = r#"{"@timestamp":"2021-01-01T00:00:00Z","host":{"name":"h1"},"winlog":{"event_id":"8","provider_name":"Microsoft-Windows-Sysmon","channel":"Microsoft-Windows-Sysmon/Operational","computer_name":"WS1","record_id":77,"event_data":{"SourceProcessId":"10","TargetProcessId":"20","NewThreadId":"30","StartAddress":"0x0000000000A00000","StartModule":"-","StartFunction":"-","UtcTime":"2021-01-01 00:00:01.000"}}}"#;
        let r = win_record(line).unwrap();
        let mut out = Vec::new();
        map_record(&r, &SourceRef::new(Format::WinEventJson), &mut out);
        assert_eq!(out.len(), 1);
        let e = &out[0];
        assert_eq!(e.host.as_deref(), Some("WS1"));
        assert_eq!(e.source.record_id.as_deref(), Some("77"));
        assert_eq!(
            e.kind,
            EventKind::ThreadCreate {
                remote: Some(true),
                tid: Some(30),
                start_address: Some(0xA00000),
                win32_start_address: None,
                start_module: Some(String::new()),
                start_function: Some(String::new()),
                suspended: None,
                initial: Some(false),
            }
        );
    }

    #[test]
    fn security_4688_in_evtx_json_shape() {
        // Field names of Security event 4688 ("A new process has been created"), as the evtx
        // crate renders them; the ids are hex strings in this event.
        let line = r##"{"Event":{"System":{"Provider":{"#attributes":{"Name":"Microsoft-Windows-Security-Auditing"}},"EventID":4688,"TimeCreated":{"#attributes":{"SystemTime":"2021-05-01T10:00:00.000000Z"}},"EventRecordID":99,"Channel":"Security","Computer":"dc1"},"EventData":{"SubjectUserName":"alice","NewProcessId":"0x1a2c","NewProcessName":"C:\\Windows\\System32\\svchost.exe","ProcessId":"0x0f3c","CommandLine":"svchost.exe -k x ","TargetUserName":"-","ParentProcessName":"C:\\Temp\\loader.exe"}}}"##;
        let r = win_record(line).unwrap();
        let mut out = Vec::new();
        map_record(&r, &SourceRef::new(Format::Evtx), &mut out);
        assert_eq!(out.len(), 1);
        let e = &out[0];
        assert_eq!(e.actor.as_ref().unwrap().pid, Some(0x0f3c));
        assert_eq!(e.target.as_ref().unwrap().pid, Some(0x1a2c));
        assert_eq!(
            e.target.as_ref().unwrap().command_line.as_deref(),
            Some("svchost.exe -k x")
        );
        assert_eq!(e.target.as_ref().unwrap().user, None);
        assert_eq!(e.source.record_id.as_deref(), Some("99"));
        assert_eq!(e.source.event_id, Some(4688));
    }

    #[test]
    fn etw_providers_in_windows_event_shapes_use_the_etw_mapping() {
        // Kernel-Process ThreadStart (event 3) and Threat-Intelligence ALLOCVM_REMOTE (event 1)
        // as the evtx crate renders them: only the event id names the task.
        let kp = r##"{"Event":{"System":{"Provider":{"#attributes":{"Name":"Microsoft-Windows-Kernel-Process"}},"EventID":3,"TimeCreated":{"#attributes":{"SystemTime":"2024-01-01T00:00:00Z"}},"EventRecordID":7,"Computer":"h"},"EventData":{"ProcessID":1704,"ThreadID":2524,"StartAddr":"0x7ff6aa001000","Win32StartAddr":"0x7ff6aa002000"}}}"##;
        let ti = r##"{"Event":{"System":{"Provider":{"#attributes":{"Name":"Microsoft-Windows-Threat-Intelligence"}},"EventID":1,"EventRecordID":8,"Computer":"h"},"EventData":{"CallingProcessId":9228,"TargetProcessId":7292,"BaseAddress":"0x2b1c0000","RegionSize":"0x1000","ProtectionMask":64,"AllocationType":12288}}}"##;
        let mut d = WinEventDecoder::default();
        let mut out = Vec::new();
        let base = SourceRef::new(Format::Evtx);
        for text in [kp, ti] {
            let rec = RawRecord {
                text,
                line: None,
                offset: None,
                record_id: None,
            };
            d.decode(&rec, &base, &mut out).unwrap();
        }
        assert_eq!(out.len(), 2);
        assert!(matches!(
            out[0].kind,
            EventKind::ThreadCreate {
                tid: Some(2524),
                start_address: Some(0x7ff6aa001000),
                ..
            }
        ));
        assert_eq!(out[0].source.record_id.as_deref(), Some("7"));
        assert_eq!(out[0].source.format, Format::Evtx);
        assert_eq!(
            out[1].kind,
            EventKind::RemoteAlloc {
                address: Some(0x2b1c0000),
                size: Some(0x1000),
                protection: Some(0x40),
                alloc_type: Some(0x3000)
            }
        );
        assert_eq!(out[1].actor.as_ref().unwrap().pid, Some(9228));
        assert_eq!(out[1].target.as_ref().unwrap().pid, Some(7292));
        assert_eq!(out[1].host.as_deref(), Some("h"));
    }
}
