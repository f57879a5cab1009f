//! Errors of the PE reader. Every variant names the offset (file offset or RVA, as stated) and
//! what is wrong there, so a caller can print `path: error` and move on.

use thiserror::Error;

/// Why a byte view could not be read as a PE image (or one of its parts could not be read).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PeError {
    /// The view ends before a structure that must be there.
    #[error("truncated {what} at offset {offset:#x}: need {need} bytes, {available} available")]
    Truncated {
        /// Which structure.
        what: &'static str,
        /// Offset of the structure in the view.
        offset: u64,
        /// Bytes needed.
        need: u64,
        /// Bytes available from `offset`.
        available: u64,
    },
    /// A magic value is wrong (`MZ`, `PE\0\0`, optional header magic).
    #[error("bad {what} at offset {offset:#x}: found {found:#x}")]
    BadMagic {
        /// Which magic.
        what: &'static str,
        /// Offset of the magic in the view.
        offset: u64,
        /// The value found.
        found: u64,
    },
    /// An RVA that must be readable is not mapped by the image (file layout: no section or
    /// header covers it; loaded layout: outside the view).
    #[error("{what} at RVA {rva:#x} is not readable in the image")]
    UnreadableRva {
        /// Which structure.
        what: &'static str,
        /// The RVA.
        rva: u64,
    },
}
