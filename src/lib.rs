//! dcr-gateway: a policy gateway in front of Keycloak's client-registration endpoint.
//!
//! Crate map, in request order: [`route`] classifies the path; [`token`] triages the
//! credential and verifies bearer tokens against a cached JWKS; [`policy`] decides from the
//! hot-reloaded TOML snapshot; [`pipeline::upstream`] forwards to Keycloak;
//! [`pipeline::rewrite`] turns Keycloak's errors into actionable ones; [`pipeline::observe`]
//! records metrics and audit lines. [`respond`] is the one place refusals become responses.

#![forbid(unsafe_code)]

pub mod app;
pub mod check;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod error;
pub mod explain;
pub mod hints;
pub mod keycloak;
pub mod metrics;
pub mod net;
pub mod pipeline;
pub mod policy;
pub mod registrar;
pub mod respond;
pub mod route;
pub mod server;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod token;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub use app::{App, StartError};
pub use config::Settings;

/// A running gateway.
pub struct Gateway {
    /// The proxy listener's address.
    pub addr: SocketAddr,
    /// The admin listener's address.
    pub admin_addr: SocketAddr,
    /// The shared state (for tests).
    pub app: Arc<App>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| StartError::Bind { addr, error })
}

/// Loads policy, binds both listeners and starts serving. Policy errors come before binding.
pub async fn start(settings: Settings) -> Result<Gateway, StartError> {
    let app = App::new(settings)?;
    let listener = bind(app.settings.listen).await?;
    let admin = bind(app.settings.admin_listen).await?;
    let addr = listener.local_addr().map_err(|error| StartError::Bind {
        addr: app.settings.listen,
        error,
    })?;
    let admin_addr = admin.local_addr().map_err(|error| StartError::Bind {
        addr: app.settings.admin_listen,
        error,
    })?;
    policy::watch::spawn(app.policy.clone(), app.settings.timeouts.policy_poll);
    let (stop, rx) = watch::channel(false);
    let tls = app.settings.tls.as_ref().map(|t| TlsAcceptor::from(t.0.clone()));
    let grace = app.settings.timeouts.shutdown_grace;
    let tasks = vec![
        tokio::spawn(server::serve(app.clone(), listener, tls, stopped(rx.clone()), grace)),
        tokio::spawn(server::admin::serve(app.clone(), admin, stopped(rx))),
    ];
    tracing::info!(listen = %addr, admin = %admin_addr, upstream = %app.settings.upstream, public_url = %app.settings.public_url, mode = ?app.settings.mode, "dcr-gateway serving");
    Ok(Gateway {
        addr,
        admin_addr,
        app,
        stop,
        tasks,
    })
}

// === impl Gateway ===

impl Gateway {
    /// Stops accepting, drains in-flight requests (bounded by `shutdown_grace`), and returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
