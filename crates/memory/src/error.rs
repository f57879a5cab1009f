//! Errors of the memory sources.

use std::io;
use std::path::PathBuf;

/// Why a source failed. Unmapped memory is not an error (see [`crate::ReadResult`]); these are
/// failures of the source itself or of a structure read through it.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The process exited (its `/proc` entry vanished or its memory is gone).
    #[error("process {pid} exited ({detail})")]
    ProcessGone {
        /// The pid used to open it.
        pid: u32,
        /// What failed.
        detail: String,
    },
    /// The operating system refused access.
    #[error("access to process {pid} denied: {path}: {source}")]
    AccessDenied {
        /// The pid.
        pid: u32,
        /// The file that could not be opened or read.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A range that had to be read completely was not.
    #[error("{len:#x} bytes at {addr:#x} are not readable ({detail})")]
    Unreadable {
        /// First unreadable address.
        addr: u64,
        /// Length of the unreadable span.
        len: u64,
        /// Context.
        detail: String,
    },
    /// `addr + len` overflows the address space or `usize`.
    #[error("address range {addr:#x}+{len:#x} overflows")]
    AddressOverflow {
        /// Start.
        addr: u64,
        /// Length.
        len: u64,
    },
    /// The file is not a usable minidump.
    #[error("{path}: not a readable minidump: {detail}")]
    Minidump {
        /// The dump.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// No (Wine) process has this id.
    #[error("no Wine process with Linux or Windows PID {pid}{detail}")]
    NoSuchProcess {
        /// The id asked for.
        pid: u32,
        /// Extra context (may be empty).
        detail: String,
    },
    /// The Linux process exists but is not a Wine process.
    #[error("Linux process {pid} is not a Wine process ({detail})")]
    NotWine {
        /// Linux pid.
        pid: u32,
        /// Why not.
        detail: String,
    },
    /// The source or process kind is not supported (e.g. 32-bit PEB walks).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A structure read from the target is inconsistent.
    #[error("malformed {what} at {addr:#x}: {detail}")]
    Malformed {
        /// Structure name (e.g. "PEB_LDR_DATA").
        what: &'static str,
        /// Where.
        addr: u64,
        /// What is wrong.
        detail: String,
    },
}
