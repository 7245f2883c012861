//! `[quota_store]`: where registration quotas are counted — in the gateway's memory (the
//! default) or in Redis, shared by every gateway replica — and what happens when Redis fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use redis::{ConnectionAddr, IntoConnectionInfo};
use serde::Deserialize;

use super::Dur;

/// Which store counts quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Each gateway process counts for itself.
    Memory,
    /// One Redis (or Redis Cluster) shared by every replica.
    Redis,
}

/// How the Redis nodes are arranged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Topology {
    /// One server (or a proxy, or a managed endpoint that fails over behind one address).
    Single,
    /// Redis Cluster: `url` and `cluster_nodes` are seed nodes; slots are discovered.
    Cluster,
}

/// What a create gets when Redis cannot be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Refuse the create (503 `quota_store_unavailable`); readiness fails while Redis is down.
    Closed,
    /// Count the create in this process's memory instead, and log and count the fallback.
    Open,
}

/// `[quota_store]` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileQuotaStore {
    /// `memory` or `redis`.
    pub(crate) backend: Option<Backend>,
    /// `redis://[user[:password]@]host[:port][/db]` or `rediss://…` (TLS).
    pub(crate) url: Option<String>,
    /// `single` or `cluster`.
    pub(crate) topology: Option<Topology>,
    /// More seed nodes for `topology = "cluster"`.
    pub(crate) cluster_nodes: Option<Vec<String>>,
    /// ACL user name (instead of one in the URL).
    pub(crate) username: Option<String>,
    /// File whose first line is the password.
    pub(crate) password_file: Option<PathBuf>,
    /// Prefix of every key the gateway writes.
    pub(crate) key_prefix: Option<String>,
    /// `closed` or `open`.
    pub(crate) on_error: Option<OnError>,
    /// Longest time to open a connection.
    pub(crate) connect_timeout: Option<Dur>,
    /// Longest time one quota operation may take before it counts as a store error.
    pub(crate) timeout: Option<Dur>,
    /// How often the store is pinged for readiness and the `quota_store_up` metric.
    pub(crate) health_interval: Option<Dur>,
    /// TLS material for `rediss://`.
    pub(crate) tls: Option<QuotaStoreTlsFile>,
}

/// `[quota_store.tls]` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaStoreTlsFile {
    /// PEM CA bundle trusted for Redis (default: the system's roots).
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// PEM key of the client certificate.
    pub client_key: Option<PathBuf>,
}

/// Validated Redis settings. `Debug` never shows credentials.
#[derive(Clone)]
pub struct RedisSettings {
    /// The nodes (one unless a cluster), credentials applied.
    pub nodes: Vec<redis::ConnectionInfo>,
    /// Single server or cluster.
    pub topology: Topology,
    /// TLS material (PEM bytes), for `rediss://`.
    pub tls: Option<redis::TlsCertificates>,
    /// Key prefix.
    pub key_prefix: String,
    /// Fail closed or open.
    pub on_error: OnError,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Per-operation timeout.
    pub timeout: Duration,
    /// Health ping period.
    pub health_interval: Duration,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field(
                "nodes",
                &self.nodes.iter().map(|n| n.addr().to_string()).collect::<Vec<_>>(),
            )
            .field("topology", &self.topology)
            .field("tls", &self.tls.is_some())
            .field("key_prefix", &self.key_prefix)
            .field("on_error", &self.on_error)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The validated quota store.
#[derive(Debug, Clone, Default)]
pub enum QuotaStore {
    /// In this process's memory.
    #[default]
    Memory,
    /// In Redis.
    Redis(Box<RedisSettings>),
}

/// A `[quota_store]` problem: the key and what is wrong.
pub type StoreError = (&'static str, String);

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|e| (key, format!("cannot read {}: {e}", path.display())))
}

fn node(
    key: &'static str,
    url: &str,
    f: &FileQuotaStore,
    password: Option<&str>,
) -> Result<redis::ConnectionInfo, StoreError> {
    let bad = |m: String| (key, m);
    if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("redis+unix://")) {
        return Err(bad("must start with redis://, rediss:// or redis+unix://".into()));
    }
    // The URL may hold a password: never echo it.
    let info = url
        .into_connection_info()
        .map_err(|e| bad(format!("is not a Redis URL ({:?})", e.kind())))?;
    if let ConnectionAddr::TcpTls { insecure: true, .. } = info.addr() {
        return Err(bad(
            "`#insecure` turns off certificate checks; use [quota_store.tls] ca instead".into(),
        ));
    }
    let mut redis = info.redis_settings().clone();
    if let Some(u) = &f.username {
        redis = redis.set_username(u);
    }
    if let Some(p) = password {
        redis = redis.set_password(p);
    }
    Ok(info.set_redis_settings(redis))
}

fn tls(t: &QuotaStoreTlsFile) -> Result<redis::TlsCertificates, StoreError> {
    let client_tls = match (&t.client_cert, &t.client_key) {
        (Some(c), Some(k)) => Some(redis::ClientTlsConfig {
            client_cert: read("quota_store.tls.client_cert", c)?,
            client_key: read("quota_store.tls.client_key", k)?,
        }),
        (None, None) => None,
        (Some(_), None) => return Err(("quota_store.tls.client_key", "client_cert needs client_key".into())),
        (None, Some(_)) => return Err(("quota_store.tls.client_cert", "client_key needs client_cert".into())),
    };
    let root_cert = t.ca.as_deref().map(|p| read("quota_store.tls.ca", p)).transpose()?;
    Ok(redis::TlsCertificates { client_tls, root_cert })
}

/// Validates `[quota_store]`.
pub fn build(f: &FileQuotaStore) -> Result<QuotaStore, StoreError> {
    let backend = f.backend.unwrap_or(Backend::Memory);
    if backend == Backend::Memory {
        return match f.url.is_some() || f.cluster_nodes.is_some() {
            true => Err((
                "quota_store.backend",
                "Redis settings are given but backend is `memory`; set backend = \"redis\"".into(),
            )),
            false => Ok(QuotaStore::Memory),
        };
    }
    let url = f
        .url
        .as_deref()
        .ok_or(("quota_store.url", "backend = \"redis\" needs a url".to_owned()))?;
    let password = match &f.password_file {
        Some(p) => {
            let text = read("quota_store.password_file", p)?;
            let text = String::from_utf8(text).map_err(|_| ("quota_store.password_file", "is not UTF-8".to_owned()))?;
            Some(text.lines().next().unwrap_or_default().to_owned())
        }
        None => None,
    };
    let topology = f.topology.unwrap_or(Topology::Single);
    let mut nodes = vec![node("quota_store.url", url, f, password.as_deref())?];
    for n in f.cluster_nodes.iter().flatten() {
        nodes.push(node("quota_store.cluster_nodes", n, f, password.as_deref())?);
    }
    if topology == Topology::Single && nodes.len() > 1 {
        return Err(("quota_store.cluster_nodes", "needs topology = \"cluster\"".into()));
    }
    let secure = nodes.iter().all(|n| matches!(n.addr(), ConnectionAddr::TcpTls { .. }));
    if f.tls.is_some() && !secure {
        return Err(("quota_store.tls", "TLS settings need rediss:// URLs".into()));
    }
    let tls = f.tls.as_ref().map(tls).transpose()?;
    if let Some(certs) = &tls {
        // Builds the rustls configuration now, so that unusable PEM files fail at load.
        redis::Client::build_with_tls(nodes[0].clone(), certs.clone())
            .map_err(|e| ("quota_store.tls", format!("unusable TLS material: {e}")))?;
    }
    let d = |v: Option<Dur>, ms: u64| v.map(|d| d.0).unwrap_or(Duration::from_millis(ms));
    let s = RedisSettings {
        nodes,
        topology,
        tls,
        key_prefix: f.key_prefix.clone().unwrap_or_else(|| "dcr-gateway:".into()),
        on_error: f.on_error.unwrap_or(OnError::Closed),
        connect_timeout: d(f.connect_timeout, 1000),
        timeout: d(f.timeout, 250),
        health_interval: d(f.health_interval, 1000),
    };
    for (key, v) in [
        ("quota_store.connect_timeout", s.connect_timeout),
        ("quota_store.timeout", s.timeout),
        ("quota_store.health_interval", s.health_interval),
    ] {
        if v.is_zero() {
            return Err((key, "must be longer than 0s".into()));
        }
    }
    Ok(QuotaStore::Redis(Box::new(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<QuotaStore, StoreError> {
        build(&toml::from_str::<FileQuotaStore>(text).unwrap())
    }

    #[test]
    fn memory_by_default_and_redis_needs_a_url() {
        assert!(matches!(parse(""), Ok(QuotaStore::Memory)));
        assert_eq!(parse("backend = \"redis\"").unwrap_err().0, "quota_store.url");
        assert_eq!(parse("url = \"redis://r:6379\"").unwrap_err().0, "quota_store.backend");
    }

    #[test]
    fn redis_settings_and_defaults() {
        let QuotaStore::Redis(s) =
            parse("backend = \"redis\"\nurl = \"redis://:hunter2@r:6380/2\"\nusername = \"gw\"").unwrap()
        else {
            panic!("redis")
        };
        assert_eq!(s.nodes[0].redis_settings().username(), Some("gw"));
        assert_eq!(s.nodes[0].redis_settings().password(), Some("hunter2"));
        assert_eq!(s.nodes[0].redis_settings().db(), 2);
        assert_eq!(
            (s.on_error, s.timeout, s.key_prefix.as_str()),
            (OnError::Closed, Duration::from_millis(250), "dcr-gateway:")
        );
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn bad_urls_and_insecure_tls_refused_without_echoing_secrets() {
        let e = parse("backend = \"redis\"\nurl = \"http://r\"").unwrap_err();
        assert_eq!(e.0, "quota_store.url");
        let e = parse("backend = \"redis\"\nurl = \"rediss://r:6379/#insecure\"").unwrap_err();
        assert!(e.1.contains("insecure"), "{e:?}");
        let e = parse("backend = \"redis\"\nurl = \"redis://:s3cret@r:notaport\"").unwrap_err();
        assert!(!e.1.contains("s3cret"), "{e:?}");
        let e = parse("backend = \"redis\"\nurl = \"redis://r\"\ntimeout = \"0ms\"").unwrap_err();
        assert_eq!(e.0, "quota_store.timeout");
        let e = parse("backend = \"redis\"\nurl = \"redis://r\"\ncluster_nodes = [\"redis://s\"]").unwrap_err();
        assert_eq!(e.0, "quota_store.cluster_nodes");
    }
}
