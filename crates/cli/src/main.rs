//! `preentry`: finds code made to run before a Windows program's entry point.
//!
//! This binary only parses arguments and prints; every capability lives in a library crate
//! (`preentry-pe`, `preentry-memory`, `preentry-scan`, `preentry-telemetry`, `preentry-detect`).
//! Exit codes are a contract: 0 = clean, 1 = findings or alerts, 2 = error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod hunt;
mod inspect;
mod scan;

/// Finds code made to run before a Windows program's entry point: TLS callback injection and
/// process hollowing (MITRE ATT&CK AN1289; T1055.005, T1055.012).
#[derive(Debug, Parser)]
#[command(name = "preentry", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// PE and TLS facts of files on disk (headers, sections, TLS directory, callbacks).
    Inspect(inspect::InspectArgs),
    /// Scan live Wine processes or minidumps for TLS callback injection and hollowing.
    Scan(scan::ScanArgs),
    /// Hunt telemetry for the AN1289 sequence (hollowing -> header/TLS write -> pre-entry thread).
    Hunt(hunt::HuntArgs),
    /// Which event kinds the telemetry holds and which AN1289 stages it can observe.
    Coverage(hunt::CoverageArgs),
}

/// What a command concluded, mapped onto the exit-code contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing found (exit 0).
    Clean,
    /// Findings or alerts (exit 1).
    Findings,
    /// At least one input could not be processed (exit 2).
    Error,
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Clean => ExitCode::from(0),
            Outcome::Findings => ExitCode::from(1),
            Outcome::Error => ExitCode::from(2),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(&args),
        Command::Scan(args) => scan::run(&args),
        Command::Hunt(args) => hunt::run(&args),
        Command::Coverage(args) => hunt::run_coverage(&args),
    };
    match result {
        Ok(outcome) => outcome.into(),
        Err(err) => {
            eprintln!("preentry: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
