//! The three AN1289 stages and what each telemetry format can show of them.
//!
//! The "observable" verdict of a stage is a function of which event kinds a format can ever
//! produce (not of what one file happens to hold): e.g. Sysmon never logs memory writes, so
//! `header_or_tls_write` is blind in Sysmon whatever the file.

use std::fmt;

use preentry_telemetry::Format;
use serde::{Deserialize, Serialize};

/// One stage of the AN1289 sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Stage 1: hollowing context (created suspended, image-base unmap, Sysmon 25 "Image is
    /// replaced", PEB image-base write, remote MZ write).
    Hollowing,
    /// Stage 2: a memory write to the PE header region or TLS structures.
    HeaderOrTlsWrite,
    /// Stage 3: a thread anomaly before the target's first normal execution.
    PreEntryThread,
}

impl Stage {
    /// All stages, in sequence order.
    pub const ALL: [Stage; 3] = [
        Stage::Hollowing,
        Stage::HeaderOrTlsWrite,
        Stage::PreEntryThread,
    ];

    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Hollowing => "hollowing",
            Stage::HeaderOrTlsWrite => "header_or_tls_write",
            Stage::PreEntryThread => "pre_entry_thread",
        }
    }

    /// Index 0..3.
    pub fn index(self) -> usize {
        match self {
            Stage::Hollowing => 0,
            Stage::HeaderOrTlsWrite => 1,
            Stage::PreEntryThread => 2,
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How well a telemetry source can see a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// The source never produces the events this stage needs.
    Blind,
    /// Some indicators of the stage can be seen, others not (or only approximately).
    Partial,
    /// The source produces the events this stage needs.
    Observable,
}

impl Visibility {
    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            Visibility::Blind => "blind",
            Visibility::Partial => "partial",
            Visibility::Observable => "observable",
        }
    }

    /// True unless blind.
    pub fn is_observable(self) -> bool {
        self != Visibility::Blind
    }
}

/// What one format can show of one stage, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageCapability {
    pub visibility: Visibility,
    pub why: &'static str,
}

const fn cap(visibility: Visibility, why: &'static str) -> StageCapability {
    StageCapability { visibility, why }
}

/// What `format` can ever show of `stage`.
pub fn capability(format: Format, stage: Stage) -> StageCapability {
    use Visibility::*;
    match (format, stage) {
        (Format::Evtx | Format::WinEventJson, Stage::Hollowing) => cap(
            Partial,
            "Sysmon 25 ProcessTampering \"Image is replaced\" is the only hollowing indicator; \
             Sysmon 1 carries no created-suspended flag, and Sysmon logs no unmap, PEB or MZ write",
        ),
        (Format::Evtx | Format::WinEventJson, Stage::HeaderOrTlsWrite) => cap(
            Blind,
            "Sysmon does not log memory writes (no WriteProcessMemory event), so header and TLS \
             writes cannot be seen",
        ),
        (Format::Evtx | Format::WinEventJson, Stage::PreEntryThread) => cap(
            Partial,
            "Sysmon 8 CreateRemoteThread shows remote and unbacked thread starts; there is no \
             SetThreadContext, APC or resume event, so 'before first run' is inferred from image \
             loads and process activity",
        ),
        (Format::EtwJson, Stage::Hollowing) => cap(
            Partial,
            "ETW-TI shows remote allocation/mapping and writes (address and size, no bytes): no \
             MZ or PEB-value check, no unmap event; Kernel-Process has no created-suspended flag",
        ),
        (Format::EtwJson, Stage::HeaderOrTlsWrite) => cap(
            Partial,
            "ETW-TI WRITEVM_REMOTE gives address and size but not the bytes: ranges are exact \
             only when the image layout is known, otherwise approximate",
        ),
        (Format::EtwJson, Stage::PreEntryThread) => cap(
            Observable,
            "ETW-TI SETTHREADCONTEXT/QUEUEUSERAPC/suspend/resume and Kernel-Process ThreadStart \
             with start addresses",
        ),
        (Format::Defender, Stage::Hollowing) => cap(
            Partial,
            "DeviceEvents has remote allocate/map/write API calls but no created-suspended flag \
             or unmap, and is sampled",
        ),
        (Format::Defender, Stage::HeaderOrTlsWrite) => cap(
            Partial,
            "WriteProcessMemoryApiCall gives sizes (addresses when present), never bytes, and is \
             sampled (capped per day)",
        ),
        (Format::Defender, Stage::PreEntryThread) => cap(
            Partial,
            "SetThreadContextRemoteApiCall, QueueUserApcRemoteApiCall and CreateRemoteThreadApiCall \
             are present but sampled",
        ),
        (Format::ElasticEndpoint, Stage::Hollowing) => cap(
            Observable,
            "Elastic API events carry Target.process.Ext.created_suspended, unmap/map and write \
             calls",
        ),
        (Format::ElasticEndpoint, Stage::HeaderOrTlsWrite) => cap(
            Partial,
            "WriteProcessMemory API events give address and size, not the bytes: ranges are \
             approximate unless the layout is known",
        ),
        (Format::ElasticEndpoint, Stage::PreEntryThread) => cap(
            Observable,
            "SetThreadContext, QueueUserAPC and remote thread API events with addresses",
        ),
        (Format::WineTrace, Stage::Hollowing) => cap(
            Observable,
            "new_process flags (suspended), unmap_view, write_process_memory with address and \
             leading bytes (MZ, PEB value)",
        ),
        (Format::WineTrace, Stage::HeaderOrTlsWrite) => cap(
            Observable,
            "write_process_memory with address, size and leading bytes",
        ),
        (Format::WineTrace, Stage::PreEntryThread) => cap(
            Observable,
            "set_thread_context, queue_apc, new_thread, resume_thread requests",
        ),
        (Format::Preentry, _) => cap(
            Observable,
            "preentry JSON lines can carry every event kind; what a file shows depends on its \
             producer",
        ),
    }
}

/// A small set of formats (bit per [`Format::ALL`] position).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FormatSet(u16);

impl FormatSet {
    fn bit(format: Format) -> u16 {
        let i = Format::ALL.iter().position(|f| *f == format).unwrap_or(0);
        1u16 << i
    }

    /// Add a format.
    pub fn insert(&mut self, format: Format) {
        self.0 |= Self::bit(format);
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The formats in the set.
    pub fn iter(&self) -> impl Iterator<Item = Format> + '_ {
        Format::ALL
            .into_iter()
            .filter(move |f| self.0 & Self::bit(*f) != 0)
    }

    /// The best capability any format of the set has for `stage` (blind when empty).
    pub fn capability(&self, stage: Stage) -> StageCapability {
        let mut best = cap(Visibility::Blind, "no telemetry seen for this host");
        let mut first = true;
        for f in self.iter() {
            let c = capability(f, stage);
            if first || c.visibility > best.visibility {
                best = c;
                first = false;
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysmon_cannot_see_writes() {
        assert_eq!(
            capability(Format::Evtx, Stage::HeaderOrTlsWrite).visibility,
            Visibility::Blind
        );
        assert_eq!(
            capability(Format::WineTrace, Stage::HeaderOrTlsWrite).visibility,
            Visibility::Observable
        );
    }

    #[test]
    fn set_takes_best() {
        let mut s = FormatSet::default();
        assert!(!s.capability(Stage::Hollowing).visibility.is_observable());
        s.insert(Format::Evtx);
        assert_eq!(
            s.capability(Stage::HeaderOrTlsWrite).visibility,
            Visibility::Blind
        );
        s.insert(Format::EtwJson);
        assert_eq!(
            s.capability(Stage::HeaderOrTlsWrite).visibility,
            Visibility::Partial
        );
        assert_eq!(s.iter().count(), 2);
    }
}
