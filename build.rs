//! Build script: records the commit the binary is built from as `DCR_GATEWAY_COMMIT` (shown by
//! `--version` and the `dcr_gateway_build_info` metric).
//!
//! Order: the `DCR_GATEWAY_BUILD_COMMIT` environment variable (what the container build sets,
//! having no `.git`), then `git rev-parse --short=12 HEAD`, then `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

/// A commit id safe for a label and a version line: hex digits, letters, `-`, `.`, at most 40.
fn clean(s: &str) -> Option<String> {
    let s = s.trim();
    let ok = !s.is_empty() && s.len() <= 40 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    ok.then(|| s.to_owned())
}

/// Asks cargo to rerun this script when `path` changes; a missing file would rerun it on every
/// build (and rebuild the crate), so only existing files are named.
fn watch(path: &str) {
    if std::path::Path::new(path).exists() {
        println!("cargo:rerun-if-changed={path}");
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=DCR_GATEWAY_BUILD_COMMIT");
    let from_env = std::env::var("DCR_GATEWAY_BUILD_COMMIT").ok().and_then(|s| clean(&s));
    let commit = match from_env {
        Some(c) => c,
        None => {
            // Rebuild when HEAD moves: HEAD itself, the branch it names, and packed refs.
            for path in ["HEAD", "packed-refs"] {
                if let Some(p) = git(&["rev-parse", "--git-path", path]) {
                    watch(&p);
                }
            }
            if let Some(branch) = git(&["rev-parse", "--symbolic-full-name", "HEAD"])
                && branch.starts_with("refs/")
                && let Some(p) = git(&["rev-parse", "--git-path", &branch])
            {
                watch(&p);
            }
            git(&["rev-parse", "--short=12", "HEAD"])
                .and_then(|s| clean(&s))
                .unwrap_or_else(|| "unknown".to_owned())
        }
    };
    println!("cargo:rustc-env=DCR_GATEWAY_COMMIT={commit}");
}
