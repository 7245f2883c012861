//! Stage 5, upstream: forward an allowed request to Keycloak over the connection pool, with
//! hop-by-hop headers removed (RFC 9110 §7.6.1), `X-Forwarded-*` and `Forwarded` set by the
//! gateway (overwritten unless the peer is a trusted proxy), `Host` preserved, the request id
//! sent along, and connect/response timeouts. Failures become 502/504 refusals.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HOST, HeaderName};
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, Uri, Version};

use crate::app::App;
use crate::config::Settings;
use crate::error::{Detail, Reason, Refusal};
use crate::net::pool::{Pool, Returning, SendError};
use crate::net::{Body, boxed, describe_error};
use crate::route::Operation;

mod headers;
mod issuers;

pub use headers::{check_connection, client_ip, ip_text, set_forwarded, strip_hop_by_hop};
pub use issuers::{accepted_issuers, arrival_issuers, seen_origin};

/// The request-id header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The host the client addressed: `Host`, or the authority of an HTTP/2 request.
pub fn client_host<B>(req: &Request<B>) -> Option<String> {
    client_host_str(req).map(str::to_owned)
}

fn client_host_str<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
}

/// `client_host`, kept as the `Host` value itself when it is one (a cheap handle on its bytes).
fn client_host_parts<B>(req: &Request<B>) -> (Option<HeaderValue>, Option<http::uri::Authority>) {
    match req.headers().get(HOST).filter(|v| v.to_str().is_ok()) {
        Some(v) => (Some(v.clone()), None),
        None => (None, req.uri().authority().cloned()),
    }
}

/// Everything `prepare` needs to know about the connection.
#[derive(Debug)]
pub struct Hop<'a> {
    /// The peer address.
    pub peer: IpAddr,
    /// Whether the client connection is TLS.
    pub tls: bool,
    /// The request id.
    pub request_id: &'a str,
}

/// The upstream URI of an origin-form request target, built from parsed parts only: the
/// configured scheme and authority (parsed with the settings), the configured base path, then
/// the request's own path and query. Anything but an origin-form path (which `target::check`
/// already refused) is refused.
pub fn upstream_uri(settings: &Settings, target: &Uri) -> Result<Uri, Refusal> {
    let refuse = |why: String| {
        Refusal::new(
            Reason::RequestTargetInvalid,
            format!("The request target cannot be forwarded: {why}."),
        )
        .detail(Detail::Target, target.to_string())
    };
    let pq = target
        .path_and_query()
        .filter(|p| p.as_str().starts_with('/'))
        .ok_or_else(|| refuse("it is not an origin-form path".into()))?;
    let base = &settings.upstream;
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(base.uri_scheme().clone());
    parts.authority = Some(base.uri_authority().clone());
    parts.path_and_query = Some(if base.path.is_empty() {
        pq.clone()
    } else {
        let mut joined = Vec::with_capacity(base.path.len() + pq.as_str().len());
        joined.extend_from_slice(base.path.as_bytes());
        joined.extend_from_slice(pq.as_str().as_bytes());
        PathAndQuery::from_maybe_shared(Bytes::from(joined)).map_err(|e| refuse(format!("{e}")))?
    });
    Uri::from_parts(parts).map_err(|e| refuse(format!("{e}")))
}

/// Rewrites a client request into the upstream request.
pub fn prepare(settings: &Settings, hop: &Hop<'_>, mut req: Request<Body>) -> Result<Request<Body>, Refusal> {
    let (host_value, authority) = client_host_parts(&req);
    *req.uri_mut() = upstream_uri(settings, req.uri())?;
    *req.version_mut() = Version::HTTP_11;
    let trusted = settings.trusted_proxies.iter().any(|c| c.contains(hop.peer));
    let text = host_value.as_ref().and_then(|v| v.to_str().ok());
    let host = text
        .or(authority.as_ref().map(|a| a.as_str()))
        .map(|text| headers::ClientHost {
            text,
            value: host_value.clone(),
        });
    let h = req.headers_mut();
    strip_hop_by_hop(h);
    let proto = if hop.tls { "https" } else { "http" };
    headers::set_forwarded_for(h, hop.peer, proto, host.as_ref(), trusted);
    h.remove(HOST);
    if settings.preserve_host
        && let Some(v) = host.as_ref().and_then(headers::ClientHost::header_value)
    {
        h.insert(HOST, v);
    }
    if let Ok(v) = HeaderValue::from_str(hop.request_id) {
        h.insert(REQUEST_ID, v);
    }
    Ok(req)
}

fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Whether the upstream's TLS layer refused us (e.g. an alert for a missing client certificate,
/// which TLS 1.3 delivers only after the client's half of the handshake, so after "connect").
fn tls_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let io_tls = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| inner.is::<rustls::Error>());
        if io_tls || err.is::<rustls::Error>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// How a request to Keycloak failed: the `kind` label of `upstream_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No connection within the connect timeout.
    ConnectTimeout,
    /// Connection refused, no route, or TLS refused.
    Unreachable,
    /// The exchange broke off.
    Protocol,
    /// No answer within the response timeout.
    Timeout,
}

impl ErrorKind {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::ConnectTimeout => "connect_timeout",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Timeout => "timeout",
        }
    }
}

/// The refusal for a failed upstream request, and its kind.
pub fn classify(e: &SendError, settings: &Settings) -> (Refusal, ErrorKind) {
    let text = describe_error(e.as_error());
    let (reason, kind, desc) = if e.is_connect() && timed_out(e.as_error()) {
        (
            Reason::UpstreamConnectTimeout,
            ErrorKind::ConnectTimeout,
            format!(
                "Keycloak at {} did not accept a connection within {}ms.",
                settings.upstream,
                settings.timeouts.connect.as_millis()
            ),
        )
    } else if e.is_connect() || tls_refused(e.as_error()) {
        (
            Reason::UpstreamUnreachable,
            ErrorKind::Unreachable,
            format!("Keycloak at {} cannot be reached.", settings.upstream),
        )
    } else {
        (
            Reason::UpstreamProtocol,
            ErrorKind::Protocol,
            format!(
                "The connection to Keycloak at {} failed during the exchange.",
                settings.upstream
            ),
        )
    };
    let mut r = Refusal::new(reason, desc).detail(Detail::Error, text);
    if reason == Reason::UpstreamConnectTimeout {
        r = r.detail(Detail::Timeout, format!("{}ms", settings.timeouts.connect.as_millis()));
    }
    (r, kind)
}

/// Sends the request with the response timeout; `Err` carries the refusal and its kind.
pub async fn send(
    pool: &Arc<Pool>,
    settings: &Settings,
    req: Request<Body>,
) -> Result<Response<Returning>, (Refusal, ErrorKind)> {
    let deadline = tokio::time::Instant::now() + settings.timeouts.response;
    match pool.send_by(req, deadline).await {
        Some(Ok(resp)) => Ok(resp),
        Some(Err(e)) => Err(classify(&e, settings)),
        None => {
            let ms = settings.timeouts.response.as_millis();
            let r = Refusal::new(
                Reason::UpstreamTimeout,
                format!("Keycloak at {} did not answer within {ms}ms.", settings.upstream),
            )
            .detail(Detail::Timeout, format!("{ms}ms"));
            Err((r, ErrorKind::Timeout))
        }
    }
}

/// Sends a prepared request to Keycloak: the upstream error and latency metrics, and
/// Keycloak's answer with its hop-by-hop headers removed.
pub async fn forward(app: &App, operation: Option<Operation>, req: Request<Body>) -> Result<Response<Body>, Refusal> {
    let sent = tokio::time::Instant::now();
    let resp = send(&app.upstream, &app.settings, req).await.map_err(|(r, kind)| {
        app.metrics.upstream_errors.with_label_values(&[kind.as_str()]).inc();
        r
    })?;
    app.metrics
        .upstream_latency_of(operation)
        .observe(sent.elapsed().as_secs_f64());
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, boxed(body)))
}

#[cfg(test)]
mod tests;
