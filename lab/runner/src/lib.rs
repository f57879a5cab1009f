//! Runs the Wine attack lab's scenarios for tests.
//!
//! `lab/setup.sh` builds the lab programs (C, mingw) and a private
//! WINEPREFIX under `lab/build`. This crate starts one scenario at a time
//! (a file lock serialises sessions across test threads and test binaries),
//! each under its own `wineserver -f -d2` whose debug output is the
//! scenario's telemetry trace, and holds it at a [`Checkpoint`]:
//!
//! * [`Checkpoint::Suspended`]: the attack is written, the victim not resumed;
//! * [`Checkpoint::InCallback`]: injected code (for benign controls: the
//!   victim's own TLS callback) is running, blocked until released;
//! * [`Checkpoint::AtMain`]: the victim's `main` is running, blocked.
//!
//! ```no_run
//! use preentry_lab::{Checkpoint, Lab, Scenario};
//! let Some(lab) = Lab::from_env() else { return };
//! let mut s = lab.start(Scenario::TlsArraySwap, Checkpoint::Suspended).unwrap();
//! println!("victim linux pid {} windows pid {}", s.linux_pid, s.windows_pid);
//! s.write_minidump(std::path::Path::new("/tmp/victim.dmp")).unwrap();
//! s.advance_to(Checkpoint::InCallback).unwrap();
//! let outcome = s.finish().unwrap();
//! assert!(outcome.markers.injected_before_main());
//! ```
//!
//! Programs and the runner talk through a per-run control directory (see
//! `lab/src/lab.h`); every marker carries a `QueryPerformanceCounter` value,
//! so the order "injected code, then main" is read back, not assumed.

mod error;
pub mod procfs;
pub mod trace;

use std::fmt;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

pub use error::LabError;

/// Environment variable: set to `1` to make [`Lab::from_env`] panic when the
/// lab is not set up (CI sets it).
pub const REQUIRE_ENV: &str = "PREENTRY_REQUIRE_LAB";
/// Environment variable: another lab build directory (default `lab/build`).
pub const BUILD_DIR_ENV: &str = "PREENTRY_LAB_BUILD";
/// Environment variable: set to `1` to keep each run's control directory.
pub const KEEP_ENV: &str = "PREENTRY_LAB_KEEP";
/// Environment variable: seconds to wait for each marker (default 60).
pub const TIMEOUT_ENV: &str = "PREENTRY_LAB_TIMEOUT_SECS";

/// The lab's scenarios. Names (kebab-case) are the lab programs' names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// (a) new callback array in RWX memory, `AddressOfCallBacks` patched.
    TlsArraySwap,
    /// (b) slot 0 of the existing callback array overwritten; chains to the original.
    TlsSlotOverwrite,
    /// (c) whole new TLS directory in private memory, `DataDirectory[9]` patched.
    TlsDirectoryRedirect,
    /// (d) RunPE: victim unmapped, payload written at its preferred base.
    HollowRunpe,
    /// (e) payload written elsewhere (relocated), victim left mapped.
    HollowRelocated,
    /// (f) user APC queued to the suspended initial thread (pre-entry, not TLS).
    EarlyBirdApc,
    /// Benign: child created suspended and resumed, no writes.
    BenignSuspendResume,
    /// Benign: debugger-like int3 written into the child's `.text` and restored.
    BenignDebugger,
    /// Benign: the child allocates RWX memory in itself and runs code there.
    BenignJit,
    /// Benign: the child decodes code into its own `.text` (packer-like).
    BenignSelfUnpack,
}

impl Scenario {
    /// Every scenario, attacks first.
    pub const ALL: [Scenario; 10] = [
        Scenario::TlsArraySwap,
        Scenario::TlsSlotOverwrite,
        Scenario::TlsDirectoryRedirect,
        Scenario::HollowRunpe,
        Scenario::HollowRelocated,
        Scenario::EarlyBirdApc,
        Scenario::BenignSuspendResume,
        Scenario::BenignDebugger,
        Scenario::BenignJit,
        Scenario::BenignSelfUnpack,
    ];

    /// Kebab-case name, equal to the lab program's file stem.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::TlsArraySwap => "tls-array-swap",
            Scenario::TlsSlotOverwrite => "tls-slot-overwrite",
            Scenario::TlsDirectoryRedirect => "tls-directory-redirect",
            Scenario::HollowRunpe => "hollow-runpe",
            Scenario::HollowRelocated => "hollow-relocated",
            Scenario::EarlyBirdApc => "early-bird-apc",
            Scenario::BenignSuspendResume => "benign-suspend-resume",
            Scenario::BenignDebugger => "benign-debugger",
            Scenario::BenignJit => "benign-jit",
            Scenario::BenignSelfUnpack => "benign-self-unpack",
        }
    }

    /// The scenario called `name`.
    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether the scenario is an attack (as opposed to a benign control).
    pub fn is_attack(self) -> bool {
        !self.name().starts_with("benign-")
    }

    /// Whether the attack runs code through TLS callbacks (hollowing counts:
    /// the payload's TLS callback runs before its entry point).
    pub fn uses_tls(self) -> bool {
        self.is_attack() && self != Scenario::EarlyBirdApc
    }

    /// Whether the attack replaces the victim's image (hollowing).
    pub fn is_hollowing(self) -> bool {
        matches!(self, Scenario::HollowRunpe | Scenario::HollowRelocated)
    }

    /// The scenario's parent program (attacker or benign parent).
    pub fn program(self) -> String {
        format!("{}.exe", self.name())
    }

    /// The program the scenario starts suspended (the victim).
    pub fn victim_program(self) -> &'static str {
        match self {
            Scenario::TlsArraySwap
            | Scenario::TlsSlotOverwrite
            | Scenario::BenignSuspendResume
            | Scenario::BenignDebugger => "victim-tls.exe",
            Scenario::TlsDirectoryRedirect => "victim-notls.exe",
            Scenario::HollowRunpe | Scenario::HollowRelocated | Scenario::EarlyBirdApc => {
                "victim-crt.exe"
            }
            Scenario::BenignJit => "jit.exe",
            Scenario::BenignSelfUnpack => "selfunpack.exe",
        }
    }

    /// The PE written into the victim, for hollowing scenarios.
    pub fn payload_program(self) -> Option<&'static str> {
        self.is_hollowing().then_some("payload.exe")
    }

    /// The marker whose appearance is the in-callback checkpoint: `injected`
    /// for attacks, the victim's own TLS callback (`tls`) for benign controls.
    pub fn callback_marker(self) -> &'static str {
        if self.is_attack() { "injected" } else { "tls" }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scenario::from_name(s).ok_or_else(|| format!("unknown scenario `{s}`"))
    }
}

/// Where a scenario is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Checkpoint {
    /// Attack written, victim not resumed.
    Suspended,
    /// Injected code (benign: the victim's own TLS callback) running, blocked.
    InCallback,
    /// The victim's (or payload's) `main` running, blocked.
    AtMain,
}

impl Checkpoint {
    /// All checkpoints in order.
    pub const ALL: [Checkpoint; 3] = [
        Checkpoint::Suspended,
        Checkpoint::InCallback,
        Checkpoint::AtMain,
    ];

    /// Kebab-case name.
    pub fn name(self) -> &'static str {
        match self {
            Checkpoint::Suspended => "suspended",
            Checkpoint::InCallback => "in-callback",
            Checkpoint::AtMain => "at-main",
        }
    }

    /// The checkpoint called `name`.
    pub fn from_name(name: &str) -> Option<Checkpoint> {
        Checkpoint::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Checkpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Checkpoint::from_name(s).ok_or_else(|| format!("unknown checkpoint `{s}`"))
    }
}

/// One marker line written by a lab program:
/// `qpc=<counter> pid=<windows pid> tid=<windows tid> who=<text>[ extra]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// `QueryPerformanceCounter` when written (system-wide, monotonic).
    pub qpc: u64,
    /// Windows PID of the writer.
    pub windows_pid: u32,
    /// Windows TID of the writer.
    pub windows_tid: u32,
    /// Who wrote it, e.g. `tls-array-swap` or `victim-tls-main`.
    pub who: String,
    /// The rest of the line (e.g. `region=0x... result=42`).
    pub extra: String,
}

impl Marker {
    /// Parses a marker line.
    pub fn parse(line: &str) -> Option<Marker> {
        let line = line.trim_end();
        let mut qpc = None;
        let mut pid = None;
        let mut tid = None;
        let mut rest = line;
        for _ in 0..3 {
            let (field, tail) = rest.split_once(' ')?;
            rest = tail;
            match field.split_once('=')? {
                ("qpc", v) => qpc = v.parse().ok(),
                ("pid", v) => pid = v.parse().ok(),
                ("tid", v) => tid = v.parse().ok(),
                _ => return None,
            }
        }
        let rest = rest.strip_prefix("who=")?;
        let (who, extra) = rest.split_once(' ').unwrap_or((rest, ""));
        Some(Marker {
            qpc: qpc?,
            windows_pid: pid?,
            windows_tid: tid?,
            who: who.to_string(),
            extra: extra.to_string(),
        })
    }
}

/// The markers of one run, read from its control directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Markers {
    /// Written by injected code (attacks only; hollowing: the payload's TLS callback).
    pub injected: Option<Marker>,
    /// Written by the victim's own, legitimate TLS callback.
    pub own_tls: Option<Marker>,
    /// Written first thing by `main` (the victim's, or the payload's after hollowing).
    pub main: Option<Marker>,
    /// Written by `main` when it is about to block (the at-main checkpoint).
    pub main_ready: Option<Marker>,
    /// Written by the benign JIT / self-unpacking activity in `main`.
    pub activity: Option<Marker>,
    /// Written by a lab program that failed.
    pub error: Option<Marker>,
}

impl Markers {
    /// Reads the markers in `dir`; incomplete (still being written) or absent
    /// markers are `None`, malformed ones an error.
    pub fn read(dir: &Path) -> Result<Markers, LabError> {
        let one = |name: &str| -> Result<Option<Marker>, LabError> {
            let path = dir.join(name);
            match read_complete(&path)? {
                None => Ok(None),
                Some(text) => Marker::parse(&text)
                    .map(Some)
                    .ok_or_else(|| LabError::Malformed {
                        path,
                        detail: format!("not a marker line: {text:?}"),
                    }),
            }
        };
        Ok(Markers {
            injected: one("injected")?,
            own_tls: one("tls")?,
            main: one("main")?,
            main_ready: one("main-ready")?,
            activity: one("activity")?,
            error: one("error")?,
        })
    }

    /// True when injected code ran and wrote its marker before `main` started
    /// (or `main` has not started yet).
    pub fn injected_before_main(&self) -> bool {
        match (&self.injected, &self.main) {
            (Some(i), Some(m)) => i.qpc < m.qpc,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// Reads a lab file once it is complete (ends with a newline).
fn read_complete(path: &Path) -> Result<Option<String>, LabError> {
    match fs::read_to_string(path) {
        Ok(text) if text.ends_with('\n') => Ok(Some(text)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LabError::io(path, e)),
    }
}

/// What the scenario's parent program reported at the suspended checkpoint
/// (file `suspended` in the control directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuspendedReport {
    /// Victim's Windows PID.
    pub windows_pid: u32,
    /// Victim's initial thread's Windows TID.
    pub windows_tid: u32,
    /// `PEB.ImageBaseAddress` after the attack (the payload's base when hollowed).
    pub image_base: u64,
    /// Address of the victim's PEB.
    pub peb: u64,
    /// The victim exe's path as Wine saw it (`Z:\...`).
    pub victim_windows_path: String,
    /// Free-form detail from the attacker: addresses written, etc.
    pub detail: String,
}

impl SuspendedReport {
    fn parse(path: &Path, text: &str) -> Result<SuspendedReport, LabError> {
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                .ok_or_else(|| LabError::Malformed {
                    path: path.to_path_buf(),
                    detail: format!("no `{key}=` line"),
                })
        };
        let num = |key: &str| -> Result<u64, LabError> {
            let v = get(key)?;
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.map_err(|_| LabError::Malformed {
                path: path.to_path_buf(),
                detail: format!("`{key}` is not a number: {v:?}"),
            })
        };
        let small = |key: &str| -> Result<u32, LabError> {
            u32::try_from(num(key)?).map_err(|_| LabError::Malformed {
                path: path.to_path_buf(),
                detail: format!("`{key}` out of range"),
            })
        };
        Ok(SuspendedReport {
            windows_pid: small("winpid")?,
            windows_tid: small("wintid")?,
            image_base: num("image_base")?,
            peb: num("peb")?,
            victim_windows_path: get("victim")?.to_string(),
            detail: get("detail")?.to_string(),
        })
    }
}

/// A set-up lab: programs, prefix and Wine binaries (from `lab/build/lab.env`).
#[derive(Debug, Clone)]
pub struct Lab {
    build: PathBuf,
    bin: PathBuf,
    prefix: PathBuf,
    wine: PathBuf,
    wineserver: PathBuf,
    timeout: Duration,
}

impl Lab {
    /// `lab/build` of this checkout, or `$PREENTRY_LAB_BUILD`.
    pub fn default_build_dir() -> PathBuf {
        match std::env::var_os(BUILD_DIR_ENV) {
            Some(dir) => PathBuf::from(dir),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../build"),
        }
    }

    /// The lab, or `None` after a loud message on stderr when it is not set
    /// up. Panics instead when `PREENTRY_REQUIRE_LAB=1` (CI).
    pub fn from_env() -> Option<Lab> {
        match Lab::open(&Lab::default_build_dir()) {
            Ok(lab) => Some(lab),
            Err(e) => {
                if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
                    panic!("{REQUIRE_ENV}=1 but the Wine lab is unusable: {e}");
                }
                // Written to the stderr handle directly: libtest captures
                // `eprintln!` of passing tests, and this must be seen.
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    use std::io::Write;
                    let bar = "=".repeat(70);
                    let _ = write!(
                        std::io::stderr(),
                        "\n{bar}\n  SKIPPED: Wine lab tests did not run.\n  {e}\n  \
                         Set it up with `bash lab/setup.sh`; CI sets {REQUIRE_ENV}=1.\n{bar}\n\n"
                    );
                });
                None
            }
        }
    }

    /// Opens the lab whose build directory is `build`.
    pub fn open(build: &Path) -> Result<Lab, LabError> {
        let env_path = build.join("lab.env");
        let text = fs::read_to_string(&env_path)
            .map_err(|e| LabError::NotSetUp(format!("{}: {e}", env_path.display())))?;
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                .map(PathBuf::from)
                .ok_or_else(|| {
                    LabError::NotSetUp(format!("{}: no `{key}=` line", env_path.display()))
                })
        };
        let timeout = std::env::var(TIMEOUT_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(60);
        let lab = Lab {
            build: build.to_path_buf(),
            bin: get("bin")?,
            prefix: get("prefix")?,
            wine: get("wine")?,
            wineserver: get("wineserver")?,
            timeout: Duration::from_secs(timeout),
        };
        let mut needed: Vec<String> = Scenario::ALL.iter().map(|s| s.program()).collect();
        needed.extend(["minidump.exe", "payload.exe", "victim-tls.exe"].map(String::from));
        for file in needed {
            let p = lab.bin.join(&file);
            if !p.is_file() {
                return Err(LabError::NotSetUp(format!("{} missing", p.display())));
            }
        }
        for p in [&lab.wine, &lab.wineserver] {
            if !p.is_file() {
                return Err(LabError::NotSetUp(format!("{} missing", p.display())));
            }
        }
        if !lab.prefix.join("system.reg").is_file() {
            return Err(LabError::NotSetUp(format!(
                "no WINEPREFIX at {}",
                lab.prefix.display()
            )));
        }
        Ok(lab)
    }

    /// Directory of the built lab programs.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// The private WINEPREFIX.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// Path of a built lab program, e.g. `payload.exe`.
    pub fn program_path(&self, file: &str) -> PathBuf {
        self.bin.join(file)
    }

    fn wine_command(&self, program: &Path, control_windows: &str) -> Command {
        let mut cmd = Command::new(&self.wine);
        clean_env(&mut cmd);
        cmd.arg(program)
            .env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .env("WINESERVER", &self.wineserver)
            .env("LABCTL", control_windows)
            .stdin(Stdio::null());
        cmd
    }

    fn kill_server(&self) {
        let _ = Command::new(&self.wineserver)
            .arg("-k")
            .env("WINEPREFIX", &self.prefix)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    fn lock(&self) -> Result<File, LabError> {
        let lock_path = self.build.join("lab.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| LabError::io(&lock_path, e))?;
        lock.lock().map_err(|e| LabError::io(&lock_path, e))?;
        Ok(lock)
    }

    /// Runs a Windows program (e.g. a Rust windows-gnu build of `preentry.exe`)
    /// in the lab's prefix, untraced, under the lab lock, and returns its
    /// output. It is killed after `timeout`.
    pub fn run_windows_program(
        &self,
        exe: &Path,
        args: &[&str],
        timeout: Duration,
    ) -> Result<std::process::Output, LabError> {
        let _lock = self.lock()?;
        let mut child = self
            .wine_command(exe, "")
            .env_remove("LABCTL")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| LabError::Spawn {
                program: exe.display().to_string(),
                source,
            })?;
        // drain the pipes on threads so a chatty program cannot block
        let mut out_pipe = child.stdout.take();
        let mut err_pipe = child.stderr.take();
        let out_t = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(p) = out_pipe.as_mut() {
                let _ = std::io::Read::read_to_end(p, &mut buf);
            }
            buf
        });
        let err_t = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(p) = err_pipe.as_mut() {
                let _ = std::io::Read::read_to_end(p, &mut buf);
            }
            buf
        });
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    self.kill_server();
                    return Err(LabError::ProgramFailed {
                        scenario: None,
                        detail: format!("{} timed out after {timeout:?}", exe.display()),
                    });
                }
                Err(e) => return Err(LabError::io(exe, e)),
            }
        };
        self.kill_server();
        Ok(std::process::Output {
            status,
            stdout: out_t.join().unwrap_or_default(),
            stderr: err_t.join().unwrap_or_default(),
        })
    }

    /// Starts `scenario` and holds it at `checkpoint`.
    ///
    /// Sessions are serialised by a lock on `lab/build/lab.lock` (held until
    /// the session is finished or dropped), because each one restarts the
    /// prefix's wineserver with tracing on.
    pub fn start(&self, scenario: Scenario, checkpoint: Checkpoint) -> Result<Session, LabError> {
        let lock = self.lock()?;
        remove_stale_runs(&self.build.join("runs"));

        let run = RunDir::create(&self.build.join("runs"), scenario)?;
        let control_dir = run.path.clone();
        let control_windows = procfs::windows_path_of(&control_dir);
        let trace_path = control_dir.join("wineserver.trace");
        let started = SystemTime::now();
        let clock = Instant::now();

        // A fresh wineserver per session: its -d2 output is this run's trace.
        self.kill_server();
        let trace = File::create(&trace_path).map_err(|e| LabError::io(&trace_path, e))?;
        let mut server = Command::new(&self.wineserver);
        clean_env(&mut server);
        let server = server
            .args(["-f", "-d2"])
            .env("WINEPREFIX", &self.prefix)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(trace)
            .spawn()
            .map_err(|source| LabError::Spawn {
                program: self.wineserver.display().to_string(),
                source,
            })?;
        wait_for_server_socket(&self.prefix, Duration::from_secs(5));

        let log_path = control_dir.join("attacker.log");
        let log = File::create(&log_path).map_err(|e| LabError::io(&log_path, e))?;
        let log2 = log.try_clone().map_err(|e| LabError::io(&log_path, e))?;
        let program = self.bin.join(scenario.program());
        let attacker = self
            .wine_command(&program, &control_windows)
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|source| LabError::Spawn {
                program: program.display().to_string(),
                source,
            })?;

        let mut session = Session {
            scenario,
            linux_pid: 0,
            windows_pid: 0,
            windows_tid: 0,
            victim_exe: PathBuf::new(),
            payload_exe: scenario.payload_program().map(|p| self.bin.join(p)),
            control_dir,
            trace_path,
            attacker_linux_pid: attacker.id(),
            report: SuspendedReport {
                windows_pid: 0,
                windows_tid: 0,
                image_base: 0,
                peb: 0,
                victim_windows_path: String::new(),
                detail: String::new(),
            },
            started,
            checkpoint: Checkpoint::Suspended,
            lab: self.clone(),
            attacker: Some(attacker),
            server: Some(server),
            run: Arc::new(run),
            clock,
            dumpers: std::sync::Mutex::new(Vec::new()),
            _lock: lock,
        };

        let report_path = session.control_dir.join("suspended");
        let text = session.wait_for("suspended")?;
        session.report = SuspendedReport::parse(&report_path, &text)?;
        session.windows_pid = session.report.windows_pid;
        session.windows_tid = session.report.windows_tid;
        session.victim_exe = procfs::linux_path_of(&session.report.victim_windows_path)
            .ok_or_else(|| LabError::Malformed {
                path: report_path.clone(),
                detail: format!(
                    "victim path {:?} is not on drive Z:",
                    session.report.victim_windows_path
                ),
            })?;
        session.linux_pid = session.find_victim_linux_pid()?;
        session.advance_to(checkpoint)?;
        Ok(session)
    }
}

/// Waits (bounded) for the socket of the prefix's wineserver.
fn wait_for_server_socket(prefix: &Path, limit: Duration) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::metadata(prefix) else {
        return;
    };
    let leaf = format!("server-{:x}-{:x}", meta.dev(), meta.ino());
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        for tmp in [std::env::temp_dir(), PathBuf::from("/tmp")] {
            let Ok(dir) = fs::read_dir(tmp) else { continue };
            for entry in dir.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if (name.starts_with("wine-") || name.starts_with(".wine-"))
                    && entry.path().join(&leaf).join("socket").exists()
                {
                    return;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Removes run directories left by test processes that died (the name is
/// `<scenario>-<pid>-<n>`), unless `PREENTRY_LAB_KEEP=1`.
fn remove_stale_runs(runs: &Path) {
    if std::env::var(KEEP_ENV).is_ok_and(|v| v == "1") {
        return;
    }
    let Ok(dir) = fs::read_dir(runs) else {
        return;
    };
    for entry in dir.flatten().take(10_000) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let mut parts = name.rsplitn(3, '-');
        let (Some(_n), Some(pid)) = (parts.next(), parts.next()) else {
            continue;
        };
        if let Ok(pid) = pid.parse::<u32>()
            && pid != std::process::id()
            && !procfs::alive(pid)
        {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A run's control directory, removed when the last owner is dropped unless
/// `PREENTRY_LAB_KEEP=1`.
#[derive(Debug)]
struct RunDir {
    path: PathBuf,
    keep: bool,
}

impl RunDir {
    fn create(runs: &Path, scenario: Scenario) -> Result<RunDir, LabError> {
        let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = runs.join(format!("{}-{}-{}", scenario.name(), std::process::id(), n));
        if path.exists() {
            fs::remove_dir_all(&path).map_err(|e| LabError::io(&path, e))?;
        }
        fs::create_dir_all(&path).map_err(|e| LabError::io(&path, e))?;
        let path = path.canonicalize().map_err(|e| LabError::io(&path, e))?;
        Ok(RunDir {
            path,
            keep: std::env::var(KEEP_ENV).is_ok_and(|v| v == "1"),
        })
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A running scenario, held at a checkpoint. Dropping it kills the scenario.
#[derive(Debug)]
pub struct Session {
    /// The scenario.
    pub scenario: Scenario,
    /// The victim's Linux PID (verified through its TEB's ClientId).
    pub linux_pid: u32,
    /// The victim's Windows PID.
    pub windows_pid: u32,
    /// The Windows TID of the victim's initial thread.
    pub windows_tid: u32,
    /// The victim's exe on disk.
    pub victim_exe: PathBuf,
    /// The payload written into the victim (hollowing scenarios).
    pub payload_exe: Option<PathBuf>,
    /// The run's control directory (markers, `attacker.log`, the trace).
    pub control_dir: PathBuf,
    /// `wineserver -f -d2` output of this run (complete after `finish`).
    pub trace_path: PathBuf,
    /// Linux PID of the scenario's parent (attacker) program.
    pub attacker_linux_pid: u32,
    /// What the parent program reported at the suspended checkpoint.
    pub report: SuspendedReport,
    /// When the session started.
    pub started: SystemTime,
    checkpoint: Checkpoint,
    lab: Lab,
    attacker: Option<Child>,
    server: Option<Child>,
    run: Arc<RunDir>,
    clock: Instant,
    dumpers: std::sync::Mutex<Vec<u32>>,
    _lock: File,
}

/// How a finished scenario ended.
#[derive(Debug)]
pub struct Outcome {
    /// The scenario.
    pub scenario: Scenario,
    /// All markers at the end.
    pub markers: Markers,
    /// The victim's exit code as the parent program saw it.
    pub victim_exit_code: Option<u32>,
    /// The parent program's exit code.
    pub attacker_exit_code: Option<i32>,
    /// The complete `wineserver -f -d2` trace of the run.
    pub trace_path: PathBuf,
    /// The run's control directory.
    pub control_dir: PathBuf,
    /// Wall time from start to finish.
    pub elapsed: Duration,
    /// Linux PIDs of the `minidump.exe` runs of this session (their requests
    /// are in the trace; see [`Outcome::trace_without_dumps`]).
    pub dumper_linux_pids: Vec<u32>,
    _run: Arc<RunDir>,
}

impl Outcome {
    /// The trace without the requests of `minidump.exe` (see [`trace::without_processes`]).
    pub fn trace_without_dumps(&self) -> Result<String, LabError> {
        let text =
            fs::read_to_string(&self.trace_path).map_err(|e| LabError::io(&self.trace_path, e))?;
        Ok(trace::without_processes(&text, &self.dumper_linux_pids))
    }

    /// Saves the trace (without `minidump.exe`'s requests) to `dest`, e.g.
    /// beside a minidump; the run's control directory is removed with the
    /// last owner of this outcome.
    pub fn save_trace(&self, dest: &Path) -> Result<(), LabError> {
        fs::write(dest, self.trace_without_dumps()?).map_err(|e| LabError::io(dest, e))
    }
}

impl Session {
    /// The checkpoint the scenario is held at.
    pub fn checkpoint(&self) -> Checkpoint {
        self.checkpoint
    }

    /// Reads the run's markers now.
    pub fn marker(&self) -> Result<Markers, LabError> {
        Markers::read(&self.control_dir)
    }

    /// Seconds since the session started.
    pub fn elapsed(&self) -> Duration {
        self.clock.elapsed()
    }

    /// Writes a full-memory minidump of the victim to `out` with the lab's
    /// `minidump.exe` (Wine's dbghelp `MiniDumpWriteDump`). Its server
    /// requests (reads of the victim's memory) appear in the trace.
    pub fn write_minidump(&self, out: &Path) -> Result<(), LabError> {
        let fail = |detail: String| LabError::Minidump {
            windows_pid: self.windows_pid,
            path: out.to_path_buf(),
            detail,
        };
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let parent = parent
            .canonicalize()
            .map_err(|e| LabError::io(&parent, e))?;
        let name = out
            .file_name()
            .ok_or_else(|| fail("output has no file name".into()))?;
        let target = parent.join(name);
        let program = self.lab.bin.join("minidump.exe");
        let control_windows = procfs::windows_path_of(&self.control_dir);
        let mut child = self
            .lab
            .wine_command(&program, &control_windows)
            .arg(self.windows_pid.to_string())
            .arg(procfs::windows_path_of(&target))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| LabError::Spawn {
                program: program.display().to_string(),
                source,
            })?;
        if let Ok(mut pids) = self.dumpers.lock() {
            pids.push(child.id());
        }
        let deadline = Instant::now() + self.lab.timeout * 2;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(fail("timed out".into()));
                }
                Err(e) => return Err(fail(e.to_string())),
            }
        }
        let output = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
        let size = fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
        if !output.status.success() || size == 0 {
            return Err(fail(format!(
                "{}; {} bytes written; {}{}",
                output.status,
                size,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        Ok(())
    }

    /// Lets the scenario run on to `to` and holds it there.
    pub fn advance_to(&mut self, to: Checkpoint) -> Result<(), LabError> {
        if to < self.checkpoint {
            return Err(LabError::Backwards {
                from: self.checkpoint,
                to,
            });
        }
        while self.checkpoint < to {
            match self.checkpoint {
                Checkpoint::Suspended => {
                    self.release("resume")?;
                    self.wait_for(self.scenario.callback_marker())?;
                    self.checkpoint = Checkpoint::InCallback;
                }
                Checkpoint::InCallback => {
                    self.release("release-callback")?;
                    self.wait_for("main-ready")?;
                    self.checkpoint = Checkpoint::AtMain;
                }
                Checkpoint::AtMain => break,
            }
        }
        Ok(())
    }

    /// Releases every checkpoint, waits for the scenario to end and stops its
    /// wineserver (which completes the trace).
    pub fn finish(mut self) -> Result<Outcome, LabError> {
        for name in ["resume", "release-callback", "release-main"] {
            self.release(name)?;
        }
        self.wait_for("attacker-done")?;
        let mut attacker_exit_code = None;
        if let Some(mut child) = self.attacker.take() {
            let deadline = Instant::now() + self.lab.timeout;
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        attacker_exit_code = status.code();
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        let done_path = self.control_dir.join("attacker-done");
        let done = read_complete(&done_path)?.unwrap_or_default();
        let victim_exit_code = done
            .lines()
            .find_map(|l| l.strip_prefix("victim_exit="))
            .and_then(|v| v.parse().ok());
        self.stop_server();
        let markers = self.marker()?;
        Ok(Outcome {
            scenario: self.scenario,
            markers,
            victim_exit_code,
            attacker_exit_code,
            trace_path: self.trace_path.clone(),
            control_dir: self.control_dir.clone(),
            elapsed: self.clock.elapsed(),
            dumper_linux_pids: self.dumpers.lock().map(|p| p.clone()).unwrap_or_default(),
            _run: Arc::clone(&self.run),
        })
    }

    fn release(&self, name: &str) -> Result<(), LabError> {
        let path = self.control_dir.join(name);
        fs::write(&path, b"go\n").map_err(|e| LabError::io(&path, e))
    }

    /// Waits for a complete file NAME in the control directory; fails early
    /// on an `error` marker or when the parent program has exited.
    fn wait_for(&mut self, name: &str) -> Result<String, LabError> {
        let path = self.control_dir.join(name);
        let deadline = Instant::now() + self.lab.timeout;
        loop {
            if let Some(text) = read_complete(&path)? {
                return Ok(text);
            }
            if let Some(text) = read_complete(&self.control_dir.join("error"))? {
                return Err(LabError::ProgramFailed {
                    scenario: Some(self.scenario),
                    detail: format!("error marker: {}", text.trim_end()),
                });
            }
            let exited = match self.attacker.as_mut() {
                Some(child) => child.try_wait().ok().flatten(),
                None => None,
            };
            if let Some(status) = exited {
                // one last look: the file may have been written just before exit
                if let Some(text) = read_complete(&path)? {
                    return Ok(text);
                }
                let log =
                    fs::read_to_string(self.control_dir.join("attacker.log")).unwrap_or_default();
                return Err(LabError::ProgramFailed {
                    scenario: Some(self.scenario),
                    detail: format!(
                        "{} exited ({status}) before `{name}`; output: {}",
                        self.scenario.program(),
                        log.trim()
                    ),
                });
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    scenario: self.scenario,
                    waiting_for: name.to_string(),
                    after: self.lab.timeout,
                    control_dir: self.control_dir.clone(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The victim's Linux PID: a process of this run (its environment holds
    /// this run's LABCTL) with a TEB whose ClientId is the victim's Windows PID.
    fn find_victim_linux_pid(&self) -> Result<u32, LabError> {
        let control_windows = procfs::windows_path_of(&self.control_dir);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for pid in procfs::pids_with_env("LABCTL", &control_windows) {
                if pid == self.attacker_linux_pid {
                    continue;
                }
                if procfs::tebs(pid)
                    .unwrap_or_default()
                    .iter()
                    .any(|t| t.windows_pid == self.windows_pid)
                {
                    return Ok(pid);
                }
            }
            if Instant::now() >= deadline {
                return Err(LabError::VictimNotFound {
                    scenario: self.scenario,
                    windows_pid: self.windows_pid,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop_server(&mut self) {
        self.lab.kill_server();
        if let Some(mut server) = self.server.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = server.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(mut child) = self.attacker.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // `wineserver -k` ends every process of the prefix, the victim included.
        self.stop_server();
    }
}

/// Lab programs and the traced wineserver start from a scrubbed environment: only what Wine
/// needs is passed on, so the traces (whose `get_startup_info` replies carry the whole Windows
/// environment) and dumps never record the caller's environment variables.
fn clean_env(cmd: &mut Command) {
    cmd.env_clear();
    for (key, default) in [("PATH", "/usr/local/bin:/usr/bin:/bin"), ("HOME", "/root")] {
        cmd.env(key, std::env::var_os(key).unwrap_or_else(|| default.into()));
    }
    cmd.env("LANG", "C.UTF-8");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_names_round_trip_and_split() {
        for s in Scenario::ALL {
            assert_eq!(Scenario::from_name(s.name()), Some(s));
            assert_eq!(s.to_string().parse::<Scenario>(), Ok(s));
        }
        let attacks = Scenario::ALL.iter().filter(|s| s.is_attack()).count();
        assert_eq!(attacks, 6);
        assert!(!Scenario::EarlyBirdApc.uses_tls());
        assert!(Scenario::HollowRunpe.uses_tls());
        assert_eq!(Scenario::from_name("nope"), None);
        for c in Checkpoint::ALL {
            assert_eq!(c.to_string().parse::<Checkpoint>(), Ok(c));
        }
        assert!(Checkpoint::Suspended < Checkpoint::InCallback);
        assert!(Checkpoint::InCallback < Checkpoint::AtMain);
    }

    #[test]
    fn marker_lines_parse() {
        let m = Marker::parse("qpc=6473300204 pid=232 tid=236 who=tls-array-swap\n");
        assert_eq!(
            m,
            Some(Marker {
                qpc: 6473300204,
                windows_pid: 232,
                windows_tid: 236,
                who: "tls-array-swap".into(),
                extra: String::new()
            })
        );
        let m = Marker::parse("qpc=1 pid=2 tid=3 who=jit region=0x10a0000 result=42\n");
        assert_eq!(
            m.map(|m| m.extra),
            Some("region=0x10a0000 result=42".into())
        );
        assert_eq!(Marker::parse("qpc=x pid=2 tid=3 who=a"), None);
        assert_eq!(Marker::parse("garbage"), None);
        assert_eq!(Marker::parse(""), None);
    }

    #[test]
    fn ordering_of_markers() {
        let mk = |qpc| Marker {
            qpc,
            windows_pid: 1,
            windows_tid: 1,
            who: "x".into(),
            extra: String::new(),
        };
        let mut m = Markers::default();
        assert!(!m.injected_before_main());
        m.main = Some(mk(10));
        assert!(!m.injected_before_main());
        m.injected = Some(mk(11));
        assert!(!m.injected_before_main());
        m.injected = Some(mk(9));
        assert!(m.injected_before_main());
    }

    #[test]
    fn suspended_report_parses() {
        let text = "winpid=232\nwintid=236\nimage_base=0x140000000\npeb=0x67ff0000\n\
                    victim=Z:\\work\\bin\\victim-tls.exe\ndetail=a=1 b=2\n";
        let r = SuspendedReport::parse(Path::new("suspended"), text).unwrap();
        assert_eq!(r.windows_pid, 232);
        assert_eq!(r.image_base, 0x1_4000_0000);
        assert_eq!(r.detail, "a=1 b=2");
        assert!(SuspendedReport::parse(Path::new("s"), "winpid=1\n").is_err());
        assert!(SuspendedReport::parse(Path::new("s"), &text.replace("232", "x")).is_err());
    }

    #[test]
    fn open_reports_missing_setup() {
        let dir = std::env::temp_dir().join(format!("preentry-lab-none-{}", std::process::id()));
        match Lab::open(&dir) {
            Err(LabError::NotSetUp(msg)) => assert!(msg.contains("lab.env")),
            other => panic!("expected NotSetUp, got {other:?}"),
        }
    }
}
