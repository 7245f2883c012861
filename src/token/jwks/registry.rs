//! The per-realm key sets, created on first use (bounded), prefetched for known realms, and
//! refreshed in the background with backoff on failure.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::RwLock;

use super::{KeySet, RealmKeys, Throttle};
use crate::config::Settings;
use crate::error::{Detail, Reason, Refusal};
use crate::metrics::Metrics;
use crate::net::HttpClient;
use crate::token::cache::TokenCache;

/// At most this many realms not named in configuration or policy get a key set.
const MAX_UNNAMED_REALMS: usize = 32;

/// Key sets of every realm the gateway has seen.
#[derive(Debug)]
pub struct Jwks {
    settings: Arc<Settings>,
    client: HttpClient,
    metrics: Metrics,
    tokens: Arc<TokenCache>,
    /// Realms named in the settings (`[realms.X]`, `jwks.prefetch`); fixed.
    configured: BTreeSet<String>,
    /// Realms named by the active policy; replaced on every policy load.
    in_policy: RwLock<BTreeSet<String>>,
    realms: RwLock<HashMap<String, Arc<RealmKeys>>>,
}

// === impl Jwks ===

impl Jwks {
    /// An empty registry.
    pub fn new(settings: Arc<Settings>, client: HttpClient, metrics: Metrics, tokens: Arc<TokenCache>) -> Self {
        let configured = settings.realms.keys().chain(&settings.jwks.prefetch).cloned().collect();
        Jwks {
            settings,
            client,
            metrics,
            tokens,
            configured,
            in_policy: RwLock::new(BTreeSet::new()),
            realms: RwLock::new(HashMap::new()),
        }
    }

    fn is_named(&self, realm: &str) -> bool {
        self.configured.contains(realm) || self.in_policy.read().contains(realm)
    }

    /// The realms named by configuration and policy, sorted, each once.
    pub fn named(&self) -> Vec<String> {
        self.configured
            .iter()
            .chain(self.in_policy.read().iter())
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// The metric and log label of `realm`: its name when configuration or policy names it,
    /// else `other` (so unnamed realms cannot grow label sets).
    pub fn realm_label(&self, realm: &str) -> String {
        if self.is_named(realm) {
            realm.to_owned()
        } else {
            "other".to_owned()
        }
    }

    /// Does `realm`'s key set hold `kid`? `Some(false)`: it does not; `Some(true)`: a fresh set
    /// does (only a fresh set can tell "rotated away" from "revoked"); `None`: cannot tell.
    pub async fn kid_status(&self, realm: &str, kid: &str) -> Option<bool> {
        let keys = self.realm(realm).ok()?;
        let fresh = keys.refetch().await || keys.recently_fetched();
        match keys.holds(kid) {
            false => Some(false),
            true if fresh => Some(true),
            true => None,
        }
    }

    /// Sets the realms the active policy names: they get their own metric label and are
    /// prefetched; realms an earlier policy named no longer count for readiness.
    pub fn name_realms(&self, realms: impl IntoIterator<Item = String>) {
        *self.in_policy.write() = realms.into_iter().collect();
        for r in self.named() {
            if let Ok(keys) = self.realm(&r) {
                keys.set_label(&r);
            }
        }
    }

    /// The key set of `realm`, created (and its refresher started) on first use. Realms not
    /// named anywhere share a bounded number of slots; slots that never loaded are reclaimed.
    pub fn realm(&self, realm: &str) -> Result<Arc<RealmKeys>, Refusal> {
        if let Some(r) = self.realms.read().get(realm) {
            return Ok(r.clone());
        }
        let named = self.is_named(realm);
        let mut realms = self.realms.write();
        if let Some(r) = realms.get(realm) {
            return Ok(r.clone());
        }
        if !named {
            let unnamed = |m: &HashMap<String, Arc<RealmKeys>>| m.keys().filter(|r| !self.is_named(r)).count();
            if unnamed(&realms) >= MAX_UNNAMED_REALMS {
                // Reclaim unnamed slots no token ever verified with: realms that do not exist, and
                // realms that forged tokens named. A request still using one keeps its own handle.
                realms.retain(|r, k| self.is_named(r) || k.ever_verified());
            }
            if unnamed(&realms) >= MAX_UNNAMED_REALMS {
                return Err(Refusal::new(
                    Reason::JwksUnavailable,
                    format!("Realm {realm} is not named in the configuration or policy, and the gateway already holds keys for {MAX_UNNAMED_REALMS} unnamed realms."),
                )
                .detail(Detail::Realm, realm)
                .detail(Detail::JwksUri, self.settings.jwks_uri_for(realm))
                .detail(Detail::LastError, "no slot left for unnamed realms: name the realm under [realms] in the policy"));
            }
        }
        let keys = Arc::new(self.make(realm, named));
        realms.insert(realm.to_owned(), keys.clone());
        drop(realms);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(refresh_loop(Arc::downgrade(&keys), self.settings.jwks.refresh_interval));
        }
        Ok(keys)
    }

    fn make(&self, realm: &str, named: bool) -> RealmKeys {
        let s = &self.settings;
        let discovery = (s.jwks.discovery && s.realms.get(realm).and_then(|r| r.jwks_uri.as_ref()).is_none())
            .then(|| format!("{}/realms/{realm}/.well-known/openid-configuration", s.upstream));
        RealmKeys {
            realm: realm.to_owned(),
            label: RwLock::new(if named { realm.to_owned() } else { "other".to_owned() }),
            uri: s.jwks_uri_for(realm),
            discovery,
            settings: s.jwks.clone(),
            client: self.client.clone(),
            metrics: self.metrics.clone(),
            tokens: self.tokens.clone(),
            set: arc_swap::ArcSwap::from_pointee(KeySet::default()),
            throttle: parking_lot::Mutex::new(Throttle::default()),
            attempts: Default::default(),
            successes: Default::default(),
            verified: Default::default(),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// Named realms whose keys are not (yet) usable.
    pub fn not_ready(&self) -> Vec<String> {
        self.named()
            .into_iter()
            .filter(|r| !self.realms.read().get(r).is_some_and(|k| k.is_fresh()))
            .collect()
    }

    /// Updates the key-set age gauges (called before metrics are rendered); unnamed realms
    /// share the `other` label, which shows the oldest of them.
    pub fn observe(&self) {
        let mut ages: HashMap<String, f64> = HashMap::new();
        for keys in self.realms.read().values() {
            if let Some(age) = keys.age_secs() {
                let label = keys.label();
                let slot = ages.entry(label).or_insert(age);
                *slot = slot.max(age);
            }
        }
        for (label, age) in ages {
            self.metrics.jwks_age.with_label_values(&[&label]).set(age);
        }
    }
}

/// Fetches at once, then every `interval`; after a failure, retries with doubling backoff.
async fn refresh_loop(keys: Weak<RealmKeys>, interval: Duration) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let wait = {
            let Some(k) = keys.upgrade() else { return };
            match k.fetch_now().await {
                Ok(()) => {
                    backoff = Duration::from_millis(500);
                    interval
                }
                Err(_) => {
                    backoff = (backoff * 2).min(interval);
                    backoff
                }
            }
        };
        tokio::time::sleep(wait).await;
    }
}
