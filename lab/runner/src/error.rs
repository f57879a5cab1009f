//! Errors of the lab runner.

use std::path::PathBuf;
use std::time::Duration;

use crate::{Checkpoint, Scenario};

/// Everything that can go wrong while running a lab scenario.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// `lab/setup.sh` has not been run (or its output is incomplete).
    #[error("Wine lab not set up: {0} (run `bash lab/setup.sh`)")]
    NotSetUp(String),
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A program could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A marker did not appear in time.
    #[error("{scenario}: timed out after {after:?} waiting for `{waiting_for}` in {control_dir}")]
    Timeout {
        /// The scenario.
        scenario: Scenario,
        /// The marker file waited for.
        waiting_for: String,
        /// How long the runner waited.
        after: Duration,
        /// The run's control directory (markers, logs, trace).
        control_dir: PathBuf,
    },
    /// A lab program reported a failure (marker `error`), exited early or
    /// timed out.
    #[error("{}: lab program failed: {detail}", scenario.map_or("lab", |s| s.name()))]
    ProgramFailed {
        /// The scenario, if any.
        scenario: Option<Scenario>,
        /// What the program reported.
        detail: String,
    },
    /// A marker or report file did not have the expected form.
    #[error("{path}: malformed lab file: {detail}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// The victim's Linux process was not found.
    #[error("{scenario}: no Linux process found for Windows PID {windows_pid}")]
    VictimNotFound {
        /// The scenario.
        scenario: Scenario,
        /// The victim's Windows PID.
        windows_pid: u32,
    },
    /// A checkpoint earlier than (or equal to) the current one was asked for.
    #[error("cannot go from checkpoint {from} back to {to}")]
    Backwards {
        /// Current checkpoint.
        from: Checkpoint,
        /// Requested checkpoint.
        to: Checkpoint,
    },
    /// `minidump.exe` failed.
    #[error("minidump of Windows PID {windows_pid} into {path} failed: {detail}")]
    Minidump {
        /// Process dumped.
        windows_pid: u32,
        /// Output file.
        path: PathBuf,
        /// Exit status and the program's output.
        detail: String,
    },
}

impl LabError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LabError::Io {
            path: path.into(),
            source,
        }
    }
}
