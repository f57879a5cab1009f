//! Finding Wine processes from Linux: `/proc/PID/environ`, `/proc/PID/maps`
//! and `/proc/PID/mem`.
//!
//! Under Wine each Windows process is a Linux process and each Windows thread
//! a Linux task. A TEB is found without ptrace as a read-write anonymous page
//! whose qword at +0x30 (`NtTib.Self`) is its own address; its
//! `ClientId` (+0x40 process, +0x48 thread) gives the Windows PID and TID.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Largest anonymous region searched for TEBs (Wine keeps TEBs in small blocks).
const MAX_TEB_REGION: u64 = 16 << 20;
/// At most this many pages are probed per process.
const MAX_PROBES: usize = 1 << 16;

/// A TEB found in a process's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Teb {
    /// Address of the TEB.
    pub address: u64,
    /// `TEB.ClientId.UniqueProcess` (Windows PID).
    pub windows_pid: u32,
    /// `TEB.ClientId.UniqueThread` (Windows TID).
    pub windows_tid: u32,
}

/// Reads the TEBs of Linux process `pid` from `/proc/PID/maps` and `/proc/PID/mem`.
pub fn tebs(pid: u32) -> io::Result<Vec<Teb>> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let mem = File::open(format!("/proc/{pid}/mem"))?;
    let mut out = Vec::new();
    let mut probes = 0usize;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms), Some(_off), Some(_dev), Some(inode)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        if !perms.starts_with("rw") || inode != "0" || fields.next().is_some() {
            continue; // only anonymous read-write memory holds TEBs
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            continue;
        };
        if end <= start || end - start > MAX_TEB_REGION || start > u32::MAX as u64 * 16 {
            continue;
        }
        let mut page = start;
        while page < end && probes < MAX_PROBES {
            probes += 1;
            let mut buf = [0u8; 0x50];
            if mem.read_exact_at(&mut buf, page).is_ok() {
                let q = |o: usize| {
                    buf.get(o..o + 8)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_le_bytes)
                        .unwrap_or(0)
                };
                let (pid_q, tid_q) = (q(0x40), q(0x48));
                if q(0x30) == page
                    && pid_q != 0
                    && pid_q <= u32::MAX as u64
                    && tid_q <= u32::MAX as u64
                {
                    out.push(Teb {
                        address: page,
                        windows_pid: pid_q as u32,
                        windows_tid: tid_q as u32,
                    });
                }
            }
            page += 0x1000;
        }
    }
    Ok(out)
}

/// Windows PID of Linux process `pid`, read from its TEBs.
pub fn windows_pid(pid: u32) -> io::Result<Option<u32>> {
    Ok(tebs(pid)?.first().map(|t| t.windows_pid))
}

/// Linux PIDs whose environment contains exactly `KEY=VALUE`.
pub fn pids_with_env(key: &str, value: &str) -> Vec<u32> {
    let want = format!("{key}={value}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|v| v == want.as_bytes()) {
            out.push(pid);
        }
    }
    out.sort_unstable();
    out
}

/// `comm` of a Linux process (Wine sets it to the exe's name, cut at 15 bytes).
pub fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_string())
}

/// Whether Linux process `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Converts a Wine `Z:\...` path to the Linux path (Wine maps `Z:` to `/`).
pub fn linux_path_of(windows: &str) -> Option<std::path::PathBuf> {
    let rest = windows
        .strip_prefix("Z:")
        .or_else(|| windows.strip_prefix("z:"))?;
    Some(Path::new("/").join(rest.trim_start_matches('\\').replace('\\', "/")))
}

/// Converts an absolute Linux path to the Wine path `Z:\...`.
pub fn windows_path_of(linux: &Path) -> String {
    format!("Z:{}", linux.to_string_lossy().replace('/', "\\"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_round_trip() {
        let p = Path::new("/work/main/lab/build/bin/victim-tls.exe");
        let w = windows_path_of(p);
        assert_eq!(w, r"Z:\work\main\lab\build\bin\victim-tls.exe");
        assert_eq!(linux_path_of(&w).as_deref(), Some(p));
        assert_eq!(linux_path_of(r"C:\windows\x.exe"), None);
    }

    #[test]
    fn own_process_is_alive_and_has_no_tebs() {
        let me = std::process::id();
        assert!(alive(me));
        // a Linux process has no Wine TEBs
        assert!(tebs(me).unwrap_or_default().is_empty());
        assert!(!alive(u32::MAX));
    }
}
