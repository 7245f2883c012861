//! Registration quotas: at most N creates per caller, and at most M creates per realm across all
//! callers, in any sliding window. Callers are the `azp` of bearer tokens, the `jti` of initial
//! access tokens, or the client address.
//!
//! The counters live in this process (`local`) or in Redis (`redis`), shared by every replica,
//! as `[quota_store]` says. Keys are SHA-256 digests of (realm, caller), so attacker-chosen text
//! never becomes a key; a create that Keycloak does not accept is refunded.

pub mod local;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use self::local::{Local, LocalSlot};
use self::redis::{RedisSlot, RedisStore, StoreFailure};
use crate::config::store::{OnError, QuotaStore};
use crate::metrics::Metrics;
pub use crate::policy::snapshot::QuotaPolicy;

/// A SHA-256 digest naming one counter.
pub type Key = [u8; 32];

/// The digest of (kind, realm, caller): `c` for a caller's counter, `r` for the realm's.
pub fn digest(kind: u8, realm: &str, caller: &str) -> Key {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(&[kind]);
    ctx.update(realm.as_bytes());
    ctx.update(&[0]);
    ctx.update(caller.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 16 random bytes (create ids); zeros only if the system's generator fails.
fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut id).is_err() {
        tracing::error!("no randomness for a quota create id");
    }
    id
}

/// One limit a create is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The counter.
    pub key: Key,
    /// Its limit and window.
    pub policy: QuotaPolicy,
}

/// A create to count: the counters it goes into, each with its limit.
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    /// The realm (from the path; any text): the hash tag of the Redis keys.
    pub realm: &'a str,
    /// The counters and their limits, in the order `Taken` answers.
    pub limits: Vec<Limits>,
    /// Count the create even over a limit (every quota that applies is shadowed).
    pub force: bool,
}

/// A create counted against quotas, to refund if Keycloak does not accept it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// Counted in this process.
    Local(LocalSlot),
    /// Counted in Redis.
    Redis(RedisSlot),
}

/// What `take` did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Taken {
    /// The create counted, if it was.
    pub slot: Option<Slot>,
    /// Per limit of the ask: when at its quota, how long until a create is free again.
    pub waits: Vec<Option<Duration>>,
    /// Per limit of the ask: the creates counted in its window, after this take.
    pub used: Vec<u32>,
}

/// The fail-closed store could not count the create.
#[derive(Debug, thiserror::Error)]
#[error("the quota store did not answer: {0}")]
pub struct Unavailable(pub StoreFailure);

/// The quota counters: in memory, or in Redis with a memory fallback when failing open.
#[derive(Debug, Default)]
pub struct Quotas {
    local: Local,
    redis: Option<(Arc<RedisStore>, OnError)>,
}

// === impl Quotas ===

impl Quotas {
    /// The store `[quota_store]` names; a Redis store connects in the background.
    pub fn new(store: &QuotaStore, metrics: &Metrics) -> Result<Quotas, ::redis::RedisError> {
        let redis = match store {
            QuotaStore::Memory => None,
            QuotaStore::Redis(s) => Some((RedisStore::start(s, metrics.clone())?, s.on_error)),
        };
        Ok(Quotas {
            local: Local::default(),
            redis,
        })
    }

    /// Counts one create unless a limit is reached (with `force`, counts it anyway). Fails
    /// only when a fail-closed Redis store cannot be asked.
    pub async fn take(&self, ask: &Ask<'_>) -> Result<Taken, Unavailable> {
        let limits = &ask.limits;
        if limits.is_empty() {
            return Ok(Taken::default());
        }
        let Some((store, on_error)) = &self.redis else {
            return Ok(self.take_local(limits, ask.force));
        };
        let realm = digest(b'r', ask.realm, "");
        match Box::pin(store.take(&realm, limits, ask.force)).await {
            Ok((slot, waits, used)) => Ok(Taken {
                slot: slot.map(Slot::Redis),
                waits,
                used,
            }),
            Err(e) if *on_error == OnError::Open => {
                tracing::warn!(error = %e, "quota store unreachable; counting this create locally (fail open)");
                store.fell_back();
                Ok(self.take_local(limits, ask.force))
            }
            Err(e) => Err(Unavailable(e)),
        }
    }

    fn take_local(&self, limits: &[Limits], force: bool) -> Taken {
        let now = Instant::now();
        let (slot, waits) = self.local.take(limits, force, now);
        let used = limits.iter().map(|l| self.local.used(&l.key, now)).collect();
        Taken {
            slot: slot.map(Slot::Local),
            waits,
            used,
        }
    }

    /// Gives back a create that did not happen (Keycloak refused it or could not be reached).
    /// A refund Redis cannot take is logged; that create then expires with its window.
    pub async fn refund(&self, slot: Slot) {
        match (slot, &self.redis) {
            (Slot::Local(s), _) => self.local.refund(&s),
            (Slot::Redis(s), Some((store, _))) => {
                if let Err(e) = Box::pin(store.refund(&s)).await {
                    tracing::warn!(error = %e, "quota store: could not refund a create; it expires with its window");
                }
            }
            (Slot::Redis(_), None) => {}
        }
    }

    /// Settles a counted create once Keycloak has answered: kept when Keycloak created the
    /// client (a 2xx answer), refunded otherwise (refused, unreachable, or never forwarded).
    pub async fn settle(&self, slot: Option<Slot>, upstream_status: Option<u16>) {
        if let Some(slot) = slot
            && !upstream_status.is_some_and(|s| (200..300).contains(&s))
        {
            self.refund(slot).await;
        }
    }

    /// Why quotas cannot be counted now, when a fail-closed store is unreachable.
    pub fn not_ready(&self) -> Option<String> {
        match &self.redis {
            Some((store, OnError::Closed)) if !store.is_up() => Some("quota store (Redis) unreachable".into()),
            _ => None,
        }
    }

    /// Counters held in this process's memory (for unit tests).
    #[cfg(test)]
    pub(crate) fn local_len(&self) -> usize {
        self.local.len()
    }
}
