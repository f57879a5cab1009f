//! What a body of telemetry can show: which event kinds occur, and for each AN1289 stage
//! whether it is observable, partly visible or blind, and why. Feeds `preentry coverage`.

use std::collections::BTreeMap;

use preentry_telemetry::{Event, EventKind, Format};
use serde::Serialize;

use crate::stage::{FormatSet, Stage, Visibility, capability};

/// Event kinds whose presence lets a stage be seen, per stage.
fn stage_kinds(stage: Stage) -> &'static [&'static str] {
    match stage {
        Stage::Hollowing => &[
            "process_create",
            "process_tampering",
            "remote_unmap",
            "remote_write",
        ],
        Stage::HeaderOrTlsWrite => &["remote_write"],
        Stage::PreEntryThread => &[
            "set_thread_context",
            "queue_apc",
            "thread_create",
            "thread_resume",
            "process_resume",
        ],
    }
}

/// Accumulates what was seen.
#[derive(Debug, Default, Clone)]
pub struct Coverage {
    formats: FormatSet,
    kinds: BTreeMap<&'static str, u64>,
    per_format: BTreeMap<&'static str, u64>,
    created_suspended_known: u64,
    writes_with_bytes: u64,
    writes_with_address: u64,
    threads_with_module: u64,
    tampering_replaced: u64,
    events: u64,
}

/// One stage's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageCoverage {
    pub stage: Stage,
    pub visibility: Visibility,
    /// What the formats can ever show (the format-level verdict and reason).
    pub why: Vec<String>,
    /// Event kinds relevant to the stage that occur in this input, with counts.
    pub seen: BTreeMap<&'static str, u64>,
    /// Notes on this input (e.g. "no created-suspended flag on any process_create").
    pub notes: Vec<String>,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CoverageReport {
    pub events: u64,
    pub formats: BTreeMap<&'static str, u64>,
    pub event_kinds: BTreeMap<&'static str, u64>,
    pub stages: Vec<StageCoverage>,
}

impl Coverage {
    /// A new, empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Count one event.
    pub fn add(&mut self, event: &Event) {
        self.events += 1;
        self.formats.insert(event.source.format);
        *self.kinds.entry(event.kind.type_name()).or_insert(0) += 1;
        *self
            .per_format
            .entry(event.source.format.name())
            .or_insert(0) += 1;
        match &event.kind {
            EventKind::ProcessCreate {
                created_suspended,
                creation_flags,
            } if created_suspended.is_some() || creation_flags.is_some() => {
                self.created_suspended_known += 1;
            }
            EventKind::RemoteWrite { address, bytes, .. } => {
                if bytes.as_deref().is_some_and(|b| !b.is_empty()) {
                    self.writes_with_bytes += 1;
                }
                if address.is_some() {
                    self.writes_with_address += 1;
                }
            }
            EventKind::ThreadCreate {
                start_module: Some(_),
                ..
            } => {
                self.threads_with_module += 1;
            }
            EventKind::ProcessTampering {
                tamper_type: Some(t),
            } if t.to_ascii_lowercase().contains("replaced") => {
                self.tampering_replaced += 1;
            }
            _ => {}
        }
    }

    /// Note a format even when no event of it was decoded (e.g. an empty file).
    pub fn add_format(&mut self, format: Format) {
        self.formats.insert(format);
        self.per_format.entry(format.name()).or_insert(0);
    }

    /// The report.
    pub fn report(&self) -> CoverageReport {
        let mut stages = Vec::new();
        for stage in Stage::ALL {
            let mut visibility = Visibility::Blind;
            let mut why = Vec::new();
            for f in self.formats.iter() {
                let c = capability(f, stage);
                visibility = visibility.max(c.visibility);
                why.push(format!("{}: {} — {}", f.name(), c.visibility.name(), c.why));
            }
            if why.is_empty() {
                why.push("no events decoded".to_string());
            }
            let seen: BTreeMap<&'static str, u64> = stage_kinds(stage)
                .iter()
                .filter_map(|k| self.kinds.get(k).map(|n| (*k, *n)))
                .collect();
            let mut notes = Vec::new();
            match stage {
                Stage::Hollowing => {
                    let creates = self.kinds.get("process_create").copied().unwrap_or(0);
                    if creates > 0 && self.created_suspended_known == 0 {
                        notes.push(format!(
                            "none of the {creates} process_create events says whether the \
                             process was created suspended"
                        ));
                    }
                    if self.tampering_replaced > 0 {
                        notes.push(format!(
                            "{} \"Image is replaced\" tampering events",
                            self.tampering_replaced
                        ));
                    }
                }
                Stage::HeaderOrTlsWrite => {
                    let writes = self.kinds.get("remote_write").copied().unwrap_or(0);
                    if writes == 0 {
                        notes.push("no remote_write event in this input".to_string());
                    } else {
                        notes.push(format!(
                            "{writes} remote writes: {} with an address, {} with bytes \
                             (bytes allow MZ/PEB/pointer checks and entropy)",
                            self.writes_with_address, self.writes_with_bytes
                        ));
                    }
                }
                Stage::PreEntryThread => {
                    let threads = self.kinds.get("thread_create").copied().unwrap_or(0);
                    if threads > 0 {
                        notes.push(format!(
                            "{threads} thread_create events, {} with a start module (an empty \
                             module means an unbacked start)",
                            self.threads_with_module
                        ));
                    }
                    if !self.kinds.contains_key("thread_resume")
                        && !self.kinds.contains_key("process_resume")
                    {
                        notes.push(
                            "no resume events: 'before first run' is inferred from image loads \
                             and the target's own activity"
                                .to_string(),
                        );
                    }
                }
            }
            stages.push(StageCoverage {
                stage,
                visibility,
                why,
                seen,
                notes,
            });
        }
        CoverageReport {
            events: self.events,
            formats: self.per_format.clone(),
            event_kinds: self.kinds.clone(),
            stages,
        }
    }
}

impl CoverageReport {
    /// Human-readable text.
    pub fn human(&self) -> String {
        let mut s = format!("{} events\n", self.events);
        s.push_str("formats:\n");
        for (f, n) in &self.formats {
            s.push_str(&format!("  {f:<18} {n}\n"));
        }
        s.push_str("event kinds:\n");
        for (k, n) in &self.event_kinds {
            s.push_str(&format!("  {k:<18} {n}\n"));
        }
        s.push_str("AN1289 stages:\n");
        for st in &self.stages {
            s.push_str(&format!(
                "  {:<20} {}\n",
                st.stage.name(),
                st.visibility.name()
            ));
            for w in &st.why {
                s.push_str(&format!("      why: {w}\n"));
            }
            if !st.seen.is_empty() {
                let seen: Vec<String> = st.seen.iter().map(|(k, n)| format!("{k}={n}")).collect();
                s.push_str(&format!("      seen: {}\n", seen.join(", ")));
            }
            for n in &st.notes {
                s.push_str(&format!("      note: {n}\n"));
            }
        }
        s
    }
}
