//! Policy through the running gateway: refusals never reach Keycloak, strict bodies, quotas,
//! shadow mode and `dcr-gateway check` (the audit lines: tests/logging.rs).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::support::testkit::TestKey;
use dcr_gateway::config::Mode;
use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use parking_lot::Mutex;
use serde_json::json;
use support::policy_kit::*;
use support::*;

const OIDC: &str = "/realms/demo/clients-registrations/openid-connect";
const KC_DEFAULT: &str = "/realms/demo/clients-registrations/default";
const CREATE: &[&str] = &["create-client"];

fn demo_policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/demo.toml")
}

/// A stand-in Keycloak and a gateway enforcing `policies/demo.toml`.
async fn demo() -> (Kc, dcr_gateway::Gateway) {
    let kc = Kc::start().await;
    let gw = gateway(settings(&kc.url(), Some(&demo_policy()))).await;
    (kc, gw)
}

/// A gateway over one policy file written into a fresh temporary directory.
async fn with_policy(kc: &Kc, text: &str, mode: Mode) -> (tempfile::TempDir, dcr_gateway::Gateway) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, text).unwrap();
    let mut s = settings(&kc.url(), Some(&file));
    s.mode = mode;
    (dir, gateway(s).await)
}

fn www_authenticate(a: &Answer) -> String {
    a.headers
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

// --- 1. refused requests never reach the upstream ---------------------------------------------

#[tokio::test]
async fn missing_role_is_403_with_insufficient_scope_challenge() {
    let (kc, gw) = demo().await;
    let token = kc.bearer("demo", "app-a", &["view-clients"]);
    let body = json!({"redirect_uris": ["https://app.example.com/cb"]});
    let a = send(req("POST", gw.addr, OIDC, Some(&token), Some(&body))).await;
    assert_eq!(a.status, 403);
    let v = a.json();
    assert_eq!(v["reason"], "missing_role");
    assert_eq!(v["error"], "insufficient_scope");
    assert_eq!(v["details"]["rule"], "realms.demo.create.roles_any");
    let www = www_authenticate(&a);
    assert!(
        www.starts_with("Bearer error=\"insufficient_scope\", error_description=\""),
        "{www}"
    );
    assert!(
        www.ends_with(", scope=\"realm-management/create-client realm-management/manage-clients\""),
        "{www}"
    );
    assert_eq!(kc.reg_hits(), 0, "a refused create reached Keycloak");
    gw.shutdown().await;
}

#[tokio::test]
async fn redirect_uri_outside_policy_is_refused_in_both_dialects() {
    let (kc, gw) = demo().await;
    let token = kc.bearer("demo", "app-a", CREATE);
    let cases = [
        (
            OIDC,
            json!({"client_name": "x", "redirect_uris": ["https://app.example.com/cb", "https://evil.com/cb"]}),
            "redirect_uris",
        ),
        (
            KC_DEFAULT,
            json!({"clientId": "x", "redirectUris": ["https://evil.com/cb"]}),
            "redirectUris",
        ),
    ];
    for (path, body, field) in cases {
        let a = send(req("POST", gw.addr, path, Some(&token), Some(&body))).await;
        assert_eq!(a.status, 400, "{path}");
        let v = a.json();
        assert_eq!(v["error"], "invalid_redirect_uri", "{v}");
        assert_eq!(v["reason"], "redirect_uri_not_allowed", "{v}");
        assert_eq!(v["details"]["field"], field, "{v}");
        assert_eq!(v["details"]["value"], "https://evil.com/cb", "{v}");
        assert_eq!(v["details"]["rule"], "realms.demo.metadata.redirect_uris", "{v}");
    }
    assert_eq!(kc.reg_hits(), 0, "a refused create reached Keycloak");
    gw.shutdown().await;
}

#[tokio::test]
async fn forbidden_protocol_mappers_are_refused() {
    let (kc, gw) = demo().await;
    let token = kc.bearer("demo", "app-a", CREATE);
    let body = json!({"clientId": "x", "redirectUris": ["https://app.example.com/cb"],
        "protocolMappers": [{"name": "groups", "protocol": "openid-connect", "protocolMapper": "oidc-hardcoded-role-mapper"}]});
    let a = send(req("POST", gw.addr, KC_DEFAULT, Some(&token), Some(&body))).await;
    assert_eq!(a.status, 400);
    let v = a.json();
    assert_eq!(v["reason"], "field_forbidden", "{v}");
    assert_eq!(v["error"], "invalid_client_metadata", "{v}");
    assert_eq!(v["details"]["field"], "protocolMappers", "{v}");
    assert_eq!(v["details"]["rule"], "realms.demo.metadata.forbidden_fields", "{v}");
    assert_eq!(kc.reg_hits(), 0, "a refused create reached Keycloak");
    gw.shutdown().await;
}

#[tokio::test]
async fn blocked_providers_are_refused() {
    let (kc, gw) = demo().await;
    // saml2-entity-descriptor is not among demo's providers.
    let token = kc.bearer("demo", "app-a", CREATE);
    let a = send(raw_req(
        "POST",
        gw.addr,
        "/realms/demo/clients-registrations/saml2-entity-descriptor",
        Some(&token),
        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="x"/>"#,
    ))
    .await;
    assert_eq!(a.status, 403);
    let v = a.json();
    assert_eq!(v["reason"], "provider_not_allowed", "{v}");
    assert_eq!(v["details"]["rule"], "realms.demo.providers", "{v}");
    assert_eq!(v["details"]["allowed_providers"], json!(["default", "openid-connect"]));
    // A realm the policy does not name gets [default]: openid-connect only.
    let other = kc.bearer("other", "app-a", CREATE);
    let body = json!({"clientId": "x"});
    let a = send(req(
        "POST",
        gw.addr,
        "/realms/other/clients-registrations/default",
        Some(&other),
        Some(&body),
    ))
    .await;
    assert_eq!(a.status, 403);
    let v = a.json();
    assert_eq!(v["reason"], "provider_not_allowed", "{v}");
    assert_eq!(v["details"]["rule"], "default.providers", "{v}");
    assert_eq!(v["details"]["allowed_providers"], json!(["openid-connect"]));
    assert_eq!(kc.reg_hits(), 0, "a refused create reached Keycloak");
    gw.shutdown().await;
}

#[tokio::test]
async fn anonymous_create_is_refused() {
    let (kc, gw) = demo().await;
    let body = json!({"redirect_uris": ["https://app.example.com/cb"]});
    let a = send(req("POST", gw.addr, OIDC, None, Some(&body))).await;
    assert_eq!(a.status, 403, "what Keycloak answers (Trusted Hosts)");
    let v = a.json();
    assert_eq!(v["reason"], "anonymous_not_allowed", "{v}");
    assert_eq!(v["error"], "insufficient_scope", "{v}");
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("initial access token"),
        "{v}"
    );
    assert_eq!(v["details"]["rule"], "realms.demo.create.token_kinds", "{v}");
    assert!(www_authenticate(&a).is_empty(), "no challenge, as Keycloak: {a:?}");
    assert_eq!(kc.reg_hits(), 0, "a refused create reached Keycloak");
    gw.shutdown().await;
}

#[tokio::test]
async fn allowed_create_reaches_upstream() {
    let (kc, gw) = demo().await;
    let token = kc.bearer("demo", "app-a", CREATE);
    let body =
        json!({"client_name": "ok", "redirect_uris": ["https://app.example.com/cb", "http://127.0.0.1:5000/cb"]});
    let a = send(req("POST", gw.addr, OIDC, Some(&token), Some(&body))).await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    let seen = kc.registrations();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].uri, OIDC);
    gw.shutdown().await;
}

// --- 2. strict bodies --------------------------------------------------------------------------

#[tokio::test]
async fn ambiguous_bodies_are_refused_and_never_forwarded() {
    let (kc, gw) = demo().await;
    let token = kc.bearer("demo", "app-a", CREATE);
    let deep = format!(
        "{{\"redirect_uris\":[\"https://app.example.com/cb\"],\"x\":{}1{}}}",
        "[".repeat(40),
        "]".repeat(40)
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "duplicate key",
            br#"{"redirect_uris":["https://app.example.com/cb"],"redirect_uris":["https://evil.com/cb"]}"#.to_vec(),
            "body_duplicate_key",
        ),
        (
            "invalid UTF-8",
            b"{\"client_name\":\"caf\xe9\",\"redirect_uris\":[\"https://app.example.com/cb\"]}".to_vec(),
            "body_not_json",
        ),
        ("nesting deeper than 32", deep.into_bytes(), "body_too_deep"),
        (
            "redirect_uris as a string",
            br#"{"redirect_uris":"https://app.example.com/cb"}"#.to_vec(),
            "body_wrong_type",
        ),
    ];
    for (what, body, reason) in cases {
        let a = send(raw_req("POST", gw.addr, OIDC, Some(&token), body)).await;
        assert_eq!(a.status, 400, "{what}");
        let v = a.json();
        assert_eq!(v["reason"], reason, "{what}: {v}");
        assert_eq!(v["error"], "invalid_client_metadata", "{what}: {v}");
    }
    // The same on the Keycloak dialect, for a duplicate hidden one level down.
    let a = send(raw_req(
        "POST",
        gw.addr,
        KC_DEFAULT,
        Some(&token),
        r#"{"clientId":"x","attributes":{"a":"1","a":"2"}}"#,
    ))
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["reason"], "body_duplicate_key");
    assert_eq!(kc.reg_hits(), 0, "an ambiguous body reached Keycloak");
    gw.shutdown().await;
}

#[tokio::test]
async fn allowed_body_is_forwarded_byte_identical() {
    let (kc, gw) = demo().await;
    let token = kc.bearer("demo", "app-a", CREATE);
    // Odd spacing, key order, escapes, non-ASCII text and number spelling all survive untouched.
    let body: &[u8] = "{ \"redirect_uris\" :[ \"https://app.example.com/cb\"\t],\r\n  \"client_name\":\"caf\u{e9} \\u00e9 \u{2615}\",\n\"z\": 1.50e1 , \"a\":{\"nested\":[true,null]}}  \n".as_bytes();
    let a = send(raw_req("POST", gw.addr, OIDC, Some(&token), body.to_vec())).await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    let seen = kc.registrations();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body.as_ref(), body, "the forwarded body differs");
    let kc_body: &[u8] =
        br#"{"clientId":"byte-test","redirectUris":["https://app.example.com/cb"],"publicClient":true}"#;
    let a = send(raw_req("POST", gw.addr, KC_DEFAULT, Some(&token), kc_body.to_vec())).await;
    assert_eq!(a.status, 201);
    let seen = kc.registrations();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].body.as_ref(), kc_body);
    gw.shutdown().await;
}

// --- 7. quotas ---------------------------------------------------------------------------------

const QUOTA_POLICY: &str = r#"
version = 1
[realms.demo]
providers = ["openid-connect", "default"]
[realms.demo.quota]
creates = 2
window = "1h"
"#;

#[tokio::test]
async fn quota_limits_creates_per_azp() {
    let kc = Kc::start().await;
    let (_dir, gw) = with_policy(&kc, QUOTA_POLICY, Mode::Enforce).await;
    let body = json!({"redirect_uris": ["https://app.example.com/cb"]});
    let a_token = kc.bearer("demo", "app-a", CREATE);
    for i in 0..2 {
        let a = send(req("POST", gw.addr, OIDC, Some(&a_token), Some(&body))).await;
        assert_eq!(a.status, 201, "create {i}");
    }
    // A fresh token for the same client is the same caller.
    let a_again = kc.bearer("demo", "app-a", &["manage-clients"]);
    assert_ne!(a_again, a_token);
    let a = send(req("POST", gw.addr, OIDC, Some(&a_again), Some(&body))).await;
    assert_eq!(a.status, 429);
    let v = a.json();
    assert_eq!(v["reason"], "quota_exceeded", "{v}");
    assert_eq!(v["details"]["caller"], "azp:app-a", "{v}");
    assert_eq!(v["details"]["rule"], "realms.demo.quota", "{v}");
    let retry: u64 = a.headers[RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((3500..=3600).contains(&retry), "Retry-After {retry}");
    assert_eq!(kc.reg_hits(), 2, "the refused create reached Keycloak");
    // Another client has its own budget.
    let b_token = kc.bearer("demo", "app-b", CREATE);
    let a = send(req("POST", gw.addr, OIDC, Some(&b_token), Some(&body))).await;
    assert_eq!(a.status, 201);
    assert_eq!(kc.reg_hits(), 3);
    gw.shutdown().await;
}

#[tokio::test]
async fn quota_keys_initial_access_tokens_by_jti() {
    let kc = Kc::start().await;
    let (_dir, gw) = with_policy(&kc, QUOTA_POLICY, Mode::Enforce).await;
    let body = json!({"clientId": "x"});
    let iat1 = kc.initial_access("demo", "iat-one");
    for i in 0..2 {
        let a = send(req("POST", gw.addr, KC_DEFAULT, Some(&iat1), Some(&body))).await;
        assert_eq!(a.status, 201, "create {i}: {}", String::from_utf8_lossy(&a.body));
    }
    let a = send(req("POST", gw.addr, KC_DEFAULT, Some(&iat1), Some(&body))).await;
    assert_eq!(a.status, 429);
    let v = a.json();
    assert_eq!(v["reason"], "quota_exceeded", "{v}");
    assert_eq!(v["details"]["caller"], "iat:iat-one", "{v}");
    assert!(a.headers.contains_key(RETRY_AFTER));
    let iat2 = kc.initial_access("demo", "iat-two");
    let a = send(req("POST", gw.addr, KC_DEFAULT, Some(&iat2), Some(&body))).await;
    assert_eq!(a.status, 201);
    assert_eq!(kc.reg_hits(), 3);
    gw.shutdown().await;
}

// --- 8. shadow mode ----------------------------------------------------------------------------

#[tokio::test]
async fn global_shadow_forwards_and_counts_would_be_refusals() {
    let kc = Kc::start().await;
    let mut s = settings(&kc.url(), Some(&demo_policy()));
    s.mode = Mode::Shadow;
    let gw = gateway(s).await;
    let token = kc.bearer("demo", "app-a", &["view-clients"]);
    let body = json!({"redirect_uris": ["https://app.example.com/cb"]});
    let a = send(req("POST", gw.addr, OIDC, Some(&token), Some(&body))).await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(kc.reg_hits(), 1, "the shadowed request was not forwarded");
    let m = metrics_text(&gw).await;
    let shadowed = metric(
        &m,
        "dcr_gateway_decisions_total",
        &[
            ("decision", "shadow_deny"),
            ("realm", "demo"),
            ("operation", "create"),
            ("reason", "missing_role"),
        ],
    );
    assert_eq!(shadowed, Some(1.0), "{m}");
    assert_eq!(metric(&m, "dcr_gateway_decisions_total", &[("decision", "deny")]), None);
    gw.shutdown().await;
}

#[tokio::test]
async fn per_rule_shadow_forwards_while_enforced_rules_refuse() {
    let kc = Kc::start().await;
    let policy = r#"
version = 1
[realms.demo]
providers = ["openid-connect", "default"]
[realms.demo.create]
mode = "shadow"
roles_any = ["$management/create-client"]
[realms.demo.metadata.redirect_uris]
schemes = ["https"]
hosts = ["*.example.com"]
"#;
    let (_dir, gw) = with_policy(&kc, policy, Mode::Enforce).await;
    let weak = kc.bearer("demo", "app-a", &["view-clients"]);
    let good = json!({"redirect_uris": ["https://app.example.com/cb"]});
    let a = send(req("POST", gw.addr, OIDC, Some(&weak), Some(&good))).await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(kc.reg_hits(), 1);
    // The enforced metadata rule still refuses, even after the shadowed role rule failed.
    let evil = json!({"redirect_uris": ["https://evil.com/cb"]});
    let a = send(req("POST", gw.addr, OIDC, Some(&weak), Some(&evil))).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["reason"], "redirect_uri_not_allowed");
    assert_eq!(kc.reg_hits(), 1, "the enforced refusal reached Keycloak");
    let m = metrics_text(&gw).await;
    assert_eq!(
        metric(
            &m,
            "dcr_gateway_decisions_total",
            &[("decision", "shadow_deny"), ("reason", "missing_role")]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "dcr_gateway_decisions_total",
            &[("decision", "deny"), ("reason", "redirect_uri_not_allowed")]
        ),
        Some(1.0),
        "{m}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn token_failures_are_never_shadowed() {
    let kc = Kc::start().await;
    let mut s = settings(&kc.url(), Some(&demo_policy()));
    s.mode = Mode::Shadow;
    let gw = gateway(s).await;
    // Same kid as the published key, signed by another key.
    let forger = TestKey::rsa("k1", "RS256").unwrap();
    let forged = forger.token(&crate::support::testkit::service_account_claims(
        &kc.issuer("demo"),
        "app-a",
        CREATE,
        300,
    ));
    let body = json!({"redirect_uris": ["https://app.example.com/cb"]});
    let a = send(req("POST", gw.addr, OIDC, Some(&forged), Some(&body))).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.json()["reason"], "signature_invalid");
    assert_eq!(kc.reg_hits(), 0, "a forged token reached Keycloak in shadow mode");
    gw.shutdown().await;
}

// --- 10. dcr-gateway check ---------------------------------------------------------------------

fn check(path: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_dcr-gateway"))
        .args(["check", "--policies"])
        .arg(path)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("DCR_GATEWAY_POLICIES")
        .output()
        .expect("run dcr-gateway check")
}

#[test]
fn check_accepts_the_demo_policy_and_describes_each_realm() {
    let out = check(Path::new("policies/"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.starts_with("policy OK: "), "{stdout}");
    assert!(stdout.contains("policies/demo.toml"), "{stdout}");
    assert!(
        stdout.contains("realm demo:\n  providers: default, openid-connect\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("realms not named (default):\n  providers: openid-connect\n"),
        "{stdout}"
    );
    assert!(stdout.contains("forbidden_fields: protocol_mappers"), "{stdout}");
}

#[test]
fn check_reports_every_error_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.toml");
    std::fs::write(
        &a,
        "version = 1\n[realms.demo]\nproviders = [\"openid-connect\", \"bad provider!\"]\n[realms.demo.read]\ntoken_kinds = [\"initial_access\"]\n",
    )
    .unwrap();
    let b = dir.path().join("b.toml");
    std::fs::write(&b, "[realms.other.create]\ntoken_kindz = [\"bearer\"]\n").unwrap();
    let out = check(dir.path());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let a = a.display();
    let b = b.display();
    let lines: Vec<&str> = stderr.lines().collect();
    let has = |prefix: &str| lines.iter().any(|l| l.starts_with(prefix));
    assert!(has(&format!("{a}:3:13: providers: `bad provider!`")), "{stderr}");
    assert!(has(&format!("{a}:5:15: read.token_kinds: ")), "{stderr}");
    assert!(has(&format!("{b}:2:1: ")) && stderr.contains("token_kindz"), "{stderr}");
    assert!(stderr.contains("3 error(s)"), "{stderr}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

/// A create that Keycloak refuses does not use up the caller's quota.
#[tokio::test]
async fn quota_counts_only_creates_keycloak_accepts() {
    let answers = Arc::new(Mutex::new(vec![400u16, 201, 201]));
    let queue = answers.clone();
    let up = upstream(move |_| {
        let status = queue.lock().remove(0);
        async move {
            json_response(
                status,
                &json!({"error": "invalid_client_metadata", "error_description": "Client metadata invalid"}),
            )
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let policy = "version = 1\n[default.create]\ntoken_kinds = [\"initial_access\"]\n[default.quota]\ncreates = 1\nwindow = \"1h\"\n";
    std::fs::write(dir.path().join("p.toml"), policy).unwrap();
    let gw = gateway(settings(&up.url(), Some(dir.path()))).await;
    let iss = format!("{}/realms/demo", up.url());
    let claims = crate::support::testkit::internal_claims(&iss, "InitialAccessToken", 0);
    let iat = crate::support::testkit::hmac_token(b"s", &json!({"alg": "HS512", "typ": "JWT"}), &claims);
    let body = json!({"redirect_uris": ["https://app.example.com/cb"]});
    let first = send(req("POST", gw.addr, OIDC, Some(&iat), Some(&body))).await;
    assert_eq!(first.status, 400, "Keycloak refused the first create");
    let second = send(req("POST", gw.addr, OIDC, Some(&iat), Some(&body))).await;
    assert_eq!(second.status, 201, "the refused create was refunded");
    let third = send(req("POST", gw.addr, OIDC, Some(&iat), Some(&body))).await;
    assert_eq!(third.status, 429);
    assert_eq!(third.json()["reason"], "quota_exceeded");
    assert_eq!(answers.lock().len(), 1, "the third create never reached Keycloak");
    gw.shutdown().await;
}
