//! `dcr-gateway check`: validate policy (and optionally settings) offline and print what each
//! realm allows. Exit 0 when valid; otherwise `file:line:col: key: reason` per error and exit 1.

use std::io::Write;

use crate::cli::CheckArgs;
use crate::config::{Overrides, load};
use crate::policy::store;

/// Runs the check, writing to `out` and `err`; returns the exit code.
pub fn run(args: &CheckArgs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let mut failed = false;
    if let Some(cfg) = &args.config
        && let Err(e) = load(Some(cfg), &Overrides::default())
    {
        let _ = writeln!(err, "{e}");
        failed = true;
    }
    match store::load(Some(&args.policies), 1) {
        Ok(snap) => {
            let _ = writeln!(
                out,
                "policy OK: {} file(s), checksum {}",
                snap.sources.len(),
                snap.checksum
            );
            for s in &snap.sources {
                let _ = writeln!(out, "  {}", s.display());
            }
            let _ = write!(out, "{}", snap.describe());
        }
        Err(errors) => {
            for e in &errors {
                let _ = writeln!(err, "{e}");
            }
            let _ = writeln!(err, "{} error(s); nothing is valid until all are fixed", errors.len());
            failed = true;
        }
    }
    i32::from(failed)
}
