//! `doctor`'s report: human text (default) or one JSON document.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::findings::{Finding, Severity};

/// What the report says besides the findings.
#[derive(Debug)]
pub struct Header<'a> {
    /// Realm checked.
    pub realm: &'a str,
    /// Admin API base URL.
    pub admin_url: &'a str,
    /// Who doctor logged in as.
    pub login: &'a str,
    /// What was checked, one line each.
    pub checked: Vec<String>,
}

/// The exit status for these findings: 1 with any error or warning, else 0.
pub fn exit_code(findings: &[Finding]) -> u8 {
    u8::from(findings.iter().any(|f| f.severity != Severity::Notice))
}

fn count(findings: &[Finding], s: Severity) -> usize {
    findings.iter().filter(|f| f.severity == s).count()
}

/// Human text.
pub fn human(h: &Header<'_>, findings: &[Finding]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "dcr-gateway doctor: realm {} at {} (logged in as {})",
        h.realm, h.admin_url, h.login
    );
    for c in &h.checked {
        let _ = writeln!(out, "  checked: {c}");
    }
    for f in findings {
        let _ = writeln!(out, "\n{:<7} {}  [{}]", f.severity.label(), f.id, f.subject);
        let _ = writeln!(out, "  problem: {}", f.problem);
        let _ = writeln!(out, "  fix:     {}", f.fix);
    }
    let (e, w, n) = (
        count(findings, Severity::Error),
        count(findings, Severity::Warning),
        count(findings, Severity::Notice),
    );
    let _ = writeln!(
        out,
        "\n{}: {e} error(s), {w} warning(s), {n} notice(s)",
        if e + w == 0 { "clean" } else { "findings" }
    );
    out
}

/// One JSON document.
pub fn json(h: &Header<'_>, findings: &[Finding]) -> Value {
    json!({
        "realm": h.realm,
        "admin_url": h.admin_url,
        "login": h.login,
        "checked": h.checked,
        "findings": findings,
        "summary": {
            "errors": count(findings, Severity::Error),
            "warnings": count(findings, Severity::Warning),
            "notices": count(findings, Severity::Notice),
        },
        "exit": exit_code(findings),
    })
}
