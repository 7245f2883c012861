//! dcr-gateway: a policy gateway in front of Keycloak's client-registration endpoint.
//!
//! Crate map, in request order: [`route`] classifies the path; [`token`] triages the
//! credential and verifies bearer tokens against a cached JWKS; [`policy`] decides from the
//! hot-reloaded TOML snapshot; [`pipeline::upstream`] forwards to Keycloak;
//! [`pipeline::rewrite`] turns Keycloak's errors into actionable ones; [`pipeline::observe`]
//! records metrics and audit lines. [`respond`] is the one place refusals become responses.

#![forbid(unsafe_code)]
#![warn(unreachable_pub, missing_debug_implementations)]

mod app;
pub mod check;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod error;
pub mod explain;
pub mod hints;
pub(crate) mod keycloak;
pub mod logformat;
pub mod logwriter;
pub mod metrics;
pub mod net;
pub mod pipeline;
pub mod policy;
pub(crate) mod registrar;
pub mod respond;
pub mod route;
pub(crate) mod server;
pub mod token;

/// What the fuzz targets (tests/fuzz) drive that is not otherwise public; not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::server::fast::differential as http1_fast_path;
}

/// Key and token minting for unit tests: the same file the integration tests and benches use.
#[cfg(test)]
#[allow(dead_code, unreachable_pub)]
#[path = "../tests/support/testkit.rs"]
mod testkit;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub use app::{App, Listener, StartError};
pub use config::Settings;

/// The gateway's version (Cargo.toml).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit the binary was built from (build.rs: `DCR_GATEWAY_BUILD_COMMIT`, else git, else `unknown`).
pub const COMMIT: &str = env!("DCR_GATEWAY_COMMIT");
/// `--version`'s text: the version and the commit.
pub const LONG_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("DCR_GATEWAY_COMMIT"), ")");

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    /// The proxy listener's address.
    pub addr: SocketAddr,
    /// The admin listener's address.
    pub admin_addr: SocketAddr,
    app: Arc<App>,
    stop: watch::Sender<bool>,
    proxy: JoinHandle<()>,
    admin_stop: watch::Sender<bool>,
    admin_done: tokio::sync::oneshot::Receiver<()>,
}

/// Binds `addr` with room for `backlog` connections the kernel has completed and nobody has
/// accepted yet (the kernel caps it at `net.core.somaxconn`). The proxy's is `max_connections`,
/// as HAProxy's is `maxconn`: with tokio's default of 1,024, a burst (clients opening
/// connections while the gateway was held up for a second) overflowed it, and every SYN
/// dropped then cost its client a retransmission 1, 3 or 7 s later.
fn bind(listener: Listener, addr: SocketAddr, backlog: usize) -> Result<TcpListener, StartError> {
    let err = |error| StartError::Bind { listener, addr, error };
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .map_err(err)?;
    #[cfg(unix)]
    socket.set_reuseaddr(true).map_err(err)?; // as std and tokio bind: restart without waiting
    socket.bind(addr).map_err(err)?;
    socket
        .listen(u32::try_from(backlog).unwrap_or(u32::MAX).clamp(128, i32::MAX as u32))
        .map_err(err)
}

/// Loads policy, binds both listeners and starts serving. Policy errors come before binding.
/// Raises the open-descriptor soft limit first; the admin listener runs on a thread of its own.
pub async fn start(settings: Settings) -> Result<Gateway, StartError> {
    let fds = server::raise_fd_limit();
    let app = App::new(settings)?;
    let listener = bind(Listener::Proxy, app.settings.listen, app.settings.max_connections)?;
    let admin = bind(Listener::Admin, app.settings.admin_listen, 1024)?;
    let local = |l: &TcpListener, which, addr| {
        l.local_addr().map_err(|error| StartError::Bind {
            listener: which,
            addr,
            error,
        })
    };
    let addr = local(&listener, Listener::Proxy, app.settings.listen)?;
    let admin_addr = local(&admin, Listener::Admin, app.settings.admin_listen)?;
    policy::watch::spawn(app.policy.clone(), app.settings.timeouts.policy_poll);
    let (stop, rx) = watch::channel(false);
    let tls = app.settings.tls.as_ref().map(|t| TlsAcceptor::from(t.0.clone()));
    let caps = server::Caps {
        total: Arc::new(Semaphore::new(server::connection_budget(
            app.settings.max_connections,
            fds,
        ))),
        per_peer: net::peers::PeerCounts::new(app.settings.max_connections_per_peer),
    };
    let (admin_stop, admin_rx) = watch::channel(false);
    let admin_done = server::admin::spawn(app.clone(), admin, admin_rx).map_err(|error| StartError::Bind {
        listener: Listener::Admin,
        addr: admin_addr,
        error,
    })?;
    let proxy = tokio::spawn(server::serve(app.clone(), listener, tls, caps, rx));
    let handle = tokio::runtime::Handle::current();
    let runtime = match handle.runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => "current_thread",
        _ => "multi_thread",
    };
    tracing::info!(listen = %addr, admin = %admin_addr, upstream = %app.settings.upstream, public_url = %app.settings.public_url, mode = ?app.settings.mode, open_files_limit = fds, runtime, workers = handle.metrics().num_workers(), "dcr-gateway serving");
    for realm in app.verifier.jwks.named() {
        let issuers = app.settings.issuers_for(&realm).join(", ");
        if app.settings.issuer_pinned(&realm) {
            tracing::info!(realm = %realm, issuers = %issuers, "realm {realm}: tokens must carry one of the issuers {issuers} ([realms.{realm}] issuer)");
        } else {
            tracing::info!(realm = %realm, issuers = %issuers, "realm {realm}: tokens must carry issuer {issuers}, or the issuer Keycloak derives from the scheme and host each request arrives with (set [realms.{realm}] issuer to pin it)");
        }
    }
    Ok(Gateway {
        addr,
        admin_addr,
        app,
        stop,
        proxy,
        admin_stop,
        admin_done,
    })
}

// === impl Gateway ===

impl Gateway {
    /// The settings the gateway runs with (defaults and overrides applied).
    pub fn settings(&self) -> &Settings {
        &self.app.settings
    }

    /// The policy store: the current snapshot, and `reload` (as SIGHUP does).
    pub fn policy(&self) -> Arc<policy::PolicyStore> {
        self.app.policy.clone()
    }

    /// Drains, then stops: `/readyz` turns 503 at once, the proxy keeps accepting for
    /// `drain_delay` (so a load balancer can notice), then stops accepting and gives in-flight
    /// requests `shutdown_grace` to finish; the admin listener closes last.
    pub async fn shutdown(self) {
        self.app.begin_drain();
        let delay = self.app.settings.timeouts.drain_delay;
        if !delay.is_zero() {
            tracing::info!(
                drain_delay_ms = delay.as_millis() as u64,
                "draining: /readyz answers 503, still accepting"
            );
            tokio::time::sleep(delay).await;
        }
        let _ = self.stop.send(true);
        let _ = self.proxy.await;
        let _ = self.admin_stop.send(true);
        let _ = self.admin_done.await;
    }
}
