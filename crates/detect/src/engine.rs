//! The streaming AN1289 sequence engine, keyed by host and target process.
//!
//! Events go through a bounded reorder buffer (lateness), then update one [`TargetState`] per
//! (host, process instance). A full sequence (hollowing context → header/TLS write → pre-entry
//! thread anomaly within the time window) is alerted at once; a partial one when its process is
//! closed (exit, eviction, PID reuse, end of input). State is bounded by count (least recently
//! active evicted) and by idle time; every eviction is counted in [`EngineStats`].
//!
//! The engine never reads telemetry files; it reads an image file from disk only through
//! [`ImageLayout::from_disk`] when a target's path is known and a write needs classifying.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use preentry_telemetry::{Event, EventKind, ProcessRef, protect};
use serde::Serialize;

use crate::alert::{
    Alert, AlertEvent, AlertHost, AlertParent, AlertProcess, AlertRule, AlertTechnique,
    AlertThreat, Evidence, MissingStage, Severity, TECHNIQUE_IDS, TECHNIQUE_NAMES,
};
use crate::config::{Config, file_name, image_matches};
use crate::layout::{AddrRange, ImageLayout, LayoutSource, WriteTarget, read_le};
use crate::reorder::{Reorder, ReorderStats};
use crate::stage::{FormatSet, Stage, Visibility};

/// `CREATE_SUSPENDED` creation flag.
const CREATE_SUSPENDED: u32 = 0x4;
/// `PROCESS_CREATE_THREAD | PROCESS_VM_WRITE`.
const ACCESS_INJECT_MASK: u32 = 0x0002 | 0x0020;
/// Most suspended thread ids remembered per target.
const MAX_TIDS: usize = 64;
/// Most TLS callback targets remembered per target.
const MAX_TLS_TARGETS: usize = 64;
/// Most layouts (main image, DLLs, written images) remembered per target.
const MAX_LAYOUTS: usize = 32;
/// Most image files whose layout is cached.
const DISK_CACHE: usize = 256;

/// Run counters, reported in the run summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EngineStats {
    /// Events given to the engine.
    pub events_in: u64,
    /// Events processed after reordering.
    pub events_processed: u64,
    /// Events that named no target process (no pid, no guid).
    pub events_unkeyed: u64,
    /// Events about targets excluded by `TargetProcessFilter`.
    pub events_filtered: u64,
    /// Local operations (actor = target): not injection, but proof the target runs.
    pub events_local: u64,
    /// Reorder buffer counters.
    pub reorder: ReorderStats,
    /// Target processes tracked over the run.
    pub processes_tracked: u64,
    /// Most targets tracked at once.
    pub processes_peak: usize,
    /// Targets evicted for idleness (event time).
    pub evicted_idle: u64,
    /// Targets evicted because `max_tracked_processes` was reached.
    pub evicted_capacity: u64,
    /// Targets closed because their PID was reused by a new process.
    pub closed_pid_reuse: u64,
    /// Targets closed by their exit event.
    pub closed_exit: u64,
    /// Image layouts read from disk / learnt from written MZ bytes.
    pub layouts_from_disk: u64,
    pub layouts_from_bytes: u64,
    /// Remote writes that hit no known header/TLS range.
    pub writes_unclassified: u64,
    /// Alerts by severity.
    pub alerts: BTreeMap<&'static str, u64>,
}

/// How far a target has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunState {
    /// Its creation was not seen: whether it already ran is unknown.
    Unknown,
    /// Created (seen), suspension unknown, no sign yet that it ran.
    Fresh,
    /// Created suspended and not resumed.
    Suspended,
    /// Resumed, or seen doing something itself.
    Running,
}

impl RunState {
    fn before_first_run(self) -> bool {
        matches!(self, RunState::Fresh | RunState::Suspended)
    }
}

/// A memory region the engine saw being made in a target.
#[derive(Debug, Clone)]
struct Region {
    range: AddrRange,
    executable: bool,
    /// An MZ header was written at its start.
    holds_image: bool,
    /// The first bytes written at its start (at most 64), when known.
    head: Option<Vec<u8>>,
}

/// Everything known about one target process.
#[derive(Debug)]
struct TargetState {
    tick: u64,
    host: String,
    pid: Option<u32>,
    guid: Option<String>,
    image: Option<String>,
    start: Option<Timestamp>,
    parent: Option<ProcessRef>,
    created_seen: bool,
    /// Threads seen created in it (the first one from its creator is the initial thread).
    threads_seen: u32,
    initial_tid: Option<u32>,
    run: RunState,
    suspended_tids: Vec<u32>,
    layouts: Vec<ImageLayout>,
    main_base: Option<u64>,
    disk_tried: bool,
    regions: Vec<Region>,
    protected_pages: Vec<AddrRange>,
    tls_targets: Vec<u64>,
    tls_written: bool,
    tls_exact: bool,
    tls_thread: bool,
    high_entropy: bool,
    strong_hollowing: bool,
    /// Every header/TLS range used so far was exact.
    ranges_exact: bool,
    ranges_used: bool,
    anomalous_threads: u32,
    stage_last: [Option<Timestamp>; 3],
    stage_hits: [u32; 3],
    evidence: [Vec<Evidence>; 3],
    context: Vec<Evidence>,
    formats: FormatSet,
    allowlisted: Option<String>,
    filtered: bool,
    alerted: bool,
    last_seen: Option<Timestamp>,
}

impl TargetState {
    fn new(host: String) -> Self {
        TargetState {
            tick: 0,
            host,
            pid: None,
            guid: None,
            image: None,
            start: None,
            parent: None,
            created_seen: false,
            threads_seen: 0,
            initial_tid: None,
            run: RunState::Unknown,
            suspended_tids: Vec::new(),
            layouts: Vec::new(),
            main_base: None,
            disk_tried: false,
            regions: Vec::new(),
            protected_pages: Vec::new(),
            tls_targets: Vec::new(),
            tls_written: false,
            tls_exact: false,
            tls_thread: false,
            high_entropy: false,
            strong_hollowing: false,
            ranges_exact: true,
            ranges_used: false,
            anomalous_threads: 0,
            stage_last: [None; 3],
            stage_hits: [0; 3],
            evidence: [Vec::new(), Vec::new(), Vec::new()],
            context: Vec::new(),
            formats: FormatSet::default(),
            allowlisted: None,
            filtered: false,
            alerted: false,
            last_seen: None,
        }
    }

    fn matched(&self, stage: Stage) -> bool {
        self.stage_hits[stage.index()] > 0
            && (stage != Stage::PreEntryThread || self.anomalous_threads > 0)
    }

    /// The executable region containing `addr`, if any.
    fn region_of(&self, addr: u64) -> Option<&Region> {
        self.regions.iter().rev().find(|r| r.range.contains(addr))
    }

    /// True when `addr` lies in a known image's span (`exact_only`: only layouts with a size).
    fn in_known_image(&self, addr: u64) -> bool {
        self.layouts.iter().any(|l| {
            l.size
                .is_some_and(|s| AddrRange::new(l.base, s).contains(addr))
        })
    }

    fn in_tls_callback_range(&self, addr: u64) -> bool {
        if self.tls_targets.contains(&addr)
            || self
                .layouts
                .iter()
                .any(|l| l.tls_callback_vas.contains(&addr))
        {
            return true;
        }
        // The region a written callback pointer points into.
        self.tls_targets.iter().any(|t| {
            self.region_of(*t)
                .is_some_and(|r| !r.holds_image && r.range.contains(addr))
        })
    }
}

/// The engine.
pub struct Engine {
    config: Arc<Config>,
    reorder: Reorder<Event>,
    states: HashMap<u64, TargetState>,
    by_pid: HashMap<(String, u32), u64>,
    by_guid: HashMap<(String, String), u64>,
    lru: BTreeMap<u64, u64>,
    next_id: u64,
    tick: u64,
    window: SignedDuration,
    idle: SignedDuration,
    /// Event time of the processing order (newest processed; moves back on a time jump).
    clock: Option<Timestamp>,
    /// Layouts read from disk, by image path (bounded; `None` = not found).
    disk_cache: HashMap<String, Option<ImageLayout>>,
    stats: EngineStats,
}

fn secs(s: f64) -> SignedDuration {
    SignedDuration::try_from_secs_f64(s).unwrap_or(SignedDuration::MAX)
}

/// Shannon entropy of `bytes` in bits per byte (0 for empty input).
pub fn shannon_entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u64; 256];
    for b in bytes {
        counts[usize::from(*b)] += 1;
    }
    let n = bytes.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = *c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// The process an event is about.
fn subject(event: &Event) -> Option<&ProcessRef> {
    match event.kind {
        EventKind::ImageLoad { .. }
        | EventKind::ProcessExit { .. }
        | EventKind::ProcessTampering { .. } => event.target.as_ref().or(event.actor.as_ref()),
        _ => event.target.as_ref(),
    }
}

fn push_bounded<T>(v: &mut Vec<T>, item: T, max: usize) -> bool {
    if v.len() < max {
        v.push(item);
        true
    } else {
        false
    }
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let s = s.strip_prefix("0x").unwrap_or(&s);
    hex::decode(s).ok()
}

impl Engine {
    /// A new engine. The config should have been validated ([`Config::validate`]).
    pub fn new(config: Config) -> Self {
        let reorder = Reorder::new(
            secs(config.engine.lateness_seconds),
            secs(config.engine.idle_timeout_seconds),
            config.engine.max_buffered_events,
        );
        let window = secs(
            config
                .tunables
                .time_window_between_load_and_tls_modification,
        );
        let idle = secs(config.engine.idle_timeout_seconds);
        Engine {
            config: Arc::new(config),
            reorder,
            states: HashMap::new(),
            by_pid: HashMap::new(),
            by_guid: HashMap::new(),
            lru: BTreeMap::new(),
            next_id: 0,
            tick: 0,
            window,
            idle,
            clock: None,
            disk_cache: HashMap::new(),
            stats: EngineStats::default(),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Feed one event; returns the alerts it completed (full sequences, and partial ones whose
    /// process was closed).
    pub fn push(&mut self, event: Event) -> Vec<Alert> {
        self.stats.events_in += 1;
        let mut released = Vec::new();
        self.reorder.push(event.timestamp, event, &mut released);
        let mut out = Vec::new();
        for (_, e) in released {
            self.process(e, &mut out);
        }
        self.stats.reorder = self.reorder.stats();
        out
    }

    /// End of input: process what is buffered and close every target (partial alerts), in
    /// creation order.
    pub fn finish(&mut self) -> Vec<Alert> {
        let mut released = Vec::new();
        self.reorder.flush(&mut released);
        let mut out = Vec::new();
        for (_, e) in released {
            self.process(e, &mut out);
        }
        let mut ids: Vec<u64> = self.states.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.close(id, "end_of_input", &mut out);
        }
        self.stats.reorder = self.reorder.stats();
        out
    }

    /// Counters so far.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Targets currently tracked.
    pub fn tracked(&self) -> usize {
        self.states.len()
    }

    fn host_of(event: &Event) -> String {
        event.host.clone().unwrap_or_default().to_ascii_lowercase()
    }

    fn find(&self, host: &str, r: &ProcessRef) -> Option<u64> {
        if let Some(g) = &r.guid
            && let Some(id) = self
                .by_guid
                .get(&(host.to_string(), g.to_ascii_lowercase()))
        {
            return Some(*id);
        }
        let pid = r.pid?;
        let id = *self.by_pid.get(&(host.to_string(), pid))?;
        // A different known guid on the same pid is another process.
        if let (Some(g), Some(st)) = (&r.guid, self.states.get(&id))
            && let Some(sg) = &st.guid
            && !sg.eq_ignore_ascii_case(g)
        {
            return None;
        }
        Some(id)
    }

    fn insert_state(&mut self, host: &str, r: &ProcessRef, out: &mut Vec<Alert>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let mut st = TargetState::new(host.to_string());
        st.pid = r.pid;
        st.guid = r.guid.clone();
        st.image = r.image.clone();
        st.start = r.start_time;
        if let Some(pid) = r.pid
            && let Some(old) = self.by_pid.insert((host.to_string(), pid), id)
            && self.states.contains_key(&old)
        {
            self.stats.closed_pid_reuse += 1;
            self.close(old, "pid_reused", out);
            // close() removed our fresh mapping only if it pointed at `old`.
            self.by_pid.insert((host.to_string(), pid), id);
        }
        if let Some(g) = &r.guid {
            self.by_guid
                .insert((host.to_string(), g.to_ascii_lowercase()), id);
        }
        self.states.insert(id, st);
        self.stats.processes_tracked += 1;
        self.stats.processes_peak = self.stats.processes_peak.max(self.states.len());
        id
    }

    fn touch(&mut self, id: u64, at: Option<Timestamp>) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(st) = self.states.get_mut(&id) {
            self.lru.remove(&st.tick);
            st.tick = tick;
            if at.is_some() && (st.last_seen.is_none() || at > st.last_seen) {
                st.last_seen = at;
            }
            self.lru.insert(tick, id);
        }
    }

    fn process(&mut self, event: Event, out: &mut Vec<Alert>) {
        self.stats.events_processed += 1;
        if let Some(t) = event.timestamp {
            let jump_back = self
                .clock
                .and_then(|c| c.checked_sub(self.idle).ok())
                .is_some_and(|limit| t < limit);
            if jump_back || self.clock.is_none_or(|c| t > c) {
                self.clock = Some(t);
            }
        }
        let host = Self::host_of(&event);
        let cross = event.is_cross_process();

        // The actor doing anything proves the actor runs.
        if let Some(actor) = &event.actor
            && cross != Some(false)
            && let Some(aid) = self.find(&host, actor)
            && let Some(ast) = self.states.get_mut(&aid)
        {
            ast.run = RunState::Running;
        }

        let Some(subject) = subject(&event).cloned() else {
            self.stats.events_unkeyed += 1;
            return;
        };
        if subject.pid.is_none() && subject.guid.is_none() {
            self.stats.events_unkeyed += 1;
            return;
        }

        let id = match &event.kind {
            EventKind::ProcessCreate { .. } => match self.find(&host, &subject) {
                // Events about the process arrived before its creation: adopt them.
                Some(id) if self.states.get(&id).is_some_and(|s| !s.created_seen) => id,
                _ => self.insert_state(&host, &subject, out),
            },
            _ => match self.find(&host, &subject) {
                Some(id) => id,
                None => self.insert_state(&host, &subject, out),
            },
        };
        self.touch(id, event.timestamp);

        // Fill identity gaps.
        let config = Arc::clone(&self.config);
        let filters = &config.tunables.target_process_filter;
        if let Some(st) = self.states.get_mut(&id) {
            if st.guid.is_none()
                && let Some(g) = &subject.guid
            {
                st.guid = Some(g.clone());
                self.by_guid
                    .insert((host.clone(), g.to_ascii_lowercase()), id);
            }
            if st.pid.is_none()
                && let Some(p) = subject.pid
            {
                st.pid = Some(p);
                self.by_pid.insert((host.clone(), p), id);
            }
            if st.image.is_none() {
                st.image = subject.image.clone();
            }
            if st.start.is_none() {
                st.start = subject.start_time;
            }
            st.formats.insert(event.source.format);
            if let Some(img) = &st.image {
                st.filtered = !filters.iter().any(|p| image_matches(p, img));
            }
            if st.filtered {
                self.stats.events_filtered += 1;
            }
        }

        let closing = matches!(event.kind, EventKind::ProcessExit { .. });
        self.apply(id, &event, cross);
        self.check_full(id, out);
        if closing {
            self.stats.closed_exit += 1;
            self.close(id, "process_exit", out);
        }
        self.evict(out);
    }

    /// Evict idle targets (event time) and targets over the count bound.
    fn evict(&mut self, out: &mut Vec<Alert>) {
        if let Some(now) = self.clock {
            // Oldest activity first; stop at the first one still active. Bounded by the map.
            let mut idle = Vec::new();
            // Oldest activity first. Targets without a timestamp (untimed sources) or active in
            // a later period (after a time jump back) are skipped; at most 64 are looked at per
            // event, so the cost per event stays bounded.
            for (_, id) in self.lru.iter().take(64) {
                let Some(st) = self.states.get(id) else {
                    continue;
                };
                match st.last_seen {
                    Some(t) if t.checked_add(self.idle).is_ok_and(|end| end < now) => {
                        idle.push(*id)
                    }
                    Some(t) if t > now => {}
                    None => {}
                    Some(_) => break,
                }
            }
            for id in idle {
                self.stats.evicted_idle += 1;
                self.close(id, "evicted_idle", out);
            }
        }
        while self.states.len() > self.config.engine.max_tracked_processes {
            let Some((_, id)) = self.lru.iter().next().map(|(t, i)| (*t, *i)) else {
                break;
            };
            self.stats.evicted_capacity += 1;
            self.close(id, "evicted_capacity", out);
        }
    }

    /// Remove a target, emitting its partial alert if it has one.
    fn close(&mut self, id: u64, why: &'static str, out: &mut Vec<Alert>) {
        let Some(st) = self.states.remove(&id) else {
            return;
        };
        self.lru.remove(&st.tick);
        if let Some(pid) = st.pid {
            let key = (st.host.clone(), pid);
            if self.by_pid.get(&key) == Some(&id) {
                self.by_pid.remove(&key);
            }
        }
        if let Some(g) = &st.guid {
            let key = (st.host.clone(), g.to_ascii_lowercase());
            if self.by_guid.get(&key) == Some(&id) {
                self.by_guid.remove(&key);
            }
        }
        if !st.alerted
            && let Some(alert) = self.build_alert(&st, why, false)
        {
            self.count(&alert);
            out.push(alert);
        }
    }

    fn count(&mut self, alert: &Alert) {
        *self.stats.alerts.entry(alert.severity.name()).or_insert(0) += 1;
    }

    /// Emit the full-sequence alert as soon as all three stages are in the window.
    fn check_full(&mut self, id: u64, out: &mut Vec<Alert>) {
        let Some(st) = self.states.get(&id) else {
            return;
        };
        if st.alerted || !Stage::ALL.iter().all(|s| st.matched(*s)) || !self.in_window(st) {
            return;
        }
        if let Some(alert) = self.build_alert(st, "sequence_complete", true) {
            self.count(&alert);
            out.push(alert);
        }
        if let Some(st) = self.states.get_mut(&id) {
            st.alerted = true;
        }
    }

    /// True when the stages' latest indicators lie within the time window (or untimed).
    fn in_window(&self, st: &TargetState) -> bool {
        let times: Vec<Timestamp> = st.stage_last.iter().flatten().copied().collect();
        let (Some(min), Some(max)) = (times.iter().min(), times.iter().max()) else {
            return true;
        };
        max.duration_since(*min) <= self.window
    }

    fn evidence(
        event: &Event,
        stage: Option<Stage>,
        indicator: &'static str,
        range: Option<&'static str>,
        detail: Option<String>,
    ) -> Evidence {
        Evidence {
            stage,
            indicator,
            range,
            detail,
            record_id: event.source.record_id.clone(),
            event: event.clone(),
        }
    }

    /// Record a stage indicator.
    fn hit(
        &mut self,
        id: u64,
        event: &Event,
        stage: Stage,
        indicator: &'static str,
        range: Option<&'static str>,
        detail: Option<String>,
    ) {
        let max = self.config.engine.max_evidence_per_stage;
        let Some(st) = self.states.get_mut(&id) else {
            return;
        };
        let i = stage.index();
        st.stage_hits[i] = st.stage_hits[i].saturating_add(1);
        if let Some(t) = event.timestamp
            && st.stage_last[i].is_none_or(|l| t > l)
        {
            st.stage_last[i] = Some(t);
        }
        if let Some(r) = range
            && stage == Stage::HeaderOrTlsWrite
        {
            st.ranges_used = true;
            if r != "exact" {
                st.ranges_exact = false;
            }
        }
        push_bounded(
            &mut st.evidence[i],
            Self::evidence(event, Some(stage), indicator, range, detail),
            max,
        );
    }

    fn context(&mut self, id: u64, event: &Event, indicator: &'static str, detail: Option<String>) {
        let max = self.config.engine.max_evidence_per_stage;
        if let Some(st) = self.states.get_mut(&id) {
            push_bounded(
                &mut st.context,
                Self::evidence(event, None, indicator, None, detail),
                max,
            );
        }
    }

    /// Find (or read from disk) the layout of the target's main image.
    fn ensure_main_layout(&mut self, id: u64) {
        let config = Arc::clone(&self.config);
        let approx = &config.approximation;
        let Some(st) = self.states.get_mut(&id) else {
            return;
        };
        if st.disk_tried {
            return;
        }
        let Some(image) = st.image.clone() else {
            return;
        };
        st.disk_tried = true;
        if st
            .layouts
            .iter()
            .any(|l| l.exact && st.main_base.is_none_or(|b| b == l.base))
        {
            return;
        }
        let key = image.to_ascii_lowercase();
        let cached = match self.disk_cache.get(&key) {
            Some(c) => c.clone(),
            None => {
                let found = ImageLayout::from_disk(&image, None, approx).map(|(l, _)| l);
                if self.disk_cache.len() >= DISK_CACHE {
                    self.disk_cache.clear();
                }
                self.disk_cache.insert(key, found.clone());
                found
            }
        };
        // The cached layout sits at the file's preferred base: move it to the actual base.
        let found = cached.map(|l| match st.main_base {
            Some(b) if b != l.base => l.rebased(b),
            _ => l,
        });
        if let Some(layout) = found {
            self.stats.layouts_from_disk += 1;
            if st.main_base.is_none() {
                // The preferred base: Wine and images without ASLR load there.
                st.main_base = Some(layout.base);
            }
            st.layouts.retain(|l| l.base != layout.base);
            if st.layouts.len() >= MAX_LAYOUTS {
                st.layouts.remove(0);
            }
            st.layouts.push(layout);
        }
    }

    fn add_layout(st: &mut TargetState, layout: ImageLayout) {
        st.layouts.retain(|l| l.base != layout.base);
        if st.layouts.len() >= MAX_LAYOUTS {
            st.layouts.remove(0);
        }
        st.layouts.push(layout);
    }

    fn add_region(&mut self, id: u64, region: Region) {
        let max = self.config.engine.max_regions_per_process;
        if let Some(st) = self.states.get_mut(&id) {
            if st.regions.len() >= max {
                st.regions.remove(0);
            }
            st.regions.push(region);
        }
    }

    fn check_allowlist(&mut self, id: u64, event: &Event) {
        let allow = &self.config.allowlist;
        let mut reason = None;
        if let Some(actor) = &event.actor
            && event.is_cross_process() != Some(false)
            && let Some(img) = &actor.image
            && let Some(p) = allow.images.iter().find(|p| image_matches(p, img))
        {
            reason = Some(format!("actor image {} matches `{p}`", file_name(img)));
        }
        if reason.is_none()
            && matches!(event.kind, EventKind::ProcessCreate { .. })
            && let (Some(pimg), Some(cimg)) = (
                event.actor.as_ref().and_then(|a| a.image.as_ref()),
                event.target.as_ref().and_then(|t| t.image.as_ref()),
            )
            && let Some(pc) = allow
                .parent_child
                .iter()
                .find(|pc| image_matches(&pc.parent, pimg) && image_matches(&pc.child, cimg))
        {
            reason = Some(format!(
                "parent→child {}→{} matches `{}`→`{}`",
                file_name(pimg),
                file_name(cimg),
                pc.parent,
                pc.child
            ));
        }
        if reason.is_none()
            && let EventKind::ImageLoad {
                signed: Some(true),
                image: Some(img),
                ..
            } = &event.kind
            && let Some(s) = allow
                .signers
                .iter()
                .find(|s| img.to_ascii_lowercase().contains(&s.to_ascii_lowercase()))
        {
            // The model carries no signer name yet; a signer entry matches the signed image's
            // path (documented gap).
            reason = Some(format!(
                "signed image {} matches signer `{s}`",
                file_name(img)
            ));
        }
        if let Some(r) = reason
            && let Some(st) = self.states.get_mut(&id)
            && st.allowlisted.is_none()
        {
            st.allowlisted = Some(r);
        }
    }

    /// Update a target with one event.
    fn apply(&mut self, id: u64, event: &Event, cross: Option<bool>) {
        self.check_allowlist(id, event);
        let remote = cross != Some(false);
        let config = Arc::clone(&self.config);
        let approx = &config.approximation;
        match &event.kind {
            EventKind::ProcessCreate {
                created_suspended,
                creation_flags,
            } => {
                let suspended =
                    created_suspended.or_else(|| creation_flags.map(|f| f & CREATE_SUSPENDED != 0));
                let Some(st) = self.states.get_mut(&id) else {
                    return;
                };
                st.created_seen = true;
                st.parent = event.actor.clone();
                if let Some(t) = &event.target {
                    if t.image.is_some() {
                        st.image = t.image.clone();
                    }
                    if t.start_time.is_some() {
                        st.start = t.start_time;
                    } else if st.start.is_none() {
                        st.start = event.timestamp;
                    }
                }
                st.run = match (suspended, st.run) {
                    (_, RunState::Running) => RunState::Running,
                    (Some(true), _) => RunState::Suspended,
                    (Some(false), _) => RunState::Running,
                    (None, _) => RunState::Fresh,
                };
                self.context(id, event, "process_create", None);
                if suspended == Some(true) {
                    self.hit(id, event, Stage::Hollowing, "created_suspended", None, None);
                }
            }
            EventKind::ProcessExit { .. } => {}
            EventKind::ImageLoad {
                image, base, size, ..
            } => {
                let Some(st) = self.states.get_mut(&id) else {
                    return;
                };
                let name = image.as_deref().map(file_name).unwrap_or("");
                let is_main = match (image, &st.image) {
                    (Some(i), Some(m)) => file_name(i).eq_ignore_ascii_case(file_name(m)),
                    (Some(i), None) => i.to_ascii_lowercase().ends_with(".exe"),
                    _ => false,
                };
                if is_main {
                    if st.image.is_none() {
                        st.image = image.clone();
                    }
                    if let Some(b) = base {
                        st.main_base = Some(*b);
                    }
                } else if !name.eq_ignore_ascii_case("ntdll.dll") && !name.is_empty() {
                    // The loader is loading DLLs: the initial thread runs.
                    st.run = RunState::Running;
                }
                if let Some(b) = base
                    && !st.layouts.iter().any(|l| l.base == *b && l.exact)
                {
                    Self::add_layout(
                        st,
                        ImageLayout::approximate(image.clone(), *b, *size, approx),
                    );
                    if is_main {
                        st.disk_tried = false;
                    }
                }
            }
            EventKind::ProcessAccess {
                granted_access,
                call_trace,
            } => {
                if !remote {
                    return;
                }
                let unknown_frames = call_trace
                    .as_deref()
                    .is_some_and(|c| c.contains("UNKNOWN("));
                if granted_access.is_some_and(|a| a & ACCESS_INJECT_MASK == ACCESS_INJECT_MASK)
                    || unknown_frames
                {
                    let detail = format!(
                        "access {}{}",
                        granted_access
                            .map(|a| format!("{a:#x}"))
                            .unwrap_or_else(|| "?".into()),
                        if unknown_frames {
                            "; caller runs unbacked code (UNKNOWN frames in CallTrace)"
                        } else {
                            ""
                        }
                    );
                    self.context(id, event, "process_access_for_injection", Some(detail));
                }
            }
            EventKind::ProcessTampering { tamper_type } => {
                let t = tamper_type.as_deref().unwrap_or("").to_ascii_lowercase();
                if t.contains("replaced") {
                    if let Some(st) = self.states.get_mut(&id) {
                        st.strong_hollowing = true;
                    }
                    self.hit(
                        id,
                        event,
                        Stage::Hollowing,
                        "image_replaced",
                        None,
                        tamper_type.clone(),
                    );
                }
            }
            EventKind::RemoteAlloc {
                address,
                size,
                protection,
                ..
            }
            | EventKind::RemoteMapView {
                address,
                size,
                protection,
            } => {
                if !remote {
                    self.local(id);
                    return;
                }
                if let Some(a) = address {
                    self.add_region(
                        id,
                        Region {
                            range: AddrRange::new(*a, size.unwrap_or(0x1000).max(1)),
                            executable: protection.is_some_and(protect::is_executable),
                            holds_image: false,
                            head: None,
                        },
                    );
                }
            }
            EventKind::RemoteProtect {
                address,
                size,
                new_protection,
                ..
            } => {
                if !remote {
                    self.local(id);
                    return;
                }
                let Some(a) = *address else { return };
                let len = size.unwrap_or(1).max(1);
                let exec = new_protection.is_some_and(protect::is_executable);
                let Some(st) = self.states.get_mut(&id) else {
                    return;
                };
                if exec {
                    if let Some(r) = st.regions.iter_mut().rev().find(|r| r.range.contains(a)) {
                        r.executable = true;
                    } else {
                        let region = Region {
                            range: AddrRange::new(a, len),
                            executable: true,
                            holds_image: false,
                            head: None,
                        };
                        let max = self.config.engine.max_regions_per_process;
                        if st.regions.len() >= max {
                            st.regions.remove(0);
                        }
                        st.regions.push(region);
                    }
                }
                let inside_image = st
                    .layouts
                    .iter()
                    .find(|l| l.span(approx).overlaps(a, len))
                    .map(|l| l.base);
                if let Some(base) = inside_image {
                    push_bounded(&mut st.protected_pages, AddrRange::new(a, len), 16);
                    let hdr = st
                        .layouts
                        .iter()
                        .find(|l| l.base == base)
                        .and_then(|l| l.classify_write(a, len));
                    if let Some(t) = hdr {
                        self.context(
                            id,
                            event,
                            "protect_header_or_tls",
                            Some(format!("{} at {a:#x}", t.indicator())),
                        );
                    }
                }
            }
            EventKind::RemoteUnmap { address } => {
                if !remote {
                    self.local(id);
                    return;
                }
                let Some(st) = self.states.get_mut(&id) else {
                    return;
                };
                let Some(a) = *address else { return };
                let (indicator, range) = match st.main_base {
                    Some(b) if b == a => ("unmap_image_base", Some("exact")),
                    Some(_) => return,
                    None if st.run.before_first_run() => {
                        ("unmap_before_first_run", Some("approximate"))
                    }
                    None => return,
                };
                st.strong_hollowing = true;
                st.layouts.retain(|l| l.base != a);
                self.hit(
                    id,
                    event,
                    Stage::Hollowing,
                    indicator,
                    range,
                    Some(format!("{a:#x}")),
                );
            }
            EventKind::RemoteWrite {
                address,
                size,
                bytes,
            } => {
                if !remote {
                    self.local(id);
                    return;
                }
                self.on_write(id, event, *address, *size, bytes.as_deref());
            }
            EventKind::RemoteRead { .. } => {}
            EventKind::SetThreadContext { tid, pc, .. } => {
                if !remote {
                    self.local(id);
                    return;
                }
                let Some(st) = self.states.get(&id) else {
                    return;
                };
                let tid_suspended = tid.is_some_and(|t| st.suspended_tids.contains(&t));
                if !(st.run.before_first_run() || tid_suspended) {
                    return;
                }
                let mut detail = pc.map(|p| format!("pc {p:#x}")).unwrap_or_default();
                if let Some(p) = pc {
                    if st.in_tls_callback_range(*p) {
                        detail.push_str(" in a TLS callback range");
                    } else if let Some(r) = st.region_of(*p) {
                        detail.push_str(if r.holds_image {
                            " inside a written image"
                        } else {
                            " inside remotely allocated memory"
                        });
                    }
                }
                let thread_in_tls = pc.is_some_and(|p| st.in_tls_callback_range(p));
                self.thread_anomaly(
                    id,
                    event,
                    "set_context_before_first_run",
                    Some(detail),
                    thread_in_tls,
                );
            }
            EventKind::QueueApc {
                tid,
                routine,
                argument,
            } => {
                if !remote {
                    self.local(id);
                    return;
                }
                let Some(st) = self.states.get(&id) else {
                    return;
                };
                let suspended = st.run == RunState::Suspended
                    || tid.is_some_and(|t| st.suspended_tids.contains(&t));
                if !(suspended || st.run == RunState::Fresh) {
                    return;
                }
                let mut detail = routine
                    .map(|r| format!("routine {r:#x}"))
                    .unwrap_or_default();
                for (what, v) in [("routine", routine), ("argument", argument)] {
                    if let Some(v) = v
                        && st
                            .region_of(*v)
                            .is_some_and(|r| r.executable || r.holds_image)
                    {
                        detail.push_str(&format!(
                            "; {what} {v:#x} in remotely allocated executable memory"
                        ));
                    }
                }
                if !suspended {
                    detail.push_str("; suspension not shown by this telemetry");
                }
                let in_tls = routine.is_some_and(|r| st.in_tls_callback_range(r));
                self.thread_anomaly(id, event, "apc_to_suspended_thread", Some(detail), in_tls);
            }
            EventKind::ThreadCreate {
                remote: remote_flag,
                tid,
                start_address,
                win32_start_address,
                start_module,
                suspended: suspended_flag,
                initial: initial_flag,
                ..
            } => {
                let Some(st) = self.states.get(&id) else {
                    return;
                };
                let is_remote = remote_flag.unwrap_or(cross == Some(true));
                let starts: Vec<u64> = [*start_address, *win32_start_address]
                    .into_iter()
                    .flatten()
                    .collect();
                let unbacked_module = start_module
                    .as_deref()
                    .is_some_and(|m| m.trim().is_empty() || m.starts_with("UNKNOWN"));
                let unbacked_region = starts.iter().any(|a| {
                    st.region_of(*a)
                        .is_some_and(|r| r.executable || r.holds_image)
                        && !st.in_known_image(*a)
                });
                let in_tls = starts.iter().any(|a| st.in_tls_callback_range(*a));
                // The first thread of a process, made by its creator, is its initial thread
                // (Wine's new_thread, ETW ThreadStart): normal unless it starts somewhere odd.
                let by_creator = match (&event.actor, &st.parent) {
                    (Some(a), Some(p)) => a.pid.is_some() && a.pid == p.pid,
                    _ => false,
                };
                let initial =
                    initial_flag.unwrap_or(st.threads_seen == 0 && st.created_seen && by_creator);
                if let Some(stm) = self.states.get_mut(&id) {
                    stm.threads_seen = stm.threads_seen.saturating_add(1);
                    if initial {
                        stm.initial_tid = *tid;
                        if suspended_flag == &Some(true)
                            && let Some(t) = tid
                        {
                            push_bounded(&mut stm.suspended_tids, *t, MAX_TIDS);
                        }
                    }
                }
                let Some(st) = self.states.get(&id) else {
                    return;
                };
                if initial && !unbacked_module && !unbacked_region && !in_tls {
                    return;
                }
                let timing_ok = st.run != RunState::Running || st.tls_written;
                let addr = starts
                    .first()
                    .map(|a| format!("start {a:#x}"))
                    .unwrap_or_else(|| "start ?".into());
                if !(is_remote || unbacked_module || unbacked_region || in_tls) {
                    return;
                }
                if !timing_ok {
                    self.context(
                        id,
                        event,
                        "remote_thread_after_start",
                        Some(format!("{addr}; the target already ran")),
                    );
                    return;
                }
                let indicator = if in_tls {
                    "thread_start_in_tls_callback_range"
                } else if unbacked_module || unbacked_region {
                    "unbacked_thread_start"
                } else {
                    "remote_thread"
                };
                let mut detail = addr;
                if is_remote && indicator != "remote_thread" {
                    detail.push_str("; created remotely");
                }
                match st.run {
                    RunState::Unknown => {
                        detail.push_str("; process start not in this telemetry (timing unknown)")
                    }
                    RunState::Running => {
                        detail.push_str("; after a TLS write: TLS callbacks run before its start")
                    }
                    _ => detail.push_str("; before the target's first run"),
                }
                self.thread_anomaly(id, event, indicator, Some(detail), in_tls);
            }
            EventKind::ThreadSuspend { tid } => {
                if let Some(st) = self.states.get_mut(&id)
                    && let Some(t) = tid
                    && !st.suspended_tids.contains(t)
                {
                    push_bounded(&mut st.suspended_tids, *t, MAX_TIDS);
                }
            }
            EventKind::ThreadResume { tid } => {
                if !remote {
                    self.local(id);
                    return;
                }
                self.on_first_run(id, event, *tid);
                if let Some(st) = self.states.get_mut(&id) {
                    if let Some(t) = tid {
                        st.suspended_tids.retain(|x| x != t);
                    }
                    if st.run.before_first_run() {
                        st.run = RunState::Running;
                    }
                }
            }
            EventKind::ProcessSuspend {} => {}
            EventKind::ProcessResume {} => {
                if !remote {
                    self.local(id);
                    return;
                }
                self.on_first_run(id, event, None);
                if let Some(st) = self.states.get_mut(&id) {
                    st.run = RunState::Running;
                }
            }
        }
    }

    /// The target's initial thread is resumed for the first time. If its TLS structures were
    /// modified while it was suspended, that thread now runs the (injected) TLS callbacks
    /// before the entry point: a pre-entry thread anomaly.
    fn on_first_run(&mut self, id: u64, event: &Event, tid: Option<u32>) {
        let Some(st) = self.states.get(&id) else {
            return;
        };
        if !st.run.before_first_run() || !st.tls_written {
            return;
        }
        if let (Some(t), Some(i)) = (tid, st.initial_tid)
            && t != i
            && st.run != RunState::Suspended
        {
            return;
        }
        let injected: Vec<u64> = st
            .tls_targets
            .iter()
            .copied()
            .filter(|t| st.region_of(*t).is_some() && !st.in_known_image(*t))
            .collect();
        let detail = if injected.is_empty() {
            "first resume after a TLS structure write: the initial thread runs the TLS \
             callbacks before the entry point"
                .to_string()
        } else {
            let list: Vec<String> = injected.iter().map(|v| format!("{v:#x}")).collect();
            format!(
                "first resume after a TLS structure write: the initial thread runs TLS \
                 callbacks at {} (remotely written memory) before the entry point",
                list.join(", ")
            )
        };
        let in_tls = !injected.is_empty();
        self.thread_anomaly(id, event, "resume_into_modified_tls", Some(detail), in_tls);
    }

    /// A local operation (actor = target): the target runs.
    fn local(&mut self, id: u64) {
        self.stats.events_local += 1;
        if let Some(st) = self.states.get_mut(&id) {
            st.run = RunState::Running;
        }
    }

    fn thread_anomaly(
        &mut self,
        id: u64,
        event: &Event,
        indicator: &'static str,
        detail: Option<String>,
        in_tls: bool,
    ) {
        let threshold = self.config.tunables.anomalous_thread_start_threshold;
        let Some(st) = self.states.get_mut(&id) else {
            return;
        };
        st.anomalous_threads = st.anomalous_threads.saturating_add(1);
        if in_tls {
            st.tls_thread = true;
        }
        let reached = st.anomalous_threads >= threshold;
        if reached {
            self.hit(id, event, Stage::PreEntryThread, indicator, None, detail);
        } else {
            self.context(id, event, indicator, detail);
        }
    }

    /// A remote write: hollowing (MZ, PEB image base) and header/TLS classification.
    fn on_write(
        &mut self,
        id: u64,
        event: &Event,
        address: Option<u64>,
        size: Option<u64>,
        bytes: Option<&str>,
    ) {
        let config = Arc::clone(&self.config);
        let approx = &config.approximation;
        let entropy_min = self.config.engine.min_entropy_bytes;
        let entropy_threshold = self.config.tunables.payload_entropy_threshold;
        let data = bytes.and_then(hex_bytes);
        let Some(addr) = address else {
            self.stats.writes_unclassified += 1;
            return;
        };
        let len = size
            .or_else(|| data.as_ref().map(|d| d.len() as u64))
            .unwrap_or(1)
            .max(1);
        self.ensure_main_layout(id);

        // Entropy of known bytes.
        let mut entropy_note = None;
        if let Some(d) = &data
            && d.len() >= entropy_min
        {
            let h = shannon_entropy(d);
            if h >= entropy_threshold {
                if let Some(st) = self.states.get_mut(&id) {
                    st.high_entropy = true;
                }
                entropy_note = Some(format!(
                    "entropy {h:.2} >= PayloadEntropyThreshold {entropy_threshold}"
                ));
            }
        }

        // A PE header written: hollowing context, and a header write into the new image.
        if let Some(d) = &data
            && d.starts_with(b"MZ")
        {
            let layout =
                match ImageLayout::from_pe_bytes(d, Some(addr), None, LayoutSource::WrittenBytes) {
                    Some(l) => {
                        self.stats.layouts_from_bytes += 1;
                        l
                    }
                    None => ImageLayout::approximate(None, addr, None, approx),
                };
            let exact = layout.exact;
            let size_of_image = layout.size;
            if let Some(st) = self.states.get_mut(&id) {
                st.strong_hollowing = true;
                Self::add_layout(st, layout);
            }
            self.add_region(
                id,
                Region {
                    range: AddrRange::new(addr, size_of_image.unwrap_or(len).max(len)),
                    executable: true,
                    holds_image: true,
                    head: None,
                },
            );
            let detail = format!(
                "MZ header written at {addr:#x} ({len} bytes; layout {}){}",
                if exact {
                    "parsed from the written bytes"
                } else {
                    "approximate: too few bytes to parse"
                },
                entropy_note
                    .as_deref()
                    .map(|e| format!("; {e}"))
                    .unwrap_or_default()
            );
            self.hit(
                id,
                event,
                Stage::Hollowing,
                "mz_header_write",
                None,
                Some(detail.clone()),
            );
            self.hit(
                id,
                event,
                Stage::HeaderOrTlsWrite,
                "pe_header_write",
                Some(if exact { "exact" } else { "approximate" }),
                Some(detail),
            );
            return;
        }

        let Some(st) = self.states.get_mut(&id) else {
            return;
        };

        // PEB.ImageBaseAddress: a pointer-sized write whose value is the base of a written image.
        if matches!(len, 4 | 8)
            && let Some(d) = &data
            && let Some(v) = read_le(d, 0, len)
            && st
                .regions
                .iter()
                .any(|r| r.holds_image && r.range.start == v)
            && !st.layouts.iter().any(|l| l.span(approx).contains(addr))
        {
            st.main_base = Some(v);
            st.strong_hollowing = true;
            self.hit(
                id,
                event,
                Stage::Hollowing,
                "peb_image_base_write",
                Some("approximate"),
                Some(format!(
                    "{len}-byte write at {addr:#x} of {v:#x}, the base of a written image \
                     (PEB address not known: matched by value)"
                )),
            );
            return;
        }

        // Remember the first bytes written at a region's start (a new callback array, code).
        if let Some(d) = &data
            && let Some(r) = st.regions.iter_mut().rev().find(|r| r.range.start == addr)
        {
            r.head = Some(d.iter().take(64).copied().collect());
        }

        // Exact or approximate header/TLS ranges of known images (newest first).
        let mut hit: Option<(WriteTarget, bool, u64, Option<String>)> = None;
        let mut new_array = None;
        for l in st.layouts.iter_mut().rev() {
            if let Some(t) = l.classify_write(addr, len) {
                if t == WriteTarget::TlsDirectory
                    && let Some(d) = &data
                {
                    new_array = l.learn_from_tls_directory_write(addr, d);
                }
                hit = Some((t, l.exact, l.base, l.image.clone()));
                break;
            }
        }
        // A redirected callback array: its entries, when they were written before.
        if let Some(array) = new_array {
            let width = st
                .layouts
                .iter()
                .find_map(|l| l.pointer_width)
                .map(u64::from)
                .unwrap_or(8);
            let head = st
                .regions
                .iter()
                .rev()
                .find(|r| r.range.start == array)
                .and_then(|r| r.head.clone());
            if let Some(h) = head {
                let mut off = 0u64;
                while let Some(v) = read_le(&h, off, width) {
                    if v == 0 {
                        break;
                    }
                    if !st.tls_targets.contains(&v) {
                        push_bounded(&mut st.tls_targets, v, MAX_TLS_TARGETS);
                    }
                    off += width;
                }
            }
        }
        if let Some((target, exact, base, image)) = hit {
            let width = st
                .layouts
                .iter()
                .find(|l| l.base == base)
                .and_then(|l| l.pointer_width)
                .map(u64::from);
            if target == WriteTarget::TlsCallbackArray
                && let Some(d) = &data
            {
                let w = width.unwrap_or(8);
                let mut off = 0u64;
                while let Some(v) = read_le(d, off, w) {
                    if v != 0 && !st.tls_targets.contains(&v) {
                        push_bounded(&mut st.tls_targets, v, MAX_TLS_TARGETS);
                    }
                    off += w;
                }
            }
            if target.is_tls() {
                st.tls_written = true;
                if exact {
                    st.tls_exact = true;
                }
            }
            let detail = format!(
                "{len} bytes at {addr:#x} in {} at {base:#x}{}",
                image.as_deref().map(file_name).unwrap_or("image"),
                entropy_note
                    .as_deref()
                    .map(|e| format!("; {e}"))
                    .unwrap_or_default()
            );
            self.hit(
                id,
                event,
                Stage::HeaderOrTlsWrite,
                target.indicator(),
                Some(if exact { "exact" } else { "approximate" }),
                Some(detail),
            );
            return;
        }

        // Approximation: a small write inside an image holding a pointer into fresh executable
        // memory = likely TLS callback slot patch.
        let inside = st
            .layouts
            .iter()
            .rev()
            .find(|l| l.span(approx).contains(addr))
            .map(|l| (l.base, l.pointer_width, l.image.clone()));
        if let Some((base, width, image)) = inside
            && len <= approx.tls_patch_max_write
        {
            let mut pointer = None;
            if let Some(d) = &data {
                let widths: &[u64] = match width {
                    Some(4) => &[4],
                    Some(_) => &[8],
                    None => &[8, 4],
                };
                'outer: for w in widths {
                    let mut off = 0u64;
                    while let Some(v) = read_le(d, off, *w) {
                        if let Some(r) = st.region_of(v)
                            && (r.executable || r.holds_image)
                            && !st.in_known_image(v)
                        {
                            pointer = Some(v);
                            break 'outer;
                        }
                        off += *w;
                    }
                }
            }
            let after_protect =
                data.is_none() && len <= 16 && st.protected_pages.iter().any(|p| p.contains(addr));
            if pointer.is_some() || after_protect {
                if let Some(v) = pointer
                    && !st.tls_targets.contains(&v)
                {
                    push_bounded(&mut st.tls_targets, v, MAX_TLS_TARGETS);
                }
                st.tls_written = true;
                let detail = match pointer {
                    Some(v) => format!(
                        "{len} bytes at {addr:#x} in {} at {base:#x} hold {v:#x}, a pointer into \
                         remotely allocated executable memory",
                        image.as_deref().map(file_name).unwrap_or("image")
                    ),
                    None => format!(
                        "{len} bytes at {addr:#x} in {} at {base:#x}, right after a protection \
                         change of that page (bytes not recorded)",
                        image.as_deref().map(file_name).unwrap_or("image")
                    ),
                };
                self.hit(
                    id,
                    event,
                    Stage::HeaderOrTlsWrite,
                    "likely_tls_callback_patch",
                    Some("approximate"),
                    Some(detail),
                );
                return;
            }
        }

        // Approximation without any layout: a small write into memory the attacker did not
        // allocate (so: pre-existing, e.g. the image) of a pointer into remotely allocated
        // executable memory, while the target has not run.
        if st.layouts.is_empty()
            && st.run != RunState::Running
            && len <= 16
            && st.region_of(addr).is_none()
            && let Some(d) = &data
        {
            let w = if len == 4 { 4 } else { 8 };
            if let Some(v) = read_le(d, 0, w)
                && st
                    .region_of(v)
                    .is_some_and(|r| r.executable && !r.holds_image)
            {
                if !st.tls_targets.contains(&v) {
                    push_bounded(&mut st.tls_targets, v, MAX_TLS_TARGETS);
                }
                if let Some(h) = st.region_of(v).and_then(|r| r.head.clone()) {
                    let mut off = 0u64;
                    while let Some(p) = read_le(&h, off, w) {
                        if p == 0 {
                            break;
                        }
                        if !st.tls_targets.contains(&p) {
                            push_bounded(&mut st.tls_targets, p, MAX_TLS_TARGETS);
                        }
                        off += w;
                    }
                }
                st.tls_written = true;
                self.hit(
                    id,
                    event,
                    Stage::HeaderOrTlsWrite,
                    "likely_tls_callback_patch",
                    Some("approximate"),
                    Some(format!(
                        "{len} bytes at {addr:#x} (image layout unknown) hold {v:#x}, a pointer \
                         into remotely allocated executable memory, before the first run"
                    )),
                );
                return;
            }
        }

        self.stats.writes_unclassified += 1;
        let before = st.run.before_first_run();
        if let Some(r) = st.regions.iter_mut().rev().find(|r| r.range.contains(addr))
            && entropy_note.is_some()
        {
            r.executable = r.executable || before;
        }
        if before && len >= 4000 {
            self.context(
                id,
                event,
                "large_write_before_first_run",
                Some(format!(
                    "{len} bytes at {addr:#x}{}",
                    entropy_note.map(|e| format!("; {e}")).unwrap_or_default()
                )),
            );
        }
    }

    /// Build the alert for a target: full (`complete`) or partial; `None` when nothing worth
    /// reporting (no stage, or only a bare suspended creation) or filtered.
    fn build_alert(
        &self,
        st: &TargetState,
        closed_by: &'static str,
        complete: bool,
    ) -> Option<Alert> {
        if st.filtered {
            return None;
        }
        let matched: Vec<Stage> = Stage::ALL.into_iter().filter(|s| st.matched(*s)).collect();
        if matched.is_empty() {
            return None;
        }
        let has = |s: Stage| matched.contains(&s);
        let reportable = has(Stage::HeaderOrTlsWrite)
            || has(Stage::PreEntryThread)
            || (has(Stage::Hollowing) && st.strong_hollowing);
        if !reportable {
            return None;
        }
        let missing: Vec<MissingStage> = Stage::ALL
            .into_iter()
            .filter(|s| !has(*s))
            .map(|s| {
                let c = st.formats.capability(s);
                MissingStage {
                    stage: s,
                    observable: c.visibility.is_observable(),
                    visibility: c.visibility,
                    why: c.why,
                }
            })
            .collect();
        let full = matched.len() == 3;
        let in_window = self.in_window(st);
        let mut severity = if full && in_window {
            if st.tls_exact || st.tls_thread || st.high_entropy {
                Severity::Critical
            } else {
                Severity::High
            }
        } else if full {
            Severity::Medium
        } else {
            let any_blind = missing.iter().any(|m| m.visibility == Visibility::Blind);
            match (matched.len(), any_blind) {
                (2, true) => Severity::Medium,
                // A pre-entry thread anomaly in a hollowing/write context is worth a look even
                // without the third stage (e.g. an early-bird APC: no header/TLS write).
                (2, false) if has(Stage::PreEntryThread) => Severity::Medium,
                (2, false) => Severity::Low,
                (_, true) => Severity::Low,
                _ => Severity::Info,
            }
        };
        if st.allowlisted.is_some() {
            severity = Severity::Info;
        }
        let _ = complete;

        let mut evidence: Vec<Evidence> = Vec::new();
        evidence.extend(st.context.iter().cloned());
        for s in Stage::ALL {
            evidence.extend(st.evidence[s.index()].iter().cloned());
        }
        // Order the chain by time, then by source position: deterministic.
        evidence.sort_by(|a, b| {
            a.event
                .timestamp
                .cmp(&b.event.timestamp)
                .then_with(|| a.event.source.path.cmp(&b.event.source.path))
                .then_with(|| a.event.source.line.cmp(&b.event.source.line))
                .then_with(|| a.event.source.offset.cmp(&b.event.source.offset))
        });
        let timestamp = evidence.iter().filter_map(|e| e.event.timestamp).min();
        let mut formats: Vec<_> = st.formats.iter().collect();
        formats.dedup();

        let names: Vec<&str> = matched.iter().map(|s| s.name()).collect();
        let image = st
            .image
            .as_deref()
            .map(file_name)
            .unwrap_or("unknown image");
        let message = if full && in_window {
            format!(
                "AN1289 full sequence in {image}: hollowing context, {} header/TLS write, \
                 then a thread anomaly before its first run",
                if st.ranges_exact && st.ranges_used {
                    "exact-range"
                } else {
                    "approximate-range"
                }
            )
        } else if full {
            format!(
                "AN1289 stages all seen in {image} but not within \
                 TimeWindowBetweenLoadAndTLSModification"
            )
        } else {
            let miss: Vec<String> = missing
                .iter()
                .map(|m| {
                    format!(
                        "{} ({})",
                        m.stage,
                        if m.observable {
                            "observable, not seen"
                        } else {
                            "not observable in this telemetry"
                        }
                    )
                })
                .collect();
            format!(
                "AN1289 partial sequence in {image}: saw {}; missing {}",
                names.join(", "),
                miss.join(", ")
            )
        };

        Some(Alert {
            timestamp,
            event: AlertEvent {
                kind: "alert",
                category: ["process", "intrusion_detection"],
                action: if full && in_window {
                    "an1289_full_sequence"
                } else {
                    "an1289_partial_sequence"
                },
                severity: severity.score(),
                dataset: formats,
            },
            severity,
            message,
            stages: matched,
            missing_stages: missing,
            threat: AlertThreat {
                framework: "MITRE ATT&CK",
                technique: AlertTechnique {
                    id: TECHNIQUE_IDS.to_vec(),
                    name: TECHNIQUE_NAMES.to_vec(),
                },
            },
            rule: AlertRule {
                id: "AN1289",
                name: "TLS callback injection / hollowing before entry point",
            },
            host: AlertHost {
                name: if st.host.is_empty() {
                    None
                } else {
                    // Report the host as the telemetry spelled it.
                    evidence
                        .iter()
                        .find_map(|e| e.event.host.clone())
                        .or_else(|| Some(st.host.clone()))
                },
            },
            process: AlertProcess {
                pid: st.pid,
                entity_id: st.guid.clone(),
                executable: st.image.clone(),
                name: st.image.as_deref().map(|i| file_name(i).to_string()),
                start: st.start,
                parent: st.parent.as_ref().map(|p| AlertParent {
                    pid: p.pid,
                    entity_id: p.guid.clone(),
                    executable: p.image.clone(),
                }),
            },
            exact_ranges: st.ranges_used && st.ranges_exact,
            allowlisted: st.allowlisted.clone(),
            closed_by,
            evidence,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_bounds() {
        assert_eq!(shannon_entropy(&[]), 0.0);
        assert_eq!(shannon_entropy(&[7; 100]), 0.0);
        let all: Vec<u8> = (0..=255).collect();
        assert!((shannon_entropy(&all) - 8.0).abs() < 1e-9);
    }

    #[test]
    fn hex_parsing_is_lenient_but_safe() {
        assert_eq!(hex_bytes("4d5a"), Some(vec![0x4d, 0x5a]));
        assert_eq!(hex_bytes("0x4d 5a"), Some(vec![0x4d, 0x5a]));
        assert_eq!(hex_bytes("zz"), None);
        assert_eq!(hex_bytes("4d5"), None);
    }
}
