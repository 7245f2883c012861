//! Per-peer counters: how many connections or requests one client address holds, so that one
//! client cannot take every slot. IPv6 addresses count by their /64 (one subscriber's prefix).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

/// The address a peer is counted under: IPv4 as is (IPv4-mapped IPv6 as IPv4), IPv6 by /64.
pub fn peer_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
        v4 => v4,
    }
}

/// Counts per peer, each bounded by `limit`.
#[derive(Debug)]
pub struct PeerCounts {
    limit: usize,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One counted unit (a connection or a request); uncounted on drop.
#[derive(Debug)]
pub struct PeerSlot {
    key: IpAddr,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

// === impl PeerCounts ===

impl PeerCounts {
    /// Counters allowing `limit` units per peer.
    pub fn new(limit: usize) -> Self {
        PeerCounts {
            limit,
            counts: Arc::default(),
        }
    }

    /// The per-peer limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Counts one more unit for `ip`, or `None` when it already holds `limit`.
    pub fn try_acquire(&self, ip: IpAddr) -> Option<PeerSlot> {
        let key = peer_key(ip);
        let mut counts = self.counts.lock();
        let n = counts.entry(key).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            key,
            counts: self.counts.clone(),
        })
    }

    /// Units held by `ip` now.
    pub fn held(&self, ip: IpAddr) -> usize {
        self.counts.lock().get(&peer_key(ip)).copied().unwrap_or(0)
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        if let Some(n) = counts.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_peer_gets_its_limit_and_slots_come_back() {
        let c = PeerCounts::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = c.try_acquire(a).unwrap();
        let _s2 = c.try_acquire(a).unwrap();
        assert!(c.try_acquire(a).is_none());
        assert!(c.try_acquire(b).is_some(), "another peer is not affected");
        drop(s1);
        assert!(c.try_acquire(a).is_some());
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
        let c = PeerCounts::new(1);
        let _s = c.try_acquire("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(c.try_acquire("2001:db8:1:2:ffff::9".parse().unwrap()).is_none());
        assert!(c.try_acquire("2001:db8:1:3::1".parse().unwrap()).is_some());
        let _v4 = c.try_acquire("192.0.2.1".parse().unwrap()).unwrap();
        assert!(c.try_acquire("::ffff:192.0.2.1".parse().unwrap()).is_none());
        assert_eq!(c.held("192.0.2.1".parse().unwrap()), 1);
    }
}
