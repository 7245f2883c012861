//! Gateway settings: the TOML file model operators write, and the validated `Settings` the
//! gateway runs on. Loading and flag overrides live in `load`, TLS material in `tls`.

pub mod load;
pub mod store;
pub mod tls;
pub mod types;
pub mod words;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

pub use load::{ConfigError, Overrides, load};
pub use types::{Addr, BaseUrl, Cidr, Dur};

/// What to do with requests outside the registration endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtherPaths {
    /// Forward them untouched (the gateway fronts all of Keycloak).
    Forward,
    /// Answer 404 JSON.
    Refuse,
}

/// Whether policy decisions are enforced or only recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Refusals are answered.
    #[default]
    Enforce,
    /// Refusals are logged and counted, and the request is forwarded anyway.
    Shadow,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable text.
    Human,
    /// One JSON object per line.
    Json,
}

/// The raw TOML file, every key optional; `deny_unknown_fields` catches typos.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub(crate) listen: Option<Addr>,
    pub(crate) admin_listen: Option<Addr>,
    pub(crate) upstream: Option<BaseUrl>,
    pub(crate) public_url: Option<BaseUrl>,
    pub(crate) policies: Option<PathBuf>,
    pub(crate) path_prefix: Option<String>,
    pub(crate) other_paths: Option<OtherPaths>,
    pub(crate) mode: Option<Mode>,
    pub(crate) log_format: Option<LogFormat>,
    pub(crate) preserve_host: Option<bool>,
    pub(crate) trusted_proxies: Option<Vec<Cidr>>,
    pub(crate) max_body_bytes: Option<usize>,
    pub(crate) max_in_flight: Option<usize>,
    pub(crate) max_in_flight_per_peer: Option<usize>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) max_connections_per_peer: Option<usize>,
    #[serde(default)]
    pub(crate) timeouts: FileTimeouts,
    pub(crate) tls: Option<tls::ServerTlsFile>,
    #[serde(default)]
    pub(crate) upstream_tls: tls::UpstreamTlsFile,
    #[serde(default)]
    pub(crate) jwt: FileJwt,
    #[serde(default)]
    pub(crate) jwks: FileJwks,
    #[serde(default)]
    pub(crate) realms: BTreeMap<String, RealmSettings>,
    #[serde(default)]
    pub(crate) quota_store: store::FileQuotaStore,
}

/// `[timeouts]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileTimeouts {
    pub(crate) connect: Option<Dur>,
    pub(crate) response: Option<Dur>,
    pub(crate) body_read: Option<Dur>,
    pub(crate) pool_idle: Option<Dur>,
    pub(crate) shutdown_grace: Option<Dur>,
    pub(crate) drain_delay: Option<Dur>,
    pub(crate) policy_poll: Option<Dur>,
    pub(crate) policy_settle: Option<Dur>,
    pub(crate) header_read: Option<Dur>,
    pub(crate) idle: Option<Dur>,
    pub(crate) response_write: Option<Dur>,
}

/// `[jwt]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileJwt {
    pub(crate) algorithms: Option<Vec<String>>,
    pub(crate) leeway: Option<Dur>,
    pub(crate) token_cache_capacity: Option<usize>,
}

/// `[jwks]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileJwks {
    pub(crate) refresh_interval: Option<Dur>,
    pub(crate) min_refetch_interval: Option<Dur>,
    pub(crate) max_staleness: Option<Dur>,
    pub(crate) fetch_timeout: Option<Dur>,
    pub(crate) unknown_kid_ttl: Option<Dur>,
    pub(crate) discovery: Option<bool>,
    pub(crate) prefetch: Option<Vec<String>>,
}

/// `[realms.NAME]`: how tokens of one realm are checked.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RealmSettings {
    /// Expected `iss` values, pinned (`issuer = "…"` or `issuer = ["…", …]`); when unset, the
    /// issuer `{public_url}/realms/{realm}` and the one Keycloak derives from each request.
    #[serde(default, deserialize_with = "types::one_or_many")]
    pub issuer: Option<Vec<String>>,
    /// When set, a bearer token's `aud` must contain one of these.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// When set, a bearer token's `azp` must be one of these.
    #[serde(default)]
    pub azp: Vec<String>,
    /// Where to fetch keys; default `{upstream}/realms/{realm}/protocol/openid-connect/certs`.
    pub jwks_uri: Option<String>,
    /// The gateway's own credential for anonymous registrations in this realm.
    pub registrar: Option<RegistrarSettings>,
}

/// `[realms.NAME.registrar]`: how the gateway authenticates the anonymous creates it forwards.
/// Either a service account (`client_id` with `secret_file` or `secret_env`) or an initial
/// access token read from `initial_access_token_file`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegistrarSettings {
    /// Service account client id (client-credentials grant).
    pub client_id: Option<String>,
    /// File holding the service account's client secret.
    pub secret_file: Option<PathBuf>,
    /// Environment variable holding the service account's client secret.
    pub secret_env: Option<String>,
    /// Token endpoint; default `{upstream}/realms/NAME/protocol/openid-connect/token`.
    pub token_url: Option<String>,
    /// Renew the token this long before it expires (default `60s`, at most half its lifetime).
    pub renew_before: Option<Dur>,
    /// File holding an initial access token (re-read when it changes).
    pub initial_access_token_file: Option<PathBuf>,
}

/// Bearer-token verification settings.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// Accepted signature algorithms (never `none` or HS*).
    pub algorithms: Vec<Algorithm>,
    /// Clock-skew allowance for `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// Entries in the verified-token cache.
    pub token_cache_capacity: usize,
}

/// JWKS cache settings.
#[derive(Debug, Clone)]
pub struct JwksSettings {
    /// Background refresh period.
    pub refresh_interval: Duration,
    /// At most one request-triggered refetch (unknown `kid`, keys never loaded) per realm in
    /// this interval; scheduled refreshes do not count.
    pub min_refetch_interval: Duration,
    /// How long a key set may be served after refreshes start failing.
    pub max_staleness: Duration,
    /// Timeout of one fetch.
    pub fetch_timeout: Duration,
    /// Deprecated and ignored: unknown kids are bounded by `min_refetch_interval` alone.
    pub unknown_kid_ttl: Duration,
    /// Find `jwks_uri` through the realm's discovery document.
    pub discovery: bool,
    /// Realms whose keys are fetched before the gateway is ready.
    pub prefetch: Vec<String>,
}

/// Upstream and shutdown timeouts.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// TCP (and TLS) connect to the upstream.
    pub connect: Duration,
    /// From request sent to response headers received; again for an upstream body the gateway
    /// reads whole (an error to classify, a success to relocate, the current client).
    pub response: Duration,
    /// Longest time to receive a registration body the gateway reads.
    pub body_read: Duration,
    /// Idle pooled upstream connections are closed after this.
    pub pool_idle: Duration,
    /// In-flight requests get this long to finish once the proxy stops accepting.
    pub shutdown_grace: Duration,
    /// After SIGTERM, the proxy keeps accepting this long (with `/readyz` at 503) before it stops.
    pub drain_delay: Duration,
    /// From accept (or the end of the last request) until a request's headers have arrived.
    pub header_read: Duration,
    /// An open connection with no request in flight is closed after this.
    pub idle: Duration,
    /// Longest time a response may take to be written to the client once its headers are ready.
    pub response_write: Duration,
    /// Policy files are re-read at least this often (the watcher's fallback).
    pub policy_poll: Duration,
    /// A changed policy is applied only once two reads this far apart agree.
    pub policy_settle: Duration,
}

/// The validated settings the gateway runs on.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the config came from (for messages), if a file.
    pub source: Option<PathBuf>,
    /// Proxy listener.
    pub listen: SocketAddr,
    /// Admin listener (`/metrics`, `/healthz`, `/readyz`).
    pub admin_listen: SocketAddr,
    /// Keycloak's base URL as the gateway reaches it.
    pub upstream: BaseUrl,
    /// Keycloak's base URL as clients reach it (through the gateway).
    pub public_url: BaseUrl,
    /// A policy file or a directory of `*.toml`.
    pub policies: PathBuf,
    /// Whether `policies` was given (flag, environment or file) rather than defaulted.
    pub policies_explicit: bool,
    /// Path prefix before `/realms` (`/auth` for Keycloak ≤ 16), without trailing slash.
    pub path_prefix: String,
    /// What to do with other paths.
    pub other_paths: OtherPaths,
    /// Enforce or shadow policy.
    pub mode: Mode,
    /// Log format.
    pub log_format: LogFormat,
    /// Send the client's `Host` upstream (default) instead of the upstream's.
    pub preserve_host: bool,
    /// Peers whose `X-Forwarded-*` / `Forwarded` headers are kept and appended to.
    pub trusted_proxies: Vec<Cidr>,
    /// Largest registration body read for policy checks.
    pub max_body_bytes: usize,
    /// Requests in flight before new ones are shed with 503.
    pub max_in_flight: usize,
    /// Requests in flight from one client address (IPv6: one /64) before its new ones are shed.
    pub max_in_flight_per_peer: usize,
    /// Open proxy connections at most (further ones are closed at accept).
    pub max_connections: usize,
    /// Open proxy connections from one peer address (IPv6: one /64); trusted proxies are exempt.
    pub max_connections_per_peer: usize,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// TLS on the proxy listener.
    pub tls: Option<tls::ServerTls>,
    /// TLS to the upstream.
    pub upstream_tls: tls::UpstreamTls,
    /// Bearer-token verification.
    pub jwt: JwtSettings,
    /// JWKS cache.
    pub jwks: JwksSettings,
    /// Per-realm token settings.
    pub realms: BTreeMap<String, RealmSettings>,
    /// Where registration quotas are counted.
    pub quota_store: store::QuotaStore,
}

// === impl Settings ===

impl Settings {
    /// The first issuer tokens of `realm` may carry (the one hints and the doctor name).
    pub fn issuer_for(&self, realm: &str) -> String {
        self.issuers_for(realm)
            .into_iter()
            .next()
            .unwrap_or_else(|| format!("{}/realms/{realm}", self.public_url))
    }

    /// The configured issuers of `realm`: its pinned `issuer` list, else `{public_url}/realms/R`.
    pub fn issuers_for(&self, realm: &str) -> Vec<String> {
        match self.pinned_issuers(realm) {
            Some(list) => list.to_vec(),
            None => vec![format!("{}/realms/{realm}", self.public_url)],
        }
    }

    /// Whether `[realms.R] issuer` pins the issuers, so the request's own is not accepted too.
    pub fn issuer_pinned(&self, realm: &str) -> bool {
        self.pinned_issuers(realm).is_some()
    }

    /// The issuers `[realms.R] issuer` pins, if it names any.
    pub fn pinned_issuers(&self, realm: &str) -> Option<&[String]> {
        self.realms
            .get(realm)
            .and_then(|r| r.issuer.as_deref())
            .filter(|l| !l.is_empty())
    }

    /// Where the keys of `realm` are fetched from (before discovery).
    pub fn jwks_uri_for(&self, realm: &str) -> String {
        match self.realms.get(realm).and_then(|r| r.jwks_uri.clone()) {
            Some(uri) => uri,
            None => format!("{}/realms/{realm}/protocol/openid-connect/certs", self.upstream),
        }
    }

    /// The policy path to load: the configured one, or `./policies` if it exists, else `None`
    /// (the built-in policy, which mirrors Keycloak's own role rules).
    pub fn policies_path(&self) -> Option<PathBuf> {
        if self.policies_explicit || self.policies.exists() {
            return Some(self.policies.clone());
        }
        tracing::warn!(path = %self.policies.display(), "no policy files found; using the built-in policy (Keycloak's own role rules)");
        None
    }

    /// Per-realm token settings, or the defaults.
    pub fn realm(&self, realm: &str) -> RealmSettings {
        self.realms.get(realm).cloned().unwrap_or_default()
    }
}
