//! The upstream connection pool: HTTP/1.1 connections to the one configured Keycloak, kept
//! alive and reused, most recently used first.
//!
//! Connections are made by the same connector as the general client (DNS, connect timeout,
//! TCP_NODELAY, TLS from `[upstream_tls]`) and spoken to by [`wire`] in the task of the request
//! that holds them. A checked-out connection belongs to one request: it travels with the
//! response body ([`Returning`]) and goes back on the idle list, stamped with the time, as soon
//! as that body has been read to its end. A checkout takes the most recently returned
//! connection; on the way it drops ones idle for `pool_idle` or longer and ones on which
//! anything arrived while idle (the other side closed, or sent what nobody asked for), and a
//! sweep closes those too. A request is written once: what may have reached Keycloak is never
//! sent again.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use http::header::HOST;
use http::{HeaderValue, Method, Request, Response, Uri};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tower_service::Service;

use super::{Body, BoxError, Connector};
use crate::config::BaseUrl;

mod body;
mod deadline;
mod upload;
mod wire;

pub use body::Returning;
use wire::Conn;
pub use wire::WireError;

/// Most idle connections kept (connections in use are not counted).
const MAX_IDLE: usize = 256;

/// Why a request to the upstream failed.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made (DNS, refused, connect timeout, TLS handshake).
    Connect(BoxError),
    /// The connection failed during the exchange.
    Exchange(WireError),
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

/// One idle connection (boxed: a connection is large, and moves between the list and its
/// response).
struct Idle {
    conn: Box<Conn>,
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

    /// `send_by` with an hour to answer, for tests.
    #[cfg(test)]
    pub async fn send(self: &Arc<Self>, req: Request<Body>) -> Result<Response<Returning>, SendError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
        let late = || Err(SendError::Connect("no answer within an hour".into()));
        self.send_by(req, deadline).await.unwrap_or_else(late)
    }

    /// Sends `req` (absolute or origin form; it goes out in origin form, with `Host` added when
    /// missing) and returns the response once its head has arrived, or `None` when the head has
    /// not arrived by `deadline` (connecting included). The connection comes back when the body
    /// has been read. The bound arms no timer per request (see [`deadline`]).
    pub async fn send_by(
        self: &Arc<Self>,
        mut req: Request<Body>,
        deadline: tokio::time::Instant,
    ) -> Option<Result<Response<Returning>, SendError>> {
        origin_form(req.uri_mut());
        req.headers_mut().entry(HOST).or_insert_with(|| self.host.clone());
        let head_request = req.method() == Method::HEAD;
        let mut conn = match self.checkout() {
            Some(conn) => conn,
            // rare: boxed, so the common path's future stays small
            None => match tokio::time::timeout_at(deadline, Box::pin(self.connect())).await.ok()? {
                Ok(conn) => conn,
                Err(e) => return Some(Err(e)),
            },
        };
        let closes = asks_to_close(req.headers());
        let mut timer = conn.timer.take().unwrap_or_else(|| deadline::timer(deadline));
        let exchange = deadline::within(&mut timer, deadline, conn.exchange(req, head_request)).await?;
        conn.timer = Some(timer);
        let (head, whole) = match exchange {
            Ok(done) => done,
            Err(e) => return Some(Err(SendError::Exchange(e))),
        };
        let keep_alive = head.keep_alive && whole && !closes;
        let body = Returning::new(head.framing, keep_alive, conn, Arc::downgrade(self));
        Some(Ok(head.response.map(|()| body)))
    }

    /// The most recently returned usable connection; expired ones, and ones on which anything
    /// arrived while they were idle, are dropped on the way.
    fn checkout(&self) -> Option<Box<Conn>> {
        let mut idle = self.idle.lock();
        let now = Instant::now();
        while let Some(mut entry) = idle.pop() {
            if now.saturating_duration_since(entry.since) >= self.idle_timeout {
                entry.conn.retire();
            } else if entry.conn.is_idle_usable() {
                return Some(entry.conn);
            }
        }
        None
    }

    /// Keeps `conn` for the next request; a full list gives up its oldest connection (the
    /// likeliest to have been closed by the other side) for it.
    fn put(&self, conn: Box<Conn>) {
        let mut idle = self.idle.lock();
        if idle.len() >= MAX_IDLE {
            idle.remove(0).conn.retire();
        }
        idle.push(Idle {
            conn,
            since: Instant::now(),
        });
    }

    /// A new connection.
    async fn connect(&self) -> Result<Box<Conn>, SendError> {
        let mut connector = self.connector.clone();
        let io = connector.call(self.dial.clone()).await.map_err(SendError::Connect)?;
        Ok(Box::new(Conn::new(TokioIo::new(io))))
    }

    /// Drops connections idle for the idle timeout or longer, and ones the other side closed.
    fn expire(&self, now: Instant) {
        let timeout = self.idle_timeout;
        let mut idle = self.idle.lock();
        let mut kept = Vec::with_capacity(idle.len());
        for mut e in idle.drain(..) {
            if now.saturating_duration_since(e.since) >= timeout {
                e.conn.retire();
            } else if e.conn.is_idle_usable() {
                kept.push(e);
            }
        }
        *idle = kept;
    }

    /// Connections on the idle list, for tests.
    #[cfg(test)]
    fn idle_len(&self) -> usize {
        self.idle.lock().len()
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

/// Whether the request itself says `Connection: close`.
fn asks_to_close(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("close"))
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
mod exchange_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod upload_tests;
