//! Listeners: the proxy (HTTP/1.1 and HTTP/2, optional TLS; HTTP/1.1 requests that arrive whole
//! on the [`fast`] path, the rest through hyper) and the admin endpoint. Each
//! connection is bounded in time ([`conn`]); the proxy bounds connections in total and per
//! peer ([`crate::net::peers`]); on stop it stops accepting and lets in-flight requests finish within a bound.

pub(crate) mod admin;
pub(crate) mod conn;
pub(crate) mod fast;
pub(crate) mod parse_errors;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::app::App;
use crate::net::Guarded;
use crate::net::peers::{self, PeerCounts};
use crate::pipeline::ctx::ConnInfo;
use crate::pipeline::handle;
use conn::{Bounds, ConnState, End};
use parse_errors::JsonParseErrors;

/// HTTP/2 streams one connection may have open at once.
pub(crate) const MAX_STREAMS_PER_CONNECTION: u32 = 100;

/// HTTP/2 keep-alive: a PING after this much silence, and the connection closes when the
/// answer takes longer than this again.
const H2_PING: Duration = Duration::from_secs(20);

/// Descriptors kept back from the proxy's connections (admin, key fetches, policy files).
const FD_RESERVE: u64 = 128;

/// Builds the HTTP/1.1 + HTTP/2 connection builder. hyper's HTTP/1 header timer is off: it
/// armed a timer for every request, and the connection's watchdog ([`conn`]) keeps the same
/// `header_read` bound (from accept, and between requests) for the whole connection.
pub(crate) fn builder() -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1().header_read_timeout(None).keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .keep_alive_interval(Some(H2_PING))
        .keep_alive_timeout(H2_PING);
    b
}

/// Raises the open-descriptor soft limit to the hard limit (as Go's runtime does) and returns
/// the soft limit in force.
pub(crate) fn raise_fd_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX).or_else(|_| rlimit::increase_nofile_limit(1 << 20)) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-descriptor limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft)
        }
    }
}

/// `configured`, lowered so that proxy connections (and one upstream connection each) leave
/// descriptors for the admin listener and key fetches under the soft limit `fds`.
pub(crate) fn connection_budget(configured: usize, fds: Option<u64>) -> usize {
    let Some(fds) = fds else { return configured };
    let fit = usize::try_from(fds.saturating_sub(FD_RESERVE) / 2).unwrap_or(usize::MAX);
    if fit < configured {
        tracing::warn!(
            max_connections = configured,
            open_files_limit = fds,
            using = fit.max(16),
            "max_connections lowered to fit the open-descriptor limit"
        );
    }
    configured.min(fit.max(16))
}

/// The accept-time caps of a listener.
#[derive(Debug)]
pub(crate) struct Caps {
    /// Connections in total.
    pub total: Arc<Semaphore>,
    /// Connections per peer.
    pub per_peer: PeerCounts,
}

/// Accepts proxy connections until `stop` turns true, then lets their requests finish for at
/// most `grace` and closes what is left.
pub(crate) async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    caps: Caps,
    mut stop: watch::Receiver<bool>,
) {
    let t = &app.settings.timeouts;
    let bounds = Bounds {
        header_read: t.header_read,
        idle: t.idle,
        response_write: t.response_write,
    };
    let grace = t.shutdown_grace;
    let protocols = Arc::new(Protocols {
        any: builder(),
        http1: builder().http1_only(),
    });
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; backing off");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = conn::stopped(&mut stop) => break,
        };
        let Some(slots) = admit(&app, &caps, peer) else {
            drop(stream); // over a cap: closed at once, holding nothing
            continue;
        };
        let _ = stream.set_nodelay(true);
        let serving = Serving {
            app: app.clone(),
            info: ConnInfo {
                peer,
                tls: tls.is_some(),
            },
            bounds,
            protocols: protocols.clone(),
            accepted: tokio::time::Instant::now(),
        };
        let (metrics, stop, tls) = (app.metrics.clone(), stop.clone(), tls.clone());
        conns.spawn(async move {
            let _slots = slots;
            match connection(serving, stream, tls, stop).await {
                Ok(()) => {}
                Err(End::Bound(bound)) => {
                    metrics.connections_timed_out.with_label_values(&[bound]).inc();
                    tracing::debug!(peer = %peer, bound, "connection closed by a time bound");
                }
                Err(End::Failed(e)) => tracing::debug!(peer = %peer, error = %e, "connection ended with an error"),
            }
        });
    }
    drop(listener);
    tracing::info!(
        open_connections = conns.len(),
        grace_ms = grace.as_millis() as u64,
        "stopped accepting; draining"
    );
    let drained = tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            open_connections = conns.len(),
            "drain deadline passed; closing remaining connections"
        );
        conns.shutdown().await;
    }
}

fn admit(app: &App, caps: &Caps, peer: std::net::SocketAddr) -> Option<Admitted> {
    let refused = |why: &'static str| {
        app.metrics.connections_refused.with_label_values(&[why]).inc();
        tracing::debug!(peer = %peer, why, "connection refused at accept");
    };
    let Ok(total) = caps.total.clone().try_acquire_owned() else {
        refused("max_connections");
        return None;
    };
    let trusted = app.settings.trusted_proxies.iter().any(|c| c.contains(peer.ip()));
    let per_peer = if trusted {
        None
    } else {
        match caps.per_peer.try_acquire(peer.ip()) {
            Some(s) => Some(s),
            None => {
                refused("max_connections_per_peer");
                return None;
            }
        }
    };
    app.metrics.open_connections.inc();
    Some(Admitted {
        _total: total,
        _per_peer: per_peer,
        gauge: app.metrics.open_connections.clone(),
    })
}

/// The caps one open connection holds, released when it closes.
struct Admitted {
    _total: tokio::sync::OwnedSemaphorePermit,
    _per_peer: Option<peers::PeerSlot>,
    gauge: prometheus::IntGauge,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// The connection builders: either protocol (chosen by a connection's first bytes) for a
/// connection the fast path has served nothing on, HTTP/1.1 alone for one it has: a client
/// cannot switch to HTTP/2 halfway, which hyper alone would refuse too.
#[derive(Debug)]
struct Protocols {
    any: Builder<TokioExecutor>,
    http1: Builder<TokioExecutor>,
}

/// What one connection is served with.
struct Serving {
    app: Arc<App>,
    info: ConnInfo,
    bounds: Bounds,
    protocols: Arc<Protocols>,
    /// Accepted at: `header_read` runs from here, the TLS handshake included.
    accepted: tokio::time::Instant,
}

async fn connection(
    s: Serving,
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    stop: watch::Receiver<bool>,
) -> Result<(), End> {
    match tls {
        Some(acceptor) => {
            let handshake = s.bounds.header_read.min(Duration::from_secs(10));
            let tls = tokio::time::timeout(handshake, acceptor.accept(stream))
                .await
                .map_err(|_| End::Bound("header_read"))?
                .map_err(|e| End::Failed(format!("TLS handshake failed: {e}")))?;
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            served(s, tls, h2, stop).await
        }
        None => served(s, stream, false, stop).await,
    }
}

/// Serves a connection: the fast path first (unless ALPN chose HTTP/2), then hyper for the
/// rest if the fast path hands it over.
async fn served<IO>(s: Serving, io: IO, h2: bool, mut stop: watch::Receiver<bool>) -> Result<(), End>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Serving {
        app,
        info,
        bounds,
        protocols,
        accepted,
    } = s;
    let (io, state, builder) = match h2 {
        true => {
            let state = ConnState::resumed(bounds, accepted, false);
            (fast::Rewind::new(io, bytes::Bytes::new()), state, &protocols.any)
        }
        false => match fast::serve(&app, info, io, &mut stop, bounds, accepted).await {
            fast::Ended::Done(result) => return result,
            fast::Ended::Handoff { io, since, served } => {
                let builder = if served { &protocols.http1 } else { &protocols.any };
                (io, ConnState::resumed(bounds, since, served), builder)
            }
        },
    };
    let io = TokioIo::new(JsonParseErrors::new(io, &app.public_url));
    let marks = state.clone();
    let svc = service_fn(move |req| {
        let mut mark = marks.begin(req.version());
        let app = app.clone();
        async move {
            let resp = handle(app, info, req).await;
            mark.writing();
            Ok::<_, Infallible>(resp.map(|b| Guarded::new(b, mark).boxed()))
        }
    });
    // Boxed: the fast path's connections (nearly all) then carry no room for hyper's state.
    Box::pin(conn::drive(builder, io, svc, state, stop)).await
}
