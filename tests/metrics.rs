//! `/metrics` of a running gateway: build info, process series, the last-reload gauge, requests
//! by method and code, Keycloak and JWKS latency histograms, and decisions apart from outcomes
//! (an allowed create that Keycloak refuses is `decision="allow"`, `outcome="refused_by_keycloak"`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::time::Duration;

use crate::support::testkit::{self, TestKey};
use serde_json::json;
use support::policy_kit::{metric, metrics_text, write_policy};
use support::*;

const OIDC: &str = "/realms/demo/clients-registrations/openid-connect";

/// A stand-in Keycloak: the JWKS, 400 "Client Identifier in use" for `client_name` "taken",
/// no answer at all for "drop", else 201.
async fn keycloak(key: &TestKey) -> Upstream {
    let jwks = testkit::jwks(&[key]);
    upstream(move |s: Seen| {
        let jwks = jwks.clone();
        async move {
            if s.uri.ends_with("/protocol/openid-connect/certs") {
                return json_response(200, &jwks);
            }
            let body: serde_json::Value = serde_json::from_slice(&s.body).unwrap_or_default();
            match body["client_name"].as_str() {
                Some("taken") => json_response(
                    400,
                    &json!({"error": "invalid_client_metadata", "error_description": "Client Identifier in use"}),
                ),
                Some("slow") => {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    json_response(201, &json!({"client_id": "late"}))
                }
                _ => json_response(201, &json!({"client_id": "new"})),
            }
        }
    })
    .await
}

fn policy_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/demo.toml");
    std::fs::copy(demo, dir.path().join("demo.toml")).unwrap();
    dir
}

#[tokio::test]
async fn every_new_series_is_scraped_and_outcomes_are_apart_from_decisions() {
    let key = TestKey::rsa("k1", "RS256").unwrap();
    let kc = keycloak(&key).await;
    let dir = policy_dir();
    let mut s = settings(&kc.url(), Some(dir.path()));
    s.jwks.prefetch = vec!["demo".into()];
    s.timeouts.response = Duration::from_secs(1);
    let gw = gateway(s).await;
    let issuer = format!("{}/realms/demo", kc.url());
    let token = key.token(&testkit::service_account_claims(
        &issuer,
        "registrar",
        &["create-client"],
        300,
    ));
    let weak = key.token(&testkit::service_account_claims(
        &issuer,
        "weak",
        &["view-clients"],
        300,
    ));
    let body = |name: &str| json!({"client_name": name, "redirect_uris": ["https://app.example.com/cb"]});

    let created = send(req("POST", gw.addr, OIDC, Some(&token), Some(&body("app")))).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let taken = send(req("POST", gw.addr, OIDC, Some(&token), Some(&body("taken")))).await;
    assert_eq!(taken.status, 400);
    assert_eq!(taken.json()["reason"], "client_id_in_use");
    let denied = send(req("POST", gw.addr, OIDC, Some(&weak), Some(&body("app")))).await;
    assert_eq!(denied.status, 403);
    let late = send(req("POST", gw.addr, OIDC, Some(&token), Some(&body("slow")))).await;
    assert_eq!(late.status, 504);
    let odd = http::Request::builder()
        .method(http::Method::from_bytes(b"PROPFIND").unwrap())
        .uri(format!("http://{}/realms/demo/account", gw.addr))
        .body(dcr_gateway::net::empty())
        .unwrap();
    send(odd).await;

    let m = metrics_text(&gw).await;
    let one = |name: &str, labels: &[(&str, &str)]| metric(&m, name, labels);
    let d = "dcr_gateway_decisions_total";
    let create = ("operation", "create");
    assert_eq!(
        one(d, &[create, ("decision", "allow"), ("outcome", "succeeded")]),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        one(
            d,
            &[
                create,
                ("decision", "allow"),
                ("outcome", "refused_by_keycloak"),
                ("reason", "client_id_in_use")
            ]
        ),
        Some(1.0),
        "an allowed create Keycloak refused: {m}"
    );
    assert_eq!(
        one(
            d,
            &[
                ("decision", "deny"),
                ("outcome", "refused_by_gateway"),
                ("reason", "missing_role")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        one(d, &[("decision", "allow"), ("outcome", "upstream_error")]),
        Some(1.0),
        "{m}"
    );
    assert_eq!(one(d, &[("decision", "allow")]), Some(3.0));

    let h = "dcr_gateway_http_requests_total";
    assert_eq!(one(h, &[("method", "POST"), ("code", "201")]), Some(1.0), "{m}");
    assert_eq!(one(h, &[("method", "POST"), ("code", "400")]), Some(1.0));
    assert_eq!(one(h, &[("method", "POST"), ("code", "504")]), Some(1.0));
    assert_eq!(
        one(h, &[("method", "OTHER")]),
        Some(1.0),
        "PROPFIND is counted as OTHER: {m}"
    );
    assert!(!m.contains("method=\"PROPFIND\""));

    // Keycloak answered three registrations (201, 400; the slow one timed out) plus PROPFIND.
    let up = "dcr_gateway_upstream_duration_seconds_count";
    assert_eq!(
        one(up, &[("route", "registration"), ("operation", "create")]),
        Some(2.0),
        "{m}"
    );
    assert_eq!(one(up, &[("route", "other")]), Some(1.0), "{m}");
    let jwks = one(
        "dcr_gateway_jwks_fetch_duration_seconds_count",
        &[("realm", "demo"), ("result", "success")],
    );
    assert!(jwks.is_some_and(|n| n >= 1.0), "{m}");

    let build = format!(
        "dcr_gateway_build_info{{commit=\"{}\",version=\"{}\"}} 1",
        dcr_gateway::COMMIT,
        env!("CARGO_PKG_VERSION")
    );
    assert!(m.lines().any(|l| l == build), "{build} in {m}");
    assert_ne!(dcr_gateway::COMMIT, "", "the build script sets a commit");
    for name in [
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_threads",
        "process_start_time_seconds",
    ] {
        let v = one(name, &[]).unwrap_or_else(|| panic!("no {name}: {m}"));
        assert!(v > 0.0, "{name} = {v}");
    }
    assert_eq!(one("dcr_gateway_policy_last_reload_success", &[]), Some(1.0));

    // A broken policy turns the gauge to 0; a good one back to 1.
    let file = dir.path().join("demo.toml");
    let good = std::fs::read_to_string(&file).unwrap();
    write_policy(&file, "version = 1\n[realms.demo.create]\nroles_anyy = []\n");
    let gauge = |want: f64| {
        let gw = &gw;
        async move {
            for _ in 0..100 {
                let m = metrics_text(gw).await;
                if metric(&m, "dcr_gateway_policy_last_reload_success", &[]) == Some(want) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        }
    };
    assert!(gauge(0.0).await, "the gauge did not turn 0 after a failed reload");
    write_policy(&file, &good);
    assert!(gauge(1.0).await, "the gauge did not turn 1 after a good reload");
    gw.shutdown().await;
}
