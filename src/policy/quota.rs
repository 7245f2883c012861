//! Registration quotas: at most N creates per caller in any sliding window. Callers are the
//! `azp` of bearer tokens, the `jti` of initial access tokens, or the client address.
//!
//! Keys are SHA-256 digests of (realm, caller), so attacker-chosen text never sits in memory;
//! the map is bounded, and a create that Keycloak does not accept is refunded.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::snapshot::QuotaPolicy;

const MAX_CALLERS: usize = 100_000;

type Key = [u8; 32];

struct Log {
    window: Duration,
    creates: VecDeque<Instant>,
}

/// A create counted against a caller, to refund if Keycloak does not accept it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    key: Key,
    at: Instant,
}

/// What `take` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// The create counted, if it was.
    pub slot: Option<Slot>,
    /// When the caller is over its quota: how long until a create is free again.
    pub over: Option<Duration>,
}

/// Create timestamps per (realm, caller); survives policy reloads.
#[derive(Default)]
pub struct Quotas {
    calls: Mutex<HashMap<Key, Log>>,
}

fn key(realm: &str, caller: &str) -> Key {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(realm.as_bytes());
    ctx.update(&[0]);
    ctx.update(caller.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Drops expired callers (each by its own window); if the map is still full, drops the tenth
/// whose last create is oldest.
fn sweep(calls: &mut HashMap<Key, Log>, now: Instant) {
    calls.retain(|_, l| l.creates.back().is_some_and(|t| now.duration_since(*t) < l.window));
    if calls.len() >= MAX_CALLERS {
        let mut by_age: Vec<(Instant, Key)> = calls
            .iter()
            .filter_map(|(k, l)| l.creates.back().map(|t| (*t, *k)))
            .collect();
        by_age.sort_unstable();
        for (_, k) in by_age.into_iter().take(MAX_CALLERS / 10) {
            calls.remove(&k);
        }
    }
}

// === impl Quotas ===

impl Quotas {
    /// Counts one create for the caller unless it is over its quota; with `force` (a shadowed
    /// quota) the create is counted anyway.
    pub fn take(&self, realm: &str, caller: &str, q: QuotaPolicy, now: Instant, force: bool) -> Taken {
        let k = key(realm, caller);
        let mut calls = self.calls.lock();
        if calls.len() >= MAX_CALLERS && !calls.contains_key(&k) {
            sweep(&mut calls, now);
        }
        let log = calls.entry(k).or_insert_with(|| Log {
            window: q.window,
            creates: VecDeque::new(),
        });
        log.window = q.window;
        while log.creates.front().is_some_and(|t| now.duration_since(*t) >= q.window) {
            log.creates.pop_front();
        }
        let over = (log.creates.len() >= q.creates as usize).then(|| {
            let oldest = log.creates.front().copied().unwrap_or(now);
            q.window.saturating_sub(now.duration_since(oldest))
        });
        let slot = (over.is_none() || force).then(|| {
            log.creates.push_back(now);
            Slot { key: k, at: now }
        });
        Taken { slot, over }
    }

    /// Gives back a create that did not happen (Keycloak refused it or could not be reached).
    pub fn refund(&self, slot: Slot) {
        let mut calls = self.calls.lock();
        if let Some(log) = calls.get_mut(&slot.key) {
            if let Some(i) = log.creates.iter().rposition(|t| *t == slot.at) {
                log.creates.remove(i);
            }
            if log.creates.is_empty() {
                calls.remove(&slot.key);
            }
        }
    }

    /// Settles a counted create once Keycloak has answered: kept when Keycloak created the
    /// client (a 2xx answer), refunded otherwise (refused, unreachable, or never forwarded).
    pub fn settle(&self, slot: Option<Slot>, upstream_status: Option<u16>) {
        if let Some(slot) = slot
            && !upstream_status.is_some_and(|s| (200..300).contains(&s))
        {
            self.refund(slot);
        }
    }

    /// How many creates of the caller are in the current `window`.
    pub fn used(&self, realm: &str, caller: &str, window: Duration, now: Instant) -> usize {
        let calls = self.calls.lock();
        calls.get(&key(realm, caller)).map_or(0, |l| {
            l.creates.iter().filter(|t| now.duration_since(**t) < window).count()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: QuotaPolicy = QuotaPolicy {
        creates: 2,
        window: Duration::from_secs(60),
    };

    #[test]
    fn sliding_window() {
        let q = Quotas::default();
        let t0 = Instant::now();
        assert!(q.take("demo", "a", P, t0, false).over.is_none());
        assert!(
            q.take("demo", "a", P, t0 + Duration::from_secs(10), false)
                .over
                .is_none()
        );
        let t = q.take("demo", "a", P, t0 + Duration::from_secs(20), false);
        assert_eq!((t.slot, t.over), (None, Some(Duration::from_secs(40))));
        // other callers and realms are separate
        assert!(q.take("demo", "b", P, t0, false).over.is_none());
        assert!(q.take("other", "a", P, t0, false).over.is_none());
        // the first slot frees after the window
        assert!(
            q.take("demo", "a", P, t0 + Duration::from_secs(61), false)
                .over
                .is_none()
        );
    }

    #[test]
    fn refund_and_shadow() {
        let q = Quotas::default();
        let t0 = Instant::now();
        let first = q.take("demo", "a", P, t0, false).slot.unwrap();
        q.take("demo", "a", P, t0, false);
        q.refund(first);
        assert!(
            q.take("demo", "a", P, t0, false).over.is_none(),
            "a refunded create frees its slot"
        );
        // A shadowed quota counts the creates it lets through.
        let t = q.take("demo", "a", P, t0, true);
        assert!(t.over.is_some() && t.slot.is_some());
        q.refund(t.slot.unwrap());
    }

    #[test]
    fn settle_keeps_only_creates_keycloak_accepted() {
        let q = Quotas::default();
        let t0 = Instant::now();
        let one = QuotaPolicy {
            creates: 1,
            window: Duration::from_secs(60),
        };
        for refused in [None, Some(400), Some(502), Some(302)] {
            q.settle(q.take("demo", "a", one, t0, false).slot, refused);
            assert!(
                q.take("demo", "a", one, t0, false).slot.is_some(),
                "refunded after {refused:?}"
            );
            q.calls.lock().clear();
        }
        q.settle(q.take("demo", "a", one, t0, false).slot, Some(201));
        assert!(
            q.take("demo", "a", one, t0, false).over.is_some(),
            "a 201 keeps the create counted"
        );
        q.settle(None, None); // nothing counted: nothing to do
    }

    #[test]
    fn bounded_with_per_entry_windows() {
        let q = Quotas::default();
        let t0 = Instant::now();
        let week = QuotaPolicy {
            creates: 1,
            window: Duration::from_secs(7 * 86400),
        };
        assert!(q.take("prod", "victim", week, t0, false).over.is_none());
        let short = QuotaPolicy {
            creates: 1,
            window: Duration::from_secs(1),
        };
        for i in 0..MAX_CALLERS - 1 {
            q.take("junk", &format!("c{i}"), short, t0 + Duration::from_secs(2), false);
        }
        assert_eq!(q.calls.lock().len(), MAX_CALLERS);
        // A new caller on a full map sweeps each entry by its own window: the short-window
        // callers are gone, the week-long one stays.
        q.take("junk", "late", short, t0 + Duration::from_secs(5), false);
        assert_eq!(q.calls.lock().len(), 2);
        assert!(
            q.take("prod", "victim", week, t0 + Duration::from_secs(6), false)
                .over
                .is_some()
        );
        // A flood of live callers is bounded too: the least recently used tenth is forgotten.
        for i in 0..MAX_CALLERS + 10 {
            q.take("flood", &format!("f{i}"), week, t0 + Duration::from_secs(7), false);
        }
        assert!(q.calls.lock().len() <= MAX_CALLERS);
    }
}
