//! Maps a module path as a process names it to a file on this machine, for the disk
//! comparisons. Pure path logic plus `Path::is_file` probes; never opens a target process.
//!
//! Order of preference:
//! 1. with `--disk-root DIR`: `DIR/<path without drive>` then `DIR/<file name>`;
//! 2. the host file that the source saw mapped at the module's base (live Wine);
//! 3. Wine drive mapping: `Z:\x` → `/x`, `C:\x` → `$WINEPREFIX/drive_c/x` (default `~/.wine`),
//!    matched case-insensitively component by component;
//! 4. a Unix absolute path as-is.

use std::path::{Path, PathBuf};

/// Where disk files are looked up.
#[derive(Debug, Clone, Default)]
pub struct DiskResolver {
    /// `--disk-root`: look files up under this folder only.
    pub disk_root: Option<PathBuf>,
    /// Wine prefix for `C:` (defaults to `$WINEPREFIX`, then `$HOME/.wine`).
    pub wine_prefix: Option<PathBuf>,
}

/// Most path components walked when matching case-insensitively (a bound on hostile paths).
const MAX_COMPONENTS: usize = 64;

impl DiskResolver {
    /// A resolver using `$WINEPREFIX` / `$HOME/.wine` for drive `C:`.
    pub fn from_env(disk_root: Option<PathBuf>) -> Self {
        let wine_prefix = std::env::var_os("WINEPREFIX")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".wine")));
        DiskResolver {
            disk_root,
            wine_prefix,
        }
    }

    /// The file for a module, or the reason there is none.
    ///
    /// `process_path` is the path as the process names it (Windows or Unix form); `mapped` is
    /// the host file the source saw mapped at the module (live Wine), if any.
    pub fn resolve(&self, process_path: &str, mapped: Option<&Path>) -> Result<PathBuf, String> {
        let (drive, rest) = split_windows_path(process_path);
        if let Some(root) = &self.disk_root {
            let rel: Vec<&str> = rest.to_vec();
            if !rel.is_empty()
                && let Some(p) = find_ci(root, &rel)
            {
                return Ok(p);
            }
            if let Some(name) = rest.last()
                && let Some(p) = find_by_name(root, name)
            {
                return Ok(p);
            }
            return Err(format!(
                "no file for {process_path} under --disk-root {}",
                root.display()
            ));
        }
        if let Some(m) = mapped
            && m.is_file()
        {
            return Ok(m.to_path_buf());
        }
        let base: Option<PathBuf> = match drive {
            Some('z') => Some(PathBuf::from("/")),
            Some('c') => self.wine_prefix.as_ref().map(|p| p.join("drive_c")),
            Some(_) => None,
            None if process_path.starts_with('/') => Some(PathBuf::from("/")),
            None => None,
        };
        let Some(base) = base else {
            return Err(format!(
                "cannot map {process_path} to a host path (no --disk-root, unknown drive)"
            ));
        };
        let rel: Vec<&str> = rest.to_vec();
        find_ci(&base, &rel).ok_or_else(|| format!("disk file for {process_path} not found"))
    }
}

/// Splits `C:\a\b` / `\??\C:\a\b` / `/a/b` into an optional lowercase drive letter and components.
fn split_windows_path(path: &str) -> (Option<char>, Vec<&str>) {
    let p = path
        .strip_prefix(r"\??\")
        .or_else(|| path.strip_prefix(r"\\?\"))
        .unwrap_or(path);
    let mut chars = p.chars();
    let (drive, rest) = match (chars.next(), chars.next()) {
        (Some(d), Some(':')) if d.is_ascii_alphabetic() => {
            (Some(d.to_ascii_lowercase()), p.get(2..).unwrap_or(""))
        }
        _ => (None, p),
    };
    let comps = rest
        .split(['\\', '/'])
        .filter(|c| !c.is_empty() && *c != ".")
        .take(MAX_COMPONENTS)
        .collect();
    (drive, comps)
}

/// Most directory entries visited when looking a file up by name under `--disk-root`.
const MAX_WALK: usize = 200_000;

/// Finds a file named `name` (case-insensitively) anywhere under `root`, shallowest first.
fn find_by_name(root: &Path, name: &str) -> Option<PathBuf> {
    let lower = name.to_lowercase();
    walkdir::WalkDir::new(root)
        .max_depth(16)
        .sort_by_file_name()
        .into_iter()
        .take(MAX_WALK)
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.to_lowercase() == lower)
        })
        .min_by_key(|e| e.depth())
        .map(|e| e.into_path())
}

/// Walks `comps` under `base`, matching each component exactly first, then case-insensitively.
fn find_ci(base: &Path, comps: &[&str]) -> Option<PathBuf> {
    if comps.contains(&"..") {
        return None;
    }
    let mut cur = base.to_path_buf();
    for comp in comps.iter().take(MAX_COMPONENTS) {
        let exact = cur.join(comp);
        if exact.exists() {
            cur = exact;
            continue;
        }
        let lower = comp.to_lowercase();
        let found = std::fs::read_dir(&cur).ok()?.flatten().find(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.to_lowercase() == lower)
        })?;
        cur = found.path();
    }
    cur.is_file().then_some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_paths() {
        assert_eq!(
            split_windows_path(r"C:\windows\system32\ntdll.dll"),
            (Some('c'), vec!["windows", "system32", "ntdll.dll"])
        );
        assert_eq!(
            split_windows_path(r"\??\Z:\tmp\x.exe"),
            (Some('z'), vec!["tmp", "x.exe"])
        );
        assert_eq!(
            split_windows_path("/tmp/x.exe"),
            (None, vec!["tmp", "x.exe"])
        );
    }

    #[test]
    fn resolves_under_root_and_wine_drives() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let sub = dir.path().join("Lab");
        std::fs::create_dir_all(&sub).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(sub.join("Victim.exe"), b"MZ").unwrap_or_else(|e| panic!("{e}"));
        let rooted = DiskResolver {
            disk_root: Some(dir.path().to_path_buf()),
            wine_prefix: None,
        };
        assert_eq!(
            rooted.resolve(r"C:\lab\victim.exe", None),
            Ok(sub.join("Victim.exe"))
        );
        // By file name when the relative path does not exist.
        assert_eq!(
            rooted.resolve(r"C:\elsewhere\VICTIM.EXE", None),
            Ok(sub.join("Victim.exe"))
        );
        assert!(rooted.resolve(r"C:\x\missing.dll", None).is_err());
        assert!(rooted.resolve(r"C:\..\etc\passwd", None).is_err());

        let prefix = DiskResolver {
            disk_root: None,
            wine_prefix: Some(dir.path().to_path_buf()),
        };
        std::fs::create_dir_all(dir.path().join("drive_c/windows"))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("drive_c/windows/a.dll"), b"MZ")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            prefix.resolve(r"C:\Windows\A.DLL", None),
            Ok(dir.path().join("drive_c/windows/a.dll"))
        );
        let z = format!("Z:{}", sub.join("Victim.exe").display()).replace('/', "\\");
        assert_eq!(prefix.resolve(&z, None), Ok(sub.join("Victim.exe")));
        assert!(prefix.resolve(r"D:\x.exe", None).is_err());
    }
}
