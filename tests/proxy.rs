//! Foundation: proxying, headers, limits and upstream failures, against stand-in upstreams.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dcr_gateway::config::OtherPaths;
use dcr_gateway::net::{Body, full};
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use support::proxy_kit::{assert_refusal, channel_body, closed_addr, sha256, streamed};
use support::*;

const REG: &str = "/realms/demo/clients-registrations/openid-connect";

fn header<'a>(h: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.to_str().unwrap())
}

fn ok_text(text: &'static str) -> Response<Body> {
    Response::new(full(text))
}

#[tokio::test]
async fn other_paths_are_forwarded_untouched() {
    let up = upstream(|s| async move { json_response(200, &json!({"path": s.uri})) }).await;
    let gw = gateway(settings(&up.url(), None)).await;
    let a = send(req(
        "GET",
        gw.addr,
        "/realms/demo/.well-known/openid-configuration?x=1",
        None,
        None,
    ))
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["path"], "/realms/demo/.well-known/openid-configuration?x=1");
    assert_eq!(up.hits(), 1);
    gw.shutdown().await;
}

// --- 1. streaming -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_whole_both_ways() {
    const CHUNKS: usize = 128;
    const CHUNK: usize = 64 * 1024; // 128 × 64 KiB = 8 MiB each way
    let up = upstream(|s| async move {
        assert_eq!(s.method, "POST");
        let mut r = Response::new(streamed(CHUNKS, CHUNK, 2));
        r.headers_mut()
            .insert("x-request-body-sha256", sha256(&s.body).parse().unwrap());
        r
    })
    .await;
    let gw = gateway(settings(&up.url(), None)).await;
    let request = Request::post(format!("http://{}/upload/blob", gw.addr))
        .header("content-type", "application/octet-stream")
        .body(streamed(CHUNKS, CHUNK, 1))
        .unwrap();
    let resp = client().request(request).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().get("content-length").is_none(),
        "the streamed answer should not have been buffered into a sized one"
    );
    let echoed = header(resp.headers(), "x-request-body-sha256").unwrap().to_owned();
    let body = resp.into_body().collect().await.unwrap().to_bytes();

    let sent = support::proxy_kit::pattern(CHUNKS * CHUNK, 1);
    let seen = up.seen.lock()[0].clone();
    assert_eq!(seen.uri, "/upload/blob");
    assert_eq!(
        header(&seen.headers, "transfer-encoding"),
        Some("chunked"),
        "the request body was streamed on, not buffered"
    );
    assert_eq!(seen.body.len(), sent.len());
    assert_eq!(sha256(&seen.body), sha256(&sent));
    assert_eq!(echoed, sha256(&sent));

    let expected = support::proxy_kit::pattern(CHUNKS * CHUNK, 2);
    assert_eq!(body.len(), expected.len());
    assert_eq!(sha256(&body), sha256(&expected));
    gw.shutdown().await;
}

// --- 2. hop-by-hop --------------------------------------------------------------------------

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    let up = upstream(|_| async move {
        let mut r = ok_text("ok");
        let h = r.headers_mut();
        h.insert("connection", "X-Bar".parse().unwrap());
        h.insert("x-bar", "named-in-connection".parse().unwrap());
        h.insert("keep-alive", "timeout=5, max=100".parse().unwrap());
        h.insert("proxy-authenticate", "Basic realm=\"up\"".parse().unwrap());
        h.insert("upgrade", "h2c".parse().unwrap());
        h.insert("x-end-to-end", "kept".parse().unwrap());
        r
    })
    .await;
    let gw = gateway(settings(&up.url(), None)).await;
    let request = |addr: std::net::SocketAddr| {
        Request::get(format!("http://{addr}/realms/demo/account"))
            .header("connection", "close, X-Foo")
            .header("x-foo", "named-in-connection")
            .header("keep-alive", "timeout=5")
            .header("te", "trailers")
            .header("upgrade", "websocket")
            .header("proxy-authorization", "Basic c2VjcmV0OnNlY3JldA==")
            .header("proxy-connection", "keep-alive")
            .header("x-end-to-end", "kept")
            .body(dcr_gateway::net::empty())
            .unwrap()
    };
    const TO_UPSTREAM: [&str; 7] = [
        "connection",
        "x-foo",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
    ];
    const TO_CLIENT: [&str; 4] = ["x-bar", "keep-alive", "proxy-authenticate", "upgrade"];

    // Control: straight to the upstream, every one of these headers does cross.
    let direct = send(request(up.addr)).await;
    let seen = up.seen.lock()[0].clone();
    for name in TO_UPSTREAM {
        assert!(seen.headers.contains_key(name), "control lacks `{name}`");
    }
    for name in TO_CLIENT {
        assert!(direct.headers.contains_key(name), "control lacks `{name}`");
    }

    let a = send(request(gw.addr)).await;
    assert_eq!(a.status, 200);
    let seen = up.seen.lock()[1].clone();
    for name in TO_UPSTREAM {
        assert!(
            !seen.headers.contains_key(name),
            "`{name}` reached the upstream: {:?}",
            seen.headers
        );
    }
    assert_eq!(header(&seen.headers, "x-end-to-end"), Some("kept"));

    // The only `Connection` the client sees is the gateway's own answer to its `close`.
    assert_eq!(
        a.headers
            .get_all("connection")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect::<Vec<_>>(),
        ["close"],
        "{:?}",
        a.headers
    );
    for name in TO_CLIENT {
        assert!(
            !a.headers.contains_key(name),
            "`{name}` reached the client: {:?}",
            a.headers
        );
    }
    assert_eq!(header(&a.headers, "x-end-to-end"), Some("kept"));
    gw.shutdown().await;
}

// --- 3. forwarded headers -------------------------------------------------------------------

fn spoofed(addr: std::net::SocketAddr) -> Request<Body> {
    Request::get(format!("http://{addr}/realms/demo/account"))
        .header("host", "public.example:8443")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "login.example")
        .header("x-forwarded-port", "443")
        .header("x-real-ip", "203.0.113.7")
        .header("forwarded", "for=203.0.113.7;proto=https")
        .body(dcr_gateway::net::empty())
        .unwrap()
}

#[tokio::test]
async fn forwarded_headers_from_untrusted_peers_are_overwritten() {
    let up = upstream(|_| async move { ok_text("ok") }).await;
    let gw = gateway(settings(&up.url(), None)).await;
    assert_eq!(send(spoofed(gw.addr)).await.status, 200);
    let h = up.seen.lock()[0].headers.clone();
    let all = |name: &str| -> Vec<&str> { h.get_all(name).iter().map(|v| v.to_str().unwrap()).collect() };
    assert_eq!(all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(all("x-forwarded-proto"), ["http"]);
    assert_eq!(all("x-forwarded-host"), ["public.example:8443"]);
    assert_eq!(
        all("forwarded"),
        ["for=127.0.0.1;proto=http;host=\"public.example:8443\""]
    );
    assert!(all("x-forwarded-port").is_empty());
    assert!(all("x-real-ip").is_empty());
    gw.shutdown().await;
}

#[tokio::test]
async fn forwarded_headers_from_trusted_proxies_are_appended_and_kept() {
    let up = upstream(|_| async move { ok_text("ok") }).await;
    let mut s = settings(&up.url(), None);
    s.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let gw = gateway(s).await;
    assert_eq!(send(spoofed(gw.addr)).await.status, 200);
    let h = up.seen.lock()[0].headers.clone();
    assert_eq!(header(&h, "x-forwarded-for"), Some("203.0.113.7, 127.0.0.1"));
    assert_eq!(header(&h, "x-forwarded-proto"), Some("https"));
    assert_eq!(header(&h, "x-forwarded-host"), Some("login.example"));
    assert_eq!(
        header(&h, "forwarded"),
        Some("for=203.0.113.7;proto=https, for=127.0.0.1;proto=http;host=\"public.example:8443\"")
    );
    gw.shutdown().await;
}

// --- 4. Host --------------------------------------------------------------------------------

fn with_host(addr: std::net::SocketAddr) -> Request<Body> {
    Request::get(format!("http://{addr}/realms/demo/account"))
        .header("host", "public.example:8443")
        .body(dcr_gateway::net::empty())
        .unwrap()
}

#[tokio::test]
async fn host_is_preserved_by_default() {
    let up = upstream(|_| async move { ok_text("ok") }).await;
    let gw = gateway(settings(&up.url(), None)).await;
    assert!(gw.settings().preserve_host);
    assert_eq!(send(with_host(gw.addr)).await.status, 200);
    let h = up.seen.lock()[0].headers.clone();
    assert_eq!(header(&h, "host"), Some("public.example:8443"));
    gw.shutdown().await;
}

#[tokio::test]
async fn host_is_the_upstreams_when_preserve_host_is_off() {
    let up = upstream(|_| async move { ok_text("ok") }).await;
    let mut s = settings(&up.url(), None);
    s.preserve_host = false;
    let gw = gateway(s).await;
    assert_eq!(send(with_host(gw.addr)).await.status, 200);
    let h = up.seen.lock()[0].headers.clone();
    assert_eq!(header(&h, "host"), Some(up.addr.to_string().as_str()));
    // The client's host still travels in the forwarded headers.
    assert_eq!(header(&h, "x-forwarded-host"), Some("public.example:8443"));
    gw.shutdown().await;
}

// --- 5. request id --------------------------------------------------------------------------

fn with_request_id(addr: std::net::SocketAddr, path: &str, id: &str) -> Request<Body> {
    Request::get(format!("http://{addr}{path}"))
        .header("x-request-id", id)
        .body(dcr_gateway::net::empty())
        .unwrap()
}

#[tokio::test]
async fn well_formed_request_id_travels_both_ways() {
    let up = upstream(|_| async move { ok_text("ok") }).await;
    let gw = gateway(settings(&up.url(), None)).await;
    let id = "req-42_a.b:c@d";
    let a = send(with_request_id(gw.addr, "/realms/demo/account", id)).await;
    assert_eq!(a.status, 200);
    assert_eq!(header(&a.headers, "x-request-id"), Some(id));
    let seen = up.seen.lock()[0].headers.clone();
    assert_eq!(seen.get_all("x-request-id").iter().collect::<Vec<_>>(), [id]);
    gw.shutdown().await;
}

#[tokio::test]
async fn malformed_request_id_is_replaced_by_a_generated_one() {
    let up = upstream(|_| async move { ok_text("ok") }).await;
    let gw = gateway(settings(&up.url(), None)).await;
    let long = "a".repeat(200);
    for (i, bad) in ["has some spaces", long.as_str()].into_iter().enumerate() {
        let a = send(with_request_id(gw.addr, "/realms/demo/account", bad)).await;
        assert_eq!(a.status, 200);
        let got = header(&a.headers, "x-request-id").unwrap().to_owned();
        assert_ne!(got, bad);
        assert!(
            got.len() == 32 && got.bytes().all(|b| b.is_ascii_hexdigit()),
            "generated id `{got}`"
        );
        let seen = up.seen.lock()[i].headers.clone();
        assert_eq!(header(&seen, "x-request-id"), Some(got.as_str()));
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn refusals_carry_the_request_id() {
    let up = upstream(|_| async move { ok_text("ok") }).await;
    let gw = gateway(settings(&up.url(), None)).await;
    let bad_path = "/realms//clients-registrations/openid-connect";
    let a = send(with_request_id(gw.addr, bad_path, "client-chosen-1")).await;
    let v = assert_refusal(&a, 400, "path_malformed");
    assert_eq!(v["request_id"], "client-chosen-1");

    let a = send(with_request_id(gw.addr, bad_path, "not valid")).await;
    let v = assert_refusal(&a, 400, "path_malformed");
    let id = v["request_id"].as_str().unwrap();
    assert_eq!(id.len(), 32, "generated id `{id}`");
    assert_eq!(header(&a.headers, "x-request-id"), Some(id));
    assert_eq!(up.hits(), 0);
    gw.shutdown().await;
}

// --- 6. body limit --------------------------------------------------------------------------

#[tokio::test]
async fn registration_body_over_the_limit_is_413_and_never_forwarded() {
    let up = upstream(|_| async move { json_response(201, &json!({"client_id": "x"})) }).await;
    let mut s = settings(&up.url(), None);
    s.max_body_bytes = 1024;
    let gw = gateway(s).await;
    let big = json!({"client_name": "n".repeat(4096), "redirect_uris": ["https://app.example.com/cb"]});
    // An initial access token: the policy lets it create, so the body is read (and too large).
    let iat = initial_access_token(&up.url());

    // Declared length.
    let a = send(req("POST", gw.addr, REG, Some(&iat), Some(&big))).await;
    let v = assert_refusal(&a, 413, "body_too_large");
    assert_eq!(v["details"]["limit_bytes"], 1024);

    // Streamed (chunked, no length): refused once the limit is crossed.
    let request = Request::post(format!("http://{}{REG}", gw.addr))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {iat}"))
        .body(streamed(8, 512, 3))
        .unwrap();
    let a = send(request).await;
    assert_refusal(&a, 413, "body_too_large");

    assert_eq!(up.hits(), 0, "an oversized registration body reached Keycloak");
    gw.shutdown().await;
}

/// A Keycloak-shaped initial access token for realm `demo` of the stand-in upstream.
fn initial_access_token(upstream: &str) -> String {
    use crate::support::testkit::{hmac_token, internal_claims};
    let iss = format!("{upstream}/realms/demo");
    hmac_token(
        b"kc-secret",
        &json!({"alg": "HS512", "typ": "JWT", "kid": "h"}),
        &internal_claims(&iss, "InitialAccessToken", 0),
    )
}

#[tokio::test]
async fn refused_callers_are_answered_before_their_body_is_read() {
    let up = upstream(|_| async move { json_response(201, &json!({})) }).await;
    let gw = gateway(settings(&up.url(), None)).await;
    // An anonymous create whose body never finishes: refused at once, not after body_read.
    let (tx, body) = channel_body(1);
    tx.send(Bytes::from_static(b"{")).await.unwrap();
    let request = Request::post(format!("http://{}{REG}", gw.addr))
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    let started = Instant::now();
    let a = tokio::time::timeout(Duration::from_secs(5), send(request))
        .await
        .expect("answered without the body");
    assert_refusal(&a, 403, "anonymous_not_allowed");
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(tx);
    assert_eq!(up.hits(), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn slow_bodies_time_out_with_408() {
    let up = upstream(|_| async move { json_response(201, &json!({})) }).await;
    let mut s = settings(&up.url(), None);
    s.timeouts.body_read = Duration::from_millis(300);
    let gw = gateway(s).await;
    let (tx, body) = channel_body(1);
    tx.send(Bytes::from_static(b"{")).await.unwrap();
    let request = Request::post(format!("http://{}{REG}", gw.addr))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", initial_access_token(&up.url())))
        .body(body)
        .unwrap();
    let a = tokio::time::timeout(Duration::from_secs(5), send(request))
        .await
        .expect("answered");
    let v = assert_refusal(&a, 408, "body_timeout");
    assert_eq!(v["details"]["timeout"], "300ms");
    drop(tx);
    assert_eq!(up.hits(), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn connection_naming_authorization_is_refused() {
    let up = upstream(|_| async move { json_response(201, &json!({})) }).await;
    let gw = gateway(settings(&up.url(), None)).await;
    let iat = initial_access_token(&up.url());
    let body = json!({"redirect_uris": ["https://app.example.com/cb"]});
    let mut r = req("POST", gw.addr, REG, Some(&iat), Some(&body));
    r.headers_mut()
        .insert("connection", "keep-alive, Authorization".parse().unwrap());
    let v = assert_refusal(&send(r).await, 400, "connection_header_invalid");
    assert_eq!(v["details"]["header"], "authorization");
    assert_eq!(up.hits(), 0, "the request was never forwarded without its credential");
    gw.shutdown().await;
}

// --- 7./8. upstream failures ---------------------------------------------------------------

#[tokio::test]
async fn closed_upstream_port_is_502_unreachable() {
    let addr = closed_addr();
    let gw = gateway(settings(&format!("http://{addr}"), None)).await;
    let a = send(req("GET", gw.addr, "/realms/demo/account", None, None)).await;
    let v = assert_refusal(&a, 502, "upstream_unreachable");
    assert!(
        !v["details"]["error"].as_str().unwrap().is_empty(),
        "the cause is named: {v}"
    );
    // Registration traffic fails the same way (a preflight passes policy and reaches it).
    let a = send(req("OPTIONS", gw.addr, REG, None, None)).await;
    assert_refusal(&a, 502, "upstream_unreachable");
    gw.shutdown().await;
}

#[tokio::test]
async fn slow_upstream_is_504_timeout() {
    let up = upstream(|_| async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        ok_text("too late")
    })
    .await;
    let mut s = settings(&up.url(), None);
    s.timeouts.response = Duration::from_millis(300);
    let gw = gateway(s).await;
    let started = Instant::now();
    let a = send(req("GET", gw.addr, "/realms/demo/account", None, None)).await;
    let took = started.elapsed();
    let v = assert_refusal(&a, 504, "upstream_timeout");
    assert_eq!(v["details"]["timeout"], "300ms");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
        "answered after {took:?}"
    );
    assert_eq!(up.hits(), 1);
    gw.shutdown().await;
}

/// A connect timeout without relying on the network: a listener whose accept queue is full
/// drops further SYNs (Linux), so connecting to it hangs.
#[tokio::test]
async fn upstream_connect_timeout_is_504() {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = sock.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    let mut saturated = false;
    for _ in 0..32 {
        match tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(s)) => held.push(s),
            Ok(Err(e)) => panic!("probe connect failed: {e}"),
            Err(_) => {
                saturated = true;
                break;
            }
        }
    }
    assert!(saturated, "the accept queue never filled up");

    let mut s = settings(&format!("http://{addr}"), None);
    s.timeouts.connect = Duration::from_millis(200);
    let gw = gateway(s).await;
    let started = Instant::now();
    let a = send(req("GET", gw.addr, "/realms/demo/account", None, None)).await;
    let took = started.elapsed();
    let v = assert_refusal(&a, 504, "upstream_connect_timeout");
    assert_eq!(v["details"]["timeout"], "200ms");
    assert!(took < Duration::from_millis(1500), "answered after {took:?}");
    drop(held);
    drop(listener);
    gw.shutdown().await;
}

// --- 9. load shedding -----------------------------------------------------------------------

fn in_flight(metrics: &str) -> Option<i64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("dcr_gateway_in_flight_requests "))
        .map(|v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_with_503_and_recovers() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    let up = upstream(move |s| {
        let g = g.clone();
        async move {
            if s.uri.starts_with("/slow") {
                let _permit = g.acquire().await.unwrap();
            }
            ok_text("done")
        }
    })
    .await;
    let mut s = settings(&up.url(), None);
    s.max_in_flight = 2;
    let gw = gateway(s).await;

    let slow: Vec<_> = (0..2)
        .map(|i| {
            let addr = gw.addr;
            tokio::spawn(async move { send(req("GET", addr, &format!("/slow/{i}"), None, None)).await })
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(3), || up.hits() == 2).await,
        "the slow requests did not reach the upstream"
    );
    let (_, m) = admin(&gw, "/metrics").await;
    assert_eq!(in_flight(&m), Some(2), "{m}");

    let started = Instant::now();
    let a = send(req("GET", gw.addr, "/fast", None, None)).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "shedding took {:?}",
        started.elapsed()
    );
    assert_refusal(&a, 503, "overloaded");
    assert_eq!(header(&a.headers, "retry-after"), Some("1"));
    assert_eq!(up.hits(), 2, "a shed request reached the upstream");

    gate.add_permits(2);
    for t in slow {
        let a = t.await.unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.body, Bytes::from_static(b"done"));
    }
    let a = send(req("GET", gw.addr, "/fast", None, None)).await;
    assert_eq!(a.status, 200, "not recovered after the slow requests ended");

    let end = Instant::now() + Duration::from_secs(2);
    let (drained, last) = loop {
        let (_, m) = admin(&gw, "/metrics").await;
        if in_flight(&m) == Some(0) || Instant::now() > end {
            break (in_flight(&m) == Some(0), m);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(drained, "in-flight gauge did not return to 0: {last}");
    gw.shutdown().await;
}

// --- 10. HTTP/2 -----------------------------------------------------------------------------

#[tokio::test]
async fn http2_client_is_proxied_to_http1_upstream() {
    let up =
        upstream(
            |s| async move { json_response(200, &json!({"body": String::from_utf8_lossy(&s.body), "uri": s.uri})) },
        )
        .await;
    let gw = gateway(settings(&up.url(), None)).await;
    let h2 = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Body>();
    let request = Request::post(format!("http://{}/realms/demo/h2?q=1", gw.addr))
        .body(full("hello over h2"))
        .unwrap();
    let resp = h2.request(request).await.unwrap();
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().contains_key("x-request-id"));
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["body"], "hello over h2");
    assert_eq!(v["uri"], "/realms/demo/h2?q=1");
    let seen = up.seen.lock()[0].clone();
    // The HTTP/2 authority became the Host the HTTP/1.1 upstream sees.
    assert_eq!(header(&seen.headers, "host"), Some(gw.addr.to_string().as_str()));
    assert_eq!(
        header(&seen.headers, "x-forwarded-host"),
        Some(gw.addr.to_string().as_str())
    );
    gw.shutdown().await;
}

// --- 11. routing refusals -------------------------------------------------------------------

#[tokio::test]
async fn malformed_registration_paths_are_400_and_never_forwarded() {
    let up = upstream(|_| async move { json_response(201, &json!({})) }).await;
    let gw = gateway(settings(&up.url(), None)).await;
    let cases = [
        ("POST", "/realms//clients-registrations/openid-connect"), // empty realm
        ("POST", "/realms/demo/clients-registrations/"),           // empty provider
        ("POST", "/realms/demo/clients-registrations"),            // no provider
        ("GET", "/realms/demo/clients-registrations/openid-connect/abc%2Fdef"),
        ("GET", "/realms/demo/clients-registrations/openid-connect/abc%2fdef"),
        ("GET", "/realms/demo/clients-registrations/openid-connect/../default"),
        ("POST", "/realms/demo/./clients-registrations/openid-connect"),
        ("POST", "/realms/demo/clients-registrations/%2e%2e/openid-connect"),
        ("GET", "/realms/demo/clients-registrations/openid-connect/abc/extra"),
        ("POST", "/realms/demo/clients%2Dregistrations/openid-connect"),
        ("POST", "/realms/demo/Clients-Registrations/openid-connect"),
        ("POST", "/realms/demo/clients-registrations;x=1/openid-connect"),
        ("POST", "/realms/demo/x/clients-registrations/openid-connect"),
    ];
    for (method, path) in cases {
        let a = send(req(method, gw.addr, path, None, None)).await;
        let v = assert_refusal(&a, 400, "path_malformed");
        assert_eq!(v["details"]["path"], path, "{method} {path}");
        assert_eq!(v["error"], "invalid_request", "{method} {path}");
    }
    assert_eq!(up.hits(), 0, "a malformed registration path reached Keycloak");
    gw.shutdown().await;
}

#[tokio::test]
async fn wrong_methods_are_405() {
    let up = upstream(|_| async move { json_response(200, &json!({})) }).await;
    let gw = gateway(settings(&up.url(), None)).await;
    let a = send(req("GET", gw.addr, REG, None, None)).await;
    let v = assert_refusal(&a, 405, "method_not_allowed");
    assert_eq!(v["details"]["method"], "GET");
    assert_eq!(v["details"]["allowed"], "POST, OPTIONS");
    let a = send(req("POST", gw.addr, &format!("{REG}/some-client"), None, None)).await;
    let v = assert_refusal(&a, 405, "method_not_allowed");
    assert_eq!(v["details"]["allowed"], "GET, PUT, DELETE, OPTIONS");
    let a = send(req("PATCH", gw.addr, &format!("{REG}/some-client"), None, None)).await;
    assert_refusal(&a, 405, "method_not_allowed");
    assert_eq!(up.hits(), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn other_paths_are_404_when_refused_by_setting() {
    let up = upstream(|_| async move { json_response(200, &json!({})) }).await;
    let mut s = settings(&up.url(), None);
    s.other_paths = OtherPaths::Refuse;
    let gw = gateway(s).await;
    for path in ["/realms/demo/account", "/admin/realms", "/"] {
        let a = send(req("GET", gw.addr, path, None, None)).await;
        let v = assert_refusal(&a, 404, "route_refused");
        assert_eq!(v["details"]["path"], path);
    }
    // Registration traffic is still routed (a malformed one still gets its own answer).
    let a = send(req("GET", gw.addr, REG, None, None)).await;
    assert_refusal(&a, 405, "method_not_allowed");
    assert_eq!(up.hits(), 0);
    gw.shutdown().await;
}
