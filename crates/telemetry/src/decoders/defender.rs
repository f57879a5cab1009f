//! Microsoft Defender for Endpoint `DeviceEvents` rows (Advanced Hunting JSON export).
//!
//! Accepted shapes: one row per JSON object (JSON lines or an array), a streaming-API record
//! wrapping the row in `properties`, or an Advanced Hunting API response (`{"Schema":…,
//! "Results":[rows]}`). Column names follow the DeviceEvents schema (Microsoft Learn,
//! "DeviceEvents table"); Kusto export suffixes (`ReportId_long`, `AdditionalFields_string`,
//! `AdditionalFields_dynamic`) are accepted too. In the API-call rows the *initiating* process is
//! the actor and the row's own process columns (`ProcessId`, `FileName`, `FolderPath`, …) are the
//! target.

use serde_json::{Map, Value};

use super::{RecordDecoder, norm_guid, parse_time, value_str, value_u64};
use crate::stream::RawRecord;
use crate::{Event, EventKind, ProcessRef, SourceRef};

pub(crate) struct DefenderDecoder;

/// Most rows of one API response decoded.
const MAX_ROWS: usize = 1_000_000;

fn col<'a>(row: &'a Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| {
        row.get(*n)
            .filter(|v| !v.is_null() && v.as_str() != Some(""))
    })
}

fn s(row: &Map<String, Value>, names: &[&str]) -> Option<String> {
    col(row, names).and_then(value_str).map(|c| c.into_owned())
}

fn n(row: &Map<String, Value>, names: &[&str]) -> Option<u64> {
    col(row, names).and_then(value_u64)
}

/// `AdditionalFields` as an object (it is a JSON string in most exports).
fn additional(row: &Map<String, Value>) -> Map<String, Value> {
    match col(
        row,
        &[
            "AdditionalFields",
            "AdditionalFields_dynamic",
            "AdditionalFields_string",
        ],
    ) {
        Some(Value::Object(o)) => o.clone(),
        Some(Value::String(t)) => serde_json::from_str(t).unwrap_or_default(),
        _ => Map::new(),
    }
}

fn join_path(folder: Option<String>, file: Option<String>) -> Option<String> {
    match (folder, file) {
        (Some(d), Some(f)) if !d.to_ascii_lowercase().ends_with(&f.to_ascii_lowercase()) => {
            Some(format!("{}\\{}", d.trim_end_matches('\\'), f))
        }
        (Some(d), _) => Some(d),
        (None, f) => f,
    }
}

fn initiating(row: &Map<String, Value>) -> Option<ProcessRef> {
    let p = ProcessRef {
        pid: n(row, &["InitiatingProcessId"]).and_then(|v| u32::try_from(v).ok()),
        tid: None,
        guid: s(row, &["InitiatingProcessUniqueId"]).and_then(|g| norm_guid(&g)),
        start_time: s(row, &["InitiatingProcessCreationTime"]).and_then(|t| parse_time(&t)),
        image: join_path(
            s(row, &["InitiatingProcessFolderPath"]),
            s(row, &["InitiatingProcessFileName"]),
        ),
        command_line: s(row, &["InitiatingProcessCommandLine"]),
        user: s(row, &["InitiatingProcessAccountName"]),
        created_suspended: None,
    };
    if p.is_empty() { None } else { Some(p) }
}

fn own_process(row: &Map<String, Value>, extra: &Map<String, Value>) -> Option<ProcessRef> {
    let p = ProcessRef {
        pid: n(row, &["ProcessId"]).and_then(|v| u32::try_from(v).ok()),
        tid: None,
        guid: s(row, &["ProcessUniqueId"]).and_then(|g| norm_guid(&g)),
        start_time: s(row, &["ProcessCreationTime"])
            .or_else(|| s(extra, &["CreationTimeUtc"]))
            .and_then(|t| parse_time(&t)),
        image: join_path(s(row, &["FolderPath"]), s(row, &["FileName"]))
            .or_else(|| s(extra, &["TargetProcess"])),
        command_line: s(row, &["ProcessCommandLine"]).or_else(|| s(extra, &["CommandLine"])),
        user: s(row, &["AccountName"]),
        created_suspended: None,
    };
    if p.is_empty() { None } else { Some(p) }
}

fn decode_row(
    row: &Map<String, Value>,
    base: &SourceRef,
    out: &mut Vec<Event>,
) -> Result<(), String> {
    let Some(action) = s(row, &["ActionType"]) else {
        return Err("not a Defender DeviceEvents row: no `ActionType`".into());
    };
    let extra = additional(row);
    let x = |names: &[&str]| n(&extra, names);
    let address = x(&["BaseAddress", "Address", "StartAddress"]);
    let size = x(&["RegionSize", "Size", "ViewSize"]);
    let kind = match action.as_str() {
        "WriteProcessMemoryApiCall" => EventKind::RemoteWrite {
            address,
            size: x(&["TotalBytesCopied"]).or(size),
            bytes: None,
        },
        "ReadProcessMemoryApiCall" => EventKind::RemoteRead {
            address,
            size: x(&["TotalBytesCopied"]).or(size),
        },
        "NtAllocateVirtualMemoryRemoteApiCall" => EventKind::RemoteAlloc {
            address,
            size,
            protection: x(&["ProtectionMask", "Protection"]).and_then(|v| u32::try_from(v).ok()),
            alloc_type: x(&["AllocationType"]).and_then(|v| u32::try_from(v).ok()),
        },
        "MemoryRemoteProtect" | "NtProtectVirtualMemoryRemoteApiCall" => EventKind::RemoteProtect {
            address,
            size,
            new_protection: x(&["ProtectionMask", "NewProtection", "Protection"])
                .and_then(|v| u32::try_from(v).ok()),
            old_protection: x(&["LastProtectionMask", "OldProtection"])
                .and_then(|v| u32::try_from(v).ok()),
        },
        "NtMapViewOfSectionRemoteApiCall" => EventKind::RemoteMapView {
            address,
            size,
            protection: x(&["ProtectionMask", "Protection"]).and_then(|v| u32::try_from(v).ok()),
        },
        "SetThreadContextRemoteApiCall" => EventKind::SetThreadContext {
            tid: x(&["ThreadId", "TargetThreadId"]).and_then(|v| u32::try_from(v).ok()),
            pc: x(&["Pc", "Rip", "Eip"]),
            sp: x(&["Sp", "Rsp", "Esp"]),
            entry: None,
        },
        "QueueUserApcRemoteApiCall" => EventKind::QueueApc {
            tid: x(&["ThreadId", "TargetThreadId"]).and_then(|v| u32::try_from(v).ok()),
            routine: x(&["ApcRoutine"]),
            argument: x(&["ApcArgument1"]),
        },
        "CreateRemoteThreadApiCall" => EventKind::ThreadCreate {
            remote: Some(true),
            tid: x(&["ThreadId"]).and_then(|v| u32::try_from(v).ok()),
            start_address: x(&["StartAddress"]),
            win32_start_address: None,
            start_module: None,
            start_function: None,
            suspended: None,
            initial: Some(false),
        },
        _ => return Ok(()),
    };
    let mut source = base.clone();
    source.provider = Some("MicrosoftDefenderForEndpoint/DeviceEvents".into());
    source.action = Some(action);
    if source.record_id.is_none() {
        source.record_id = s(row, &["ReportId", "ReportId_long", "ReportId_string"]);
    }
    out.push(Event {
        host: s(row, &["DeviceName"]),
        timestamp: s(row, &["Timestamp", "TimeGenerated"]).and_then(|t| parse_time(&t)),
        actor: initiating(row),
        target: own_process(row, &extra),
        kind,
        source,
    });
    Ok(())
}

impl RecordDecoder for DefenderDecoder {
    fn decode(
        &mut self,
        rec: &RawRecord<'_>,
        base: &SourceRef,
        out: &mut Vec<Event>,
    ) -> Result<(), String> {
        let mut map: Map<String, Value> = super::parse_json(rec.text)?;
        if let Some(Value::Array(rows)) = map.remove("Results") {
            let mut first_err = None;
            for r in rows.iter().take(MAX_ROWS) {
                if let Some(o) = r.as_object()
                    && let Err(e) = decode_row(o, base, out)
                {
                    first_err.get_or_insert(e);
                }
            }
            return match first_err {
                Some(e) if out.is_empty() => Err(e),
                _ => Ok(()),
            };
        }
        if let Some(Value::Object(props)) = map.get("properties")
            && props.contains_key("ActionType")
        {
            let mut row = props.clone();
            if !row.contains_key("Timestamp")
                && let Some(t) = map.get("time")
            {
                row.insert("Timestamp".into(), t.clone());
            }
            return decode_row(&row, base, out);
        }
        decode_row(&map, base, out)
    }
}
