//! The shared state every request sees: settings, the upstream client, the token verifier with
//! its key sets, the policy store, quotas, metrics and the concurrency limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Semaphore;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::net::{HttpClient, client, connector};
use crate::policy::{PolicyStore, Quotas};
use crate::token::Verifier;
use crate::token::cache::TokenCache;
use crate::token::jwks::Jwks;

/// Why the gateway could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The policy files are broken (exit code 2).
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Policy(Vec<crate::config::ConfigError>),
    /// A listener could not be bound.
    #[error("cannot open the {} on {addr}: {error}{}", .listener.what(), .listener.advice(.error))]
    Bind {
        /// Which listener.
        listener: Listener,
        /// The address.
        addr: std::net::SocketAddr,
        /// The error.
        error: std::io::Error,
    },
    /// The Redis quota store could not be set up (its TLS material, for one).
    #[error("quota_store: {0}")]
    QuotaStore(String),
    /// Metrics could not be registered (a bug).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// The gateway's two listeners, named in bind errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The proxy (`listen`).
    Proxy,
    /// The admin listener (`admin_listen`: /metrics, /healthz, /readyz).
    Admin,
}

impl Listener {
    /// `proxy listener (listen)` / `admin listener (admin_listen)`.
    pub fn what(self) -> &'static str {
        match self {
            Listener::Proxy => "proxy listener (listen)",
            Listener::Admin => "admin listener (admin_listen)",
        }
    }

    /// What to do about a port in use or a forbidden port, else nothing.
    pub fn advice(self, e: &std::io::Error) -> String {
        let (flag, var) = match self {
            Listener::Proxy => ("--listen", "DCR_GATEWAY_LISTEN"),
            Listener::Admin => ("--admin-listen", "DCR_GATEWAY_ADMIN_LISTEN"),
        };
        match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "; another process holds this port (`ss -ltnp` names it): stop it, or choose another address with {flag}, {var} or the settings file"
            ),
            std::io::ErrorKind::PermissionDenied => {
                format!("; ports below 1024 need privileges: choose another with {flag} or {var}")
            }
            std::io::ErrorKind::AddrNotAvailable => {
                format!("; no interface of this machine has that address: choose another with {flag} or {var}")
            }
            _ => String::new(),
        }
    }
}

/// Everything a request needs.
#[derive(Debug)]
pub struct App {
    /// Validated settings.
    pub settings: Arc<Settings>,
    /// Pooled client for JWKS fetches and the registrars.
    pub client: HttpClient,
    /// Connections to Keycloak for forwarded requests.
    pub upstream: Arc<crate::net::pool::Pool>,
    /// Token triage and verification.
    pub verifier: Verifier,
    /// The active policy.
    pub policy: Arc<PolicyStore>,
    /// Create quotas.
    pub quotas: Quotas,
    /// The gateway's own registration credentials (anonymous registration).
    pub registrars: crate::registrar::Registrars,
    /// Metrics.
    pub metrics: Metrics,
    /// Requests in flight.
    pub limiter: Arc<Semaphore>,
    /// Keycloak's base URL as the gateway reaches it (its back-end address in answers).
    pub upstream_url: String,
    /// The public base URL, as a string.
    pub public_url: String,
    /// Requests in flight per client address.
    pub peer_in_flight: crate::net::peers::PeerCounts,
    /// Set on SIGTERM: `/readyz` answers 503 from then on.
    pub draining: AtomicBool,
}

// === impl App ===

impl App {
    /// Builds the state; must run inside a Tokio runtime (key sets start refreshing).
    pub fn new(settings: Settings) -> Result<Arc<App>, StartError> {
        let settings = Arc::new(settings);
        let metrics = Metrics::new()?;
        let client = client(&settings);
        let cache = Arc::new(TokenCache::new(settings.jwt.token_cache_capacity));
        let jwks = Arc::new(Jwks::new(
            settings.clone(),
            client.clone(),
            metrics.clone(),
            cache.clone(),
        ));
        let named = jwks.clone();
        let on_apply = Box::new(move |snap: &crate::policy::Snapshot| named.name_realms(snap.realms.keys().cloned()));
        let path = settings.policies_path();
        let policy = Arc::new(
            PolicyStore::open(path, settings.timeouts.policy_settle, metrics.clone(), on_apply)
                .map_err(StartError::Policy)?,
        );
        // `open` applied the policy: the registry now knows the realms it and the settings name.
        let verifier = Verifier::new(settings.clone(), jwks, cache, metrics.clone());
        let quotas = Quotas::new(&settings.quota_store, &metrics).map_err(|e| StartError::QuotaStore(e.to_string()))?;
        let registrars = crate::registrar::Registrars::new(&settings, &client, &metrics);
        let upstream =
            crate::net::pool::Pool::new(&settings.upstream, connector(&settings), settings.timeouts.pool_idle);
        let upstream_url = settings.upstream.as_string();
        let public_url = settings.public_url.as_string();
        Ok(Arc::new(App {
            limiter: Arc::new(Semaphore::new(settings.max_in_flight)),
            peer_in_flight: crate::net::peers::PeerCounts::new(settings.max_in_flight_per_peer),
            draining: AtomicBool::new(false),
            settings,
            upstream,
            client,
            verifier,
            policy,
            quotas,
            registrars,
            metrics,
            upstream_url,
            public_url,
        }))
    }

    /// Starts the drain: readiness is false from now on.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether the gateway can serve, and what is missing if not.
    pub fn readiness(&self) -> (bool, Vec<String>) {
        let mut missing: Vec<String> = self
            .verifier
            .jwks
            .not_ready()
            .into_iter()
            .map(|r| format!("keys of realm {r} not loaded"))
            .collect();
        missing.extend(self.quotas.not_ready());
        if self.draining.load(Ordering::Acquire) {
            missing.push("shutting down: draining connections".into());
        }
        missing.extend(self.registrars.problems());
        let snap = self.policy.current();
        let mut anonymous: Vec<&String> = snap
            .realms
            .iter()
            .filter(|(name, p)| p.anonymous.is_some() && self.registrars.get(name).is_none())
            .map(|(name, _)| name)
            .collect();
        anonymous.sort();
        for realm in anonymous {
            missing.push(format!(
                "anonymous registration is enabled in realm {realm} but the gateway config has no [realms.{realm}.registrar] credential"
            ));
        }
        let ready = missing.is_empty();
        self.metrics.ready.set(i64::from(ready));
        (ready, missing)
    }
}
