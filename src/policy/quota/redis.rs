//! The Redis quota store, shared by every gateway replica. One Lua script checks and counts a
//! create under all its keys atomically, on the server's clock; another refunds it.
//!
//! Each key is a sorted set of create ids (random, chosen by the gateway) scored by the time of
//! the create in microseconds; it expires one window after its newest create. Key names hold
//! only the configured prefix and SHA-256 digests, never a caller's text. All keys of one realm
//! share a hash tag, so a script's keys sit in one slot of a Redis Cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{RedisError, Script};

use super::{Key, Limits, hex};
use crate::config::store::{RedisSettings, Topology};
use crate::metrics::Metrics;

const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS
local waits = {}
local over = false
for i = 1, n do
  local limit = tonumber(ARGV[2 * i - 1])
  local window = tonumber(ARGV[2 * i])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  waits[i] = -1
  if redis.call('ZCARD', KEYS[i]) >= limit then
    local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    waits[i] = math.max(0, window - (now - tonumber(oldest[2])))
    over = true
  end
end
local counted = 0
if not over or ARGV[2 * n + 2] == '1' then
  for i = 1, n do
    redis.call('ZADD', KEYS[i], now, ARGV[2 * n + 1])
    redis.call('PEXPIRE', KEYS[i], math.ceil(tonumber(ARGV[2 * i]) / 1000))
  end
  counted = 1
end
for i = 1, n do
  waits[n + i] = redis.call('ZCARD', KEYS[i])
end
table.insert(waits, 1, counted)
return waits
";

const REFUND: &str = r"
for i = 1, #KEYS do
  redis.call('ZREM', KEYS[i], ARGV[1])
end
return 1
";

/// A create counted in Redis: its keys and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSlot {
    keys: Vec<String>,
    member: String,
}

/// Why Redis could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreFailure {
    /// No answer within `quota_store.timeout`.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Not connected (yet).
    #[error("not connected")]
    NotConnected,
    /// The client or the server reported an error.
    #[error("{0}")]
    Redis(#[from] RedisError),
}

impl StoreFailure {
    /// A metrics label.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreFailure::Timeout(_) => "timeout",
            StoreFailure::Redis(e) if e.is_timeout() => "timeout",
            StoreFailure::NotConnected => "not_connected",
            StoreFailure::Redis(e) if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() => {
                "connection"
            }
            StoreFailure::Redis(_) => "server",
        }
    }
}

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// The shared store.
pub struct RedisStore {
    single: Option<ConnectionManager>,
    cluster: ArcSwapOption<ClusterConnection>,
    cluster_client: Option<redis::cluster::ClusterClient>,
    prefix: String,
    timeout: Duration,
    take: Script,
    refund: Script,
    up: AtomicBool,
    metrics: Metrics,
}

fn client(s: &RedisSettings) -> Result<redis::Client, RedisError> {
    let node = s.nodes[0].clone();
    match &s.tls {
        Some(certs) => redis::Client::build_with_tls(node, certs.clone()),
        None => redis::Client::open(node),
    }
}

fn cluster_client(s: &RedisSettings) -> Result<redis::cluster::ClusterClient, RedisError> {
    let mut b = redis::cluster::ClusterClient::builder(s.nodes.clone())
        .connection_timeout(s.connect_timeout)
        .response_timeout(s.timeout);
    if let Some(certs) = &s.tls {
        b = b.certs(certs.clone());
    }
    b.build()
}

// === impl RedisStore ===

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("cluster", &self.cluster_client.is_some())
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Builds the store and starts its health checks; connects lazily, so Redis may be down.
    pub fn start(s: &RedisSettings, metrics: Metrics) -> Result<Arc<RedisStore>, RedisError> {
        let (single, cluster_client) = match s.topology {
            Topology::Single => {
                let cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(s.connect_timeout))
                    .set_response_timeout(Some(s.timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                (Some(ConnectionManager::new_lazy_with_config(client(s)?, cfg)?), None)
            }
            Topology::Cluster => (None, Some(cluster_client(s)?)),
        };
        let store = Arc::new(RedisStore {
            single,
            cluster: ArcSwapOption::empty(),
            cluster_client,
            prefix: s.key_prefix.clone(),
            timeout: s.timeout,
            take: Script::new(TAKE),
            refund: Script::new(REFUND),
            up: AtomicBool::new(false),
            metrics,
        });
        tokio::spawn(health(Arc::downgrade(&store), s.health_interval));
        Ok(store)
    }

    /// The Redis key of a digest: prefix, the realm's hash tag, then the digest.
    pub fn key_name(&self, realm: &Key, key: &Key) -> String {
        format!("{}q:{{{}}}:{}", self.prefix, &hex(realm)[..32], hex(key))
    }

    fn conn(&self) -> Option<Conn> {
        match &self.single {
            Some(m) => Some(Conn::Single(m.clone())),
            None => self.cluster.load_full().map(|c| Conn::Cluster((*c).clone())),
        }
    }

    /// Runs `f` on a connection within the timeout, recording latency, errors and health.
    async fn run<T, F, Fut>(&self, op: &str, f: F) -> Result<T, StoreFailure>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let started = std::time::Instant::now();
        let result = match self.conn() {
            None => Err(StoreFailure::NotConnected),
            Some(c) => match tokio::time::timeout(self.timeout, f(c)).await {
                Ok(r) => r.map_err(StoreFailure::from),
                Err(_) => Err(StoreFailure::Timeout(self.timeout)),
            },
        };
        self.metrics
            .quota_store_latency
            .with_label_values(&[op])
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            self.metrics.quota_store_errors.with_label_values(&[op, e.kind()]).inc();
        }
        // A server error (a script error, an ACL refusal) still means Redis answered.
        self.set_up(result.as_ref().map_or_else(|e| e.kind() == "server", |_| true));
        result
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
        self.metrics.quota_store_up.set(i64::from(up));
    }

    /// Counts a create counted locally because Redis failed (fail open).
    pub fn fell_back(&self) {
        self.metrics.quota_store_fallbacks.inc();
    }

    /// Whether the last operation or health check reached Redis.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Checks every limit and counts the create under each key unless one is reached (or
    /// `force`). Returns the slot when counted, and per limit the wait until it frees.
    pub async fn take(
        &self,
        realm: &Key,
        limits: &[Limits],
        force: bool,
    ) -> Result<(Option<RedisSlot>, Vec<Option<Duration>>, Vec<u32>), StoreFailure> {
        let keys: Vec<String> = limits.iter().map(|l| self.key_name(realm, &l.key)).collect();
        let member = hex(&super::random_id());
        let mut inv = self.take.prepare_invoke();
        for (k, l) in keys.iter().zip(limits) {
            let window_us = u64::try_from(l.policy.window.as_micros()).unwrap_or(u64::MAX);
            inv.key(k).arg(l.policy.creates).arg(window_us);
        }
        inv.arg(&member).arg(if force { "1" } else { "0" });
        let answer: Vec<i64> = self.run("take", |c| async move { invoke(&inv, c).await }).await?;
        let n = limits.len();
        let waits = answer
            .iter()
            .skip(1)
            .take(n)
            .map(|w| u64::try_from(*w).ok().map(Duration::from_micros))
            .collect();
        let used = answer
            .iter()
            .skip(1 + n)
            .map(|c| u32::try_from(*c).unwrap_or(u32::MAX))
            .collect();
        let slot = (answer.first() == Some(&1)).then_some(RedisSlot { keys, member });
        Ok((slot, waits, used))
    }

    /// Gives back a create that did not happen.
    pub async fn refund(&self, slot: &RedisSlot) -> Result<(), StoreFailure> {
        let mut inv = self.refund.prepare_invoke();
        for k in &slot.keys {
            inv.key(k);
        }
        inv.arg(&slot.member);
        self.run("refund", |c| async move { invoke::<i64>(&inv, c).await })
            .await
            .map(|_| ())
    }

    async fn ping(&self) -> Result<(), StoreFailure> {
        if self.single.is_none()
            && self.cluster.load().is_none()
            && let Some(cc) = &self.cluster_client
        {
            let connected = tokio::time::timeout(self.timeout * 4, cc.get_async_connection()).await;
            if let Ok(Ok(c)) = connected {
                self.cluster.store(Some(Arc::new(c)));
            }
        }
        self.run("ping", |c| async move {
            let cmd = redis::cmd("PING");
            match c {
                Conn::Single(mut m) => cmd.query_async::<String>(&mut m).await,
                Conn::Cluster(mut m) => cmd.query_async::<String>(&mut m).await,
            }
        })
        .await
        .map(|_| ())
    }
}

async fn invoke<T: redis::FromRedisValue>(inv: &redis::ScriptInvocation<'_>, c: Conn) -> Result<T, RedisError> {
    match c {
        Conn::Single(mut m) => inv.invoke_async(&mut m).await,
        Conn::Cluster(mut m) => inv.invoke_async(&mut m).await,
    }
}

/// Pings the store every `every` while it exists; logs when it goes down and comes back.
async fn health(store: std::sync::Weak<RedisStore>, every: Duration) {
    let mut was_up = None;
    loop {
        let Some(s) = store.upgrade() else { return };
        let result = s.ping().await;
        let up = result.is_ok();
        if was_up != Some(up) {
            match &result {
                Ok(()) => tracing::info!("quota store: Redis reachable"),
                Err(e) => tracing::warn!(error = %e, "quota store: Redis unreachable"),
            }
        }
        was_up = Some(up);
        drop(s);
        tokio::time::sleep(every).await;
    }
}
