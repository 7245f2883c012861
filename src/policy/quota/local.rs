//! The in-memory quota store: create timestamps per digest key, in this process only. Used when
//! `[quota_store]` says `memory`, and as the fallback of a fail-open Redis store.
//!
//! The map is bounded: a new key on a full map drops the keys whose window has passed, then the
//! tenth whose last create is oldest.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::{Key, Limits};

const MAX_KEYS: usize = 100_000;

#[derive(Debug)]
struct Log {
    window: Duration,
    creates: VecDeque<Instant>,
}

/// A create counted in memory: the keys it was counted under, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSlot {
    keys: Vec<Key>,
    at: Instant,
}

/// Create timestamps per key; survives policy reloads.
#[derive(Debug, Default)]
pub struct Local {
    logs: Mutex<HashMap<Key, Log>>,
}

fn sweep(logs: &mut HashMap<Key, Log>, now: Instant) {
    logs.retain(|_, l| l.creates.back().is_some_and(|t| now.duration_since(*t) < l.window));
    if logs.len() >= MAX_KEYS {
        let mut by_age: Vec<(Instant, Key)> = logs
            .iter()
            .filter_map(|(k, l)| l.creates.back().map(|t| (*t, *k)))
            .collect();
        by_age.sort_unstable();
        for (_, k) in by_age.into_iter().take(MAX_KEYS / 10) {
            logs.remove(&k);
        }
    }
}

/// Drops the creates of `log` that left the window; when `log` is at its limit, how long until
/// its oldest create leaves.
fn over(log: &mut Log, limit: u32, window: Duration, now: Instant) -> Option<Duration> {
    log.window = window;
    while log.creates.front().is_some_and(|t| now.duration_since(*t) >= window) {
        log.creates.pop_front();
    }
    (log.creates.len() >= limit as usize).then(|| {
        let oldest = log.creates.front().copied().unwrap_or(now);
        window.saturating_sub(now.duration_since(oldest))
    })
}

// === impl Local ===

impl Local {
    /// Checks every limit and, when none is reached (or `force`), counts one create under each
    /// key. Returns the slot and, per limit, how long until it frees (`None`: not reached).
    pub fn take(&self, limits: &[Limits], force: bool, now: Instant) -> (Option<LocalSlot>, Vec<Option<Duration>>) {
        let mut logs = self.logs.lock();
        if logs.len() + limits.len() > MAX_KEYS && limits.iter().any(|l| !logs.contains_key(&l.key)) {
            sweep(&mut logs, now);
        }
        let waits: Vec<Option<Duration>> = limits
            .iter()
            .map(|l| {
                let log = logs.entry(l.key).or_insert_with(|| Log {
                    window: l.policy.window,
                    creates: VecDeque::new(),
                });
                over(log, l.policy.creates, l.policy.window, now)
            })
            .collect();
        if waits.iter().any(Option::is_some) && !force {
            for l in limits {
                if logs.get(&l.key).is_some_and(|g| g.creates.is_empty()) {
                    logs.remove(&l.key);
                }
            }
            return (None, waits);
        }
        for l in limits {
            if let Some(log) = logs.get_mut(&l.key) {
                log.creates.push_back(now);
            }
        }
        let keys = limits.iter().map(|l| l.key).collect();
        (Some(LocalSlot { keys, at: now }), waits)
    }

    /// Gives back a create that did not happen.
    pub fn refund(&self, slot: &LocalSlot) {
        let mut logs = self.logs.lock();
        for k in &slot.keys {
            if let Some(log) = logs.get_mut(k) {
                if let Some(i) = log.creates.iter().rposition(|t| *t == slot.at) {
                    log.creates.remove(i);
                }
                if log.creates.is_empty() {
                    logs.remove(k);
                }
            }
        }
    }

    /// Creates counted under `key` within its window at `now`.
    pub fn used(&self, key: &Key, now: Instant) -> u32 {
        let logs = self.logs.lock();
        logs.get(key).map_or(0, |l| {
            let n = l.creates.iter().filter(|t| now.duration_since(**t) < l.window).count();
            u32::try_from(n).unwrap_or(u32::MAX)
        })
    }

    /// Keys tracked now (for the tests of the key bound).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.logs.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{QuotaPolicy, digest};
    use super::*;

    const P: QuotaPolicy = QuotaPolicy {
        creates: 2,
        window: Duration::from_secs(60),
    };

    fn lim(realm: &str, caller: &str, policy: QuotaPolicy) -> Limits {
        Limits {
            key: digest(b'c', realm, caller),
            policy,
        }
    }

    fn free(q: &Local, l: &[Limits], at: Instant) -> bool {
        q.take(l, false, at).0.is_some()
    }

    #[test]
    fn sliding_window() {
        let q = Local::default();
        let t0 = Instant::now();
        let a = [lim("demo", "a", P)];
        assert!(free(&q, &a, t0));
        assert!(free(&q, &a, t0 + Duration::from_secs(10)));
        let (slot, waits) = q.take(&a, false, t0 + Duration::from_secs(20));
        assert_eq!((slot, waits), (None, vec![Some(Duration::from_secs(40))]));
        // other callers and realms are separate
        assert!(free(&q, &[lim("demo", "b", P)], t0));
        assert!(free(&q, &[lim("other", "a", P)], t0));
        // the first slot frees after the window
        assert!(free(&q, &a, t0 + Duration::from_secs(61)));
    }

    #[test]
    fn two_limits_count_together_or_not_at_all() {
        let q = Local::default();
        let t0 = Instant::now();
        let realm = Limits {
            key: digest(b'r', "demo", ""),
            policy: QuotaPolicy { creates: 3, ..P },
        };
        assert!(free(&q, &[lim("demo", "a", P), realm], t0));
        assert!(free(&q, &[lim("demo", "a", P), realm], t0));
        // a is at its own limit: refused, and the realm's count is untouched
        let (slot, waits) = q.take(&[lim("demo", "a", P), realm], false, t0);
        assert!(slot.is_none() && waits[0].is_some() && waits[1].is_none());
        assert!(free(&q, &[lim("demo", "b", P), realm], t0));
        // the realm is full now, whoever asks
        let (slot, waits) = q.take(&[lim("demo", "c", P), realm], false, t0);
        assert!(slot.is_none() && waits[0].is_none() && waits[1].is_some());
    }

    #[test]
    fn refund_and_force() {
        let q = Local::default();
        let t0 = Instant::now();
        let a = [lim("demo", "a", P)];
        let first = q.take(&a, false, t0).0.unwrap();
        q.take(&a, false, t0);
        q.refund(&first);
        assert!(free(&q, &a, t0), "a refunded create frees its slot");
        // A shadowed quota counts the creates it lets through.
        let (slot, waits) = q.take(&a, true, t0);
        assert!(waits[0].is_some() && slot.is_some());
        q.refund(&slot.unwrap());
    }

    #[test]
    fn bounded_with_per_entry_windows() {
        let q = Local::default();
        let t0 = Instant::now();
        let week = QuotaPolicy {
            creates: 1,
            window: Duration::from_secs(7 * 86400),
        };
        assert!(free(&q, &[lim("prod", "victim", week)], t0));
        let short = QuotaPolicy {
            creates: 1,
            window: Duration::from_secs(1),
        };
        for i in 0..MAX_KEYS - 1 {
            q.take(
                &[lim("junk", &format!("c{i}"), short)],
                false,
                t0 + Duration::from_secs(2),
            );
        }
        assert_eq!(q.len(), MAX_KEYS);
        // A new key on a full map sweeps each entry by its own window: the short-window
        // callers are gone, the week-long one stays.
        q.take(&[lim("junk", "late", short)], false, t0 + Duration::from_secs(5));
        assert_eq!(q.len(), 2);
        assert!(!free(&q, &[lim("prod", "victim", week)], t0 + Duration::from_secs(6)));
        // A flood of live callers is bounded too: the least recently used tenth is forgotten.
        for i in 0..MAX_KEYS + 10 {
            q.take(
                &[lim("flood", &format!("f{i}"), week)],
                false,
                t0 + Duration::from_secs(7),
            );
        }
        assert!(q.len() <= MAX_KEYS);
    }
}
