//! The per-request metric children, resolved once: `with_label_values` hashes the label
//! strings and takes the vector's lock on every call, so the children a request touches are
//! looked up on first use and kept. A child is still created only when first used, so the
//! exported series are exactly those `with_label_values` would have created.

use std::sync::OnceLock;

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};

use crate::route::Operation;

/// Operations plus "not a registration request".
const OPS: usize = 6;
/// `1xx` … `5xx`.
const CLASSES: usize = 5;

/// Lazily resolved children of the request counter, the latency histogram and the cached /
/// valid verification counters.
#[derive(Debug)]
pub(super) struct Hot {
    requests: [OnceLock<IntCounter>; OPS * CLASSES],
    latency: [OnceLock<Histogram>; OPS],
    verified: [OnceLock<IntCounter>; 2],
}

/// `(route, operation)` labels and the index of an operation (`None`: other traffic).
fn op_labels(op: Option<Operation>) -> (usize, &'static str, &'static str) {
    match op {
        Some(o) => (o as usize, "registration", o.as_str()),
        None => (OPS - 1, "other", "none"),
    }
}

fn class_index(status: u16) -> (usize, &'static str) {
    let class = super::status_class(status);
    let i = match class.as_bytes()[0] {
        b'1' => 0,
        b'2' => 1,
        b'3' => 2,
        b'4' => 3,
        _ => 4,
    };
    (i, class)
}

// === impl Hot ===

impl Hot {
    pub(super) fn new() -> Self {
        Hot {
            requests: [const { OnceLock::new() }; OPS * CLASSES],
            latency: [const { OnceLock::new() }; OPS],
            verified: [const { OnceLock::new() }; 2],
        }
    }

    pub(super) fn request(&self, vec: &IntCounterVec, op: Option<Operation>, status: u16) -> &IntCounter {
        let (o, route, operation) = op_labels(op);
        let (c, class) = class_index(status);
        self.requests[o * CLASSES + c].get_or_init(|| vec.with_label_values(&[route, operation, class]))
    }

    pub(super) fn latency(&self, vec: &HistogramVec, op: Option<Operation>) -> &Histogram {
        let (o, route, operation) = op_labels(op);
        self.latency[o].get_or_init(|| vec.with_label_values(&[route, operation]))
    }

    pub(super) fn verified(&self, vec: &IntCounterVec, cached: bool) -> &IntCounter {
        let result = if cached { "cached" } else { "valid" };
        self.verified[usize::from(cached)].get_or_init(|| vec.with_label_values(&[result, "ok"]))
    }
}
