//! Human-readable summary of a [`ScanReport`], grouped by process. Pure formatting: no I/O.

use std::fmt::Write as _;

use crate::model::{ProcessReport, ScanReport, Severity};

/// Renders the whole report as text. `verbose` adds skipped checks and every module.
pub fn human(report: &ScanReport, verbose: bool) -> String {
    let mut out = String::new();
    for p in &report.processes {
        process(&mut out, p, verbose);
    }
    let with = report
        .processes
        .iter()
        .filter(|p| p.max_severity().is_some_and(|s| s >= Severity::Low))
        .count();
    let errors = report
        .processes
        .iter()
        .filter(|p| p.error.is_some())
        .count();
    let findings: usize = report.processes.iter().map(|p| p.findings.len()).sum();
    let _ = writeln!(
        out,
        "{} process(es) scanned: {} with findings ({} finding(s)), {} error(s)",
        report.processes.len(),
        with,
        findings,
        errors
    );
    out
}

fn id_line(p: &ProcessReport) -> String {
    let mut s = String::from("process");
    if let Some(pid) = p.pid {
        let _ = write!(s, " {pid}");
    }
    let mut ids = Vec::new();
    if let Some(w) = p.windows_pid {
        ids.push(format!("windows pid {w}"));
    }
    if let Some(l) = p.linux_pid {
        ids.push(format!("linux pid {l}"));
    }
    if !ids.is_empty() {
        let _ = write!(s, " ({})", ids.join(", "));
    }
    if let Some(path) = &p.image_path {
        let _ = write!(s, " {path}");
    }
    if let Some(d) = &p.dump {
        let _ = write!(s, " [dump {d}]");
    }
    s
}

fn process(out: &mut String, p: &ProcessReport, verbose: bool) {
    let verdict = match (&p.error, p.max_severity()) {
        (Some(_), _) => "ERROR".to_string(),
        (None, None) => "clean".to_string(),
        (None, Some(s)) => s.as_str().to_uppercase(),
    };
    let _ = writeln!(out, "== {} — {}", id_line(p), verdict);
    if let Some(e) = &p.error {
        let _ = writeln!(out, "   error: {e}");
    }
    for f in &p.findings {
        let _ = writeln!(
            out,
            "   [{:<8}] {} ({}): {}",
            f.severity.as_str(),
            f.kind,
            f.technique.join(", "),
            f.summary
        );
    }
    for m in &p.modules {
        if m.tls_callbacks.is_empty() && !verbose {
            continue;
        }
        let _ = writeln!(
            out,
            "   module {} at {}{}: {} TLS callback(s)",
            m.path,
            m.base,
            if m.main { " (main)" } else { "" },
            m.tls_callbacks.len()
        );
        for c in &m.tls_callbacks {
            let place = match (&c.image, &c.section) {
                (Some(i), Some(s)) => format!("{i} {s}"),
                (Some(i), None) => i.clone(),
                (None, _) => "no image".to_string(),
            };
            let region = match (&c.region_kind, &c.protection) {
                (Some(k), Some(pr)) => format!(", {k} {pr}"),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "     [{}] {} -> {}{}",
                c.slot, c.address, place, region
            );
        }
    }
    if verbose {
        for s in &p.skipped_checks {
            let _ = writeln!(out, "   skipped {}: {}", s.check, s.reason);
        }
    } else if !p.skipped_checks.is_empty() {
        let _ = writeln!(
            out,
            "   {} check(s) skipped (see --json or --verbose)",
            p.skipped_checks.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Evidence, Finding, FindingKind};

    #[test]
    fn groups_by_process_and_counts() {
        let mut a = ProcessReport::new();
        a.pid = Some(7);
        a.image_path = Some(r"C:\a.exe".into());
        a.findings.push(Finding::new(
            FindingKind::HollowedImage,
            "hollowed",
            Evidence::new(),
        ));
        let mut b = ProcessReport::new();
        b.pid = Some(8);
        b.error = Some("process 8 exited".into());
        let text = human(
            &ScanReport {
                processes: vec![a, b],
            },
            false,
        );
        assert!(text.contains("== process 7 C:\\a.exe — CRITICAL"), "{text}");
        assert!(
            text.contains("hollowed_image (T1055.012): hollowed"),
            "{text}"
        );
        assert!(text.contains("== process 8 — ERROR"), "{text}");
        assert!(text.contains("2 process(es) scanned: 1 with findings (1 finding(s)), 1 error(s)"));
    }
}
