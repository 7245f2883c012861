//! The JWKS cache: one key set per realm behind an `ArcSwap`, fetched with the gateway's own
//! client before the realm is served and refreshed in the background.
//!
//! An unknown `kid` (or a request for a realm whose keys never loaded) triggers a refetch on
//! demand: coalesced (single flight) and at most one per `min_refetch_interval` per realm, a
//! budget of its own that scheduled refreshes do not use up. So a key Keycloak has just added is
//! accepted at once, a kid is refused at most one interval after it appears, and a flood of junk
//! kids costs at most one fetch per interval. A failed fetch keeps the last good set until
//! `max_staleness`; one bad key is skipped.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::time::Instant;

use super::cache::TokenCache;
use crate::config::JwksSettings;
use crate::error::{Detail, Reason, Refusal};
use crate::metrics::Metrics;
use crate::net::{HttpClient, get_bytes};

mod registry;
pub mod rsa;
pub use registry::Jwks;

/// Keys by `kid`.
pub type Keys = HashMap<String, Arc<Key>>;

/// One usable verification key.
#[derive(Debug)]
pub struct Key {
    /// Key id.
    pub kid: String,
    /// Key family (RSA, EC, OKP), to match against the token's `alg`.
    pub family: AlgorithmFamily,
    /// The only algorithm this key may verify, when the JWK names one (or its curve implies one).
    pub alg: Option<Algorithm>,
    /// The key material.
    pub decoding: DecodingKey,
    /// For RSA keys: the key parsed once per algorithm (what verification uses).
    pub rsa: Option<rsa::ParsedRsa>,
}

/// A fetched key set.
#[derive(Debug, Default)]
pub struct KeySet {
    /// Keys by `kid`.
    pub keys: HashMap<String, Arc<Key>>,
    /// When the set was last fetched successfully (`None`: never).
    pub fetched_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct Throttle {
    /// The last fetch started on demand (never by the scheduled refresh).
    last_demand: Option<Instant>,
    last_error: Option<String>,
}

/// The key set of one realm and the machinery that keeps it fresh.
#[derive(Debug)]
pub struct RealmKeys {
    realm: String,
    label: parking_lot::RwLock<String>,
    uri: String,
    discovery: Option<String>,
    settings: JwksSettings,
    client: HttpClient,
    metrics: Metrics,
    tokens: Arc<TokenCache>,
    set: ArcSwap<KeySet>,
    throttle: Mutex<Throttle>,
    attempts: AtomicU64,
    successes: AtomicU64,
    verified: std::sync::atomic::AtomicBool,
    fetching: tokio::sync::Mutex<()>,
}

/// Parses one JWK into a verification key; `Err` says why it is skipped.
pub fn parse_key(v: &Value) -> Result<Arc<Key>, String> {
    let jwk: Jwk = serde_json::from_value(v.clone()).map_err(|e| format!("not a JWK: {e}"))?;
    let kid = jwk.common.key_id.clone().ok_or("no kid")?;
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return Err(format!("key {kid} is not for signatures (use is not sig)"));
    }
    let (family, implied) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (AlgorithmFamily::Rsa, None),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => (AlgorithmFamily::Ec, Some(Algorithm::ES256)),
            EllipticCurve::P384 => (AlgorithmFamily::Ec, Some(Algorithm::ES384)),
            _ => return Err(format!("key {kid} uses an unsupported curve")),
        },
        AlgorithmParameters::OctetKeyPair(_) => (AlgorithmFamily::Ed, Some(Algorithm::EdDSA)),
        _ => {
            return Err(format!(
                "key {kid} is symmetric or of an unknown type; only public keys are used"
            ));
        }
    };
    let alg = match jwk.common.key_algorithm {
        Some(a) => Some(Algorithm::try_from(a).map_err(|_| format!("key {kid} has a non-signature alg {a}"))?),
        None => implied,
    };
    if alg.is_some_and(|a| a.family() != family) {
        return Err(format!("key {kid}: alg does not fit its key type"));
    }
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| format!("key {kid}: {e}"))?;
    let rsa = match decoding.kind() {
        jsonwebtoken::DecodingKeyKind::RsaModulusExponent { n, e } => Some(rsa::ParsedRsa::new(n.clone(), e.clone())),
        jsonwebtoken::DecodingKeyKind::SecretOrDer(_) => None,
    };
    Ok(Arc::new(Key {
        kid,
        family,
        alg,
        decoding,
        rsa,
    }))
}

/// Parses a JWKS document, skipping (and reporting) keys that cannot be used.
pub fn parse_set(body: &[u8]) -> Result<(Keys, Vec<String>), String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
    let list = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the JWKS has no `keys` array")?;
    let mut keys = HashMap::new();
    let mut skipped = Vec::new();
    for v in list {
        match parse_key(v) {
            Ok(k) => {
                keys.insert(k.kid.clone(), k);
            }
            Err(why) => skipped.push(why),
        }
    }
    Ok((keys, skipped))
}

// === impl RealmKeys ===

impl RealmKeys {
    /// Whether `kid` is in the current set.
    pub fn holds(&self, kid: &str) -> bool {
        self.set.load().keys.contains_key(kid)
    }

    /// Loaded, and not older than `max_staleness`.
    pub fn is_fresh(&self) -> bool {
        self.set
            .load()
            .fetched_at
            .is_some_and(|t| t.elapsed() <= self.settings.max_staleness)
    }

    /// The metric label: the realm name when named, else `other`.
    pub fn label(&self) -> String {
        self.label.read().clone()
    }

    /// Relabels the key set (when policy names a realm first seen unnamed).
    pub fn set_label(&self, label: &str) {
        *self.label.write() = label.to_owned();
    }

    /// Whether fetches were attempted and none ever succeeded.
    pub fn never_loaded(&self) -> bool {
        self.set.load().fetched_at.is_none() && self.attempts.load(Ordering::Acquire) > 0
    }

    /// Whether the set was fetched within `min_refetch_interval` (as fresh as a refetch would be).
    pub fn recently_fetched(&self) -> bool {
        self.set
            .load()
            .fetched_at
            .is_some_and(|t| t.elapsed() < self.settings.min_refetch_interval)
    }

    /// Seconds since the last successful fetch.
    pub fn age_secs(&self) -> Option<f64> {
        self.set.load().fetched_at.map(|t| t.elapsed().as_secs_f64())
    }

    /// Where keys come from (for messages).
    pub fn source(&self) -> &str {
        self.discovery.as_deref().unwrap_or(&self.uri)
    }

    fn unavailable(&self, what: &str) -> Refusal {
        let last = self
            .throttle
            .lock()
            .last_error
            .clone()
            .unwrap_or_else(|| "no fetch has completed yet".into());
        Refusal::new(
            Reason::JwksUnavailable,
            format!(
                "The gateway cannot verify bearer tokens for realm {}: {what}.",
                self.realm
            ),
        )
        .detail(Detail::JwksUri, self.source())
        .detail(Detail::LastError, last)
        .retry_after(self.settings.min_refetch_interval.as_secs().max(1))
    }

    /// The key for `kid`, refetching on demand (coalesced, rate limited) when it is unknown.
    pub async fn key(&self, kid: &str) -> Result<Arc<Key>, Refusal> {
        if let Some(k) = self.lookup(kid)? {
            return Ok(k);
        }
        let refetched = self.refetch().await;
        if let Some(k) = self.lookup(kid)? {
            return Ok(k);
        }
        if self.set.load().fetched_at.is_none() {
            return Err(self.unavailable("its key set could not be fetched"));
        }
        if refetched {
            return Err(self.kid_unknown(kid, "a refetch just now did not find it"));
        }
        let last_error = self.throttle.lock().last_error.clone();
        let why = match last_error {
            Some(e) => format!("refreshing the key set failed: {e}"),
            None => format!(
                "the key set was refetched for an unknown kid moments ago; the next refetch may start in {}s",
                self.demand_wait().as_secs().max(1)
            ),
        };
        Err(self.kid_unknown(kid, &why))
    }

    /// Marks that a token verified with this key set (a slot that never did may be reclaimed).
    pub fn mark_verified(&self) {
        self.verified.store(true, Ordering::Release);
    }

    /// Whether any token ever verified with this key set.
    pub fn ever_verified(&self) -> bool {
        self.verified.load(Ordering::Acquire)
    }

    fn lookup(&self, kid: &str) -> Result<Option<Arc<Key>>, Refusal> {
        let set = self.set.load();
        let Some(k) = set.keys.get(kid) else {
            return Ok(None);
        };
        match set.fetched_at {
            Some(t) if t.elapsed() > self.settings.max_staleness => Err(self.unavailable(&format!(
                "its keys are {}s old, past max_staleness ({}s), and refreshing them fails",
                t.elapsed().as_secs(),
                self.settings.max_staleness.as_secs()
            ))),
            _ => Ok(Some(k.clone())),
        }
    }

    fn kid_unknown(&self, kid: &str, why: &str) -> Refusal {
        Refusal::new(
            Reason::KidUnknown,
            format!("Key {kid} is not in realm {}'s JWKS ({why}).", self.realm),
        )
        .detail(Detail::Kid, kid)
        .detail(Detail::JwksUri, self.source())
        .detail(
            Detail::KnownKids,
            self.set.load().keys.keys().cloned().collect::<Vec<_>>(),
        )
    }

    /// How long until an on-demand refetch may start.
    fn demand_wait(&self) -> std::time::Duration {
        let t = self.throttle.lock();
        t.last_demand
            .map(|at| self.settings.min_refetch_interval.saturating_sub(at.elapsed()))
            .unwrap_or_default()
    }

    /// Takes the on-demand budget if it is there.
    fn take_demand(&self) -> bool {
        let mut t = self.throttle.lock();
        let ok = t
            .last_demand
            .is_none_or(|at| at.elapsed() >= self.settings.min_refetch_interval);
        if ok {
            t.last_demand = Some(Instant::now());
        }
        ok
    }

    /// One coalesced, rate-limited refetch on demand. Returns whether a fetch succeeded
    /// meanwhile (here or concurrently), i.e. whether the key set is now fresh. A fetch already in
    /// flight (on demand or scheduled) is waited for and shared; otherwise a new one starts when
    /// the on-demand budget allows (one per `min_refetch_interval`, scheduled refreshes aside).
    pub async fn refetch(&self) -> bool {
        let before = self.attempts.load(Ordering::Acquire);
        let ok_before = self.successes.load(Ordering::Acquire);
        let _flight = match self.fetching.try_lock() {
            Ok(g) => g,
            Err(_) => self.fetching.lock().await,
        };
        if self.attempts.load(Ordering::Acquire) != before {
            // A fetch finished while we waited for it: fresh only if it succeeded.
            return self.successes.load(Ordering::Acquire) != ok_before;
        }
        if !self.take_demand() {
            return false;
        }
        self.fetch_locked().await.is_ok()
    }

    /// Fetches and swaps in a new set now (no rate limit); used by the background refresher.
    /// A fetch that finished while this one waited for the lock is shared instead.
    pub async fn fetch_now(&self) -> Result<(), String> {
        let before = self.attempts.load(Ordering::Acquire);
        let ok_before = self.successes.load(Ordering::Acquire);
        let _flight = self.fetching.lock().await;
        if self.attempts.load(Ordering::Acquire) != before {
            return match self.successes.load(Ordering::Acquire) != ok_before {
                true => Ok(()),
                false => Err(self.throttle.lock().last_error.clone().unwrap_or_default()),
            };
        }
        self.fetch_locked().await
    }

    async fn fetch_locked(&self) -> Result<(), String> {
        let started = Instant::now();
        let outcome = self.fetch().await;
        let took = started.elapsed().as_secs_f64();
        self.attempts.fetch_add(1, Ordering::AcqRel);
        let result = match outcome {
            Ok((keys, skipped)) => {
                for why in &skipped {
                    tracing::debug!(realm = %self.realm, why = %why, "skipped a JWKS key");
                }
                self.install(keys);
                self.successes.fetch_add(1, Ordering::AcqRel);
                self.throttle.lock().last_error = None;
                Ok(())
            }
            Err(e) => {
                tracing::warn!(realm = %self.realm, uri = %self.source(), error = %e, "JWKS fetch failed; keeping the last good key set");
                self.throttle.lock().last_error = Some(e.clone());
                Err(e)
            }
        };
        let label = if result.is_ok() { "success" } else { "error" };
        self.metrics
            .jwks_fetches
            .with_label_values(&[&self.label(), label])
            .inc();
        self.metrics
            .jwks_fetch_duration
            .with_label_values(&[&self.label(), label])
            .observe(took);
        result
    }

    fn install(&self, keys: HashMap<String, Arc<Key>>) {
        let count = i64::try_from(keys.len()).unwrap_or(i64::MAX);
        let new = Arc::new(KeySet {
            keys,
            fetched_at: Some(Instant::now()),
        });
        self.set.store(new.clone());
        self.metrics.jwks_keys.with_label_values(&[&self.label()]).set(count);
        self.tokens.retain_keys(&self.realm, |kid| new.keys.contains_key(kid));
    }

    async fn fetch(&self) -> Result<(Keys, Vec<String>), String> {
        let timeout = self.settings.fetch_timeout;
        let uri = match &self.discovery {
            Some(doc) => {
                let body = get_bytes(&self.client, doc, timeout, 1 << 20).await?;
                let v: Value =
                    serde_json::from_slice(&body).map_err(|e| format!("discovery document is not JSON: {e}"))?;
                v.get("jwks_uri")
                    .and_then(Value::as_str)
                    .ok_or("discovery document has no jwks_uri")?
                    .to_owned()
            }
            None => self.uri.clone(),
        };
        let body = get_bytes(&self.client, &uri, timeout, 1 << 20).await?;
        parse_set(&body)
    }
}

#[cfg(test)]
mod tests;
