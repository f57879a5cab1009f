//! Writes one lab sample: `make-sample <scenario> <checkpoint> <out dir>`.
//!
//! Holds the scenario at the checkpoint, writes a full-memory minidump of the
//! victim (`victim.dmp`), lets the scenario finish, then copies the complete
//! wineserver trace (`wineserver.trace`), the victim exe (and payload) and
//! writes `meta.json`. `lab/make-samples.sh` gzips the big files.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use preentry_lab::{Checkpoint, Lab, Marker, Markers, Scenario};
use serde_json::{Value, json};

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn marker(m: &Option<Marker>) -> Value {
    match m {
        None => Value::Null,
        Some(m) => json!({
            "qpc": m.qpc, "windows_pid": m.windows_pid, "windows_tid": m.windows_tid,
            "who": m.who, "extra": m.extra,
        }),
    }
}

fn markers(m: &Markers) -> Value {
    json!({
        "injected": marker(&m.injected), "own_tls": marker(&m.own_tls), "main": marker(&m.main),
        "main_ready": marker(&m.main_ready), "activity": marker(&m.activity), "error": marker(&m.error),
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, scenario, checkpoint, out] = args.as_slice() else {
        return Err("usage: make-sample <scenario> <checkpoint> <out dir>".into());
    };
    let scenario: Scenario = scenario.parse()?;
    let checkpoint: Checkpoint = checkpoint.parse()?;
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out)?;
    let lab = Lab::from_env().ok_or("lab not set up")?;

    let session = lab.start(scenario, checkpoint)?;
    let at_checkpoint = SystemTime::now();
    let markers_at_checkpoint = session.marker()?;
    session.write_minidump(&out.join("victim.dmp"))?;
    let dump_written = SystemTime::now();
    let victim_name = session
        .victim_exe
        .file_name()
        .ok_or("victim has no file name")?
        .to_owned();
    std::fs::copy(&session.victim_exe, out.join(&victim_name))?;
    let payload_name = match &session.payload_exe {
        Some(p) => {
            let name = p.file_name().ok_or("payload has no file name")?.to_owned();
            std::fs::copy(p, out.join(&name))?;
            Some(name.to_string_lossy().into_owned())
        }
        None => None,
    };
    let meta = json!({
        "scenario": scenario.name(),
        "is_attack": scenario.is_attack(),
        "checkpoint": checkpoint.name(),
        "windows_pid": session.windows_pid,
        "windows_tid": session.windows_tid,
        "linux_pid": session.linux_pid,
        "attacker_linux_pid": session.attacker_linux_pid,
        "victim_windows_path": session.report.victim_windows_path,
        "victim_exe": victim_name.to_string_lossy(),
        "payload_exe": payload_name,
        "image_base": format!("{:#x}", session.report.image_base),
        "peb": format!("{:#x}", session.report.peb),
        "attacker_detail": session.report.detail,
        "markers_at_checkpoint": markers(&markers_at_checkpoint),
        "started_unix": unix(session.started),
        "checkpoint_reached_unix": unix(at_checkpoint),
        "dump_written_unix": unix(dump_written),
    });
    let outcome = session.finish()?;
    outcome.save_trace(&out.join("wineserver.trace"))?;
    let mut meta = meta;
    if let Value::Object(map) = &mut meta {
        map.insert("markers_at_end".into(), markers(&outcome.markers));
        map.insert("victim_exit_code".into(), json!(outcome.victim_exit_code));
        map.insert("finished_unix".into(), json!(unix(SystemTime::now())));
        map.insert("dump".into(), json!("victim.dmp"));
        map.insert("trace".into(), json!("wineserver.trace"));
        map.insert(
            "note".into(),
            json!(
                "trace: `wineserver -f -d2` of the whole scenario, including Wine's own \
                   boot processes, without the requests of minidump.exe (its reads of the \
                   victim; see preentry_lab::trace::without_processes); dump: written by \
                   minidump.exe (Wine dbghelp MiniDumpWriteDump, full memory) at the checkpoint"
            ),
        );
    }
    std::fs::write(
        out.join("meta.json"),
        serde_json::to_string_pretty(&meta)? + "\n",
    )?;
    eprintln!("sample written to {}", out.display());
    Ok(())
}
