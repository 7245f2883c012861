//! Shared helpers for integration tests: a gateway on 127.0.0.1:0, stand-in upstreams and a
//! JWKS server, and a small HTTP client. Include with `mod support;` from a test file.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use dcr_gateway::config::{Overrides, Settings, load};
use dcr_gateway::net::{Body, full};
use dcr_gateway::{Gateway, start};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::net::TcpListener;

pub mod keycloak;

pub mod policy_kit;

pub mod proxy_kit;

pub mod binary;
pub mod redis_kit;

pub mod tls;

/// Key and token minting (also compiled into the crate's unit tests and the benches by path).
pub mod testkit;
pub mod token_kit;

/// Settings for a test gateway: both listeners on port 0, the given upstream, built-in policy
/// unless `policies` is given, short JWKS intervals.
pub fn settings(upstream: &str, policies: Option<&Path>) -> Settings {
    let over = Overrides {
        listen: Some("127.0.0.1:0".into()),
        admin_listen: Some("127.0.0.1:0".into()),
        upstream: Some(upstream.into()),
        policies: policies.map(Path::to_owned),
        ..Overrides::default()
    };
    let mut s = load(None, &over).expect("test settings");
    s.policies_explicit = policies.is_some();
    if policies.is_none() {
        s.policies = "/nonexistent-dcr-gateway-policies".into();
    }
    s.jwks.min_refetch_interval = Duration::from_millis(500);
    s.jwks.unknown_kid_ttl = Duration::from_millis(500);
    s.jwks.fetch_timeout = Duration::from_secs(2);
    s.timeouts.policy_poll = Duration::from_millis(300);
    s.timeouts.policy_settle = Duration::from_millis(200);
    s.timeouts.shutdown_grace = Duration::from_secs(5);
    s.timeouts.drain_delay = Duration::ZERO;
    s
}

/// Starts a gateway.
pub async fn gateway(settings: Settings) -> Gateway {
    start(settings).await.expect("gateway starts")
}

/// One request as an upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// A stand-in upstream that records requests and answers with a handler.
pub struct Upstream {
    /// Its address.
    pub addr: SocketAddr,
    /// Requests seen, in order.
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests reached it.
    pub fn hits(&self) -> usize {
        self.seen.lock().len()
    }
}

/// Serves one HTTP/1.1 connection: records each request (body read whole) in `log`, then
/// answers with `handler`. Shared by the plain and the TLS stand-in upstreams.
pub async fn serve_recorded<I, F, Fut>(io: I, handler: Arc<F>, log: Arc<Mutex<Vec<Seen>>>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    F: Fn(Seen) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let svc = service_fn(move |req: Request<Incoming>| {
        let handler = handler.clone();
        let log = log.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            let s = Seen {
                method: parts.method.to_string(),
                uri: parts.uri.to_string(),
                headers: parts.headers,
                body,
            };
            log.lock().push(s.clone());
            Ok::<_, Infallible>(handler(s).await)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, svc)
        .await;
}

/// Serves `handler` on 127.0.0.1:0 over HTTP/1.1, recording every request (body read whole).
pub async fn upstream<F, Fut>(handler: F) -> Upstream
where
    F: Fn(Seen) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = Arc::new(handler);
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            let log = log.clone();
            tokio::spawn(async move {
                serve_recorded(TokioIo::new(stream), handler, log).await;
            });
        }
    });
    Upstream { addr, seen }
}

/// A JSON response.
pub fn json_response(status: u16, v: &Value) -> Response<Body> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

/// A JWKS server whose key set, failure mode and fetch count tests control.
pub struct JwksServer {
    /// The upstream serving it (any path answers with the JWKS).
    pub upstream: Upstream,
    /// The current document.
    pub doc: Arc<Mutex<Value>>,
    /// When set, answers 503.
    pub failing: Arc<AtomicBool>,
    /// Fetches of `/certs` paths so far.
    pub fetches: Arc<AtomicUsize>,
    /// Clients that `GET …/clients-registrations/{provider}/{id}` answers with (200), by id.
    pub clients: Arc<Mutex<std::collections::HashMap<String, Value>>>,
}

/// Starts a JWKS server; realm paths `…/protocol/openid-connect/certs` answer the document, and
/// anything else answers 200 `{"upstream": true}` (so it can double as Keycloak).
pub async fn jwks_server(doc: Value) -> JwksServer {
    let doc = Arc::new(Mutex::new(doc));
    let failing = Arc::new(AtomicBool::new(false));
    let fetches = Arc::new(AtomicUsize::new(0));
    let clients = Arc::new(Mutex::new(std::collections::HashMap::<String, Value>::new()));
    let (d, f, n, c) = (doc.clone(), failing.clone(), fetches.clone(), clients.clone());
    let upstream = upstream(move |s: Seen| {
        let (d, f, n, c) = (d.clone(), f.clone(), n.clone(), c.clone());
        async move {
            if s.method == "GET" && s.uri.contains("/clients-registrations/") {
                let id = s.uri.rsplit('/').next().unwrap_or_default();
                if let Some(rep) = c.lock().get(id) {
                    return json_response(200, rep);
                }
            }
            if s.uri.ends_with("/protocol/openid-connect/certs") {
                n.fetch_add(1, Ordering::SeqCst);
                if f.load(Ordering::SeqCst) {
                    return json_response(503, &serde_json::json!({"error": "down"}));
                }
                return json_response(200, &d.lock().clone());
            }
            json_response(201, &serde_json::json!({"upstream": true, "path": s.uri}))
        }
    })
    .await;
    JwksServer {
        upstream,
        doc,
        failing,
        fetches,
        clients,
    }
}

/// A plain HTTP/1.1 test client.
pub fn client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An answer read whole.
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends a request and reads the whole answer.
pub async fn send(req: Request<Body>) -> Answer {
    let resp = client().request(req).await.expect("request");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// Builds a request to the gateway.
pub fn req(method: &str, addr: SocketAddr, path: &str, token: Option<&str>, body: Option<&Value>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(format!("http://{addr}{path}"));
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    match body {
        Some(v) => b
            .header("content-type", "application/json")
            .body(full(v.to_string()))
            .unwrap(),
        None => b.body(dcr_gateway::net::empty()).unwrap(),
    }
}

/// GETs an admin path and returns the text.
pub async fn admin(gw: &Gateway, path: &str) -> (StatusCode, String) {
    let a = send(
        Request::get(format!("http://{}{path}", gw.admin_addr))
            .body(dcr_gateway::net::empty())
            .unwrap(),
    )
    .await;
    (a.status, String::from_utf8_lossy(&a.body).into_owned())
}

/// The value of an unlabelled gauge or counter on the admin listener's `/metrics`
/// (`dcr_gateway_` is prefixed); `None` when the series is absent.
pub async fn gauge(gw: &Gateway, name: &str) -> Option<i64> {
    let text = admin(gw, "/metrics").await.1;
    let series = format!("dcr_gateway_{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as i64)
}

/// Polls `f` every 50 ms until it is true or `limit` passes.
pub async fn eventually<F: FnMut() -> bool>(limit: Duration, mut f: F) -> bool {
    let end = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}

/// Short connection bounds for the hostile-load tests (the settings are new with them; keeping
/// them in one place lets the same tests run against an older gateway with this made a no-op).
pub fn short_bounds(s: &mut Settings, header_read: Duration, response_write: Duration) {
    s.timeouts.header_read = header_read;
    s.timeouts.idle = header_read;
    s.timeouts.response_write = response_write;
}

/// Sets the per-peer connection cap (see `short_bounds`).
pub fn peer_connection_cap(s: &mut Settings, n: usize) {
    s.max_connections_per_peer = n;
}

/// A plain HTTP/1.1 client whose connections come from `local` (e.g. 127.0.0.2: another peer
/// as far as the gateway's per-peer limits go).
pub fn client_from(local: std::net::IpAddr) -> Client<HttpConnector, Body> {
    let mut http = HttpConnector::new();
    http.set_local_address(Some(local));
    Client::builder(TokioExecutor::new()).build(http)
}

/// Sends `req` from `local` and reads the whole answer, or `None` if no answer came in `limit`.
pub async fn send_from(local: std::net::IpAddr, req: Request<Body>, limit: Duration) -> Option<Answer> {
    let resp = tokio::time::timeout(limit, client_from(local).request(req))
        .await
        .ok()?
        .ok()?;
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(limit, body.collect()).await.ok()?.ok()?.to_bytes();
    Some(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}
