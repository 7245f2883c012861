//! Stage 5, upstream: forward an allowed request to Keycloak over the pooled client, with
//! hop-by-hop headers removed (RFC 9110 §7.6.1), `X-Forwarded-*` and `Forwarded` set by the
//! gateway (overwritten unless the peer is a trusted proxy), `Host` preserved, the request id
//! sent along, and connect/response timeouts. Failures become 502/504 refusals.

use std::net::IpAddr;

use http::header::{CONNECTION, HOST, HeaderName};
use http::{HeaderMap, HeaderValue, Request, Response, Uri, Version};
use hyper::body::Incoming;

use crate::app::App;
use crate::config::Settings;
use crate::error::{Detail, Reason, Refusal};
use crate::net::{Body, HttpClient, boxed, describe_client_error};
use crate::route::Operation;

/// Headers that never cross a proxy (RFC 9110 §7.6.1), besides those named in `Connection`;
/// `upgrade` too: the gateway does not tunnel protocol upgrades. Names, not strings: removing
/// by a string parses it into a name first, on every request.
const HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// The request-id header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// End-to-end headers the gateway checks or sets; a `Connection` header may not name them,
/// or stripping them would forward something other than what was checked.
const PROTECTED: [&str; 10] = [
    "authorization",
    "host",
    "content-length",
    "content-type",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-request-id",
    "cookie",
];

fn connection_named(h: &HeaderMap) -> Vec<String> {
    h.get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Refuses a request whose `Connection` header names a header the gateway checks (e.g.
/// `Connection: authorization`, which would strip the credential after it was checked).
pub fn check_connection(h: &HeaderMap) -> Result<(), Refusal> {
    match connection_named(h).into_iter().find(|n| PROTECTED.contains(&n.as_str())) {
        Some(name) => Err(Refusal::new(
            Reason::ConnectionHeaderInvalid,
            format!("The Connection header names `{name}`, an end-to-end header the gateway checks; it cannot be hop-by-hop."),
        )
        .detail(Detail::Header, name)),
        None => Ok(()),
    }
}

/// Removes hop-by-hop headers and every header named in `Connection`. `upgrade` goes too: the
/// gateway does not tunnel protocol upgrades.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    if h.contains_key(CONNECTION) {
        for name in connection_named(h) {
            h.remove(name.as_str());
        }
    }
    for name in &HOP_BY_HOP {
        h.remove(name);
    }
}

/// `ip` as text, as its `Display` writes it; IPv4 without the formatting machinery (the
/// gateway writes the peer into two headers and the log line of every request).
pub fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut out = String::with_capacity(15);
    for (i, o) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if o >= 100 {
            out.push(char::from(b'0' + o / 100));
        }
        if o >= 10 {
            out.push(char::from(b'0' + o / 10 % 10));
        }
        out.push(char::from(b'0' + o % 10));
    }
    out
}

fn forwarded_node(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(_) => ip_text(ip),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    }
}

/// Sets `X-Forwarded-For/-Proto/-Host` and `Forwarded`. From an untrusted peer, whatever the
/// client sent is replaced (and `X-Forwarded-Port`/`-Prefix` dropped); from a trusted proxy,
/// the peer is appended and the proxy's proto and host are kept.
pub fn set_forwarded(h: &mut HeaderMap, peer: IpAddr, proto: &str, host: Option<&str>, trusted: bool) {
    let (xff, xfp, xfh, fwd) = (X_FORWARDED_FOR, X_FORWARDED_PROTO, X_FORWARDED_HOST, FORWARDED);
    let peer_text = ip_text(peer);
    let mut element = String::with_capacity(64);
    element.push_str("for=");
    match peer {
        IpAddr::V4(_) => element.push_str(&peer_text),
        IpAddr::V6(_) => element.push_str(&forwarded_node(peer)),
    }
    element.push_str(";proto=");
    element.push_str(proto);
    if let Some(host) = host {
        element.push_str(&format!(";host=\"{}\"", host.replace(['"', '\\'], "")));
    }
    let join = |h: &HeaderMap, name: &HeaderName| -> Option<String> {
        let parts: Vec<&str> = h.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    };
    let (xff_value, fwd_value) = if trusted {
        let prior_xff = join(h, &xff);
        let prior_fwd = join(h, &fwd);
        (
            prior_xff
                .map(|p| format!("{p}, {peer_text}"))
                .unwrap_or_else(|| peer_text.clone()),
            prior_fwd
                .map(|p| format!("{p}, {element}"))
                .unwrap_or_else(|| element.clone()),
        )
    } else {
        for name in [&xfp, &xfh] {
            h.remove(name);
        }
        h.remove(X_FORWARDED_PORT);
        h.remove(X_FORWARDED_PREFIX);
        h.remove(X_REAL_IP);
        (peer_text, element)
    };
    let set = |h: &mut HeaderMap, name: HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(name, v);
        }
    };
    set(h, xff, &xff_value);
    set(h, fwd, &fwd_value);
    if !trusted || !h.contains_key(&xfp) {
        set(h, xfp, proto);
    }
    if let Some(host) = host
        && (!trusted || !h.contains_key(&xfh))
    {
        set(h, xfh, host);
    }
}

/// The client's address: the peer, or — when the peer is a trusted proxy — the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn client_ip(peer: IpAddr, h: &HeaderMap, trusted: &[crate::config::Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = h
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

/// The host the client addressed: `Host`, or the authority of an HTTP/2 request.
pub fn client_host<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))
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
/// configured scheme and authority, the configured base path, then the request's own path and
/// query. Anything but an origin-form path (which `target::check` already refused) is refused.
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
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/'))
        .ok_or_else(|| refuse("it is not an origin-form path".into()))?;
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(settings.upstream.scheme.parse().map_err(|e| refuse(format!("{e}")))?);
    parts.authority = Some(
        settings
            .upstream
            .authority
            .parse()
            .map_err(|e| refuse(format!("{e}")))?,
    );
    let joined = format!("{}{pq}", settings.upstream.path);
    parts.path_and_query = Some(joined.parse().map_err(|e| refuse(format!("{e}")))?);
    Uri::from_parts(parts).map_err(|e| refuse(format!("{e}")))
}

/// Rewrites a client request into the upstream request.
pub fn prepare(settings: &Settings, hop: &Hop<'_>, mut req: Request<Body>) -> Result<Request<Body>, Refusal> {
    let host = client_host(&req);
    *req.uri_mut() = upstream_uri(settings, req.uri())?;
    *req.version_mut() = Version::HTTP_11;
    let trusted = settings.trusted_proxies.iter().any(|c| c.contains(hop.peer));
    let h = req.headers_mut();
    strip_hop_by_hop(h);
    set_forwarded(
        h,
        hop.peer,
        if hop.tls { "https" } else { "http" },
        host.as_deref(),
        trusted,
    );
    h.remove(HOST);
    if settings.preserve_host
        && let Some(v) = host.as_deref().and_then(|s| HeaderValue::from_str(s).ok())
    {
        h.insert(HOST, v);
    }
    if let Ok(v) = HeaderValue::from_str(hop.request_id) {
        h.insert(REQUEST_ID, v);
    }
    Ok(req)
}

/// The issuers realm `realm` accepts for this request: the configured ones (`[realms.R]
/// issuer`, else `{public_url}/realms/R`) and, unless `issuer` pins them, the ones Keycloak
/// itself derives from this request when its hostname is not pinned.
pub fn accepted_issuers<B>(req: &Request<B>, settings: &Settings, peer: IpAddr, tls: bool, realm: &str) -> Vec<String> {
    let mut out = settings.issuers_for(realm);
    if !settings.issuer_pinned(realm) {
        for iss in arrival_issuers(req, settings, peer, tls, realm) {
            if !out.contains(&iss) {
                out.push(iss);
            }
        }
    }
    out
}

/// What Keycloak's hostname provider (v2) makes of this request, as the gateway forwards it,
/// when neither `hostname` nor the realm's frontend URL is set: the request's own base URI,
/// `{scheme}://{host[:port]}{context path}`, with the default port dropped. With
/// `proxy-headers=xforwarded` (or `forwarded`) scheme and host come from the forwarded headers
/// the gateway sets; without it, from the connection (the upstream scheme) and `Host`.
pub fn arrival_issuers<B>(req: &Request<B>, settings: &Settings, peer: IpAddr, tls: bool, realm: &str) -> Vec<String> {
    let trusted = settings.trusted_proxies.iter().any(|c| c.contains(peer));
    let first = |name: &str| first_value(req.headers(), name).filter(|v| !v.is_empty());
    let client = client_host(req);
    let path = format!("{}{}", settings.upstream.path, settings.path_prefix);
    let mut out = Vec::new();
    // proxy-headers: the X-Forwarded-* the gateway sends (a trusted proxy's are kept).
    let proto = trusted
        .then(|| first("x-forwarded-proto"))
        .flatten()
        .unwrap_or_else(|| if tls { "https" } else { "http" }.to_owned());
    let mut host = trusted
        .then(|| first("x-forwarded-host"))
        .flatten()
        .or_else(|| client.clone());
    if let (Some(h), Some(port)) = (host.as_mut(), trusted.then(|| first("x-forwarded-port")).flatten()) {
        *h = format!("{}:{port}", strip_port(h));
    }
    if let Some(h) = host {
        out.push(issuer_url(&proto, &h, &path, realm));
    }
    // No proxy headers: the connection's scheme and the Host Keycloak receives.
    let host = if settings.preserve_host {
        client
    } else {
        Some(settings.upstream.authority.clone())
    };
    if let Some(h) = host {
        let iss = issuer_url(&settings.upstream.scheme, &h, &path, realm);
        if !out.contains(&iss) {
            out.push(iss);
        }
    }
    out
}

fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    }
}

/// `Urls.realmIssuer`: `{base}/realms/{realm}`, where the base drops port 80 of http and 443 of
/// https as Keycloak's `HostnameV2Provider` does.
fn issuer_url(scheme: &str, host: &str, path: &str, realm: &str) -> String {
    let scheme = scheme.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => "",
    };
    let host = match host.strip_suffix(default) {
        Some(h) if !default.is_empty() => h,
        _ => host,
    };
    format!("{scheme}://{host}{path}/realms/{realm}")
}

/// The first comma-separated element of header `name`, trimmed.
fn first_value(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_owned())
}

/// `scheme://host` as Keycloak will see this prepared request (forwarded proto and host).
pub fn seen_origin<B>(req: &Request<B>, settings: &Settings) -> String {
    let first = |name: &str| first_value(req.headers(), name);
    let proto = first("x-forwarded-proto").unwrap_or_else(|| settings.upstream.scheme.clone());
    let host = first("x-forwarded-host")
        .or_else(|| first("host"))
        .unwrap_or_else(|| settings.upstream.authority.clone());
    format!("{proto}://{host}")
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
pub fn classify(e: &hyper_util::client::legacy::Error, settings: &Settings) -> (Refusal, ErrorKind) {
    let text = describe_client_error(e);
    let (reason, kind, desc) = if e.is_connect() && timed_out(e) {
        (
            Reason::UpstreamConnectTimeout,
            ErrorKind::ConnectTimeout,
            format!(
                "Keycloak at {} did not accept a connection within {}ms.",
                settings.upstream,
                settings.timeouts.connect.as_millis()
            ),
        )
    } else if e.is_connect() || tls_refused(e) {
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
    client: &HttpClient,
    settings: &Settings,
    req: Request<Body>,
) -> Result<Response<Incoming>, (Refusal, ErrorKind)> {
    match tokio::time::timeout(settings.timeouts.response, client.request(req)).await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => Err(classify(&e, settings)),
        Err(_) => {
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
    let resp = send(&app.client, &app.settings, req).await.map_err(|(r, kind)| {
        app.metrics.upstream_errors.with_label_values(&[kind.as_str()]).inc();
        r
    })?;
    let (route, operation) = match operation {
        Some(op) => ("registration", op.as_str()),
        None => ("other", "none"),
    };
    app.metrics
        .upstream_latency
        .with_label_values(&[route, operation])
        .observe(sent.elapsed().as_secs_f64());
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, boxed(body)))
}

#[cfg(test)]
mod tests;
