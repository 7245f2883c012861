//! The upstream connection pool: HTTP/1.1 connections to the one configured Keycloak, kept
//! alive and reused, most recently used first.
//!
//! Connections are made by the same connector as the general client (DNS, connect timeout,
//! TCP_NODELAY, TLS from `[upstream_tls]`) and driven by `hyper::client::conn::http1`. A
//! checked-out connection belongs to one request: it travels with the response body
//! ([`Returning`]) and goes back on the idle list when that body ends or is dropped, stamped
//! with the time. A checkout takes the most recently returned connection that says it is ready,
//! and drops closed ones and ones idle for `pool_idle` or longer (a sweep closes those too). A
//! request that a reused connection closed before taking is sent again on another connection;
//! one that may have reached Keycloak never is.

use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use http::header::HOST;
use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use parking_lot::Mutex;
use tower_service::Service;

use super::{Body, BoxError, Connector};
use crate::config::BaseUrl;

/// Most idle connections kept (connections in use are not counted).
const MAX_IDLE: usize = 256;

/// Why a request to the upstream failed.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made (DNS, refused, connect timeout, TLS handshake).
    Connect(BoxError),
    /// The connection failed during the exchange.
    Exchange(hyper::Error),
}

impl SendError {
    /// The error as a `std::error::Error`, for walking its causes.
    pub fn as_error(&self) -> &(dyn std::error::Error + 'static) {
        match self {
            SendError::Connect(e) => e.as_ref(),
            SendError::Exchange(e) => e,
        }
    }

    /// Whether no connection could be made.
    pub fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect(_))
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "connect: {e}"),
            SendError::Exchange(e) => write!(f, "{e}"),
        }
    }
}

/// One idle connection.
struct Idle {
    tx: http1::SendRequest<Body>,
    since: Instant,
}

/// The pool of connections to the upstream.
pub struct Pool {
    connector: Connector,
    /// `scheme://authority/`, what the connector dials.
    dial: Uri,
    /// The `Host` sent when the request has none: the authority, without a default port.
    host: HeaderValue,
    idle_timeout: Duration,
    idle: Mutex<Vec<Idle>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("dial", &self.dial).finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool for `base`, closing connections idle longer than `idle_timeout`; must run inside a
    /// Tokio runtime (the idle sweep is a task).
    pub fn new(base: &BaseUrl, connector: Connector, idle_timeout: Duration) -> Arc<Pool> {
        let pool = Arc::new(Pool {
            connector,
            dial: dial_uri(base),
            host: host_value(base),
            idle_timeout,
            idle: Mutex::new(Vec::new()),
        });
        tokio::spawn(sweep(Arc::downgrade(&pool), idle_timeout));
        pool
    }

    /// Sends `req` (absolute or origin form; it goes out in origin form, with `Host` added when
    /// missing) and returns the response; its connection comes back when the body is done.
    pub async fn send(self: &Arc<Self>, mut req: Request<Body>) -> Result<Response<Returning>, SendError> {
        origin_form(req.uri_mut());
        req.headers_mut().entry(HOST).or_insert_with(|| self.host.clone());
        loop {
            let (mut tx, reused) = match self.checkout() {
                Some(tx) => (tx, true),
                None => (Box::pin(self.connect()).await?, false), // rare: boxed, so the common path's future stays small
            };
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    let back = Back {
                        pool: Arc::downgrade(self),
                        tx: Some(tx),
                    };
                    return Ok(resp.map(|body| Returning { body, back }));
                }
                Err(mut e) => match e.take_message() {
                    Some(again) if reused => req = again,
                    _ => return Err(SendError::Exchange(e.into_error())),
                },
            }
        }
    }

    /// The most recently returned ready connection; closed and expired ones are dropped on
    /// the way, busy ones (their last response still being read by hyper) are left.
    fn checkout(&self) -> Option<http1::SendRequest<Body>> {
        let mut idle = self.idle.lock();
        let now = Instant::now();
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            let entry = &idle[i];
            if entry.tx.is_closed() || now.saturating_duration_since(entry.since) >= self.idle_timeout {
                idle.remove(i);
            } else if entry.tx.is_ready() {
                return Some(idle.remove(i).tx);
            }
        }
        None
    }

    /// Keeps `tx` for the next request unless it is closed; a full list gives up its oldest
    /// connection (the likeliest to have been closed by the other side) for it.
    fn put(&self, tx: http1::SendRequest<Body>) {
        if tx.is_closed() {
            return;
        }
        let mut idle = self.idle.lock();
        if idle.len() >= MAX_IDLE {
            idle.retain(|e| !e.tx.is_closed());
            if idle.len() >= MAX_IDLE {
                idle.remove(0);
            }
        }
        idle.push(Idle {
            tx,
            since: Instant::now(),
        });
    }

    /// A new connection, its driver spawned.
    async fn connect(&self) -> Result<http1::SendRequest<Body>, SendError> {
        let mut connector = self.connector.clone();
        let io = connector.call(self.dial.clone()).await.map_err(SendError::Connect)?;
        let (tx, conn) = http1::handshake(io)
            .await
            .map_err(|e| SendError::Connect(Box::new(e)))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(tx)
    }

    /// Drops connections that are closed or idle for the idle timeout or longer.
    fn expire(&self, now: Instant) {
        let timeout = self.idle_timeout;
        self.idle
            .lock()
            .retain(|e| !e.tx.is_closed() && now.saturating_duration_since(e.since) < timeout);
    }

    /// Connections on the idle list, for tests.
    #[cfg(test)]
    fn idle_len(&self) -> usize {
        self.idle.lock().len()
    }
}

/// A connection on loan to one response, given back to its pool when dropped.
struct Back {
    pool: Weak<Pool>,
    tx: Option<http1::SendRequest<Body>>,
}

impl Back {
    fn give_back(&mut self) {
        if let (Some(tx), Some(pool)) = (self.tx.take(), self.pool.upgrade()) {
            pool.put(tx);
        }
    }
}

impl Drop for Back {
    fn drop(&mut self) {
        self.give_back();
    }
}

/// A response body from the pool: hyper's body, and the connection it came on, returned to the
/// pool when the body ends or is dropped.
pub struct Returning {
    body: Incoming,
    back: Back,
}

impl std::fmt::Debug for Returning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Returning")
            .field("body", &self.body)
            .finish_non_exhaustive()
    }
}

impl http_body::Body for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.back.give_back();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Sweeps `pool` every quarter of the idle timeout (between 50 ms and 30 s) until it is gone.
async fn sweep(pool: Weak<Pool>, idle_timeout: Duration) {
    let every = (idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match pool.upgrade() {
            Some(pool) => pool.expire(Instant::now()),
            None => return,
        }
    }
}

/// `scheme://authority/`.
fn dial_uri(base: &BaseUrl) -> Uri {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(base.uri_scheme().clone());
    parts.authority = Some(base.uri_authority().clone());
    parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    Uri::from_parts(parts).unwrap_or_default()
}

/// The authority as a `Host` value, without the port when it is the scheme's default.
fn host_value(base: &BaseUrl) -> HeaderValue {
    let authority = base.uri_authority();
    let default_port = match base.uri_scheme().as_str() {
        "https" => 443,
        _ => 80,
    };
    let text = match authority.port_u16() {
        Some(p) if p != default_port => format!("{}:{p}", authority.host()),
        _ => authority.host().to_owned(),
    };
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("localhost"))
}

/// Replaces an absolute-form URI by its path and query (`/` when it has none).
fn origin_form(uri: &mut Uri) {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return;
    }
    let mut parts = http::uri::Parts::default();
    parts.path_and_query = Some(
        uri.path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    *uri = Uri::from_parts(parts).unwrap_or_default();
}

#[cfg(test)]
mod tests;
