//! What triggers a policy reload: file events (`notify`, on the directory so that Kubernetes
//! ConfigMap symlink swaps and editors' rename-on-save are seen), a polling fallback, and SIGHUP.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::store::{PolicyStore, Trigger};

/// Starts the watcher, the poller and the SIGHUP handler; they stop with the runtime.
pub fn spawn(store: Arc<PolicyStore>, poll: Duration) {
    let Some(path) = store.path().map(Path::to_owned) else {
        return;
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Trigger>();
    let watch_dir = if path.is_dir() {
        path.clone()
    } else {
        path.parent().map(Path::to_owned).unwrap_or_else(|| ".".into())
    };
    let events = tx.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            let _ = events.send(Trigger::File);
        }
    })
    .and_then(|mut w| w.watch(&watch_dir, RecursiveMode::NonRecursive).map(|()| w));
    let watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, dir = %watch_dir.display(), "cannot watch the policy directory; polling only");
            None
        }
    };
    let poll_tx = tx.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(poll);
        tick.tick().await;
        loop {
            tick.tick().await;
            if poll_tx.send(Trigger::Poll).is_err() {
                return;
            }
        }
    });
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            if tx.send(Trigger::Sighup).is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        let _keep = watcher;
        while let Some(mut trigger) = rx.recv().await {
            if trigger == Trigger::File {
                // Let a burst of events (write, rename, symlink swap) settle.
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            while let Ok(t) = rx.try_recv() {
                if t != Trigger::File {
                    trigger = t;
                }
            }
            let store = store.clone();
            let _ = tokio::task::spawn_blocking(move || store.reload(trigger)).await;
        }
    });
}
