//! The engine never panics and stays bounded on hostile input: real events (the committed lab
//! trace and a corpus Sysmon recording) mutated at random — addresses and sizes at the edges of
//! u64, random or MZ-prefixed (truncated/garbage) written bytes, swapped PIDs, random or missing
//! timestamps and hosts — fed in random order with tiny bounds.

use std::path::Path;

use jiff::Timestamp;
use preentry_detect::{Config, Engine};
use preentry_telemetry::{Event, EventKind, Format, decode_file};
use proptest::prelude::*;

fn real_events() -> Vec<Event> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut events = Vec::new();
    let trace = root.join("samples/tls-array-swap/wineserver.trace.gz");
    if let Ok(s) = decode_file(&trace, Some(Format::WineTrace)) {
        events.extend(s.flatten());
    }
    let evtx = root.join("../shared/corpus/evtx/EVTX-ATTACK-SAMPLES/Defense_Evasion/apt10_jjs_sideloading_prochollowing_persist_as_service_sysmon_1_7_8_13.evtx");
    if let Ok(s) = decode_file(&evtx, None) {
        events.extend(s.flatten());
    }
    events
}

fn edge(v: u64) -> u64 {
    match v % 6 {
        0 => u64::MAX,
        1 => u64::MAX - (v % 4096),
        2 => 0,
        3 => 0x1_4000_0000 + (v % 0x10000),
        4 => v,
        _ => 0x34_0000 + (v % 0x2000),
    }
}

fn mutate(mut e: Event, sel: u8, v: u64, bytes: &[u8]) -> Event {
    let hexed = |mz: bool| {
        let mut b = bytes.to_vec();
        if mz {
            b.splice(0..0, *b"MZ");
        }
        hex::encode(b)
    };
    match (&mut e.kind, sel % 8) {
        (
            EventKind::RemoteWrite {
                address,
                size,
                bytes: b,
            },
            0,
        ) => {
            *address = Some(edge(v));
            *size = Some(edge(v.rotate_left(7)));
            *b = Some(hexed(v.is_multiple_of(2)));
        }
        (EventKind::RemoteWrite { bytes: b, .. }, 1) => *b = Some("zz".into()),
        (
            EventKind::RemoteAlloc { address, size, .. }
            | EventKind::RemoteProtect { address, size, .. }
            | EventKind::RemoteMapView { address, size, .. },
            _,
        ) => {
            *address = Some(edge(v));
            *size = Some(edge(v >> 3));
        }
        (EventKind::SetThreadContext { pc, .. }, _) => *pc = Some(edge(v)),
        (
            EventKind::QueueApc {
                routine, argument, ..
            },
            _,
        ) => {
            *routine = Some(edge(v));
            *argument = Some(edge(!v));
        }
        (EventKind::ThreadCreate { start_address, .. }, _) => *start_address = Some(edge(v)),
        (EventKind::RemoteUnmap { address }, _) => *address = Some(edge(v)),
        (_, 2) => {
            if let Some(t) = e.target.as_mut() {
                t.pid = Some((v % 7) as u32);
                t.guid = None;
            }
        }
        (_, 3) => e.timestamp = Timestamp::from_second((v % 4_000_000_000) as i64).ok(),
        (_, 4) => e.timestamp = None,
        (_, 5) => e.host = Some(format!("H{}", v % 3)),
        _ => {}
    }
    e
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn mutated_real_events_never_panic_and_stay_bounded(
        picks in proptest::collection::vec(
            (any::<u16>(), any::<u8>(), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..600)),
            1..300,
        )
    ) {
        let events = real_events();
        prop_assume!(!events.is_empty());
        let mut config = Config::default();
        config.engine.max_tracked_processes = 4;
        config.engine.max_buffered_events = 8;
        config.engine.max_evidence_per_stage = 2;
        config.engine.max_regions_per_process = 3;
        config.engine.min_entropy_bytes = 16;
        let mut engine = Engine::new(config);
        for (i, sel, v, bytes) in picks {
            let e = events[usize::from(i) % events.len()].clone();
            for a in engine.push(mutate(e, sel, v, &bytes)) {
                prop_assert!(a.evidence.len() <= 2 * 3 + 2);
                prop_assert!(!a.stages.is_empty());
                let _ = a.to_json_line();
                let _ = a.human();
            }
            prop_assert!(engine.tracked() <= 4);
        }
        for a in engine.finish() {
            prop_assert!(!a.stages.is_empty());
        }
        prop_assert_eq!(engine.tracked(), 0);
    }
}
