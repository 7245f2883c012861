//! Helpers for the token-triage and JWKS tests: a gateway in front of a `jwks_server` that
//! doubles as Keycloak, tokens for realm `demo`, and assertions on refusals and metrics.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::testkit::{self, TestKey};
use dcr_gateway::Gateway;
use dcr_gateway::config::Settings;
use serde_json::{Value, json};

use super::{Answer, JwksServer, admin, eventually, gateway, req, send, settings};

/// The create path of the `default` provider in realm `demo`.
pub const CREATE: &str = "/realms/demo/clients-registrations/default";

/// A client path of the `default` provider in realm `demo`.
pub const CLIENT: &str = "/realms/demo/clients-registrations/default/c1";

/// The issuer the gateway expects for realm `demo` (`public_url` defaults to the upstream).
pub fn issuer(server: &JwksServer) -> String {
    format!("{}/realms/demo", server.upstream.url())
}

/// A minimal `default`-provider body.
pub fn body() -> Value {
    json!({"clientId": "x"})
}

/// Service-account claims with `create-client`, made unique by a random `nonce` (RS256
/// signatures are deterministic, so two tokens minted in one second would otherwise be equal).
pub fn sa_claims(iss: &str) -> Value {
    let mut c = testkit::service_account_claims(iss, "registrar", &["create-client"], 300);
    c["nonce"] = json!(nonce());
    c
}

/// A unique string.
pub fn nonce() -> String {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A service-account token by `key` for `iss`.
pub fn sa_token(key: &TestKey, iss: &str) -> String {
    key.token(&sa_claims(iss))
}

/// A Keycloak-style internal token (IAT or RAT): HS512 header, any secret.
pub fn internal_token(claims: &Value) -> String {
    testkit::hmac_token(
        b"keycloak-only-secret",
        &json!({"alg": "HS512", "typ": "JWT", "kid": "hmac-kid"}),
        claims,
    )
}

/// Test settings for a gateway in front of `server`, realm `demo` prefetched (so metrics carry
/// `realm="demo"`), then `tweak`ed.
pub fn demo_settings(server: &JwksServer, tweak: impl FnOnce(&mut Settings)) -> Settings {
    let mut s = settings(&server.upstream.url(), None);
    s.jwks.prefetch = vec!["demo".into()];
    tweak(&mut s);
    s
}

/// Starts a gateway and waits until the keys of `demo` are loaded (`/readyz` is 200).
pub async fn ready_gateway(server: &JwksServer, tweak: impl FnOnce(&mut Settings)) -> Gateway {
    let gw = gateway(demo_settings(server, tweak)).await;
    wait_ready(&gw, Duration::from_secs(3)).await;
    gw
}

/// Waits until `/readyz` answers 200, or panics.
pub async fn wait_ready(gw: &Gateway, limit: Duration) {
    let end = tokio::time::Instant::now() + limit;
    loop {
        let (status, text) = admin(gw, "/readyz").await;
        if status == 200 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "gateway not ready after {limit:?}: {status} {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// POSTs a create with `token` and a `default` body.
pub async fn create(gw: &Gateway, token: &str) -> Answer {
    send(req("POST", gw.addr, CREATE, Some(token), Some(&body()))).await
}

/// Asserts a refusal: status, `reason`, the RFC 6750 challenge on 401/403, and `Retry-After`
/// on 503. Returns the JSON body.
#[track_caller]
pub fn assert_refused(a: &Answer, status: u16, reason: &str) -> Value {
    let v = a.json();
    assert_eq!(a.status, status, "status; body: {v}");
    assert_eq!(v["reason"], reason, "reason; body: {v}");
    let desc = v["error_description"].as_str().unwrap_or_default();
    assert!(!desc.is_empty(), "no error_description: {v}");
    if status == 401 {
        assert_eq!(v["error"], "invalid_token", "{v}");
        let www = a
            .headers
            .get("www-authenticate")
            .unwrap_or_else(|| panic!("401 without WWW-Authenticate: {v}"))
            .to_str()
            .unwrap();
        assert!(
            www.starts_with("Bearer error=\"invalid_token\", error_description=\""),
            "challenge: {www}"
        );
        assert!(www.ends_with('"'), "challenge: {www}");
        assert!(www.len() > "Bearer error=\"invalid_token\", error_description=\"\"".len());
    }
    if status == 503 {
        assert_eq!(v["error"], "temporarily_unavailable", "{v}");
        assert!(a.headers.contains_key("retry-after"), "503 without Retry-After");
    }
    v
}

/// Requests that reached the stand-in Keycloak other than JWKS fetches.
pub fn upstream_calls(server: &JwksServer) -> Vec<String> {
    server
        .upstream
        .seen
        .lock()
        .iter()
        .filter(|s| !s.uri.ends_with("/protocol/openid-connect/certs"))
        .map(|s| format!("{} {}", s.method, s.uri))
        .collect()
}

/// JWKS fetches so far.
pub fn fetches(server: &JwksServer) -> usize {
    server.fetches.load(Ordering::SeqCst)
}

/// The value of the sample whose line starts with `series` (name and labels exactly as
/// rendered, labels sorted), or `None`.
pub async fn metric(gw: &Gateway, series: &str) -> Option<f64> {
    let (_, text) = admin(gw, "/metrics").await;
    sample(&text, series)
}

/// Finds `series` in Prometheus text.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Polls `f` until true or `limit`; async-friendly wrapper around `eventually`.
pub async fn until(limit: Duration, f: impl FnMut() -> bool) -> bool {
    eventually(limit, f).await
}
