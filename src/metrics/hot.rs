//! The per-request metric children, resolved once: `with_label_values` hashes the label
//! strings and takes the vector's lock on every call, so the children a request touches are
//! looked up on first use and kept. A child is still created only when first used, so the
//! exported series are exactly those `with_label_values` would have created.

use std::sync::OnceLock;

use parking_lot::RwLock;
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};

use crate::route::Operation;

/// Operations plus "not a registration request".
const OPS: usize = 6;
/// `1xx` … `5xx`.
const CLASSES: usize = 5;
/// The method labels of `http_requests_total` (see [`super::method_label`]).
const METHODS: [&str; 8] = ["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH", "OTHER"];
/// Status codes 100 … 599 get a slot; the rare others (600 … 999) are looked up each time.
const STATUSES: usize = 500;
/// At most this many `decisions_total` children are kept; past it they are looked up each time.
const DECISIONS: usize = 64;

/// Lazily resolved children of the request counter, the latency histogram and the cached /
/// valid verification counters.
#[derive(Debug)]
pub(super) struct Hot {
    requests: [OnceLock<IntCounter>; OPS * CLASSES],
    latency: [OnceLock<Histogram>; OPS],
    verified: [OnceLock<IntCounter>; 2],
    upstream: [OnceLock<Histogram>; OPS],
    /// `http_requests_total` by method and status, `METHODS.len() * STATUSES` slots.
    http: Box<[OnceLock<IntCounter>]>,
    /// `decisions_total` children seen so far; the realm labels are bounded by configuration, so
    /// few combinations occur.
    decisions: RwLock<Vec<(String, Decision, IntCounter)>>,
}

/// The labels of a `decisions_total` child after the realm: operation, decision, outcome and
/// reason.
pub(crate) type Decision = [&'static str; 4];

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
            upstream: [const { OnceLock::new() }; OPS],
            http: (0..METHODS.len() * STATUSES).map(|_| OnceLock::new()).collect(),
            decisions: RwLock::new(Vec::new()),
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

    pub(super) fn upstream(&self, vec: &HistogramVec, op: Option<Operation>) -> &Histogram {
        let (o, route, operation) = op_labels(op);
        self.upstream[o].get_or_init(|| vec.with_label_values(&[route, operation]))
    }

    /// Counts a request with `method` (a [`super::method_label`]) answered `status`; a status
    /// outside 100 … 599 is looked up each time.
    pub(super) fn count_http(&self, vec: &IntCounterVec, method: &'static str, status: u16) {
        let lookup = || vec.with_label_values(&[method, &status.to_string()]);
        let m = METHODS.iter().position(|&l| l == method).unwrap_or(METHODS.len() - 1);
        match usize::from(status).checked_sub(100).filter(|&s| s < STATUSES) {
            Some(s) => self.http[m * STATUSES + s].get_or_init(lookup).inc(),
            None => lookup().inc(),
        }
    }

    /// Counts a decision in `realm` with the other labels `rest`: a shared lock for the decisions
    /// seen before, the exclusive one only to remember a new one.
    pub(super) fn count_decision(&self, vec: &IntCounterVec, realm: &str, rest: Decision) {
        let known = |(r, l, _): &&(String, Decision, IntCounter)| r == realm && *l == rest;
        if let Some((_, _, c)) = self.decisions.read().iter().find(known) {
            c.inc();
            return;
        }
        let mut seen = self.decisions.write();
        if let Some((_, _, c)) = seen.iter().find(known) {
            c.inc(); // remembered by another thread in between
            return;
        }
        let [operation, decision, outcome, reason] = rest;
        let c = vec.with_label_values(&[realm, operation, decision, outcome, reason]);
        c.inc();
        if seen.len() < DECISIONS {
            seen.push((realm.to_owned(), rest, c));
        }
    }
}
