//! The lab's telemetry trace: `wineserver -f -d2` output.
//!
//! Every line the server logs is `TTTT: request( args )` (TTTT = the calling thread's Windows TID
//! in hex) or `TTTT: request() = STATUS { reply }`. Requests of one thread are sequential, so a
//! reply is paired with the last request of that thread. Handles are resolved to processes and
//! threads through the replies that create them (`new_process`, `new_thread`, `open_process`,
//! `open_thread`, `APC_CREATE_THREAD` results) in a per-process handle table; `close_handle`
//! forgets them. Cross-process memory operations go through `queue_apc` with `APC_VIRTUAL_*` /
//! `APC_MAP_VIEW` / `APC_UNMAP_VIEW` calls whose outcome is read by `get_apc_result`.
//!
//! The trace has no timestamps and no host; events carry the line of their request.

use std::collections::HashMap;

use super::RecordDecoder;
use crate::detect::is_wine_trace_line;
use crate::stream::RawRecord;
use crate::{Event, EventKind, ProcessRef, SourceRef};

/// `SEC_IMAGE` in `create_mapping( flags=… )`.
const SEC_IMAGE: u32 = 0x0100_0000;
/// `PROCESS_CREATE_FLAGS_SUSPENDED` in `new_process( flags=… )`.
const PROCESS_CREATE_FLAGS_SUSPENDED: u32 = 0x200;
/// Lines without a single trace line before we say the input is not a Wine trace.
const GIVE_UP_AFTER: u64 = 1000;
/// Most hex bytes of a `write_process_memory` kept in the event.
const MAX_WRITE_BYTES_KEPT: usize = 64 << 10;
/// Bounds on the decoder's tables (a trace can be endless).
const MAX_TABLE: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Object {
    Process(u32),
    Thread { tid: u32, pid: Option<u32> },
}

struct Pending {
    name: String,
    args: String,
    line: Option<u64>,
    offset: Option<u64>,
}

/// An APC queued to another process, waiting for its `get_apc_result`.
struct PendingApc {
    kind: EventKind,
    actor: ProcessRef,
    target_pid: Option<u32>,
    line: Option<u64>,
    offset: Option<u64>,
}

#[derive(Default)]
pub(crate) struct WineDecoder {
    /// Windows TID -> PID.
    thread_pid: HashMap<u32, u32>,
    /// PID -> image path.
    images: HashMap<u32, String>,
    /// (owning PID, handle) -> object.
    handles: HashMap<(u32, u32), Object>,
    /// TID -> its outstanding request.
    pending: HashMap<u32, Pending>,
    /// (caller PID, APC handle) -> queued APC.
    apcs: HashMap<(u32, u32), PendingApc>,
    exited: HashMap<u32, ()>,
    /// Processes created in the trace -> their first thread, once seen.
    first_thread: HashMap<u32, Option<u32>>,
    /// Threads currently running a kernel APC queued by another process (their own
    /// `unmap_view` is then the execution of that process's request, already reported).
    in_kernel_apc: HashMap<u32, ()>,
    /// (owning PID, file handle) -> NT path of the opened file.
    files: HashMap<(u32, u32), String>,
    /// (owning PID, mapping handle) -> (file path, SEC_IMAGE).
    mappings: HashMap<(u32, u32), (Option<String>, bool)>,
    trace_lines: u64,
    lines: u64,
    complained: bool,
}

/// Value of `key=` in a `a=1, b={…}, c=L"…"` argument list (top level only).
fn arg<'a>(args: &'a str, key: &str) -> Option<&'a str> {
    let b = args.as_bytes();
    let mut depth = 0i32;
    let mut in_str = false;
    let mut i = 0usize;
    let mut field_start = 0usize;
    while i <= b.len() {
        let c = b.get(i).copied().unwrap_or(b',');
        if in_str {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if c == b'"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'{' | b'(' => depth += 1,
            b'}' | b')' => depth -= 1,
            b',' if depth <= 0 => {
                let field = args.get(field_start..i).unwrap_or("").trim();
                if let Some(rest) = field.strip_prefix(key)
                    && let Some(v) = rest.strip_prefix('=')
                {
                    return Some(v);
                }
                field_start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn hex(s: &str) -> Option<u64> {
    let s = s.trim().trim_start_matches('=');
    u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

fn hex_arg(args: &str, key: &str) -> Option<u64> {
    arg(args, key).and_then(hex)
}

fn hex32_arg(args: &str, key: &str) -> Option<u32> {
    hex_arg(args, key).and_then(|v| u32::try_from(v).ok())
}

/// `L"C:\\x\\y.exe"` -> `C:\x\y.exe`.
fn wstr(v: &str) -> Option<String> {
    let v = v.trim().strip_prefix('L').unwrap_or(v.trim());
    let inner = v.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('0') => out.push('\0'),
                Some(o) => {
                    out.push('\\');
                    out.push(o);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    if out.is_empty() { None } else { Some(out) }
}

/// Strip one level of `{…}`.
fn braces(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(v)
}

/// `{4d,5a,c3}` -> (3, "4d5ac3") with at most `MAX_WRITE_BYTES_KEPT` bytes kept.
fn byte_list(v: &str) -> (u64, String) {
    let inner = braces(v);
    let mut n = 0u64;
    let mut out = String::new();
    for part in inner.split(',') {
        let p = part.trim();
        if p.is_empty() || p.starts_with("...") {
            continue;
        }
        if p.len() <= 2 && p.bytes().all(|c| c.is_ascii_hexdigit()) {
            n += 1;
            if out.len() < MAX_WRITE_BYTES_KEPT * 2 {
                if p.len() == 1 {
                    out.push('0');
                }
                out.extend(p.chars().map(|c| c.to_ascii_lowercase()));
            }
        }
    }
    (n, out)
}

/// Split `TTTT: rest` into (tid, rest).
fn split_tid(line: &str) -> Option<(u32, &str)> {
    let (t, rest) = line.split_at_checked(4)?;
    let rest = rest.strip_prefix(": ")?;
    Some((u32::from_str_radix(t, 16).ok()?, rest))
}

impl WineDecoder {
    fn caller(&self, tid: u32) -> ProcessRef {
        let pid = self.thread_pid.get(&tid).copied();
        ProcessRef {
            pid,
            tid: Some(tid),
            image: pid.and_then(|p| self.images.get(&p).cloned()),
            ..ProcessRef::default()
        }
    }

    fn process(&self, pid: Option<u32>) -> Option<ProcessRef> {
        let pid = pid?;
        Some(ProcessRef {
            pid: Some(pid),
            image: self.images.get(&pid).cloned(),
            ..ProcessRef::default()
        })
    }

    /// Resolve a handle used by thread `tid`.
    fn resolve(&self, tid: u32, handle: u32) -> Option<Object> {
        let pid = self.thread_pid.get(&tid).copied();
        match handle {
            0xffff_ffff | 0 => pid.map(Object::Process),
            0xffff_fffe => Some(Object::Thread { tid, pid }),
            h => self.handles.get(&(pid?, h)).copied(),
        }
    }

    fn remember(&mut self, owner: Option<u32>, handle: Option<u32>, obj: Object) {
        if let (Some(o), Some(h)) = (owner, handle)
            && self.handles.len() < MAX_TABLE
        {
            self.handles.insert((o, h), obj);
        }
    }

    fn set_thread(&mut self, tid: u32, pid: u32) {
        if self.thread_pid.len() < MAX_TABLE || self.thread_pid.contains_key(&tid) {
            self.thread_pid.insert(tid, pid);
        }
    }

    fn process_of(obj: Option<Object>) -> Option<u32> {
        match obj? {
            Object::Process(p) => Some(p),
            Object::Thread { pid, .. } => pid,
        }
    }

    fn event(
        &self,
        base: &SourceRef,
        req: &Pending,
        tid: u32,
        kind: EventKind,
        target_pid: Option<u32>,
    ) -> Event {
        let mut source = base.clone();
        source.line = req.line;
        source.offset = req.offset;
        source.record_id = req.line.map(|l| format!("line {l}"));
        source.action = Some(req.name.clone());
        source.provider = Some("wineserver".into());
        let mut e = Event::new(kind, source);
        e.actor = Some(self.caller(tid));
        e.target = self.process(target_pid);
        e
    }

    fn on_reply(
        &mut self,
        tid: u32,
        req: Pending,
        status: &str,
        reply: &str,
        base: &SourceRef,
        out: &mut Vec<Event>,
    ) {
        let ok = status == "0";
        let caller_pid = self.thread_pid.get(&tid).copied();
        let args = req.args.as_str();
        match req.name.as_str() {
            "init_first_thread" => {
                if let (Some(pid), Some(t)) = (hex32_arg(reply, "pid"), hex32_arg(reply, "tid")) {
                    self.set_thread(t, pid);
                    self.exited.remove(&pid);
                }
            }
            "new_process" if ok => {
                let pid = hex32_arg(reply, "pid");
                let handle = hex32_arg(reply, "handle");
                if let Some(p) = pid {
                    self.remember(caller_pid, handle, Object::Process(p));
                    self.exited.remove(&p);
                    if self.first_thread.len() < MAX_TABLE {
                        self.first_thread.insert(p, None);
                    }
                }
                let info = arg(args, "info").map(braces).unwrap_or("");
                let image = arg(info, "imagepath").and_then(wstr);
                if let (Some(p), Some(img)) = (pid, &image)
                    && self.images.len() < MAX_TABLE
                {
                    self.images.insert(p, img.clone());
                }
                let flags = hex32_arg(args, "flags");
                let kind = EventKind::ProcessCreate {
                    created_suspended: flags.map(|f| f & PROCESS_CREATE_FLAGS_SUSPENDED != 0),
                    creation_flags: flags,
                };
                let mut e = self.event(base, &req, tid, kind, pid);
                if let Some(t) = &mut e.target {
                    t.command_line = arg(info, "cmdline").and_then(wstr);
                }
                out.push(e);
            }
            "new_thread" if ok => {
                let Some(new_tid) = hex32_arg(reply, "tid") else {
                    return;
                };
                let proc_obj = hex32_arg(args, "process").and_then(|h| self.resolve(tid, h));
                let pid = Self::process_of(proc_obj);
                if let Some(p) = pid {
                    self.set_thread(new_tid, p);
                }
                self.remember(
                    caller_pid,
                    hex32_arg(reply, "handle"),
                    Object::Thread { tid: new_tid, pid },
                );
                let flags = hex32_arg(args, "flags").unwrap_or(0);
                let remote = match (pid, caller_pid) {
                    (Some(a), Some(b)) => Some(a != b),
                    _ => None,
                };
                // The initial thread of a new process is created by its creator: not an
                // injection, but still the creation of a thread in another process.
                let initial = pid.and_then(|p| match self.first_thread.get_mut(&p) {
                    Some(slot @ None) => {
                        *slot = Some(new_tid);
                        Some(true)
                    }
                    Some(Some(t)) => Some(*t == new_tid),
                    None => None,
                });
                out.push(self.event(
                    base,
                    &req,
                    tid,
                    EventKind::ThreadCreate {
                        remote,
                        tid: Some(new_tid),
                        start_address: None,
                        win32_start_address: None,
                        start_module: None,
                        start_function: None,
                        suspended: Some(flags & 1 != 0),
                        initial,
                    },
                    pid,
                ));
            }
            "get_startup_info" if ok => {
                // A process learns its own image path here (the first process of a session,
                // started from the Unix side, has no new_process request in the trace).
                let info = arg(reply, "info").map(braces).unwrap_or("");
                if let (Some(p), Some(img)) = (caller_pid, arg(info, "imagepath").and_then(wstr))
                    && self.images.len() < MAX_TABLE
                {
                    self.images.entry(p).or_insert(img);
                }
            }
            "open_process" if ok => {
                if let Some(p) = hex32_arg(args, "pid") {
                    self.remember(caller_pid, hex32_arg(reply, "handle"), Object::Process(p));
                }
            }
            "open_thread" if ok => {
                if let Some(t) = hex32_arg(args, "tid") {
                    let pid = self.thread_pid.get(&t).copied();
                    self.remember(
                        caller_pid,
                        hex32_arg(reply, "handle"),
                        Object::Thread { tid: t, pid },
                    );
                }
            }
            "dup_handle" if ok => {
                let src_p = hex32_arg(args, "src_process").and_then(|h| self.resolve(tid, h));
                let dst_p = hex32_arg(args, "dst_process").and_then(|h| self.resolve(tid, h));
                if let (Some(Object::Process(sp)), Some(Object::Process(dp))) = (src_p, dst_p)
                    && let Some(sh) = hex32_arg(args, "src_handle")
                {
                    let obj = match sh {
                        0xffff_ffff => Some(Object::Process(sp)),
                        h => self.handles.get(&(sp, h)).copied(),
                    };
                    if let Some(o) = obj {
                        self.remember(Some(dp), hex32_arg(reply, "handle"), o);
                    }
                }
            }
            "close_handle" => {
                if let (Some(p), Some(h)) = (caller_pid, hex32_arg(args, "handle")) {
                    self.handles.remove(&(p, h));
                    self.files.remove(&(p, h));
                    self.mappings.remove(&(p, h));
                }
            }
            "create_file" | "open_file_object" if ok => {
                let name = arg(args, "objattr")
                    .map(braces)
                    .and_then(|o| arg(o, "name"))
                    .or_else(|| arg(args, "filename"))
                    .and_then(wstr)
                    .map(|n| n.strip_prefix("\\??\\").map(str::to_string).unwrap_or(n));
                if let (Some(p), Some(h), Some(n)) = (caller_pid, hex32_arg(reply, "handle"), name)
                    && self.files.len() < MAX_TABLE
                {
                    self.files.insert((p, h), n);
                }
            }
            "create_mapping" if ok => {
                let (Some(p), Some(h)) = (caller_pid, hex32_arg(reply, "handle")) else {
                    return;
                };
                let file =
                    hex32_arg(args, "file_handle").and_then(|f| self.files.get(&(p, f)).cloned());
                let image = hex32_arg(args, "flags").is_some_and(|f| f & SEC_IMAGE != 0);
                if self.mappings.len() < MAX_TABLE {
                    self.mappings.insert((p, h), (file, image));
                }
            }
            "map_view" if ok => {
                // The loader of a process maps its own image views through the server.
                let Some(p) = caller_pid else { return };
                let Some((file, true)) =
                    hex32_arg(args, "mapping").and_then(|m| self.mappings.get(&(p, m)).cloned())
                else {
                    return;
                };
                out.push(self.event(
                    base,
                    &req,
                    tid,
                    EventKind::ImageLoad {
                        image: file,
                        base: hex_arg(args, "base"),
                        size: hex_arg(args, "size"),
                        signed: None,
                    },
                    Some(p),
                ));
            }
            "select" if status == "KERNEL_APC" && self.in_kernel_apc.len() < MAX_TABLE => {
                self.in_kernel_apc.insert(tid, ());
            }
            "unmap_view" if ok => {
                // A process unmapping one of its own views (NtUnmapViewOfSection on itself).
                if self.in_kernel_apc.contains_key(&tid) {
                    return;
                }
                let Some(p) = caller_pid else { return };
                out.push(self.event(
                    base,
                    &req,
                    tid,
                    EventKind::RemoteUnmap {
                        address: hex_arg(args, "base"),
                    },
                    Some(p),
                ));
            }
            "write_process_memory" if ok => {
                let target = hex32_arg(args, "handle").and_then(|h| self.resolve(tid, h));
                let (n, bytes) = arg(args, "data")
                    .map(byte_list)
                    .unwrap_or((0, String::new()));
                out.push(self.event(
                    base,
                    &req,
                    tid,
                    EventKind::RemoteWrite {
                        address: hex_arg(args, "addr"),
                        size: Some(n),
                        bytes: Some(bytes),
                    },
                    Self::process_of(target),
                ));
            }
            "read_process_memory" if ok => {
                let target = hex32_arg(args, "handle").and_then(|h| self.resolve(tid, h));
                let size = arg(reply, "data").map(|d| byte_list(d).0);
                out.push(self.event(
                    base,
                    &req,
                    tid,
                    EventKind::RemoteRead {
                        address: hex_arg(args, "addr"),
                        size,
                    },
                    Self::process_of(target),
                ));
            }
            "set_thread_context" if ok => {
                let Some(Object::Thread { tid: t, pid }) =
                    hex32_arg(args, "handle").and_then(|h| self.resolve(tid, h))
                else {
                    return;
                };
                let ctx = arg(args, "contexts")
                    .map(|c| braces(braces(c)))
                    .unwrap_or("");
                let x64 = arg(ctx, "machine").is_some_and(|m| m.contains("x86_64"));
                let (pc, sp, entry) = if x64 {
                    (
                        hex_arg(ctx, "rip"),
                        hex_arg(ctx, "rsp"),
                        hex_arg(ctx, "rcx"),
                    )
                } else {
                    (
                        hex_arg(ctx, "eip"),
                        hex_arg(ctx, "esp"),
                        hex_arg(ctx, "eax"),
                    )
                };
                out.push(self.event(
                    base,
                    &req,
                    tid,
                    EventKind::SetThreadContext {
                        tid: Some(t),
                        pc,
                        sp,
                        entry,
                    },
                    pid,
                ));
            }
            "suspend_thread" | "resume_thread" if ok => {
                let Some(Object::Thread { tid: t, pid }) =
                    hex32_arg(args, "handle").and_then(|h| self.resolve(tid, h))
                else {
                    return;
                };
                let kind = if req.name == "suspend_thread" {
                    EventKind::ThreadSuspend { tid: Some(t) }
                } else {
                    EventKind::ThreadResume { tid: Some(t) }
                };
                out.push(self.event(base, &req, tid, kind, pid));
            }
            "suspend_process" | "resume_process" if ok => {
                let pid =
                    Self::process_of(hex32_arg(args, "handle").and_then(|h| self.resolve(tid, h)));
                let kind = if req.name == "suspend_process" {
                    EventKind::ProcessSuspend {}
                } else {
                    EventKind::ProcessResume {}
                };
                out.push(self.event(base, &req, tid, kind, pid));
            }
            "terminate_process" if ok || status == "PROCESS_IS_TERMINATING" => {
                let pid =
                    Self::process_of(hex32_arg(args, "handle").and_then(|h| self.resolve(tid, h)));
                if let Some(p) = pid {
                    if self.exited.contains_key(&p) {
                        return;
                    }
                    if self.exited.len() < MAX_TABLE {
                        self.exited.insert(p, ());
                    }
                }
                let code = arg(args, "exit_code").and_then(|c| c.trim().parse::<i64>().ok());
                out.push(self.event(
                    base,
                    &req,
                    tid,
                    EventKind::ProcessExit { exit_code: code },
                    pid,
                ));
            }
            "queue_apc" if ok => self.on_queue_apc(tid, &req, reply, base, out),
            "get_apc_result" if ok => {
                let (Some(p), Some(h)) = (caller_pid, hex32_arg(args, "handle")) else {
                    return;
                };
                let Some(mut apc) = self.apcs.remove(&(p, h)) else {
                    return;
                };
                let result = arg(reply, "result").map(braces).unwrap_or("");
                if arg(result, "status").is_some_and(|s| s.trim() != "0") {
                    // The operation failed in the target: nothing happened.
                    return;
                }
                let addr = hex_arg(result, "addr");
                let size = hex_arg(result, "size");
                match &mut apc.kind {
                    EventKind::RemoteAlloc {
                        address, size: sz, ..
                    }
                    | EventKind::RemoteMapView {
                        address, size: sz, ..
                    } => {
                        *address = addr.or(*address);
                        *sz = size.or(*sz);
                    }
                    EventKind::RemoteProtect {
                        address,
                        size: sz,
                        old_protection,
                        ..
                    } => {
                        *address = addr.or(*address);
                        *sz = size.or(*sz);
                        *old_protection = hex32_arg(result, "prot");
                    }
                    EventKind::ThreadCreate { tid: t, .. } => {
                        let new_tid = hex32_arg(result, "tid");
                        let new_pid = hex32_arg(result, "pid").or(apc.target_pid);
                        *t = new_tid;
                        if let (Some(nt), Some(np)) = (new_tid, new_pid) {
                            self.set_thread(nt, np);
                        }
                        self.remember(
                            Some(p),
                            hex32_arg(result, "handle"),
                            Object::Thread {
                                tid: new_tid.unwrap_or(0),
                                pid: new_pid,
                            },
                        );
                    }
                    _ => {}
                }
                out.push(self.apc_event(apc, base));
            }
            _ => {}
        }
    }

    fn apc_event(&self, apc: PendingApc, base: &SourceRef) -> Event {
        let mut source = base.clone();
        source.line = apc.line;
        source.offset = apc.offset;
        source.record_id = apc.line.map(|l| format!("line {l}"));
        source.action = Some("queue_apc".into());
        source.provider = Some("wineserver".into());
        let mut e = Event::new(apc.kind, source);
        e.actor = Some(apc.actor);
        e.target = self.process(apc.target_pid);
        e
    }

    fn on_queue_apc(
        &mut self,
        tid: u32,
        req: &Pending,
        reply: &str,
        base: &SourceRef,
        out: &mut Vec<Event>,
    ) {
        let args = req.args.as_str();
        let call = arg(args, "call").map(braces).unwrap_or("");
        let call_type = call.split(',').next().unwrap_or("").trim();
        let target = hex32_arg(args, "handle").and_then(|h| self.resolve(tid, h));
        let kind = match call_type {
            "APC_USER" => {
                // QueueUserAPC: the target is a thread.
                let (t, pid) = match target {
                    Some(Object::Thread { tid, pid }) => (Some(tid), pid),
                    other => (None, Self::process_of(other)),
                };
                let a = arg(call, "args").map(braces).unwrap_or("");
                let first = a.split(',').next().and_then(hex);
                out.push(self.event(
                    base,
                    req,
                    tid,
                    EventKind::QueueApc {
                        tid: t,
                        routine: hex_arg(call, "func"),
                        argument: first,
                    },
                    pid,
                ));
                return;
            }
            "APC_VIRTUAL_ALLOC" | "APC_VIRTUAL_ALLOC_EX" => EventKind::RemoteAlloc {
                address: hex_arg(call, "addr").filter(|a| *a != 0),
                size: hex_arg(call, "size"),
                protection: hex32_arg(call, "prot"),
                alloc_type: hex32_arg(call, "op_type"),
            },
            "APC_VIRTUAL_PROTECT" => EventKind::RemoteProtect {
                address: hex_arg(call, "addr"),
                size: hex_arg(call, "size"),
                new_protection: hex32_arg(call, "prot"),
                old_protection: None,
            },
            "APC_MAP_VIEW" | "APC_MAP_VIEW_EX" => EventKind::RemoteMapView {
                address: hex_arg(call, "addr").filter(|a| *a != 0),
                size: hex_arg(call, "size"),
                protection: hex32_arg(call, "prot"),
            },
            "APC_UNMAP_VIEW" => EventKind::RemoteUnmap {
                address: hex_arg(call, "addr"),
            },
            "APC_CREATE_THREAD" => EventKind::ThreadCreate {
                remote: Some(true),
                tid: None,
                start_address: hex_arg(call, "func"),
                win32_start_address: None,
                start_module: None,
                start_function: None,
                suspended: hex32_arg(call, "flags").map(|f| f & 1 != 0),
                initial: Some(false),
            },
            _ => return,
        };
        let apc = PendingApc {
            kind,
            actor: self.caller(tid),
            target_pid: Self::process_of(target),
            line: req.line,
            offset: req.offset,
        };
        // `self=1`: the APC runs in the caller (it targeted itself); no result to wait for.
        let apc_handle = hex32_arg(reply, "handle").filter(|h| *h != 0);
        match (self.thread_pid.get(&tid).copied(), apc_handle) {
            (Some(p), Some(h)) if self.apcs.len() < MAX_TABLE => {
                if let Some(old) = self.apcs.insert((p, h), apc) {
                    out.push(self.apc_event(old, base));
                }
            }
            _ => out.push(self.apc_event(apc, base)),
        }
    }
}

impl RecordDecoder for WineDecoder {
    fn decode(
        &mut self,
        rec: &RawRecord<'_>,
        base: &SourceRef,
        out: &mut Vec<Event>,
    ) -> Result<(), String> {
        self.lines += 1;
        let line = rec.text;
        if !is_wine_trace_line(line) {
            if self.trace_lines == 0 && self.lines >= GIVE_UP_AFTER && !self.complained {
                self.complained = true;
                return Err(format!(
                    "no wineserver trace line (`TTTT: request( … )`) in the first {GIVE_UP_AFTER} lines: not a Wine trace?"
                ));
            }
            return Ok(());
        }
        self.trace_lines += 1;
        let Some((tid, rest)) = split_tid(line) else {
            return Ok(());
        };
        if rest.starts_with('*') {
            return Ok(());
        }
        let Some(open) = rest.find('(') else {
            return Ok(());
        };
        let name = &rest[..open];
        let after = &rest[open + 1..];
        if let Some(reply) = after.strip_prefix(") = ") {
            // Reply: `STATUS` or `STATUS { … }`.
            let (status, body) = match reply.find(' ') {
                Some(i) => (&reply[..i], reply[i..].trim()),
                None => (reply.trim(), ""),
            };
            let Some(req) = self.pending.remove(&tid) else {
                return Ok(());
            };
            if req.name != name {
                return Ok(());
            }
            self.on_reply(tid, req, status, braces(body), base, out);
            return Ok(());
        }
        // Request: `name( args )`.
        if name == "select" {
            // The thread is done with any kernel APC it was running.
            self.in_kernel_apc.remove(&tid);
        }
        let args = after.trim_end();
        let args = args.strip_suffix(')').unwrap_or(args).trim();
        if self.pending.len() < MAX_TABLE || self.pending.contains_key(&tid) {
            self.pending.insert(
                tid,
                Pending {
                    name: name.to_string(),
                    args: if INTERESTING.contains(&name) {
                        args.to_string()
                    } else {
                        String::new()
                    },
                    line: rec.line,
                    offset: rec.offset,
                },
            );
        }
        Ok(())
    }

    fn finish(&mut self, base: &SourceRef, out: &mut Vec<Event>) -> Option<String> {
        // APCs whose result never appeared (trace cut short): report what was asked.
        let mut left: Vec<PendingApc> = self.apcs.drain().map(|(_, v)| v).collect();
        left.sort_by_key(|a| a.line);
        for apc in left {
            out.push(self.apc_event(apc, base));
        }
        (self.trace_lines == 0 && self.lines > 0 && !self.complained).then(|| {
            format!(
                "none of its {} lines is a wineserver trace line (`TTTT: request( … )`): not a Wine trace?",
                self.lines
            )
        })
    }
}

/// Requests whose arguments the decoder reads (others are only paired with their reply).
const INTERESTING: &[&str] = &[
    "create_file",
    "open_file_object",
    "create_mapping",
    "map_view",
    "unmap_view",
    "new_process",
    "new_thread",
    "open_process",
    "open_thread",
    "dup_handle",
    "close_handle",
    "write_process_memory",
    "read_process_memory",
    "set_thread_context",
    "suspend_thread",
    "resume_thread",
    "suspend_process",
    "resume_process",
    "terminate_process",
    "queue_apc",
    "get_apc_result",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args() {
        let a = "handle=0038, call={APC_VIRTUAL_ALLOC,addr==00000000,size=00002000,zero_bits=00000000,op_type=3000,prot=4}";
        assert_eq!(arg(a, "handle"), Some("0038"));
        let call = braces(arg(a, "call").unwrap());
        assert_eq!(hex_arg(call, "addr"), Some(0));
        assert_eq!(hex_arg(call, "size"), Some(0x2000));
        assert_eq!(hex_arg(call, "prot"), Some(4));
        assert_eq!(
            wstr(r#"L"C:\\windows\\x.exe""#).as_deref(),
            Some(r"C:\windows\x.exe")
        );
        assert_eq!(byte_list("{4d,5a,c3}"), (3, "4d5ac3".to_string()));
        assert_eq!(split_tid("0024: x( )"), Some((0x24, "x( )")));
        assert_eq!(arg("name=L\"a,b=c\", x=1", "x"), Some("1"));
    }
}
