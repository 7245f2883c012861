//! One connection's life, bounded in time: the headers of the first request must arrive within
//! `header_read` of accept (HTTP/1 and HTTP/2, protocol detection included), and on HTTP/1 each
//! later request's headers within `header_read` of the previous answer; a connection with
//! nothing in flight is closed after `idle`, and a response whose writing stalls for longer than
//! `response_write` (a client that stops reading, an HTTP/2 stream held at a zero window) closes
//! the connection, which releases every slot its requests held. One watchdog per connection
//! keeps all of these, so a request arms no timer of its own (hyper's per-request header
//! timer is off: see [`super::builder`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto::Builder;
use parking_lot::Mutex;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::net::Body;

/// How long a connection that is closing on its own (idle) may take to say goodbye.
pub(crate) const CLOSE_BOUND: Duration = Duration::from_secs(2);

/// The time bounds of one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// Accept to the first request's headers.
    pub header_read: Duration,
    /// Nothing in flight.
    pub idle: Duration,
    /// Response headers ready to response fully written.
    pub response_write: Duration,
}

/// What a connection is doing, shared between its requests and its watchdog.
#[derive(Debug)]
pub(crate) struct ConnState {
    inner: Mutex<Inner>,
    changed: Notify,
    bounds: Bounds,
}

#[derive(Debug)]
struct Inner {
    active: usize,
    served: bool,
    /// The connection speaks HTTP/2 (known from its first request): between its requests only
    /// `idle` applies.
    h2: bool,
    idle_since: Instant,
    writing: BTreeMap<u64, Instant>,
    next: u64,
    /// When the watchdog next looks, at the latest. A change that brings a deadline before it
    /// wakes the watchdog; any other change waits for that look, so a request costs no wake-up.
    armed: Option<Instant>,
}

/// Marks one request of a connection from its headers until its response is written (or
/// dropped).
#[derive(Debug)]
pub(crate) struct RequestMark {
    state: Arc<ConnState>,
    id: Option<u64>,
}

enum Check {
    Stalled,
    Idle(&'static str),
    /// Nothing is due before this.
    Wait(Instant),
}

/// Why a connection ended early.
#[derive(Debug)]
pub(crate) enum End {
    /// A time bound closed it (`header_read`, `idle`, `response_write`).
    Bound(&'static str),
    /// The connection failed (protocol error, reset, TLS).
    Failed(String),
}

// === impl ConnState ===

impl ConnState {
    /// A connection accepted now, held to `bounds`.
    pub(crate) fn new(bounds: Bounds) -> Arc<Self> {
        Self::resumed(bounds, Instant::now(), false)
    }

    /// An HTTP/1 connection quiet since `since`, having `served` requests before (by the fast
    /// path, [`super::fast`]): its bounds run on from there.
    pub(crate) fn resumed(bounds: Bounds, since: Instant, served: bool) -> Arc<Self> {
        Arc::new(ConnState {
            inner: Mutex::new(Inner {
                active: 0,
                served,
                h2: false,
                idle_since: since,
                writing: BTreeMap::new(),
                next: 0,
                armed: None,
            }),
            changed: Notify::new(),
            bounds,
        })
    }

    /// The headers of a request in `version` have arrived.
    pub(crate) fn begin(self: &Arc<Self>, version: http::Version) -> RequestMark {
        let mut i = self.inner.lock();
        i.active += 1;
        i.served = true;
        i.h2 = version == http::Version::HTTP_2;
        RequestMark {
            state: self.clone(),
            id: None,
        }
    }

    /// What is due at `now`; when nothing is, the watchdog waits until the returned time: the
    /// first deadline, and no later than the shorter of `response_write` and `idle` from now, so
    /// that no deadline a request brings can come before it (the watchdog then needs no
    /// wake-up per request; it looks at least that often).
    fn check(&self, now: Instant) -> Check {
        let b = &self.bounds;
        let mut i = self.inner.lock();
        i.armed = None; // until it waits again, every change wakes it
        let write_by = i.writing.values().next().map(|since| *since + b.response_write);
        if write_by.is_some_and(|t| now >= t) {
            return Check::Stalled;
        }
        let (bound, limit) = i.quiet_bound(b);
        let idle_by = (i.active == 0).then(|| i.idle_since + limit);
        if idle_by.is_some_and(|t| now >= t) {
            return Check::Idle(bound);
        }
        // Never later than the earliest deadline a change could bring (a response starting to
        // write, the last request ending), so that changes need not wake it.
        let look = now + b.response_write.min(b.idle).min(b.header_read);
        let wait = [write_by, idle_by].into_iter().flatten().fold(look, Instant::min);
        i.armed = Some(wait);
        Check::Wait(wait)
    }

    /// Wakes the watchdog when `due` comes before its next look.
    fn wake_for(&self, i: &Inner, due: Instant) {
        if i.armed.is_none_or(|a| due < a) {
            self.changed.notify_one();
        }
    }
}

// === impl Inner ===

impl Inner {
    /// The bound on a stretch with nothing in flight, and its name: `header_read` before the
    /// first request and, on HTTP/1, for the next request's headers (the shorter of it and
    /// `idle`); `idle` between HTTP/2 requests.
    fn quiet_bound(&self, b: &Bounds) -> (&'static str, Duration) {
        quiet_bound(b, self.served, self.h2)
    }
}

/// The bound on a stretch with nothing in flight, and its name, for a connection that has
/// `served` requests before, in HTTP/2 or not.
pub(crate) fn quiet_bound(b: &Bounds, served: bool, h2: bool) -> (&'static str, Duration) {
    match (served, h2) {
        (false, _) => ("header_read", b.header_read),
        (true, false) if b.header_read < b.idle => ("header_read", b.header_read),
        (true, _) => ("idle", b.idle),
    }
}

// === impl RequestMark ===

impl RequestMark {
    /// The response headers are ready: from now on its writing is timed.
    pub(crate) fn writing(&mut self) {
        let b = self.state.bounds;
        let mut i = self.state.inner.lock();
        let id = i.next;
        i.next += 1;
        let now = Instant::now();
        i.writing.insert(id, now);
        self.id = Some(id);
        self.state.wake_for(&i, now + b.response_write);
    }
}

impl Drop for RequestMark {
    fn drop(&mut self) {
        let mut i = self.state.inner.lock();
        if let Some(id) = self.id {
            i.writing.remove(&id);
        }
        i.active = i.active.saturating_sub(1);
        if i.active == 0 {
            let now = Instant::now();
            i.idle_since = now;
            let (_, limit) = i.quiet_bound(&self.state.bounds);
            self.state.wake_for(&i, now + limit);
        }
    }
}

/// Resolves once `stop` is true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves one connection until it ends, a bound passes, or `stop` turns true (then it finishes
/// the requests in flight; the caller bounds that).
pub(crate) async fn drive<I, S>(
    builder: &Builder<TokioExecutor>,
    io: I,
    svc: S,
    state: Arc<ConnState>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), End>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: Service<http::Request<Incoming>, Response = http::Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let mut stopping = false;
    let mut hard: Option<Instant> = None;
    let mut closing: Option<&'static str> = None;
    loop {
        if !stopping && *stop.borrow() {
            conn.as_mut().graceful_shutdown();
            stopping = true;
        }
        let now = Instant::now();
        if hard.is_some_and(|t| now >= t) {
            return Err(End::Bound(closing.unwrap_or("idle")));
        }
        let next = match state.check(now) {
            Check::Stalled => return Err(End::Bound("response_write")),
            Check::Idle(bound) if !stopping => {
                conn.as_mut().graceful_shutdown();
                stopping = true;
                closing = Some(bound);
                hard = Some(now + CLOSE_BOUND);
                continue;
            }
            Check::Idle(_) => hard,
            Check::Wait(t) => Some(hard.map_or(t, |h| t.min(h))),
        };
        let wake = next.unwrap_or(now + Duration::from_secs(3600));
        tokio::select! {
            result = conn.as_mut() => {
                return match closing {
                    Some(bound) => Err(End::Bound(bound)),
                    None => result.map_err(|e| End::Failed(e.to_string())),
                };
            }
            changed = stop.changed(), if !stopping => {
                if changed.is_err() {
                    stopping = true; // the gateway is gone: finish what is in flight
                    conn.as_mut().graceful_shutdown();
                }
            }
            () = state.changed.notified() => {}
            () = tokio::time::sleep_until(wake) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const B: Bounds = Bounds {
        header_read: Duration::from_secs(1),
        idle: Duration::from_secs(5),
        response_write: Duration::from_secs(3),
    };

    #[test]
    fn header_read_runs_from_accept_and_between_http1_requests() {
        let s = ConnState::new(B);
        let t0 = s.inner.lock().idle_since;
        assert!(matches!(s.check(t0), Check::Wait(t) if t == t0 + B.header_read));
        assert!(matches!(s.check(t0 + B.header_read), Check::Idle("header_read")));
        let mut m = s.begin(http::Version::HTTP_11);
        let t1 = t0 + B.header_read;
        // In flight: the watchdog looks again within the shortest bound.
        assert!(matches!(s.check(t1), Check::Wait(t) if t == t1 + B.header_read));
        m.writing();
        let w = *s.inner.lock().writing.values().next().unwrap();
        assert!(matches!(s.check(w + B.response_write), Check::Stalled));
        drop(m);
        // The next request's headers are due within header_read of the answer, not idle.
        let idle = s.inner.lock().idle_since;
        assert!(matches!(s.check(idle + Duration::from_millis(900)), Check::Wait(t) if t == idle + B.header_read));
        assert!(matches!(s.check(idle + B.header_read), Check::Idle("header_read")));
    }

    #[test]
    fn idle_bounds_the_wait_between_http2_requests_and_when_shorter() {
        let s = ConnState::new(B);
        drop(s.begin(http::Version::HTTP_2));
        let idle = s.inner.lock().idle_since;
        assert!(matches!(s.check(idle + Duration::from_secs(4)), Check::Wait(_)));
        assert!(matches!(s.check(idle + B.idle), Check::Idle("idle")));
        // HTTP/1 with idle shorter than header_read: idle applies, under its own name.
        let short = Bounds {
            idle: Duration::from_millis(500),
            ..B
        };
        let s = ConnState::new(short);
        drop(s.begin(http::Version::HTTP_11));
        let idle = s.inner.lock().idle_since;
        assert!(matches!(s.check(idle + short.idle), Check::Idle("idle")));
    }

    /// Whether `s` has a wake-up stored (`Notify` keeps one permit).
    fn woken(s: &ConnState) -> bool {
        let n = s.changed.notified();
        tokio::pin!(n);
        n.as_mut().enable()
    }

    #[test]
    fn a_request_wakes_the_watchdog_only_for_a_deadline_before_its_next_look() {
        let s = ConnState::new(B);
        let now = Instant::now();
        // Waiting for header_read (1 s): a request's idle deadline (5 s) comes later.
        assert!(matches!(s.check(now), Check::Wait(_)));
        let mut m = s.begin(http::Version::HTTP_11);
        m.writing();
        assert!(!woken(&s), "the write deadline (3 s) is after the armed look (1 s)");
        drop(m);
        assert!(
            !woken(&s),
            "the next request's header deadline (1 s from now) is not before the armed look"
        );
        // Armed far out (a request in flight for a while): a write due earlier wakes it.
        s.inner.lock().armed = Some(now + Duration::from_secs(60));
        let mut m = s.begin(http::Version::HTTP_11);
        m.writing();
        assert!(woken(&s));
        // Not armed (the watchdog is between looks): every change wakes it.
        s.inner.lock().armed = None;
        drop(m);
        assert!(woken(&s));
    }
}
