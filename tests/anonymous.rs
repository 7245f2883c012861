//! Anonymous registration through the running gateway, against a stand-in Keycloak with a token
//! endpoint: the gateway's own credential (service account or initial access token file),
//! caching and renewal, readiness, the safe-default policy, quotas, dropped members, CORS, and
//! refusals that keep Keycloak's status and `error`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::testkit::{self, TestKey};
use dcr_gateway::config::{RealmSettings, RegistrarSettings};
use http::Request;
use serde_json::{Value, json};
use support::policy_kit::{metric, metrics_text, readyz, until};
use support::*;

const OIDC: &str = "/realms/demo/clients-registrations/openid-connect";

/// A stand-in Keycloak with a token endpoint whose behaviour tests control.
struct Kc {
    up: Upstream,
    fetches: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    expires_in: Arc<AtomicU64>,
    delay_ms: Arc<AtomicU64>,
}

impl Kc {
    async fn start() -> Kc {
        let key = TestKey::rsa("k1", "RS256").unwrap();
        let jwks = testkit::jwks(&[&key]);
        let fetches = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        let expires_in = Arc::new(AtomicU64::new(300));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (f, x, e, d) = (fetches.clone(), failing.clone(), expires_in.clone(), delay_ms.clone());
        let up = upstream(move |s: Seen| {
            let (f, x, e, d, jwks) = (f.clone(), x.clone(), e.clone(), d.clone(), jwks.clone());
            async move {
                if s.uri.ends_with("/protocol/openid-connect/certs") {
                    return json_response(200, &jwks);
                }
                if s.uri.ends_with("/protocol/openid-connect/token") {
                    tokio::time::sleep(Duration::from_millis(d.load(Ordering::SeqCst))).await;
                    let form = String::from_utf8_lossy(&s.body).into_owned();
                    let good = form.contains("grant_type=client_credentials")
                        && form.contains("client_id=registrar")
                        && form.contains("client_secret=s3cr%26t");
                    if x.load(Ordering::SeqCst) || !good {
                        return json_response(401, &json!({"error": "unauthorized_client", "error_description": "Invalid client or Invalid client credentials"}));
                    }
                    let n = f.fetch_add(1, Ordering::SeqCst) + 1;
                    return json_response(
                        200,
                        &json!({"access_token": format!("sa-token-{n}"), "expires_in": e.load(Ordering::SeqCst), "token_type": "Bearer"}),
                    );
                }
                if s.uri.contains("/clients-registrations/") {
                    let mut v: Value = serde_json::from_slice(&s.body).unwrap_or(json!({}));
                    if s.method == "POST" {
                        v["client_id"] = json!("c-1");
                        v["registration_access_token"] = json!("rat-1");
                        return json_response(201, &v);
                    }
                    return json_response(200, &v);
                }
                json_response(404, &json!({"error": "not found"}))
            }
        })
        .await;
        Kc {
            up,
            fetches,
            failing,
            expires_in,
            delay_ms,
        }
    }

    fn registrations(&self) -> Vec<Seen> {
        self.up
            .seen
            .lock()
            .iter()
            .filter(|s| s.uri.contains("/clients-registrations/"))
            .cloned()
            .collect()
    }

    fn token_requests(&self) -> Vec<Seen> {
        self.up
            .seen
            .lock()
            .iter()
            .filter(|s| s.uri.ends_with("/token"))
            .cloned()
            .collect()
    }
}

const POLICY: &str = r#"
version = 1
[realms.demo]
providers = ["openid-connect"]
[realms.demo.anonymous]
redirect_hosts = ["app.example.com"]
[realms.demo.anonymous.quota]
creates = 20
window = "1h"
[realms.demo.cors]
origins = ["https://app.example.com"]
"#;

struct Setup {
    kc: Kc,
    gw: dcr_gateway::Gateway,
    dir: tempfile::TempDir,
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

async fn start(kc: Kc, policy: &str, registrar: impl FnOnce(&Path) -> RegistrarSettings) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.toml", policy);
    let mut s = settings(&kc.up.url(), Some(&policy));
    s.realms.insert(
        "demo".into(),
        RealmSettings {
            registrar: Some(registrar(dir.path())),
            ..RealmSettings::default()
        },
    );
    let gw = gateway(s).await;
    Setup { kc, gw, dir }
}

fn service_account(dir: &Path) -> RegistrarSettings {
    RegistrarSettings {
        client_id: Some("registrar".into()),
        secret_file: Some(write(dir, "secret", "s3cr&t\n")),
        ..RegistrarSettings::default()
    }
}

async fn anon_setup(policy: &str) -> Setup {
    start(Kc::start().await, policy, service_account).await
}

fn mcp_body(redirect: &str) -> Value {
    json!({"client_name": "MCP Inspector", "redirect_uris": [redirect], "token_endpoint_auth_method": "none",
           "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"]})
}

async fn create(gw: &dcr_gateway::Gateway, body: &Value) -> Answer {
    send(req("POST", gw.addr, OIDC, None, Some(body))).await
}

#[tokio::test]
async fn anonymous_create_is_forwarded_with_the_gateways_service_account() {
    let t = anon_setup(POLICY).await;
    let mut body = mcp_body("http://127.0.0.1:33418/callback");
    body["resource"] = json!("https://mcp.example.com/");
    body["scope"] = json!("openid mcp:tools");
    let a = create(&t.gw, &body).await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.headers["dcr-gateway-dropped-members"], "scope, resource");
    let seen = t.kc.registrations();
    assert_eq!(seen.len(), 1);
    let auth = seen[0].headers["authorization"].to_str().unwrap();
    assert!(auth.starts_with("Bearer sa-token-"), "{auth}");
    let forwarded: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert!(
        forwarded.get("resource").is_none() && forwarded.get("scope").is_none(),
        "{forwarded}"
    );
    assert_eq!(forwarded["client_name"], "MCP Inspector");
    assert_eq!(
        seen[0].headers["content-length"].to_str().unwrap(),
        seen[0].body.len().to_string()
    );
    // The token was fetched with the public host, so its issuer is the one Keycloak expects.
    let token_req = &t.kc.token_requests()[0];
    assert_eq!(
        token_req.headers["x-forwarded-host"].to_str().unwrap(),
        t.kc.up.url().trim_start_matches("http://")
    );
    let text = metrics_text(&t.gw).await;
    let created = metric(
        &text,
        "dcr_gateway_anonymous_registrations_total",
        &[("outcome", "forwarded")],
    );
    assert_eq!(created, Some(1.0), "{text}");
    assert_eq!(
        metric(
            &text,
            "dcr_gateway_anonymous_dropped_members_total",
            &[("realm", "demo")]
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(&text, "dcr_gateway_anonymous_realm_quota_used", &[("realm", "demo")]),
        Some(1.0)
    );
    assert!(metric(&text, "dcr_gateway_registrar_renewals_total", &[("result", "success")]).is_some_and(|n| n >= 1.0));
    t.gw.shutdown().await;
}

#[tokio::test]
async fn one_token_fetch_serves_concurrent_creates() {
    let kc = Kc::start().await;
    kc.delay_ms.store(300, Ordering::SeqCst);
    let t = start(kc, POLICY, service_account).await;
    let gw = Arc::new(t.gw);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            create(&gw, &mcp_body(&format!("http://127.0.0.1:{}/cb", 4000 + i)))
                .await
                .status
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 201);
    }
    assert_eq!(
        t.kc.fetches.load(Ordering::SeqCst),
        1,
        "single flight: one fetch for all"
    );
    let tokens: std::collections::BTreeSet<String> =
        t.kc.registrations()
            .iter()
            .map(|s| s.headers["authorization"].to_str().unwrap().to_owned())
            .collect();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
}

#[tokio::test]
async fn token_is_renewed_before_it_expires() {
    let kc = Kc::start().await;
    kc.expires_in.store(2, Ordering::SeqCst);
    let t = start(kc, POLICY, |d| RegistrarSettings {
        renew_before: Some("1s".parse().unwrap()),
        ..service_account(d)
    })
    .await;
    let fetches = t.kc.fetches.clone();
    assert!(
        until(Duration::from_secs(10), || {
            let f = fetches.clone();
            async move { f.load(Ordering::SeqCst) >= 3 }
        })
        .await,
        "the renewal task fetches ahead of expiry"
    );
    let a = create(&t.gw, &mcp_body("http://127.0.0.1:1/cb")).await;
    assert_eq!(a.status, 201);
    let auth = t.kc.registrations()[0].headers["authorization"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(auth, "Bearer sa-token-1", "a renewed token is used");
    t.gw.shutdown().await;
}

#[tokio::test]
async fn readiness_follows_the_credential() {
    let kc = Kc::start().await;
    kc.failing.store(true, Ordering::SeqCst);
    let t = start(kc, POLICY, service_account).await;
    let gw = &t.gw;
    // Until the first fetch has failed, the problem is "no token fetched yet"; wait for the
    // failure itself.
    assert!(
        until(Duration::from_secs(10), || async {
            let problems = readyz(gw).await["problems"].to_string();
            problems.contains("registration credential of realm demo") && problems.contains("unauthorized_client")
        })
        .await
    );
    let (status, body) = admin(gw, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("unauthorized_client"), "{body}");
    assert!(!body.contains("s3cr"), "the secret is never shown: {body}");
    let a = create(gw, &mcp_body("http://127.0.0.1:1/cb")).await;
    let v = support::proxy_kit::assert_refusal(&a, 503, "registrar_unavailable");
    assert!(a.headers.contains_key("retry-after"));
    assert!(
        v["error_description"].as_str().unwrap().contains("Try again later"),
        "{v}"
    );
    assert!(
        t.kc.registrations().is_empty(),
        "never forwarded without the credential"
    );
    let text = metrics_text(gw).await;
    assert!(metric(&text, "dcr_gateway_registrar_renewals_total", &[("result", "failure")]).is_some_and(|n| n >= 1.0));
    t.kc.failing.store(false, Ordering::SeqCst);
    assert!(
        until(Duration::from_secs(40), || async {
            admin(gw, "/readyz").await.0 == 200
        })
        .await
    );
    assert_eq!(create(gw, &mcp_body("http://127.0.0.1:1/cb")).await.status, 201);
}

#[tokio::test]
async fn initial_access_token_file_is_used_and_reread() {
    let iat = |jti: &str| {
        let mut c = testkit::internal_claims("http://kc/realms/demo", "InitialAccessToken", 0);
        c["jti"] = json!(jti);
        testkit::hmac_token(b"k", &json!({"alg": "HS512", "typ": "JWT"}), &c)
    };
    let first = iat("one");
    let t = start(Kc::start().await, POLICY, |d| RegistrarSettings {
        initial_access_token_file: Some(write(d, "iat", &first)),
        ..RegistrarSettings::default()
    })
    .await;
    assert_eq!(create(&t.gw, &mcp_body("http://127.0.0.1:1/cb")).await.status, 201);
    let second = iat("two");
    write(t.dir.path(), "iat", &format!("{second}\n"));
    assert_eq!(create(&t.gw, &mcp_body("http://127.0.0.1:1/cb")).await.status, 201);
    let seen: Vec<String> =
        t.kc.registrations()
            .iter()
            .map(|s| s.headers["authorization"].to_str().unwrap().to_owned())
            .collect();
    assert_eq!(seen, [format!("Bearer {first}"), format!("Bearer {second}")]);
    assert_eq!(t.kc.fetches.load(Ordering::SeqCst), 0, "no token endpoint involved");
    std::fs::write(t.dir.path().join("iat"), "").unwrap();
    let a = create(&t.gw, &mcp_body("http://127.0.0.1:1/cb")).await;
    support::proxy_kit::assert_refusal(&a, 503, "registrar_unavailable");
    assert_eq!(admin(&t.gw, "/readyz").await.0, 503);
}

#[tokio::test]
async fn off_policy_requests_are_refused_as_keycloak_would_and_never_forwarded() {
    let t = anon_setup(POLICY).await;
    let a = create(&t.gw, &mcp_body("https://evil.example/cb")).await;
    let v = support::proxy_kit::assert_refusal(&a, 403, "redirect_uri_not_allowed");
    assert_eq!(v["error"], "insufficient_scope", "{v}");
    let d = v["error_description"].as_str().unwrap();
    for needle in ["https://evil.example/cb", "127.0.0.1", "app.example.com"] {
        assert!(d.contains(needle), "{needle}: {d}");
    }
    let mut jwks = mcp_body("http://127.0.0.1:1/cb");
    jwks["jwks_uri"] = json!("https://keys.example.net/jwks");
    let v = support::proxy_kit::assert_refusal(&create(&t.gw, &jwks).await, 403, "field_forbidden");
    assert!(v["error_description"].as_str().unwrap().contains("jwks_uri"), "{v}");
    jwks["jwks_uri"] = json!("http://169.254.169.254/latest");
    let v = support::proxy_kit::assert_refusal(&create(&t.gw, &jwks).await, 403, "server_url_not_allowed");
    assert_eq!(v["error"], "insufficient_scope", "{v}");
    let mut secret = mcp_body("http://127.0.0.1:1/cb");
    secret["token_endpoint_auth_method"] = json!("client_secret_basic");
    support::proxy_kit::assert_refusal(&create(&t.gw, &secret).await, 403, "auth_method_not_allowed");
    let a = send(support::policy_kit::raw_req("POST", t.gw.addr, OIDC, None, "{not json")).await;
    let v = support::proxy_kit::assert_refusal(&a, 400, "body_not_json");
    assert_eq!(v["error"], "invalid_client_metadata");
    // Only openid-connect; other realms stay closed.
    let a = send(req(
        "POST",
        t.gw.addr,
        "/realms/other/clients-registrations/openid-connect",
        None,
        Some(&mcp_body("http://127.0.0.1:1/cb")),
    ))
    .await;
    let v = support::proxy_kit::assert_refusal(&a, 403, "anonymous_not_allowed");
    assert_eq!(v["error"], "insufficient_scope");
    assert!(t.kc.registrations().is_empty(), "nothing refused reached Keycloak");
    let text = metrics_text(&t.gw).await;
    assert_eq!(
        metric(
            &text,
            "dcr_gateway_anonymous_refusals_total",
            &[("reason", "redirect_uri_not_allowed")]
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn burst_over_the_address_quota_is_refused() {
    let t = anon_setup(&POLICY.replace("creates = 20", "creates = 2")).await;
    for _ in 0..2 {
        assert_eq!(create(&t.gw, &mcp_body("http://127.0.0.1:1/cb")).await.status, 201);
    }
    let a = create(&t.gw, &mcp_body("http://127.0.0.1:1/cb")).await;
    let v = support::proxy_kit::assert_refusal(&a, 403, "quota_exceeded");
    assert_eq!(v["error"], "insufficient_scope");
    assert!(a.headers.contains_key("retry-after"));
    let d = v["error_description"].as_str().unwrap();
    assert!(d.contains("try again in") && d.contains("initial access token"), "{d}");
    assert_eq!(t.kc.registrations().len(), 2);
    let text = metrics_text(&t.gw).await;
    assert_eq!(
        metric(
            &text,
            "dcr_gateway_anonymous_refusals_total",
            &[("reason", "quota_exceeded")]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn cors_preflight_and_readable_refusals_for_allowed_origins() {
    let t = anon_setup(POLICY).await;
    let preflight = |origin: &'static str| {
        Request::builder()
            .method("OPTIONS")
            .uri(format!("http://{}{OIDC}", t.gw.addr))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .body(dcr_gateway::net::empty())
            .unwrap()
    };
    let a = send(preflight("https://app.example.com")).await;
    assert_eq!(a.status, 204);
    assert_eq!(a.headers["access-control-allow-origin"], "https://app.example.com");
    assert!(
        a.headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    let a = send(preflight("https://evil.example")).await;
    support::proxy_kit::assert_refusal(&a, 403, "cors_origin_not_allowed");
    assert!(!a.headers.contains_key("access-control-allow-origin"));
    let post = |body: &Value, origin: &str| {
        Request::post(format!("http://{}{OIDC}", t.gw.addr))
            .header("origin", origin)
            .header("content-type", "application/json")
            .body(dcr_gateway::net::full(body.to_string()))
            .unwrap()
    };
    let a = send(post(&mcp_body("https://evil.example/cb"), "https://app.example.com")).await;
    assert_eq!(a.status, 403);
    assert_eq!(a.headers["access-control-allow-origin"], "https://app.example.com");
    assert!(
        a.headers["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("WWW-Authenticate")
    );
    let a = send(post(&mcp_body("http://127.0.0.1:1/cb"), "https://app.example.com")).await;
    assert_eq!(a.status, 201);
    assert_eq!(a.headers["access-control-allow-origin"], "https://app.example.com");
    let a = send(post(&mcp_body("http://127.0.0.1:2/cb"), "https://evil.example")).await;
    assert_eq!(
        a.status, 201,
        "CORS is the browser's business; the request itself is fine"
    );
    assert!(!a.headers.contains_key("access-control-allow-origin"));
    let seen = t.kc.registrations();
    assert_eq!(seen.len(), 2, "preflights are answered by the gateway");
    assert!(
        seen.iter().all(|s| !s.headers.contains_key("origin")),
        "Origin is kept from Keycloak"
    );
}

#[tokio::test]
async fn registration_access_token_updates_keep_their_token_and_the_rules() {
    let t = anon_setup(POLICY).await;
    let rat = testkit::hmac_token(
        b"k",
        &json!({"alg": "HS512", "typ": "JWT"}),
        &testkit::internal_claims(&format!("{}/realms/demo", t.kc.up.url()), "RegistrationAccessToken", 0),
    );
    let path = format!("{OIDC}/c-1");
    let mut body = mcp_body("https://evil.example/cb");
    body["client_id"] = json!("c-1");
    let a = send(req("PUT", t.gw.addr, &path, Some(&rat), Some(&body))).await;
    support::proxy_kit::assert_refusal(&a, 400, "redirect_uri_not_allowed");
    let mut body = mcp_body("http://127.0.0.1:7/cb");
    body["client_id"] = json!("c-1");
    body["scope"] = json!("openid");
    let a = send(req("PUT", t.gw.addr, &path, Some(&rat), Some(&body))).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.headers["dcr-gateway-dropped-members"], "scope");
    let seen = t.kc.registrations();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].headers["authorization"].to_str().unwrap(),
        format!("Bearer {rat}")
    );
    let a = send(req("GET", t.gw.addr, &path, Some(&rat), None)).await;
    assert_eq!(a.status, 200);
    let a = send(req("GET", t.gw.addr, &path, None, None)).await;
    let v = support::proxy_kit::assert_refusal(&a, 401, "anonymous_not_allowed");
    assert_eq!(
        v["error"], "invalid_token",
        "Keycloak's answer to an unauthenticated read"
    );
}
