//! The per-realm key sets, created on first use (bounded), prefetched for known realms, and
//! refreshed in the background with backoff on failure.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::RwLock;

use super::{KeySet, RealmKeys, Throttle};
use crate::config::Settings;
use crate::error::{Reason, Refusal};
use crate::metrics::Metrics;
use crate::net::HttpClient;
use crate::token::cache::TokenCache;

/// At most this many realms not named in configuration or policy get a key set.
const MAX_UNNAMED_REALMS: usize = 32;

/// Key sets of every realm the gateway has seen.
pub struct Jwks {
    settings: Arc<Settings>,
    client: HttpClient,
    metrics: Metrics,
    tokens: Arc<TokenCache>,
    named: RwLock<BTreeSet<String>>,
    realms: RwLock<HashMap<String, Arc<RealmKeys>>>,
}

// === impl Jwks ===

impl Jwks {
    /// An empty registry.
    pub fn new(settings: Arc<Settings>, client: HttpClient, metrics: Metrics, tokens: Arc<TokenCache>) -> Self {
        let named = settings.realms.keys().chain(&settings.jwks.prefetch).cloned().collect();
        Jwks {
            settings,
            client,
            metrics,
            tokens,
            named: RwLock::new(named),
            realms: RwLock::new(HashMap::new()),
        }
    }

    /// Marks realms as named (from policy), so they get their own metric label and prefetch.
    pub fn name_realms(&self, realms: impl IntoIterator<Item = String>) {
        let realms: Vec<String> = realms.into_iter().collect();
        self.named.write().extend(realms.iter().cloned());
        for r in realms {
            let _ = self.realm(&r);
        }
    }

    /// The key set of `realm`, created (and its refresher started) on first use.
    pub fn realm(&self, realm: &str) -> Result<Arc<RealmKeys>, Refusal> {
        if let Some(r) = self.realms.read().get(realm) {
            return Ok(r.clone());
        }
        let named = self.named.read().contains(realm);
        let mut realms = self.realms.write();
        if let Some(r) = realms.get(realm) {
            return Ok(r.clone());
        }
        let unnamed = realms.keys().filter(|r| !self.named.read().contains(*r)).count();
        if !named && unnamed >= MAX_UNNAMED_REALMS {
            return Err(Refusal::new(
                Reason::JwksUnavailable,
                format!("Realm {realm} is not named in the configuration or policy, and the gateway already holds keys for {MAX_UNNAMED_REALMS} unnamed realms."),
            )
            .detail("realm", realm));
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
            label: if named { realm.to_owned() } else { "other".to_owned() },
            uri: s.jwks_uri_for(realm),
            discovery,
            settings: s.jwks.clone(),
            client: self.client.clone(),
            metrics: self.metrics.clone(),
            tokens: self.tokens.clone(),
            set: arc_swap::ArcSwap::from_pointee(KeySet::default()),
            throttle: parking_lot::Mutex::new(Throttle::default()),
            attempts: Default::default(),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether every named realm has a fresh key set.
    pub fn ready(&self) -> bool {
        let named: Vec<String> = self.named.read().iter().cloned().collect();
        named
            .iter()
            .all(|r| self.realms.read().get(r).is_some_and(|k| k.is_fresh()))
    }

    /// Named realms whose keys are not (yet) usable.
    pub fn not_ready(&self) -> Vec<String> {
        let named: Vec<String> = self.named.read().iter().cloned().collect();
        named
            .into_iter()
            .filter(|r| !self.realms.read().get(r).is_some_and(|k| k.is_fresh()))
            .collect()
    }

    /// Updates the key-set age gauges (called before metrics are rendered).
    pub fn observe(&self) {
        for keys in self.realms.read().values() {
            if let Some(age) = keys.age_secs() {
                self.metrics.jwks_age.with_label_values(&[&keys.label]).set(age);
            }
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
