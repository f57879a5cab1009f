//! The alert a sequence produces, serialised as one JSON line with ECS field names where ECS
//! has one (`@timestamp`, `event.*`, `host.name`, `process.*`, `threat.*`) plus the evidence
//! chain. The contract is written down in `docs/hunt.md` ("Alert JSON").

use jiff::Timestamp;
use preentry_telemetry::{Event, Format};
use serde::Serialize;

use crate::stage::{Stage, Visibility};

/// Alert severity, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// ECS `event.severity` number (0–100 scale, Elastic's convention).
    pub fn score(self) -> u8 {
        match self {
            Severity::Info => 10,
            Severity::Low => 21,
            Severity::Medium => 47,
            Severity::High => 73,
            Severity::Critical => 99,
        }
    }

    /// Parse a name.
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "info" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

/// ECS `event.*` of an alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEvent {
    /// Always `"alert"`.
    pub kind: &'static str,
    pub category: [&'static str; 2],
    /// `an1289_full_sequence` or `an1289_partial_sequence`.
    pub action: &'static str,
    /// ECS numeric severity.
    pub severity: u8,
    /// The formats the evidence came from.
    pub dataset: Vec<Format>,
}

/// ECS `host.*`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertHost {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// ECS `process.parent.*` (the creator, when seen).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertParent {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
}

/// ECS `process.*` of the target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertProcess {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Sysmon ProcessGuid / Defender unique id / Elastic entity id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<AlertParent>,
}

/// ECS `threat.*`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertThreat {
    pub framework: &'static str,
    pub technique: AlertTechnique,
}

/// ECS `threat.technique.*` (arrays, as ECS allows).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertTechnique {
    pub id: Vec<&'static str>,
    pub name: Vec<&'static str>,
}

/// ECS `rule.*`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRule {
    pub id: &'static str,
    pub name: &'static str,
}

/// A stage the sequence lacks, and whether this telemetry could have shown it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MissingStage {
    pub stage: Stage,
    /// False when no format of this host's telemetry can ever produce the stage's events.
    pub observable: bool,
    /// `observable`, `partial` or `blind`.
    pub visibility: Visibility,
    /// Why (what the formats can and cannot show).
    pub why: &'static str,
}

/// One contributing event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    /// The stage it supports (`null` for context such as the process creation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    /// What it showed, e.g. `created_suspended`, `tls_callback_array_write`,
    /// `set_context_before_first_run`.
    pub indicator: &'static str,
    /// `exact` / `approximate` for address-range indicators.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<&'static str>,
    /// Extra facts (addresses, entropy, the layout used).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The source record id (EVTX EventRecordID, ETW/ECS event id, …), top level for grep.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    /// The normalised event as decoded (with `source` = format, path, line/offset, record id).
    pub event: Event,
}

/// One AN1289 alert (full or partial sequence) about one target process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// Time of the first evidence event.
    #[serde(rename = "@timestamp", skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    pub event: AlertEvent,
    pub severity: Severity,
    pub message: String,
    /// Matched stages, in sequence order.
    pub stages: Vec<Stage>,
    pub missing_stages: Vec<MissingStage>,
    pub threat: AlertThreat,
    pub rule: AlertRule,
    pub host: AlertHost,
    pub process: AlertProcess,
    /// True when every header/TLS range used came from a parsed PE layout.
    pub exact_ranges: bool,
    /// Set when an allowlist entry matched (the severity is then capped at `info`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowlisted: Option<String>,
    /// Why the alert was emitted when it was (`sequence_complete`, `process_exit`,
    /// `end_of_input`, `evicted_idle`, `evicted_capacity`, `pid_reused`).
    pub closed_by: &'static str,
    pub evidence: Vec<Evidence>,
}

impl Alert {
    /// One compact JSON line (no newline).
    pub fn to_json_line(&self) -> String {
        // Serialising plain data (strings, numbers, timestamps) cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!("{{\"event\":{{\"kind\":\"alert\"}},\"error\":\"serialise: {e}\"}}")
        })
    }

    /// A one-line human summary plus one line per evidence.
    pub fn human(&self) -> String {
        let mut s = format!(
            "[{}] {} on {} pid {} ({}): stages [{}]",
            self.severity.name().to_ascii_uppercase(),
            self.event.action,
            self.host.name.as_deref().unwrap_or("(no host)"),
            self.process
                .pid
                .map(|p| p.to_string())
                .unwrap_or_else(|| "?".into()),
            self.process.executable.as_deref().unwrap_or("?"),
            self.stages
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(", "),
        );
        if !self.missing_stages.is_empty() {
            s.push_str("; missing [");
            let parts: Vec<String> = self
                .missing_stages
                .iter()
                .map(|m| format!("{} ({})", m.stage, m.visibility.name()))
                .collect();
            s.push_str(&parts.join(", "));
            s.push(']');
        }
        if let Some(a) = &self.allowlisted {
            s.push_str(&format!("; allowlisted: {a}"));
        }
        s.push('\n');
        s.push_str(&format!("    {}\n", self.message));
        for e in &self.evidence {
            let src = &e.event.source;
            let at = match (&src.path, src.line, src.offset) {
                (Some(p), Some(l), _) => format!("{p}:{l}"),
                (Some(p), None, Some(o)) => format!("{p}@{o}"),
                (Some(p), None, None) => p.clone(),
                (None, Some(l), _) => format!("-:{l}"),
                _ => "-".to_string(),
            };
            s.push_str(&format!(
                "    - {:<20} {}{}{} [{}{}]\n",
                e.stage.map(|s| s.name()).unwrap_or("context"),
                e.indicator,
                e.range.map(|r| format!(" ({r})")).unwrap_or_default(),
                e.detail
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default(),
                at,
                e.record_id
                    .as_deref()
                    .map(|r| format!(" record {r}"))
                    .unwrap_or_default(),
            ));
        }
        s
    }
}

/// ATT&CK ids of the analytic.
pub const TECHNIQUE_IDS: [&str; 2] = ["T1055.005", "T1055.012"];
/// ATT&CK names of [`TECHNIQUE_IDS`].
pub const TECHNIQUE_NAMES: [&str; 2] = [
    "Process Injection: Thread Local Storage",
    "Process Injection: Process Hollowing",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_order_and_parse() {
        assert!(Severity::Info < Severity::Low && Severity::High < Severity::Critical);
        for s in [
            Severity::Info,
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ] {
            assert_eq!(Severity::parse(s.name()), Some(s));
        }
        assert_eq!(Severity::parse("bad"), None);
    }
}
