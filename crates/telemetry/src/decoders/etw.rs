//! ETW Microsoft-Windows-Threat-Intelligence and Microsoft-Windows-Kernel-Process as JSON:
//! RedEdr's recordings (`type` = `etw` / `kernel` / `dll` / `process_query` / `peb` /
//! `loaded_dll`) and SilkETW's output (`ProviderName`, `EventName`, `XmlEventData`).
//!
//! Field names are matched case-insensitively (RedEdr lower-cases the ETW property names), numbers
//! may be JSON numbers, decimal strings (SilkETW writes `1,234`) or `0x` hex strings, and
//! protections may be numbers or RedEdr's letters (`RWX`, `R-X`).

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{RecordDecoder, filetime, parse_time, value_str};
use crate::stream::RawRecord;
use crate::{Event, EventKind, ProcessRef, SourceRef, protect};

const TI_PROVIDER: &str = "Microsoft-Windows-Threat-Intelligence";
const KP_PROVIDER: &str = "Microsoft-Windows-Kernel-Process";

#[derive(Default)]
pub(crate) struct EtwDecoder {
    /// The process RedEdr's DLL hooks run in (from `hooking_start`), for `dll` records whose
    /// `pid` is the current-process pseudo handle.
    hooked_pid: Option<u32>,
    /// Processes whose creation was seen -> their first thread, once seen.
    first_thread: HashMap<u32, Option<u32>>,
}

/// Bound on the first-thread table.
const MAX_TRACKED: usize = 1 << 20;

/// One record's fields, keys lower-cased, `XmlEventData` merged in.
struct Fields(HashMap<String, Value>);

impl Fields {
    fn new(map: Map<String, Value>) -> Self {
        let mut h = HashMap::with_capacity(map.len() * 2 + 8);
        let mut payload = None;
        let silk = map.contains_key("XmlEventData");
        for (k, v) in map {
            if k == "XmlEventData" {
                payload = Some(v);
                continue;
            }
            let lk = k.to_ascii_lowercase();
            // SilkETW: the event header's ProcessID/ThreadID (who logged it) stay readable as
            // `hdr.processid` / `hdr.threadid` when the payload has its own.
            if silk {
                h.insert(format!("hdr.{lk}"), v.clone());
            }
            h.insert(lk, v);
        }
        if let Some(Value::Object(inner)) = payload {
            for (k2, v2) in inner {
                h.insert(k2.to_ascii_lowercase(), v2);
            }
        }
        Fields(h)
    }

    fn get(&self, k: &str) -> Option<&Value> {
        self.0.get(k).filter(|v| !v.is_null())
    }

    fn str(&self, k: &str) -> Option<String> {
        self.get(k)
            .and_then(value_str)
            .map(|s| s.into_owned())
            .filter(|s| !s.is_empty())
    }

    fn u64(&self, k: &str) -> Option<u64> {
        match self.get(k)? {
            Value::Number(n) => n.as_u64().or_else(|| n.as_i64().map(|i| i as u64)),
            Value::String(s) => {
                let s = s.trim();
                if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                    return u64::from_str_radix(h, 16).ok();
                }
                let digits: String = s.chars().filter(|c| *c != ',').collect();
                digits.parse::<u64>().ok().or_else(|| {
                    // RedEdr writes addresses as bare hex (`000000AA3F07B3C8`).
                    (digits.len() == 16 && digits.bytes().all(|b| b.is_ascii_hexdigit()))
                        .then(|| u64::from_str_radix(&digits, 16).ok())
                        .flatten()
                })
            }
            _ => None,
        }
    }

    fn u32(&self, k: &str) -> Option<u32> {
        self.u64(k).and_then(|v| u32::try_from(v).ok())
    }

    /// A protection given as a number or as letters.
    fn prot(&self, k: &str) -> Option<u32> {
        match self.get(k)? {
            Value::String(s) => protect::from_letters(s)
                .or_else(|| protect::from_name(s))
                .or_else(|| self.u32(k)),
            _ => self.u32(k),
        }
    }

    fn first_u64(&self, keys: &[&str]) -> Option<u64> {
        keys.iter().find_map(|k| self.u64(k))
    }

    fn first_u32(&self, keys: &[&str]) -> Option<u32> {
        keys.iter().find_map(|k| self.u32(k))
    }

    fn first_str(&self, keys: &[&str]) -> Option<String> {
        keys.iter().find_map(|k| self.str(k))
    }

    fn time(&self) -> Option<jiff::Timestamp> {
        for k in ["etw_time", "time"] {
            if let Some(ft) = self.u64(k)
                && let Some(t) = filetime(ft)
            {
                return Some(t);
            }
        }
        self.first_str(&["timestamp", "timecreated", "@timestamp"])
            .and_then(|t| parse_time(&t))
    }
}

fn process(pid: Option<u32>, start_ft: Option<u64>) -> Option<ProcessRef> {
    let p = ProcessRef {
        pid,
        start_time: start_ft.and_then(filetime),
        ..ProcessRef::default()
    };
    if p.is_empty() { None } else { Some(p) }
}

impl EtwDecoder {
    fn created(&mut self, pid: Option<u32>) {
        if let Some(p) = pid
            && self.first_thread.len() < MAX_TRACKED
        {
            self.first_thread.insert(p, None);
        }
    }

    /// Whether `tid` is the first thread of a process whose creation was seen.
    fn initial(&mut self, pid: Option<u32>, tid: Option<u32>) -> Option<bool> {
        let (p, t) = (pid?, tid?);
        match self.first_thread.get_mut(&p)? {
            slot @ None => {
                *slot = Some(t);
                Some(true)
            }
            Some(first) => Some(*first == t),
        }
    }

    fn ti(&self, f: &Fields, task: &str, id: Option<u32>) -> Option<(EventKind, bool)> {
        let mut upper = task.to_ascii_uppercase();
        if !upper.contains("THREATINT")
            && let Some(t) = id.and_then(ti_task_for_id)
        {
            // Only the event id (EVTX / Winlogbeat renderings): the manifest's task names.
            upper = t.to_string();
        }
        let addr = f.first_u64(&["baseaddress", "address"]);
        let size = f.first_u64(&["regionsize", "viewsize", "size"]);
        let thread = f.first_u32(&["targetthreadid", "threadid"]);
        let kind = if upper.contains("ALLOCVM") {
            EventKind::RemoteAlloc {
                address: addr,
                size,
                protection: f.prot("protectionmask"),
                alloc_type: f.u32("allocationtype"),
            }
        } else if upper.contains("PROTECTVM") {
            EventKind::RemoteProtect {
                address: addr,
                size,
                new_protection: f.prot("protectionmask"),
                old_protection: f.prot("lastprotectionmask"),
            }
        } else if upper.contains("MAPVIEW") {
            EventKind::RemoteMapView {
                address: addr,
                size,
                protection: f.prot("protectionmask"),
            }
        } else if upper.contains("QUEUEUSERAPC") {
            EventKind::QueueApc {
                tid: thread,
                routine: f.u64("apcroutine"),
                argument: f.u64("apcargument1"),
            }
        } else if upper.contains("SETTHREADCONTEXT") {
            EventKind::SetThreadContext {
                tid: thread,
                pc: f.u64("pc"),
                sp: f.u64("sp"),
                entry: None,
            }
        } else if upper.contains("WRITEVM") {
            EventKind::RemoteWrite {
                address: addr,
                size: f.u64("bytescopied").or(size),
                bytes: None,
            }
        } else if upper.contains("READVM") {
            EventKind::RemoteRead {
                address: addr,
                size: f.u64("bytescopied").or(size),
            }
        } else if upper.contains("SUSPENDRESUME_THREAD")
            || upper.contains("SUSPENDTHREAD")
            || upper.contains("RESUMETHREAD")
        {
            let resume = id.map_or(
                upper.contains("RESUME") && !upper.contains("SUSPENDRESUME"),
                |i| i == 16,
            );
            if resume {
                EventKind::ThreadResume { tid: thread }
            } else {
                EventKind::ThreadSuspend { tid: thread }
            }
        } else if upper.contains("SUSPENDRESUME_PROCESS")
            || upper.contains("SUSPENDPROCESS")
            || upper.contains("RESUMEPROCESS")
        {
            // 17 suspend, 18 resume, 19 freeze, 20 thaw.
            let resume = id.map_or(
                upper.contains("RESUME") && !upper.contains("SUSPENDRESUME"),
                |i| i == 18 || i == 20,
            );
            if resume {
                EventKind::ProcessResume {}
            } else {
                EventKind::ProcessSuspend {}
            }
        } else {
            return None;
        };
        Some((kind, true))
    }

    fn kernel_process(
        &mut self,
        f: &Fields,
        name: &str,
        id: Option<u32>,
    ) -> Option<(EventKind, Option<ProcessRef>, Option<ProcessRef>)> {
        let n = name.to_ascii_lowercase();
        let pid = f.first_u32(&["processid", "pid"]);
        if n.contains("threadstart")
            || n.contains("startthread")
            || id == Some(3) && !n.contains("stop")
        {
            // Who started it: the event header (SilkETW `ProcessID`/`ThreadID`, RedEdr
            // `pid`/`thread_id`).
            let creator = f.first_u32(&["hdr.processid", "pid"]);
            let mut actor = process(creator, None);
            if let Some(a) = &mut actor {
                a.tid = f.first_u32(&["hdr.threadid", "thread_id"]);
            }
            let remote = match (creator, pid) {
                (Some(a), Some(b)) => Some(a != b),
                _ => None,
            };
            let tid = f.u32("threadid");
            let kind = EventKind::ThreadCreate {
                remote,
                tid,
                start_address: f.u64("startaddr"),
                win32_start_address: f.u64("win32startaddr"),
                start_module: None,
                start_function: None,
                suspended: None,
                initial: self.initial(pid, tid),
            };
            return Some((kind, actor, process(pid, None)));
        }
        if n.contains("imageload")
            || n.contains("loadimage")
            || id == Some(5) && !n.contains("unload")
        {
            let kind = EventKind::ImageLoad {
                image: f.str("imagename"),
                base: f.u64("imagebase"),
                size: f.u64("imagesize"),
                signed: None,
            };
            return Some((kind, None, process(pid, None)));
        }
        if n.contains("processstart")
            || n.contains("startprocess")
            || id == Some(1) && !n.contains("stop")
        {
            self.created(pid);
            let actor = process(f.u32("parentprocessid"), None);
            let mut target = process(pid, f.u64("createtime"));
            if let Some(t) = &mut target {
                t.image = f.str("imagename");
            }
            let kind = EventKind::ProcessCreate {
                created_suspended: None,
                creation_flags: None,
            };
            return Some((kind, actor, target));
        }
        if n.contains("processstop") || n.contains("stopprocess") || id == Some(2) {
            let mut target = process(pid, f.u64("createtime"));
            if let Some(t) = &mut target {
                t.image = f.str("imagename");
            }
            let kind = EventKind::ProcessExit {
                exit_code: f.u64("exitcode").map(|c| c as i64),
            };
            return Some((kind, None, target));
        }
        None
    }
}

/// Microsoft-Windows-Threat-Intelligence event ids -> task names (manifest).
fn ti_task_for_id(id: u32) -> Option<&'static str> {
    Some(match id {
        1 | 6 | 21 | 26 => "KERNEL_THREATINT_TASK_ALLOCVM",
        2 | 7 | 22 | 27 => "KERNEL_THREATINT_TASK_PROTECTVM",
        3 | 8 | 23 | 28 => "KERNEL_THREATINT_TASK_MAPVIEW",
        4 | 24 => "KERNEL_THREATINT_TASK_QUEUEUSERAPC",
        5 | 25 => "KERNEL_THREATINT_TASK_SETTHREADCONTEXT",
        11 | 13 => "KERNEL_THREATINT_TASK_READVM",
        12 | 14 => "KERNEL_THREATINT_TASK_WRITEVM",
        15 | 16 => "KERNEL_THREATINT_TASK_SUSPENDRESUME_THREAD",
        17..=20 => "KERNEL_THREATINT_TASK_SUSPENDRESUME_PROCESS",
        _ => return None,
    })
}

/// Providers whose events the ETW mapping handles, wherever they come from.
pub(crate) fn is_etw_provider(provider: &str) -> bool {
    provider.eq_ignore_ascii_case(TI_PROVIDER) || provider.eq_ignore_ascii_case(KP_PROVIDER)
}

impl RecordDecoder for EtwDecoder {
    fn decode(
        &mut self,
        rec: &RawRecord<'_>,
        base: &SourceRef,
        out: &mut Vec<Event>,
    ) -> Result<(), String> {
        let map: Map<String, Value> = super::parse_json(rec.text)?;
        self.decode_map(map, base, out)
    }
}

impl EtwDecoder {
    /// Decode one ETW record given as a JSON object (also used for Threat-Intelligence and
    /// Kernel-Process events found in EVTX / Windows-event JSON).
    pub(crate) fn decode_map(
        &mut self,
        map: Map<String, Value>,
        base: &SourceRef,
        out: &mut Vec<Event>,
    ) -> Result<(), String> {
        let f = Fields::new(map);
        let provider = f.first_str(&["etw_provider_name", "provider_name", "providername"]);
        let rtype = f.str("type");
        let event_name = f.first_str(&["event", "eventname", "func", "callback"]);
        let id = f.first_u32(&["etw_event_id", "eventid", "id_"]);
        if rtype.is_none() && provider.is_none() && event_name.is_none() {
            return Err("not an ETW record: no `type`, `ProviderName` or `EventName`".into());
        }
        let mut source = base.clone();
        source.provider = provider.clone();
        source.event_id = id;
        source.action = event_name.clone();
        if source.record_id.is_none() {
            source.record_id = f.u64("id").map(|i| i.to_string());
        }
        let timestamp = f.time();
        let host = f.first_str(&["computer", "hostname", "machinename"]);
        let mut push = |kind: EventKind, actor: Option<ProcessRef>, target: Option<ProcessRef>| {
            out.push(Event {
                host: host.clone(),
                timestamp,
                actor,
                target,
                kind,
                source: source.clone(),
            });
        };
        let name = event_name.clone().unwrap_or_default();
        let is_ti = provider
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case(TI_PROVIDER))
            || name.to_ascii_uppercase().contains("THREATINT");
        let is_kp = provider
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case(KP_PROVIDER));
        if is_ti {
            let Some((kind, _)) = self.ti(&f, &name, id) else {
                return Ok(());
            };
            let mut actor = process(
                f.first_u32(&["callingprocessid", "processid", "pid"]),
                f.u64("callingprocesscreatetime"),
            );
            if let Some(a) = &mut actor {
                a.tid = f.first_u32(&["callingthreadid", "etw_tid"]);
                // RedEdr: the calling process's image (or command line).
                a.image = f.str("process_name");
            }
            let target = process(f.u32("targetprocessid"), f.u64("targetprocesscreatetime"));
            push(kind, actor, target);
            return Ok(());
        }
        if is_kp {
            if let Some((kind, actor, target)) = self.kernel_process(&f, &name, id) {
                push(kind, actor, target);
            }
            return Ok(());
        }
        match rtype.as_deref() {
            Some("kernel") => {
                // RedEdr's kernel driver callbacks. `krn_pid` = the process the callback ran in.
                let krn = f.u32("krn_pid");
                let pid = f.u32("pid");
                match name.as_str() {
                    "process_create" | "create_process" => {
                        self.created(pid);
                        let actor = process(f.u32("ppid").or(krn), None).map(|mut p| {
                            p.image = f.str("parent_name");
                            p
                        });
                        let target = process(pid, None).map(|mut p| {
                            p.image = f.str("name");
                            p
                        });
                        push(
                            EventKind::ProcessCreate {
                                created_suspended: None,
                                creation_flags: None,
                            },
                            actor,
                            target,
                        );
                    }
                    "thread_create" | "thread" => {
                        if f.u64("create") == Some(0) {
                            return Ok(());
                        }
                        let remote = match (krn, pid) {
                            (Some(a), Some(b)) => Some(a != b),
                            _ => None,
                        };
                        let tid = f.u32("threadid");
                        let initial = self.initial(pid, tid);
                        push(
                            EventKind::ThreadCreate {
                                remote,
                                tid,
                                start_address: None,
                                win32_start_address: None,
                                start_module: None,
                                start_function: None,
                                suspended: None,
                                initial,
                            },
                            process(krn, None),
                            process(pid, None),
                        );
                    }
                    "image_load" | "image" => push(
                        EventKind::ImageLoad {
                            image: f.str("image"),
                            base: None,
                            size: None,
                            signed: None,
                        },
                        None,
                        process(pid, None),
                    ),
                    _ => {}
                }
            }
            Some("loaded_dll") | Some("process_query")
                if name == "loaded_dll" || rtype.as_deref() == Some("loaded_dll") =>
            {
                let pid = f.u32("pid");
                if let Some(Value::Array(dlls)) = f.get("dlls") {
                    for d in dlls.iter().take(100_000) {
                        let Some(o) = d.as_object() else { continue };
                        let dl = Fields::new(o.clone());
                        push(
                            EventKind::ImageLoad {
                                image: dl.str("name"),
                                base: dl.u64("addr"),
                                size: dl.u64("size"),
                                signed: None,
                            },
                            None,
                            process(pid, None),
                        );
                    }
                }
            }
            Some("dll") => {
                if name == "hooking_start" {
                    self.hooked_pid = f.u32("pid");
                    return Ok(());
                }
                // In-process hooks: `pid` is the process handle passed to the API.
                let handle = f.u64("pid");
                let target_pid = match handle {
                    Some(u64::MAX) => self.hooked_pid,
                    _ => None,
                };
                let mut actor = process(self.hooked_pid, None);
                if let Some(a) = &mut actor {
                    a.tid = f.u32("tid");
                }
                let addr = f.first_u64(&["base_addr", "addr", "address"]);
                let size = f.u64("size");
                let kind = match name.as_str() {
                    "ProtectVirtualMemory" => EventKind::RemoteProtect {
                        address: addr,
                        size,
                        new_protection: f.prot("protect"),
                        old_protection: None,
                    },
                    "AllocateVirtualMemory" => EventKind::RemoteAlloc {
                        address: addr,
                        size,
                        protection: f.prot("protect"),
                        alloc_type: None,
                    },
                    "WriteVirtualMemory" => EventKind::RemoteWrite {
                        address: addr,
                        size,
                        bytes: None,
                    },
                    "MapViewOfSection" => EventKind::RemoteMapView {
                        address: addr,
                        size,
                        protection: f.prot("protect"),
                    },
                    _ => return Ok(()),
                };
                push(kind, actor, process(target_pid, None));
            }
            _ => {}
        }
        Ok(())
    }
}
