//! One connection's life, bounded in time: the headers of the first request must arrive within
//! `header_read` of accept (HTTP/1 and HTTP/2, protocol detection included), a connection with
//! nothing in flight is closed after `idle`, and a response whose writing stalls for longer than
//! `response_write` (a client that stops reading, an HTTP/2 stream held at a zero window) closes
//! the connection, which releases every slot its requests held.

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
const CLOSE_BOUND: Duration = Duration::from_secs(2);

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
}

#[derive(Debug)]
struct Inner {
    active: usize,
    served: bool,
    idle_since: Instant,
    writing: BTreeMap<u64, Instant>,
    next: u64,
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
    Wait(Option<Instant>),
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
    /// A connection accepted now.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(ConnState {
            inner: Mutex::new(Inner {
                active: 0,
                served: false,
                idle_since: Instant::now(),
                writing: BTreeMap::new(),
                next: 0,
            }),
            changed: Notify::new(),
        })
    }

    /// A request's headers have arrived.
    pub(crate) fn begin(self: &Arc<Self>) -> RequestMark {
        let mut i = self.inner.lock();
        i.active += 1;
        i.served = true;
        RequestMark {
            state: self.clone(),
            id: None,
        }
    }

    fn check(&self, b: &Bounds, now: Instant) -> Check {
        let i = self.inner.lock();
        let write_by = i.writing.values().next().map(|since| *since + b.response_write);
        if write_by.is_some_and(|t| now >= t) {
            return Check::Stalled;
        }
        let (bound, limit) = if i.served {
            ("idle", b.idle)
        } else {
            ("header_read", b.header_read)
        };
        let idle_by = (i.active == 0).then(|| i.idle_since + limit);
        if idle_by.is_some_and(|t| now >= t) {
            return Check::Idle(bound);
        }
        Check::Wait(match (write_by, idle_by) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }
}

// === impl RequestMark ===

impl RequestMark {
    /// The response headers are ready: from now on its writing is timed.
    pub(crate) fn writing(&mut self) {
        let mut i = self.state.inner.lock();
        let id = i.next;
        i.next += 1;
        i.writing.insert(id, Instant::now());
        self.id = Some(id);
        drop(i);
        self.state.changed.notify_one();
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
            i.idle_since = Instant::now();
        }
        drop(i);
        self.state.changed.notify_one();
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
    bounds: Bounds,
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
        let next = match state.check(&bounds, now) {
            Check::Stalled => return Err(End::Bound("response_write")),
            Check::Idle(bound) if !stopping => {
                conn.as_mut().graceful_shutdown();
                stopping = true;
                closing = Some(bound);
                hard = Some(now + CLOSE_BOUND);
                continue;
            }
            Check::Idle(_) => hard,
            Check::Wait(t) => match (t, hard) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
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
    fn header_read_runs_from_accept_then_idle_after_a_request() {
        let s = ConnState::new();
        let t0 = s.inner.lock().idle_since;
        assert!(matches!(s.check(&B, t0), Check::Wait(Some(t)) if t == t0 + B.header_read));
        assert!(matches!(s.check(&B, t0 + B.header_read), Check::Idle("header_read")));
        let mut m = s.begin();
        assert!(matches!(s.check(&B, t0 + B.header_read), Check::Wait(None)));
        m.writing();
        let w = *s.inner.lock().writing.values().next().unwrap();
        assert!(matches!(s.check(&B, w + B.response_write), Check::Stalled));
        drop(m);
        let idle = s.inner.lock().idle_since;
        assert!(matches!(s.check(&B, idle + Duration::from_secs(4)), Check::Wait(_)));
        assert!(matches!(s.check(&B, idle + B.idle), Check::Idle("idle")));
    }
}
