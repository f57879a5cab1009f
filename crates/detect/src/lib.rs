//! The AN1289 sequence engine over telemetry events (`preentry hunt`).
//!
//! - [`Engine`]: streaming, keyed by (host, target process); [`Engine::push`] an
//!   [`preentry_telemetry::Event`], [`Engine::finish`] at end of input; both return [`Alert`]s.
//!   Bounded state (count and idle-time eviction, counted in [`EngineStats`]), reordering within
//!   a configurable lateness ([`reorder::Reorder`]).
//! - Stages ([`Stage`]): `hollowing` → `header_or_tls_write` → `pre_entry_thread`. A full
//!   sequence in the time window is `high` (`critical` with exact TLS ranges, a thread start in a
//!   TLS callback range or a high-entropy payload); partial sequences are lower and name each
//!   missing stage with whether this telemetry could ever show it ([`stage::capability`]).
//! - [`Config`]: TOML with MITRE's tunables by name, engine bounds, approximations, allowlists.
//! - [`Coverage`]: which event kinds occur and which stages are observable (`preentry coverage`).
//! - [`ImageLayout`]: exact header/TLS ranges from PE bytes (`preentry-pe`), or approximations.
//!
//! A library: typed errors, no panics on input, never reads telemetry itself.

pub mod alert;
pub mod config;
pub mod coverage;
pub mod engine;
pub mod layout;
pub mod reorder;
pub mod stage;

pub use alert::{Alert, Evidence, MissingStage, Severity};
pub use config::{Config, ConfigError};
pub use coverage::{Coverage, CoverageReport};
pub use engine::{Engine, EngineStats, shannon_entropy};
pub use layout::{AddrRange, ImageLayout, LayoutSource, WriteTarget};
pub use stage::{FormatSet, Stage, Visibility, capability};
