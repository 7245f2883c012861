//! The active policy behind one `ArcSwap`, and reloading it: read every file, compile, validate,
//! then swap the whole snapshot at once. A reload that fails changes nothing, and says so.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use super::compile::{Source, checksum, compile};
use super::snapshot::Snapshot;
use crate::config::ConfigError;
use crate::metrics::Metrics;

/// What started a reload: the `trigger` field of reload log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A file event in the policy directory.
    File,
    /// The polling fallback.
    Poll,
    /// SIGHUP.
    Sighup,
    /// A direct call (tests, tools).
    Manual,
}

impl Trigger {
    /// The log label.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::File => "file",
            Trigger::Poll => "poll",
            Trigger::Sighup => "sighup",
            Trigger::Manual => "manual",
        }
    }
}

/// What a reload did.
#[derive(Debug)]
pub enum Reloaded {
    /// The files are unchanged (or unchanged since a failed attempt).
    Unchanged,
    /// A new generation is active.
    Applied(u64),
    /// The files are broken; the last good policy stays.
    Failed(Vec<ConfigError>),
}

/// The active policy and how to reload it.
pub struct PolicyStore {
    path: Option<PathBuf>,
    current: ArcSwap<Snapshot>,
    metrics: Metrics,
    seen: Mutex<String>,
    settle: std::time::Duration,
    on_apply: Box<dyn Fn(&Snapshot) + Send + Sync>,
}

impl std::fmt::Debug for PolicyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyStore")
            .field("path", &self.path)
            .field("settle", &self.settle)
            .finish_non_exhaustive()
    }
}

fn read_err(path: &Path, message: String) -> ConfigError {
    ConfigError {
        file: Some(path.to_owned()),
        position: None,
        key: "--policies".into(),
        message,
    }
}

/// Reads the policy files at `path`: one file, or every `*.toml` in a directory (not hidden
/// ones, following symlinks, so a Kubernetes ConfigMap mount works).
pub fn read_sources(path: &Path) -> Result<Vec<Source>, ConfigError> {
    let meta = std::fs::metadata(path).map_err(|e| read_err(path, format!("cannot read the policy path: {e}")))?;
    let mut files = Vec::new();
    if meta.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| read_err(path, format!("cannot list the directory: {e}")))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let p = entry.path();
            if name.ends_with(".toml") && !name.starts_with('.') && std::fs::metadata(&p).is_ok_and(|m| m.is_file()) {
                files.push(p);
            }
        }
        files.sort();
        if files.is_empty() {
            return Err(read_err(path, "the directory holds no *.toml policy file".into()));
        }
    } else {
        files.push(path.to_owned());
    }
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).map_err(|e| read_err(&p, format!("cannot read the file: {e}")))?;
            Ok(Source { path: p, text })
        })
        .collect()
}

/// How many times `read_stable` re-reads before it gives up on files that keep changing.
const STABLE_ROUNDS: usize = 20;

/// Reads the files until two reads `settle` apart agree, and returns that content: a file
/// caught while it is being rewritten in place (truncated, half-written, or written with a
/// pause shorter than `settle`) is never what gets compiled. `settle` zero reads once.
pub fn read_stable(path: &Path, settle: std::time::Duration) -> Result<Vec<Source>, ConfigError> {
    let mut last = read_sources(path)?;
    if settle.is_zero() {
        return Ok(last);
    }
    for _ in 0..STABLE_ROUNDS {
        std::thread::sleep(settle);
        let next = read_sources(path)?;
        if checksum(&next) == checksum(&last) {
            return Ok(next);
        }
        last = next;
    }
    Err(read_err(
        path,
        format!(
            "the policy files kept changing for {} re-reads {}ms apart; not applied until they are stable",
            STABLE_ROUNDS,
            settle.as_millis()
        ),
    ))
}

/// Reads and compiles the policy at `path` (or the built-in policy when `path` is `None`).
pub fn load(path: Option<&Path>, generation: u64) -> Result<Snapshot, Vec<ConfigError>> {
    let sources = match path {
        Some(p) => read_sources(p).map_err(|e| vec![e])?,
        None => Vec::new(),
    };
    compile(&sources, generation)
}

// === impl PolicyStore ===

impl PolicyStore {
    /// Loads the first generation; an error here stops start-up.
    pub fn open(
        path: Option<PathBuf>,
        settle: std::time::Duration,
        metrics: Metrics,
        on_apply: Box<dyn Fn(&Snapshot) + Send + Sync>,
    ) -> Result<Self, Vec<ConfigError>> {
        let snap = load(path.as_deref(), 1)?;
        on_apply(&snap);
        let store = PolicyStore {
            path,
            seen: Mutex::new(snap.checksum.clone()),
            settle,
            current: ArcSwap::from_pointee(snap),
            metrics,
            on_apply,
        };
        store.record_success();
        Ok(store)
    }

    /// The active snapshot (lock-free; pin it for a whole request).
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Where policy is read from (`None`: built-in).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn record_success(&self) {
        let snap = self.current.load();
        self.metrics.reloads.with_label_values(&["success"]).inc();
        self.metrics
            .policy_generation
            .set(i64::try_from(snap.generation).unwrap_or(i64::MAX));
        self.metrics.policy_info.reset();
        self.metrics.policy_info.with_label_values(&[&snap.checksum]).set(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.metrics.reload_last_success.set(now);
        self.metrics.reload_ok.set(1);
    }

    /// Re-reads the files; swaps in a new snapshot only if they changed and are valid.
    pub fn reload(&self, trigger: Trigger) -> Reloaded {
        let trigger = trigger.as_str();
        let Some(path) = &self.path else {
            return Reloaded::Unchanged;
        };
        let mut seen = self.seen.lock();
        let sources = match read_stable(path, self.settle) {
            Ok(s) => s,
            Err(e) => return self.fail(&mut seen, format!("unreadable:{e}"), vec![e], trigger),
        };
        let sum = checksum(&sources);
        if *seen == sum {
            return Reloaded::Unchanged;
        }
        let generation = self.current.load().generation + 1;
        match compile(&sources, generation) {
            Ok(snap) => {
                (self.on_apply)(&snap);
                self.current.store(Arc::new(snap));
                *seen = sum.clone();
                self.record_success();
                tracing::info!(trigger, generation, checksum = %sum, "policy reloaded");
                Reloaded::Applied(generation)
            }
            Err(errors) => self.fail(&mut seen, sum, errors, trigger),
        }
    }

    fn fail(&self, seen: &mut String, sum: String, errors: Vec<ConfigError>, trigger: &str) -> Reloaded {
        *seen = sum;
        self.metrics.reloads.with_label_values(&["error"]).inc();
        self.metrics.reload_ok.set(0);
        let active = self.current.load();
        for e in &errors {
            tracing::error!(trigger, error = %e, active_generation = active.generation, "policy reload failed; keeping the last good policy");
        }
        Reloaded::Failed(errors)
    }
}
