//! `preentry hunt` and `preentry coverage`: telemetry in, AN1289 alerts / stage coverage out.
//!
//! Inputs are files, directories (walked recursively, in name order) or `-` for stdin. Every
//! input is decoded by `preentry-telemetry` (format detected unless `--format`), fed in order to
//! one `preentry-detect` engine, and each alert is printed as soon as it is complete: a JSON
//! line (`--json`) or a human summary. A bad input or record is reported on stderr with its file
//! and line/offset, and the rest is processed. Exit: 1 alerts (even with input errors), else 2 on
//! any input error, else 0.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use preentry_detect::{Alert, Config, Coverage, Engine, Severity};
use preentry_telemetry::{DecodeError, Event, EventStream, Format, decode_file, decode_reader};

use crate::Outcome;

/// Inputs at or above this total size get a progress bar (when stderr is a terminal).
const PROGRESS_MIN_BYTES: u64 = 8 << 20;

/// Arguments of `preentry hunt`.
#[derive(Debug, Args)]
pub struct HuntArgs {
    /// Telemetry files, directories (recursive) or `-` for stdin.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Input format (default: detected per file): evtx, win_event_json, etw_json, defender,
    /// elastic_endpoint, wine_trace, preentry.
    #[arg(long, value_name = "F")]
    pub format: Option<String>,
    /// Engine configuration (TOML; see config/preentry.toml and docs/hunt.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print alerts as JSON lines (ECS field names) instead of a human summary.
    #[arg(long)]
    pub json: bool,
    /// Root under which target image paths are found on disk (`C:\x\y.exe` -> ROOT/x/y.exe),
    /// for exact PE header/TLS ranges.
    #[arg(long, value_name = "DIR")]
    pub disk_root: Option<PathBuf>,
    /// Directory searched for target images by file name (repeatable).
    #[arg(long = "image-dir", value_name = "DIR")]
    pub image_dirs: Vec<PathBuf>,
    /// Lowest severity printed (info, low, medium, high, critical).
    #[arg(long, default_value = "low", value_name = "LEVEL")]
    pub min_severity: String,
    /// Never show a progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// Arguments of `preentry coverage`.
#[derive(Debug, Args)]
pub struct CoverageArgs {
    /// Telemetry files, directories (recursive) or `-` for stdin.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Input format (default: detected per file).
    #[arg(long, value_name = "F")]
    pub format: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One input to decode.
#[derive(Debug, Clone)]
enum Input {
    Stdin,
    /// A file; `explicit` when named on the command line (an unrecognised format is then an
    /// error; inside a directory it is skipped).
    File {
        path: PathBuf,
        explicit: bool,
    },
}

/// Expand the command-line inputs: directories recursively, sorted by path.
fn expand(inputs: &[PathBuf], errors: &mut Vec<String>) -> Vec<Input> {
    let mut out = Vec::new();
    for p in inputs {
        if p.as_os_str() == "-" {
            out.push(Input::Stdin);
            continue;
        }
        if p.is_dir() {
            let mut files: Vec<PathBuf> = Vec::new();
            for entry in walkdir::WalkDir::new(p)
                .follow_links(false)
                .sort_by_file_name()
            {
                match entry {
                    Ok(e) if e.file_type().is_file() => files.push(e.into_path()),
                    Ok(_) => {}
                    Err(e) => errors.push(format!("{}: {e}", p.display())),
                }
            }
            out.extend(files.into_iter().map(|path| Input::File {
                path,
                explicit: false,
            }));
        } else {
            out.push(Input::File {
                path: p.clone(),
                explicit: true,
            });
        }
    }
    out
}

/// Open one input as an event stream. `Ok(None)`: skipped (unrecognised file in a directory).
fn open(input: &Input, format: Option<Format>) -> Result<Option<EventStream>, DecodeError> {
    match input {
        Input::Stdin => decode_reader(io::stdin(), None, format).map(Some),
        Input::File { path, explicit } => {
            let result = open_file(path, format);
            match result {
                Err(DecodeError::UnknownFormat { .. }) if !explicit => Ok(None),
                other => other.map(Some),
            }
        }
    }
}

/// Open a file (gzip-compressed files are decompressed by the decoder).
fn open_file(path: &Path, format: Option<Format>) -> Result<EventStream, DecodeError> {
    decode_file(path, format)
}

fn parse_format(format: Option<&str>) -> Result<Option<Format>> {
    format
        .map(|f| f.parse::<Format>().map_err(anyhow::Error::from))
        .transpose()
}

fn input_size(inputs: &[Input]) -> u64 {
    inputs
        .iter()
        .map(|i| match i {
            Input::File { path, .. } => std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            Input::Stdin => 0,
        })
        .sum()
}

fn progress(total: u64, disabled: bool) -> ProgressBar {
    if disabled || total < PROGRESS_MIN_BYTES || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:40} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Decode every input and hand each event to `sink`; report errors on stderr. Returns the
/// number of input errors (unopenable inputs and bad records).
fn for_each_event(
    inputs: &[Input],
    format: Option<Format>,
    bar: &ProgressBar,
    mut sink: impl FnMut(Event) -> Result<()>,
    mut on_format: impl FnMut(Format),
) -> Result<(u64, u64, u64)> {
    let mut errors = 0u64;
    let mut events = 0u64;
    let mut skipped_inputs = 0u64;
    let mut done_bytes = 0u64;
    for input in inputs {
        let size = match input {
            Input::File { path, .. } => std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            Input::Stdin => 0,
        };
        if let Input::File { path, .. } = input {
            bar.set_message(path.display().to_string());
        }
        let stream = match open(input, format) {
            Ok(Some(s)) => s,
            Ok(None) => {
                skipped_inputs += 1;
                continue;
            }
            Err(e) => {
                errors += 1;
                bar.suspend(|| eprintln!("preentry: error: {e}"));
                continue;
            }
        };
        on_format(stream.format());
        let mut stream = stream;
        for item in &mut stream {
            match item {
                Ok(event) => {
                    events += 1;
                    if events.is_multiple_of(4096)
                        && let Some(o) = event.source.offset
                    {
                        bar.set_position(done_bytes.saturating_add(o.min(size)));
                    }
                    sink(event)?;
                }
                Err(e) => {
                    errors += 1;
                    bar.suspend(|| eprintln!("preentry: error: {e}"));
                }
            }
        }
        done_bytes = done_bytes.saturating_add(size);
        bar.set_position(done_bytes);
    }
    bar.finish_and_clear();
    Ok((events, errors, skipped_inputs))
}

/// `preentry hunt`.
pub fn run(args: &HuntArgs) -> Result<Outcome> {
    let format = parse_format(args.format.as_deref())?;
    let min = Severity::parse(&args.min_severity).with_context(|| {
        format!(
            "--min-severity: `{}` is not one of info, low, medium, high, critical",
            args.min_severity
        )
    })?;
    let mut config = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(root) = &args.disk_root {
        config.approximation.disk_root = Some(root.clone());
    }
    config
        .approximation
        .image_dirs
        .extend(args.image_dirs.iter().cloned());

    let mut expand_errors = Vec::new();
    let inputs = expand(&args.inputs, &mut expand_errors);
    for e in &expand_errors {
        eprintln!("preentry: error: {e}");
    }
    let bar = progress(input_size(&inputs), args.no_progress);
    let mut engine = Engine::new(config);
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    let started = Instant::now();

    let mut emit = |alerts: Vec<Alert>, out: &mut BufWriter<io::StdoutLock<'_>>| -> Result<()> {
        for a in alerts.into_iter().filter(|a| a.severity >= min) {
            printed += 1;
            if args.json {
                writeln!(out, "{}", a.to_json_line())?;
            } else {
                write!(out, "{}", a.human())?;
            }
        }
        Ok(())
    };
    let (events, errors, skipped) = for_each_event(
        &inputs,
        format,
        &bar,
        |e| emit(engine.push(e), &mut out),
        |_| {},
    )?;
    let tail = engine.finish();
    emit(tail, &mut out)?;
    out.flush()?;
    drop(out);

    let stats = engine.stats();
    let elapsed = started.elapsed().as_secs_f64();
    let summary = format!(
        "preentry hunt: {} inputs ({} skipped: format not recognised), {events} events, {} \
         errors, {printed} alerts printed (>= {}) in {elapsed:.2}s; tracked {} processes (peak \
         {}), evicted {} idle / {} over capacity, {} late events, {} unclassified writes",
        inputs.len(),
        skipped,
        errors + expand_errors.len() as u64,
        min.name(),
        stats.processes_tracked,
        stats.processes_peak,
        stats.evicted_idle,
        stats.evicted_capacity,
        stats.reorder.late,
        stats.writes_unclassified,
    );
    if args.json {
        eprintln!("{summary}");
    } else {
        println!("{summary}");
    }
    // One rule for every command: alerts (1) win over errors (2), so an alert is never hidden
    // behind a bad input elsewhere in the run; the errors are still printed.
    Ok(if printed > 0 {
        Outcome::Findings
    } else if errors > 0 || !expand_errors.is_empty() {
        Outcome::Error
    } else {
        Outcome::Clean
    })
}

/// `preentry coverage`.
pub fn run_coverage(args: &CoverageArgs) -> Result<Outcome> {
    let format = parse_format(args.format.as_deref())?;
    let mut expand_errors = Vec::new();
    let inputs = expand(&args.inputs, &mut expand_errors);
    for e in &expand_errors {
        eprintln!("preentry: error: {e}");
    }
    let mut coverage = Coverage::new();
    let bar = ProgressBar::hidden();
    let mut formats = Vec::new();
    let (_, errors, _) = for_each_event(
        &inputs,
        format,
        &bar,
        |e| {
            coverage.add(&e);
            Ok(())
        },
        |f| formats.push(f),
    )?;
    for f in formats {
        coverage.add_format(f);
    }
    let report = coverage.report();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.human());
    }
    Ok(if errors > 0 || !expand_errors.is_empty() {
        Outcome::Error
    } else {
        Outcome::Clean
    })
}
