//! Input formats.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An input format. Names (for `--format` and the `source.format` field) are the snake_case ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Binary Windows event log (`.evtx`), Sysmon and Security channels.
    Evtx,
    /// Windows events (Sysmon/Security) as JSON: evtx-crate JSON (`{"Event":{"System":…}}`),
    /// Winlogbeat/ECS (`winlog.event_data`), and the OTRF flat variants. JSON lines, a JSON array
    /// or concatenated (pretty-printed) objects.
    WinEventJson,
    /// ETW Threat-Intelligence / Kernel-Process as JSON (RedEdr, SilkETW).
    EtwJson,
    /// Microsoft Defender for Endpoint `DeviceEvents` (Advanced Hunting JSON export).
    Defender,
    /// Elastic Endpoint API events (ECS documents with `process.Ext.api`).
    ElasticEndpoint,
    /// The lab's trace: `wineserver -f -d2` output.
    WineTrace,
    /// preentry's own JSON lines ([`crate::Event`] serialised one per line).
    Preentry,
}

impl Format {
    /// All formats, in detection-preference order.
    pub const ALL: [Format; 7] = [
        Format::Evtx,
        Format::WinEventJson,
        Format::EtwJson,
        Format::Defender,
        Format::ElasticEndpoint,
        Format::WineTrace,
        Format::Preentry,
    ];

    /// The canonical name (as accepted by `FromStr` and emitted in JSON).
    pub fn name(self) -> &'static str {
        match self {
            Format::Evtx => "evtx",
            Format::WinEventJson => "win_event_json",
            Format::EtwJson => "etw_json",
            Format::Defender => "defender",
            Format::ElasticEndpoint => "elastic_endpoint",
            Format::WineTrace => "wine_trace",
            Format::Preentry => "preentry",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown `--format` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown format `{0}` (expected one of: evtx, win_event_json, etw_json, defender, elastic_endpoint, wine_trace, preentry)"
)]
pub struct ParseFormatError(pub String);

impl FromStr for Format {
    type Err = ParseFormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm: String = s
            .trim()
            .chars()
            .map(|c| {
                if c == '-' {
                    '_'
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect();
        Ok(match norm.as_str() {
            "evtx" => Format::Evtx,
            "win_event_json" | "sysmon_json" | "winevent_json" | "evtx_json" | "winlogbeat"
            | "otrf" | "json" => Format::WinEventJson,
            "etw_json" | "etw" | "rededr" | "silketw" => Format::EtwJson,
            "defender" | "mde" | "device_events" => Format::Defender,
            "elastic_endpoint" | "elastic" => Format::ElasticEndpoint,
            "wine_trace" | "wine" | "lab" | "lab_trace" => Format::WineTrace,
            "preentry" | "preentry_jsonl" => Format::Preentry,
            _ => return Err(ParseFormatError(s.to_string())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>(), Ok(f));
            assert_eq!(
                serde_json::to_string(&f).ok(),
                Some(format!("\"{}\"", f.name()))
            );
        }
        assert_eq!("wine-trace".parse::<Format>(), Ok(Format::WineTrace));
        assert!("nope".parse::<Format>().is_err());
    }
}
