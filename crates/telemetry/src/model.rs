//! The one event model every decoder produces (documented in `docs/telemetry.md`, JSON Schema in
//! `schema/event.schema.json`).
//!
//! Conventions:
//! - `actor` is the process (and thread, when known) that performed the action; `target` is the
//!   process acted upon. For `process_create` the actor is the creator (parent) and the target the
//!   new process. For `image_load`, `process_exit` and `process_tampering` the actor is absent or
//!   equal to the target. Local operations (actor == target) are kept: the engine decides.
//! - Addresses, sizes and access masks are plain JSON numbers (u64 / u32).
//! - Memory protections are Windows `PAGE_*` values (e.g. 0x40 = `PAGE_EXECUTE_READWRITE`);
//!   sources that give names or letters are converted.
//! - Every field a source does not provide is `null` / absent, never invented.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::Format;

/// One normalised telemetry event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Host name (Sysmon `Computer`, ECS `host.name`, Defender `DeviceName`, lab scenario).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// When the event happened (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    /// Who acted (creator, caller, accessing process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<ProcessRef>,
    /// Who was acted upon (created, accessed, written, loaded-into process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<ProcessRef>,
    /// What happened.
    pub kind: EventKind,
    /// Where the event came from.
    pub source: SourceRef,
}

/// Identity of a process (and optionally one of its threads).
///
/// A process is identified by `pid` plus `start_time`, or by `guid` (Sysmon ProcessGuid, Defender
/// `...ProcessUniqueId`, Elastic `entity_id`), since PIDs are reused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The acting thread, when the source says which one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Timestamp>,
    /// Executable path or name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_line: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The process was created suspended, when a source other than its creation event says so
    /// (Elastic `Target.process.Ext.created_suspended` on API events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_suspended: Option<bool>,
}

impl ProcessRef {
    /// A reference with only a PID.
    pub fn pid(pid: u32) -> Self {
        ProcessRef {
            pid: Some(pid),
            ..ProcessRef::default()
        }
    }

    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self == &ProcessRef::default()
    }
}

/// Where an event was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    /// The input format it was decoded from.
    pub format: Format,
    /// Input file (absent for stdin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The source's own record id (EVTX EventRecordID, ECS `event.id`, Defender `ReportId`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    /// 1-based line number for line formats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// Byte offset of the record/line in the input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Provider / channel name (e.g. `Microsoft-Windows-Sysmon`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Provider-specific event id (Sysmon EventID, ETW event id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<u32>,
    /// Source-specific action name (ETW task name, Defender ActionType, Elastic api name, Wine
    /// request name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// What happened. Serialised with a `type` tag, e.g. `{"type":"remote_write","address":…}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A process was created (target), by actor.
    ProcessCreate {
        /// Created with `CREATE_SUSPENDED`, when the source knows it (Elastic
        /// `created_suspended`, Wine `new_process` flags); `null` when it does not (Sysmon 1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        created_suspended: Option<bool>,
        /// Raw creation flags when the source gives them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        creation_flags: Option<u32>,
    },
    /// The target process exited.
    ProcessExit {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i64>,
    },
    /// An image (exe/dll) was mapped into the target process.
    ImageLoad {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signed: Option<bool>,
    },
    /// The actor opened a handle to the target (Sysmon 10).
    ProcessAccess {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        granted_access: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call_trace: Option<String>,
    },
    /// The target's image was tampered with (Sysmon 25 `Type`).
    ProcessTampering {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tamper_type: Option<String>,
    },
    /// Memory was allocated in the target (NtAllocateVirtualMemory).
    RemoteAlloc {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        protection: Option<u32>,
        /// `MEM_COMMIT`/`MEM_RESERVE`… when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        alloc_type: Option<u32>,
    },
    /// Protection of target memory was changed (NtProtectVirtualMemory).
    RemoteProtect {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new_protection: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old_protection: Option<u32>,
    },
    /// Target memory was written (WriteProcessMemory).
    RemoteWrite {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
        /// The written bytes (or their first part), lowercase hex, when the source records them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bytes: Option<String>,
    },
    /// Target memory was read (ReadProcessMemory).
    RemoteRead {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
    },
    /// A section view was mapped into the target (NtMapViewOfSection).
    RemoteMapView {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        protection: Option<u32>,
    },
    /// A view was unmapped from the target (NtUnmapViewOfSection).
    RemoteUnmap {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<u64>,
    },
    /// A thread's context was set (SetThreadContext); `pc` is the new instruction pointer.
    SetThreadContext {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pc: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sp: Option<u64>,
        /// The register a not-yet-started thread takes its start address from (RCX on x64, EAX
        /// on x86): what process hollowing rewrites. Only sources that log the whole context
        /// (the Wine trace) have it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        entry: Option<u64>,
    },
    /// An APC was queued to a thread of the target (QueueUserAPC / NtQueueApcThread).
    QueueApc {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        routine: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        argument: Option<u64>,
    },
    /// A thread was created/started in the target.
    ThreadCreate {
        /// Created by another process (Sysmon 8, CreateRemoteThread); `null` when unknown.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remote: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_address: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        win32_start_address: Option<u64>,
        /// Module holding the start address; empty/absent for unbacked memory (Sysmon 8).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_module: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_function: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        suspended: Option<bool>,
        /// The first thread of a newly created process, created by the creator as part of
        /// process creation (kernel callbacks and the Wine trace report it; Sysmon 8 does not).
        /// `null` when the source's view does not include the process creation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        initial: Option<bool>,
    },
    /// A thread of the target was suspended.
    ThreadSuspend {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tid: Option<u32>,
    },
    /// A thread of the target was resumed.
    ThreadResume {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tid: Option<u32>,
    },
    /// The whole target process was suspended.
    ProcessSuspend {},
    /// The whole target process was resumed.
    ProcessResume {},
}

impl EventKind {
    /// The serialised `type` tag of this kind.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::ProcessCreate { .. } => "process_create",
            EventKind::ProcessExit { .. } => "process_exit",
            EventKind::ImageLoad { .. } => "image_load",
            EventKind::ProcessAccess { .. } => "process_access",
            EventKind::ProcessTampering { .. } => "process_tampering",
            EventKind::RemoteAlloc { .. } => "remote_alloc",
            EventKind::RemoteProtect { .. } => "remote_protect",
            EventKind::RemoteWrite { .. } => "remote_write",
            EventKind::RemoteRead { .. } => "remote_read",
            EventKind::RemoteMapView { .. } => "remote_map_view",
            EventKind::RemoteUnmap { .. } => "remote_unmap",
            EventKind::SetThreadContext { .. } => "set_thread_context",
            EventKind::QueueApc { .. } => "queue_apc",
            EventKind::ThreadCreate { .. } => "thread_create",
            EventKind::ThreadSuspend { .. } => "thread_suspend",
            EventKind::ThreadResume { .. } => "thread_resume",
            EventKind::ProcessSuspend {} => "process_suspend",
            EventKind::ProcessResume {} => "process_resume",
        }
    }
}

impl Event {
    /// A new event with the given kind and source and nothing else.
    pub fn new(kind: EventKind, source: SourceRef) -> Self {
        Event {
            host: None,
            timestamp: None,
            actor: None,
            target: None,
            kind,
            source,
        }
    }

    /// True when actor and target are known to be different processes.
    pub fn is_cross_process(&self) -> Option<bool> {
        let a = self.actor.as_ref()?;
        let t = self.target.as_ref()?;
        if let (Some(x), Some(y)) = (&a.guid, &t.guid) {
            return Some(!x.eq_ignore_ascii_case(y));
        }
        match (a.pid, t.pid) {
            (Some(x), Some(y)) => Some(x != y),
            _ => None,
        }
    }
}

/// Windows `PAGE_*` protection constants.
pub mod protect {
    pub const PAGE_NOACCESS: u32 = 0x01;
    pub const PAGE_READONLY: u32 = 0x02;
    pub const PAGE_READWRITE: u32 = 0x04;
    pub const PAGE_WRITECOPY: u32 = 0x08;
    pub const PAGE_EXECUTE: u32 = 0x10;
    pub const PAGE_EXECUTE_READ: u32 = 0x20;
    pub const PAGE_EXECUTE_READWRITE: u32 = 0x40;
    pub const PAGE_EXECUTE_WRITECOPY: u32 = 0x80;

    /// True when the protection allows execution.
    pub fn is_executable(p: u32) -> bool {
        p & 0xF0 != 0
    }

    /// Convert a letter form (`RWX`, `R-X`, `rw-`, `NA`, …) to a `PAGE_*` value.
    pub fn from_letters(s: &str) -> Option<u32> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("NA") || s.eq_ignore_ascii_case("NOACCESS") || s == "---" {
            return Some(PAGE_NOACCESS);
        }
        if s.is_empty() || s.len() > 4 {
            return None;
        }
        let (mut r, mut w, mut x, mut c) = (false, false, false, false);
        for ch in s.chars() {
            match ch.to_ascii_uppercase() {
                'R' => r = true,
                'W' => w = true,
                'X' | 'E' => x = true,
                'C' => c = true,
                '-' => {}
                _ => return None,
            }
        }
        Some(match (r || w || c, w, c, x) {
            (_, _, true, true) => PAGE_EXECUTE_WRITECOPY,
            (_, _, true, false) => PAGE_WRITECOPY,
            (_, true, _, true) => PAGE_EXECUTE_READWRITE,
            (_, true, _, false) => PAGE_READWRITE,
            (true, false, false, true) => PAGE_EXECUTE_READ,
            (true, false, false, false) => PAGE_READONLY,
            (false, false, false, true) => PAGE_EXECUTE,
            (false, false, false, false) => PAGE_NOACCESS,
        })
    }

    /// Convert a Windows constant name (`PAGE_EXECUTE_READWRITE`) to its value.
    pub fn from_name(s: &str) -> Option<u32> {
        let mut out = 0u32;
        for part in s.split(['|', ' ', ',']).filter(|p| !p.is_empty()) {
            out |= match part.trim().to_ascii_uppercase().as_str() {
                "PAGE_NOACCESS" => PAGE_NOACCESS,
                "PAGE_READONLY" => PAGE_READONLY,
                "PAGE_READWRITE" => PAGE_READWRITE,
                "PAGE_WRITECOPY" => PAGE_WRITECOPY,
                "PAGE_EXECUTE" => PAGE_EXECUTE,
                "PAGE_EXECUTE_READ" => PAGE_EXECUTE_READ,
                "PAGE_EXECUTE_READWRITE" => PAGE_EXECUTE_READWRITE,
                "PAGE_EXECUTE_WRITECOPY" => PAGE_EXECUTE_WRITECOPY,
                "PAGE_GUARD" => 0x100,
                "PAGE_NOCACHE" => 0x200,
                "PAGE_WRITECOMBINE" => 0x400,
                _ => return None,
            };
        }
        if out == 0 { None } else { Some(out) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters() {
        assert_eq!(protect::from_letters("RWX"), Some(0x40));
        assert_eq!(protect::from_letters("R-X"), Some(0x20));
        assert_eq!(protect::from_letters("RW-"), Some(0x04));
        assert_eq!(protect::from_letters("R"), Some(0x02));
        assert_eq!(protect::from_letters("X"), Some(0x10));
        assert_eq!(protect::from_letters("NA"), Some(0x01));
        assert_eq!(protect::from_letters("bogus"), None);
        assert_eq!(protect::from_name("PAGE_EXECUTE_READWRITE"), Some(0x40));
        assert_eq!(protect::from_name("PAGE_READWRITE|PAGE_GUARD"), Some(0x104));
    }

    #[test]
    fn cross_process() {
        let src = SourceRef::new(Format::Preentry);
        let mut e = Event::new(EventKind::ProcessResume {}, src);
        assert_eq!(e.is_cross_process(), None);
        e.actor = Some(ProcessRef::pid(4));
        e.target = Some(ProcessRef::pid(8));
        assert_eq!(e.is_cross_process(), Some(true));
        e.target = Some(ProcessRef::pid(4));
        assert_eq!(e.is_cross_process(), Some(false));
    }
}
