//! PE and TLS facts from a byte view in file or loaded layout. Pure parsing: never reads a file.
//!
//! * [`PeImage::parse`] over `&[u8]` in a [`Layout`] (`File`: RVAs through the section table;
//!   `Loaded { base }`: RVA = offset, base given by the caller) exposes the DOS/NT headers
//!   ([`DosHeader`], [`FileHeader`], [`OptionalHeader`] for PE32 and PE32+), the
//!   [`Section`] table and all [`DataDirectory`] entries.
//! * [`PeImage::tls`] reads the TLS directory (six fields, both widths) and the callback array
//!   with our own reader ([`TlsInfo`], [`CallbackSlot`], [`ArrayEnd`]); entries outside the image
//!   come through a [`VaReader`] ([`NoOutside`] for files). At most [`CALLBACK_LIMIT`] entries.
//! * [`ImageFacts`] is the serialisable snapshot (`inspect --json` contract);
//!   [`ImageFacts::relocated_to`] gives the expected loaded facts at another base, and
//!   [`diff`] names every differing field (`optional_header.address_of_entry_point`,
//!   `tls.callbacks[0]`, `section[2].characteristics`, …).
//! * Feature `synth`: `synth::LoadedImage` maps a real file as a loader would, for tests.
//!
//! Disk vs memory, as `scan` uses it:
//!
//! ```
//! use preentry_pe::{DiffOptions, FieldDiff, ImageFacts, LOADER_WRITTEN_FIELDS, Layout, NoOutside,
//!                   PeError, PeImage, VaReader, diff_with};
//!
//! fn compare(disk: &[u8], memory: &[u8], base: u64, process: &dyn VaReader)
//!     -> Result<Vec<FieldDiff>, PeError> {
//!     let file = PeImage::parse(disk, Layout::File)?;
//!     let expected = ImageFacts::from_image(&file, &NoOutside).relocated_to(base);
//!     let loaded = PeImage::parse(memory, Layout::Loaded { base })?;
//!     // Callback arrays outside the image are read through the process reader.
//!     let observed = ImageFacts::from_image(&loaded, process);
//!     Ok(diff_with(&expected, &observed, &DiffOptions { ignore: LOADER_WRITTEN_FIELDS }))
//! }
//! ```

#![warn(missing_docs)]

mod diff;
mod error;
mod facts;
mod image;
mod reloc;
#[cfg(feature = "synth")]
pub mod synth;
mod tls;

pub use diff::{DiffOptions, FieldDiff, FieldValue, LOADER_WRITTEN_FIELDS, diff, diff_with};
pub use error::PeError;
pub use facts::ImageFacts;
pub use image::{
    DATA_DIRECTORY_NAMES, DIRECTORY_BASERELOC, DIRECTORY_IAT, DIRECTORY_IMPORT, DIRECTORY_SECURITY,
    DIRECTORY_TLS, DataDirectory, DosHeader, FileHeader, Format, Layout, OptionalHeader, PeImage,
    Section, decode_name, machine_name,
};
pub use reloc::RelocTable;
pub use tls::{
    ArrayEnd, CALLBACK_LIMIT, CallbackSlot, Location, NoOutside, TlsInfo, TlsRelocations, VaReader,
};
