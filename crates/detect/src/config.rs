//! Engine configuration: TOML with documented defaults (`config/preentry.toml` is the same
//! defaults written out, `docs/hunt.md` the reference). Pure data: never reads telemetry.
//!
//! MITRE's four DET0467 tunables keep their names as TOML keys in `[tunables]`:
//! `TargetProcessFilter`, `TimeWindowBetweenLoadAndTLSModification`,
//! `AnomalousThreadStartThreshold`, `PayloadEntropyThreshold`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A configuration error (bad TOML, bad value). Names the file when there is one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read config: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The TOML did not parse or did not match the schema.
    #[error("{path}: invalid config: {message}")]
    Parse { path: String, message: String },
    /// A value is out of its allowed range.
    #[error("{path}: invalid config: {field}: {message}")]
    Value {
        path: String,
        field: &'static str,
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// MITRE's tunables.
    pub tunables: Tunables,
    /// Streaming engine bounds.
    pub engine: EngineConfig,
    /// Approximations used when a target's image layout is not known.
    pub approximation: Approximation,
    /// Allowlists for debuggers, packers and security tools.
    pub allowlist: Allowlist,
}

/// MITRE DET0467 tunables, by their names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tunables {
    /// Target images to watch: case-insensitive globs (`*`, `?`) on the image's file name or
    /// full path. A target whose image is unknown is always watched. Default `["*"]`.
    #[serde(rename = "TargetProcessFilter")]
    pub target_process_filter: Vec<String>,
    /// Seconds allowed between the hollowing context (stage 1, "load") and the header/TLS
    /// modification (stage 2); also the window of the whole sequence. Default 120.
    #[serde(rename = "TimeWindowBetweenLoadAndTLSModification")]
    pub time_window_between_load_and_tls_modification: f64,
    /// How many anomalous pre-entry thread starts make stage 3. Default 1.
    #[serde(rename = "AnomalousThreadStartThreshold")]
    pub anomalous_thread_start_threshold: u32,
    /// Shannon entropy (bits per byte, 0..=8) above which known written bytes count as a packed
    /// or encrypted payload (supporting evidence; raises a full sequence to `critical`).
    /// Default 7.2.
    #[serde(rename = "PayloadEntropyThreshold")]
    pub payload_entropy_threshold: f64,
}

/// Bounds of the streaming engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// How late (seconds of event time) an event may arrive and still be put in order.
    pub lateness_seconds: f64,
    /// At most this many events wait in the reorder buffer; beyond it the oldest is released.
    pub max_buffered_events: usize,
    /// At most this many target processes are tracked; the least recently active is evicted.
    pub max_tracked_processes: usize,
    /// A target with no event for this many seconds (of event time) is evicted.
    pub idle_timeout_seconds: f64,
    /// Evidence events kept per stage and target.
    pub max_evidence_per_stage: usize,
    /// Memory regions (allocations, written images) remembered per target.
    pub max_regions_per_process: usize,
    /// Smallest number of written bytes whose entropy is computed.
    pub min_entropy_bytes: usize,
}

/// Approximations used when the image layout is not known (see `docs/hunt.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Approximation {
    /// Without a known `SizeOfHeaders`, writes within `[base, base + header_region_size)`
    /// count as PE header writes. Default 0x1000 (one page: headers never exceed it in
    /// practice, `SizeOfHeaders` is file-aligned and usually 0x400).
    pub header_region_size: u64,
    /// Without a known `SizeOfImage`, an image is assumed to span this many bytes. Default
    /// 16 MiB.
    pub image_span: u64,
    /// A write of at most this many bytes inside an image, holding a pointer-sized value that
    /// points into a freshly allocated or written executable region, counts as a likely TLS
    /// callback array patch. Default 64.
    pub tls_patch_max_write: u64,
    /// Root under which target image paths are looked up (`C:\x\y.exe` → `ROOT/x/y.exe`;
    /// without it the path is tried as is). Set by `preentry hunt --disk-root`.
    pub disk_root: Option<PathBuf>,
    /// Directories searched for a target image by its file name when its path does not
    /// resolve (`preentry hunt --image-dir`). Default none.
    pub image_dirs: Vec<PathBuf>,
    /// Read target images from disk for exact header/TLS ranges. Default true.
    pub read_images_from_disk: bool,
}

/// Allowlists: a matching sequence is kept but capped at `info` with the reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Allowlist {
    /// Actor images (globs on file name or path): debuggers, packers, security tools whose
    /// cross-process operations are expected.
    pub images: Vec<String>,
    /// Parent → child pairs (globs), e.g. a debugger starting its debuggee.
    pub parent_child: Vec<ParentChild>,
    /// Signers (case-insensitive substrings of the signature/subject) of actor images.
    pub signers: Vec<String>,
}

/// One parent → child allowlist entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParentChild {
    pub parent: String,
    pub child: String,
}

impl Default for Tunables {
    fn default() -> Self {
        Tunables {
            target_process_filter: vec!["*".to_string()],
            time_window_between_load_and_tls_modification: 120.0,
            anomalous_thread_start_threshold: 1,
            payload_entropy_threshold: 7.2,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            lateness_seconds: 5.0,
            max_buffered_events: 100_000,
            max_tracked_processes: 50_000,
            idle_timeout_seconds: 900.0,
            max_evidence_per_stage: 8,
            max_regions_per_process: 64,
            min_entropy_bytes: 256,
        }
    }
}

impl Default for Approximation {
    fn default() -> Self {
        Approximation {
            header_region_size: 0x1000,
            image_span: 16 * 1024 * 1024,
            tls_patch_max_write: 64,
            disk_root: None,
            image_dirs: Vec::new(),
            read_images_from_disk: true,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tunables: Tunables::default(),
            engine: EngineConfig::default(),
            approximation: Approximation::default(),
            allowlist: default_allowlist(),
        }
    }
}

/// The built-in allowlist: well-known debuggers and instrumentation whose suspended-start and
/// set-context use is routine. Packers are not listed by default (a packer unpacking into
/// itself is a local operation, which never makes a stage).
fn default_allowlist() -> Allowlist {
    Allowlist {
        images: [
            "windbg.exe",
            "windbgx.exe",
            "cdb.exe",
            "ntsd.exe",
            "x64dbg.exe",
            "x32dbg.exe",
            "ollydbg.exe",
            "devenv.exe",
            "msvsmon.exe",
            "vsdbg.exe",
            "gdb.exe",
            "winedbg.exe",
            "procmon.exe",
            "procmon64.exe",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        parent_child: Vec::new(),
        signers: Vec::new(),
    }
}

impl Config {
    /// Parse TOML text. `origin` names the source in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Read and parse a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml_str(&text, &path.display().to_string())
    }

    /// Check value ranges.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |field: &'static str, message: &str| ConfigError::Value {
            path: origin.to_string(),
            field,
            message: message.to_string(),
        };
        let t = &self.tunables;
        if !(t.time_window_between_load_and_tls_modification.is_finite()
            && t.time_window_between_load_and_tls_modification > 0.0)
        {
            return Err(bad(
                "TimeWindowBetweenLoadAndTLSModification",
                "must be a positive number of seconds",
            ));
        }
        if t.anomalous_thread_start_threshold == 0 {
            return Err(bad("AnomalousThreadStartThreshold", "must be at least 1"));
        }
        if !(0.0..=8.0).contains(&t.payload_entropy_threshold) {
            return Err(bad(
                "PayloadEntropyThreshold",
                "must be between 0 and 8 bits per byte",
            ));
        }
        if t.target_process_filter.is_empty() {
            return Err(bad(
                "TargetProcessFilter",
                "must name at least one pattern (use \"*\" for all)",
            ));
        }
        let e = &self.engine;
        if !(e.lateness_seconds.is_finite() && e.lateness_seconds >= 0.0) {
            return Err(bad("engine.lateness_seconds", "must be >= 0"));
        }
        if !(e.idle_timeout_seconds.is_finite() && e.idle_timeout_seconds > 0.0) {
            return Err(bad("engine.idle_timeout_seconds", "must be > 0"));
        }
        if e.max_tracked_processes == 0 {
            return Err(bad("engine.max_tracked_processes", "must be at least 1"));
        }
        if e.max_evidence_per_stage == 0 {
            return Err(bad("engine.max_evidence_per_stage", "must be at least 1"));
        }
        if self.approximation.header_region_size == 0 {
            return Err(bad("approximation.header_region_size", "must be > 0"));
        }
        Ok(())
    }
}

/// Case-insensitive glob match (`*` any run, `?` one character) against a whole string.
/// Iterative with backtracking over one star: linear-ish, bounded by both lengths.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    if pattern.is_ascii() && text.is_ascii() {
        // No allocation on the hot path: bytes, ASCII case folding.
        return glob_core(
            pattern.as_bytes(),
            text.as_bytes(),
            |a, b| a.eq_ignore_ascii_case(b),
            b'*',
            b'?',
        );
    }
    let p: Vec<char> = pattern.chars().flat_map(char::to_lowercase).collect();
    let t: Vec<char> = text.chars().flat_map(char::to_lowercase).collect();
    glob_core(&p, &t, |a, b| a == b, '*', '?')
}

fn glob_core<T: Copy + PartialEq>(
    p: &[T],
    t: &[T],
    eq: impl Fn(&T, &T) -> bool,
    star_c: T,
    any_c: T,
) -> bool {
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(c) if *c == star_c => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == any_c || eq(c, &t[ti]) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi.min(p.len())..].iter().all(|c| *c == star_c)
}

/// The file name part of a Windows or POSIX path.
pub fn file_name(path: &str) -> &str {
    path.rsplit(['\\', '/']).next().unwrap_or(path)
}

/// True when `pattern` matches the image's file name or its full path.
pub fn image_matches(pattern: &str, image: &str) -> bool {
    glob_match(pattern, file_name(image)) || glob_match(pattern, image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip() {
        let c = Config::default();
        c.validate("default").unwrap();
        let text = toml::to_string(&c).unwrap();
        let back = Config::from_toml_str(&text, "x").unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn mitre_names_are_the_keys() {
        let c = Config::from_toml_str(
            "[tunables]\nTargetProcessFilter = [\"svchost.exe\"]\nAnomalousThreadStartThreshold = 2\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.tunables.target_process_filter, vec!["svchost.exe"]);
        assert_eq!(c.tunables.anomalous_thread_start_threshold, 2);
        assert_eq!(c.tunables.payload_entropy_threshold, 7.2);
    }

    #[test]
    fn errors_name_file_and_field() {
        let e = Config::from_toml_str("[tunables]\nPayloadEntropyThreshold = 9.5\n", "my.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("my.toml") && e.contains("PayloadEntropyThreshold"),
            "{e}"
        );
        let e = Config::from_toml_str("[tunables]\nBogus = 1\n", "my.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("my.toml") && e.contains("Bogus"), "{e}");
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("svchost.exe", "SVCHOST.EXE"));
        assert!(glob_match("*.exe", "a.exe"));
        assert!(!glob_match("*.exe", "a.dll"));
        assert!(glob_match("s?c*t.exe", "svchost.exe"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(image_matches(
            "notepad.exe",
            r"C:\Windows\System32\notepad.exe"
        ));
        assert!(image_matches(
            r"c:\windows\*",
            r"C:\Windows\System32\notepad.exe"
        ));
        assert_eq!(file_name(r"C:\a\b.exe"), "b.exe");
        assert_eq!(file_name("b.exe"), "b.exe");
        assert!(glob_match("ÄBC*", "äbcdef"));
        assert!(!glob_match("ä?", "ä"));
    }
}
