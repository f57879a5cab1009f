//! `/proc/PID/maps` parsing.

use std::path::PathBuf;

/// One line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapEntry {
    /// Start address.
    pub start: u64,
    /// End address (exclusive).
    pub end: u64,
    /// `r` bit.
    pub read: bool,
    /// `w` bit.
    pub write: bool,
    /// `x` bit.
    pub execute: bool,
    /// `s` (shared) rather than `p` (private).
    pub shared: bool,
    /// File offset.
    pub offset: u64,
    /// `major:minor` as printed.
    pub device: String,
    /// Inode (0 = anonymous).
    pub inode: u64,
    /// The path or pseudo-path (`[heap]`), without a ` (deleted)` suffix; empty if none.
    pub pathname: String,
    /// The kernel printed ` (deleted)`.
    pub deleted: bool,
}

impl MapEntry {
    /// Anonymous memory: no inode and no file path (pseudo-paths such as `[heap]` and
    /// `[stack]` are anonymous too).
    pub fn is_anonymous(&self) -> bool {
        self.inode == 0 && !self.pathname.starts_with('/')
    }

    /// The file path when the mapping is backed by a file.
    pub fn file_path(&self) -> Option<PathBuf> {
        (self.inode != 0 && self.pathname.starts_with('/')).then(|| PathBuf::from(&self.pathname))
    }

    /// The pseudo-path (`[heap]`, `[stack]`, `[vdso]`...), if any.
    pub fn pseudo_path(&self) -> Option<&str> {
        (self.pathname.starts_with('[')).then_some(self.pathname.as_str())
    }
}

/// Parses one maps line; `None` for a line that does not have the expected shape.
pub fn parse_line(line: &str) -> Option<MapEntry> {
    let mut rest = line;
    let next = |r: &mut &str| -> Option<String> {
        let t = r.trim_start_matches(' ');
        let end = t.find(' ').unwrap_or(t.len());
        let (field, after) = t.split_at(end);
        *r = after;
        (!field.is_empty()).then(|| field.to_string())
    };
    let range = next(&mut rest)?;
    let perms = next(&mut rest)?;
    let offset = next(&mut rest)?;
    let device = next(&mut rest)?;
    let inode = next(&mut rest)?;
    let pathname = rest.trim_start_matches(' ');
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    if end <= start {
        return None;
    }
    let p = perms.as_bytes();
    if p.len() != 4 {
        return None;
    }
    let (pathname, deleted) = match pathname.strip_suffix(" (deleted)") {
        Some(p) => (p.to_string(), true),
        None => (pathname.to_string(), false),
    };
    Some(MapEntry {
        start,
        end,
        read: p[0] == b'r',
        write: p[1] == b'w',
        execute: p[2] == b'x',
        shared: p[3] == b's',
        offset: u64::from_str_radix(&offset, 16).ok()?,
        device,
        inode: inode.parse().ok()?,
        pathname,
        deleted,
    })
}

/// Parses a whole maps file; malformed lines are counted, not fatal.
pub fn parse_maps(text: &str) -> (Vec<MapEntry>, usize) {
    let mut out = Vec::new();
    let mut bad = 0;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Some(e) => out.push(e),
            None => bad += 1,
        }
    }
    out.sort_by_key(|e| e.start);
    (out, bad)
}

/// Whether a maps listing belongs to a Wine process: it maps Wine's Unix `ntdll.so`, a Wine
/// preloader, or Wine's PE `ntdll.dll` from a `*-windows` directory.
pub fn looks_like_wine(entries: &[MapEntry]) -> bool {
    entries.iter().any(|e| {
        let p = e.pathname.as_str();
        let name = p.rsplit('/').next().unwrap_or(p);
        (name == "ntdll.so" && p.contains("wine"))
            || name == "wine64-preloader"
            || name == "wine-preloader"
            || (name == "ntdll.dll" && p.contains("-windows/"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
00010000-00012000 r--s 00000000 fe:00 852040                             /usr/share/wine/nls/l_intl.nls
00022000-00320000 rw-p 00000000 00:00 0 
7ffe0000-7ffe1000 r--s 00000000 fe:00 10027251                           /tmp/wine-nUjgHx/server-fe00-9900e9/tmpmap-9fadf2e5 (deleted)
140000000-140001000 r--p 00000000 fe:00 10027228                         /tmp/memlab/sleeper.exe
140001000-140008000 r-xp 00000000 00:00 0 
170001000-170069000 r-xp 00001000 fe:00 1 /usr/lib/x86_64-linux-gnu/wine/x86_64-windows/ntdll.dll
a4ca6000-a4cc7000 rw-p 00000000 00:00 0                                  [heap]
7f8c6e2cf000-7f8c6e2d9000 r--p 00000000 fe:00 2 /usr/lib/x86_64-linux-gnu/wine/x86_64-unix/ntdll.so
garbage line
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

    #[test]
    fn parses_real_lines() {
        let (e, bad) = parse_maps(SAMPLE);
        assert_eq!(bad, 1);
        assert_eq!(e.len(), 9);
        assert!(e[0].shared && e[0].read && !e[0].write);
        assert!(e[1].is_anonymous() && e[1].write && e[1].file_path().is_none());
        assert!(e[2].deleted && e[2].pathname.ends_with("tmpmap-9fadf2e5"));
        assert_eq!(e[3].pseudo_path(), Some("[heap]"));
        assert!(e[3].is_anonymous());
        assert_eq!(
            e[4].file_path().unwrap(),
            PathBuf::from("/tmp/memlab/sleeper.exe")
        );
        assert!(e[5].is_anonymous() && e[5].execute);
        assert_eq!(e[6].offset, 0x1000);
        assert_eq!(e[8].start, 0xffffffffff600000);
        assert!(looks_like_wine(&e));
        assert!(!looks_like_wine(&e[..3]));
    }

    #[test]
    fn rejects_malformed() {
        assert!(parse_line("").is_none());
        assert!(parse_line("2000-1000 rw-p 0 00:00 0").is_none());
        assert!(parse_line("1000-2000 rw 0 00:00 0").is_none());
        assert!(parse_line("zz-2000 rw-p 0 00:00 0").is_none());
        assert!(parse_line("1000-2000 rw-p 0 00:00 x").is_none());
        let e = parse_line("1000-2000 rw-p 0 00:00 0").unwrap();
        assert_eq!(e.pathname, "");
        let e = parse_line("1000-2000 r--p 0 fe:00 5     /a path/with spaces.exe").unwrap();
        assert_eq!(e.pathname, "/a path/with spaces.exe");
    }
}
