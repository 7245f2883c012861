//! Registration quotas: at most N creates per caller in any sliding window. Callers are the
//! `azp` of bearer tokens, the `jti` of initial access tokens, or the source address.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::snapshot::QuotaPolicy;

const MAX_CALLERS: usize = 100_000;

/// Create timestamps per (realm, caller); survives policy reloads.
#[derive(Default)]
pub struct Quotas {
    calls: Mutex<HashMap<(String, String), VecDeque<Instant>>>,
}

// === impl Quotas ===

impl Quotas {
    /// Takes one create from the caller's budget, or says how long until one is free.
    pub fn take(&self, realm: &str, caller: &str, q: QuotaPolicy, now: Instant) -> Result<(), Duration> {
        let mut calls = self.calls.lock();
        if calls.len() >= MAX_CALLERS {
            calls.retain(|_, v| v.back().is_some_and(|t| now.duration_since(*t) < q.window));
        }
        let log = calls.entry((realm.to_owned(), caller.to_owned())).or_default();
        while log.front().is_some_and(|t| now.duration_since(*t) >= q.window) {
            log.pop_front();
        }
        if log.len() >= q.creates as usize {
            let oldest = log.front().copied().unwrap_or(now);
            return Err(q.window.saturating_sub(now.duration_since(oldest)));
        }
        log.push_back(now);
        Ok(())
    }

    /// Whether the caller would be refused now, without taking anything.
    pub fn would_refuse(&self, realm: &str, caller: &str, q: QuotaPolicy, now: Instant) -> Option<Duration> {
        let calls = self.calls.lock();
        let log = calls.get(&(realm.to_owned(), caller.to_owned()))?;
        let live: Vec<&Instant> = log.iter().filter(|t| now.duration_since(**t) < q.window).collect();
        (live.len() >= q.creates as usize).then(|| q.window.saturating_sub(now.duration_since(*live[0])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_window() {
        let q = Quotas::default();
        let p = QuotaPolicy {
            creates: 2,
            window: Duration::from_secs(60),
        };
        let t0 = Instant::now();
        assert!(q.take("demo", "a", p, t0).is_ok());
        assert!(q.take("demo", "a", p, t0 + Duration::from_secs(10)).is_ok());
        let wait = q.take("demo", "a", p, t0 + Duration::from_secs(20)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(40));
        assert!(q.would_refuse("demo", "a", p, t0 + Duration::from_secs(20)).is_some());
        // other callers and realms are separate
        assert!(q.take("demo", "b", p, t0).is_ok());
        assert!(q.take("other", "a", p, t0).is_ok());
        // the first slot frees after the window
        assert!(q.take("demo", "a", p, t0 + Duration::from_secs(61)).is_ok());
    }
}
