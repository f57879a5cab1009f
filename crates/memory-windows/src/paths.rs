//! NT object paths (what `GetMappedFileNameW` returns, e.g.
//! `\Device\HarddiskVolume3\Windows\System32\ntdll.dll`) to DOS paths (`C:\Windows\...`),
//! given the drive table `QueryDosDeviceW` gives. Pure string logic, tested on every platform.

/// One drive: its letter form (`C:`) and the NT device it names (`\Device\HarddiskVolume3`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DosDevice {
    /// `C:`.
    pub drive: String,
    /// `\Device\HarddiskVolume3`.
    pub device: String,
}

/// The DOS form of `nt`, or `None` when no drive maps its device. `\??\C:\x` and `\\?\C:\x`
/// become `C:\x`; a device prefix must end at a path separator (`\Device\HarddiskVolume1`
/// does not match `\Device\HarddiskVolume10\x`); devices compare case-insensitively.
pub fn nt_to_dos(nt: &str, devices: &[DosDevice]) -> Option<String> {
    for prefix in [r"\??\", r"\\?\", r"\GLOBAL??\"] {
        if let Some(rest) = nt.strip_prefix(prefix)
            && has_drive(rest)
        {
            return Some(rest.to_string());
        }
    }
    if has_drive(nt) {
        return Some(nt.to_string());
    }
    let mut best: Option<(&DosDevice, usize)> = None;
    for d in devices {
        let n = d.device.len();
        if n == 0 || nt.len() < n {
            continue;
        }
        let (Some(head), Some(tail)) = (nt.get(..n), nt.get(n..)) else {
            continue;
        };
        if !head.eq_ignore_ascii_case(&d.device) {
            continue;
        }
        if !(tail.is_empty() || tail.starts_with('\\')) {
            continue;
        }
        if best.is_none_or(|(_, len)| n > len) {
            best = Some((d, n));
        }
    }
    let (d, n) = best?;
    Some(format!("{}{}", d.drive, nt.get(n..).unwrap_or("")))
}

fn has_drive(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

/// Decodes a UTF-16 buffer up to its first NUL.
pub fn from_wide(buf: &[u16]) -> String {
    let end = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
    String::from_utf16_lossy(buf.get(..end).unwrap_or(&[]))
}

/// Splits a `QueryDosDeviceW` result (several NUL-terminated strings, ended by an empty one)
/// and returns the first.
pub fn first_multi_sz(buf: &[u16]) -> Option<String> {
    let s = from_wide(buf);
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Vec<DosDevice> {
        vec![
            DosDevice {
                drive: "C:".into(),
                device: r"\Device\HarddiskVolume1".into(),
            },
            DosDevice {
                drive: "D:".into(),
                device: r"\Device\HarddiskVolume10".into(),
            },
            DosDevice {
                drive: "Z:".into(),
                device: r"\Device\Z".into(),
            },
        ]
    }

    #[test]
    fn maps_devices_to_drives() {
        let t = table();
        assert_eq!(
            nt_to_dos(r"\Device\HarddiskVolume1\Windows\System32\ntdll.dll", &t).as_deref(),
            Some(r"C:\Windows\System32\ntdll.dll")
        );
        assert_eq!(
            nt_to_dos(r"\Device\HarddiskVolume10\x.exe", &t).as_deref(),
            Some(r"D:\x.exe")
        );
        assert_eq!(
            nt_to_dos(r"\device\harddiskvolume1\a", &t).as_deref(),
            Some(r"C:\a")
        );
        assert_eq!(nt_to_dos(r"\Device\HarddiskVolume2\a", &t), None);
        assert_eq!(nt_to_dos(r"\Device\HarddiskVolume", &t), None);
        assert_eq!(
            nt_to_dos(r"\??\Z:\work\x.exe", &t).as_deref(),
            Some(r"Z:\work\x.exe")
        );
        assert_eq!(nt_to_dos(r"C:\x", &[]).as_deref(), Some(r"C:\x"));
        assert_eq!(nt_to_dos("", &t), None);
        assert_eq!(nt_to_dos(r"\Device\é", &t), None);
    }

    #[test]
    fn wide_strings() {
        let w: Vec<u16> = "C:\0D:\0\0".encode_utf16().collect();
        assert_eq!(first_multi_sz(&w).as_deref(), Some("C:"));
        assert_eq!(from_wide(&[]), "");
        assert_eq!(first_multi_sz(&[0, 0]), None);
    }
}
