//! Quotas shared by gateway replicas on a real redis-server: exact counts across replicas
//! (per caller, per address and realm-wide), shared refunds, both failure modes with recovery,
//! and keys that expire with the window.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use dcr_gateway::Gateway;
use parking_lot::Mutex;
use serde_json::json;
use support::policy_kit::{Kc, metric, metrics_text, readyz, until};
use support::redis_kit::RedisServer;
use support::{gateway, json_response, req, send, settings, upstream};

const OIDC: &str = "/realms/demo/clients-registrations/openid-connect";
const CREATE: &[&str] = &["create-client"];

fn body() -> serde_json::Value {
    json!({"redirect_uris": ["https://app.example.com/cb"]})
}

/// Two gateways in front of `upstream`, counting quotas in `redis` with `policy`.
async fn replicas(
    upstream: &str,
    redis: &RedisServer,
    policy: &str,
    extra: &str,
) -> (tempfile::TempDir, Gateway, Gateway) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, policy).unwrap();
    let mut gws = Vec::new();
    for _ in 0..2 {
        let mut s = settings(upstream, Some(&file));
        s.quota_store = redis.store(extra);
        let gw = gateway(s).await;
        assert!(
            until(Duration::from_secs(5), || async { readyz(&gw).await["ready"] == true }).await,
            "replica ready: {}",
            readyz(&gw).await
        );
        gws.push(gw);
    }
    let b = gws.pop().unwrap();
    let a = gws.pop().unwrap();
    (dir, a, b)
}

const PER_CALLER: &str = "version = 1\n[realms.demo.quota]\ncreates = 3\nwindow = \"1h\"\n";

#[tokio::test]
async fn two_replicas_share_a_caller_quota_exactly() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let kc = Kc::start().await;
    let (_dir, a, b) = replicas(&kc.url(), &redis, PER_CALLER, "").await;
    let token = kc.bearer("demo", "app-a", CREATE);
    for (i, gw) in [&a, &b, &a].into_iter().enumerate() {
        let r = send(req("POST", gw.addr, OIDC, Some(&token), Some(&body()))).await;
        assert_eq!(r.status, 201, "create {i}: {}", String::from_utf8_lossy(&r.body));
    }
    for gw in [&b, &a] {
        let r = send(req("POST", gw.addr, OIDC, Some(&token), Some(&body()))).await;
        assert_eq!(r.status, 429);
        let v = r.json();
        assert_eq!(v["reason"], "quota_exceeded", "{v}");
        assert_eq!(v["details"]["caller"], "azp:app-a", "{v}");
    }
    assert_eq!(kc.reg_hits(), 3, "the upstream saw exactly the quota");
    // Another caller has its own budget, on either replica.
    let other = kc.bearer("demo", "app-b", CREATE);
    assert_eq!(
        send(req("POST", b.addr, OIDC, Some(&other), Some(&body())))
            .await
            .status,
        201
    );
    let m = metrics_text(&a).await;
    assert!(
        metric(&m, "dcr_gateway_quota_store_duration_seconds_count", &[("op", "take")]).unwrap() >= 2.0,
        "{m}"
    );
    assert_eq!(metric(&m, "dcr_gateway_quota_store_up", &[]), Some(1.0));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn concurrent_creates_across_replicas_never_exceed_the_quota() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let kc = Kc::start().await;
    let policy = "version = 1\n[realms.demo.quota]\ncreates = 5\nwindow = \"1h\"\n";
    let (_dir, a, b) = replicas(&kc.url(), &redis, policy, "").await;
    let token = kc.bearer("demo", "app-a", CREATE);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let addr = if i % 2 == 0 { a.addr } else { b.addr };
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            send(req("POST", addr, OIDC, Some(&token), Some(&body())))
                .await
                .status
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 11, "{statuses:?}");
    assert_eq!(kc.reg_hits(), 5);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn realm_wide_quota_holds_across_callers_and_replicas() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let kc = Kc::start().await;
    let policy = "version = 1\n[realms.demo.quota]\nrealm_creates = 4\nwindow = \"1h\"\n";
    let (_dir, a, b) = replicas(&kc.url(), &redis, policy, "").await;
    // Each initial access token is a new caller: only the realm-wide cap holds them.
    for i in 0..4 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let iat = kc.initial_access("demo", &format!("iat-{i}"));
        let r = send(req("POST", gw.addr, OIDC, Some(&iat), Some(&body()))).await;
        assert_eq!(r.status, 201, "create {i}: {}", String::from_utf8_lossy(&r.body));
    }
    let iat = kc.initial_access("demo", "iat-new");
    let r = send(req("POST", b.addr, OIDC, Some(&iat), Some(&body()))).await;
    assert_eq!(r.status, 429);
    let v = r.json();
    assert_eq!(v["reason"], "realm_quota_exceeded", "{v}");
    assert_eq!(v["details"]["realm_creates"], 4, "{v}");
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(kc.reg_hits(), 4);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn per_address_quota_is_shared() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let kc = Kc::start().await;
    let policy = "version = 1\n[realms.demo.create]\ntoken_kinds = [\"anonymous\"]\n[realms.demo.quota]\ncreates = 2\nwindow = \"1h\"\n";
    let (_dir, a, b) = replicas(&kc.url(), &redis, policy, "").await;
    for gw in [&a, &b] {
        assert_eq!(send(req("POST", gw.addr, OIDC, None, Some(&body()))).await.status, 201);
    }
    let r = send(req("POST", a.addr, OIDC, None, Some(&body()))).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["details"]["caller"], "ip:127.0.0.1");
    assert_eq!(kc.reg_hits(), 2);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn refunds_are_shared() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
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
    let policy = "version = 1\n[default.create]\ntoken_kinds = [\"initial_access\"]\n[default.quota]\ncreates = 1\nwindow = \"1h\"\n";
    let (_dir, a, b) = replicas(&up.url(), &redis, policy, "").await;
    let iss = format!("{}/realms/demo", up.url());
    let claims = crate::support::testkit::internal_claims(&iss, "InitialAccessToken", 0);
    let iat = crate::support::testkit::hmac_token(b"s", &json!({"alg": "HS512", "typ": "JWT"}), &claims);
    let first = send(req("POST", a.addr, OIDC, Some(&iat), Some(&body()))).await;
    assert_eq!(first.status, 400, "Keycloak refused the first create");
    let second = send(req("POST", b.addr, OIDC, Some(&iat), Some(&body()))).await;
    assert_eq!(
        second.status, 201,
        "the create refunded by replica A is free on replica B"
    );
    let third = send(req("POST", a.addr, OIDC, Some(&iat), Some(&body()))).await;
    assert_eq!(third.status, 429);
    assert_eq!(answers.lock().len(), 1, "the third create never reached Keycloak");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn redis_down_fails_closed_and_recovers() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let kc = Kc::start().await;
    let (_dir, a, b) = replicas(
        &kc.url(),
        &redis,
        PER_CALLER,
        "on_error = \"closed\"\ntimeout = \"200ms\"",
    )
    .await;
    let token = kc.bearer("demo", "app-a", CREATE);
    assert_eq!(
        send(req("POST", a.addr, OIDC, Some(&token), Some(&body())))
            .await
            .status,
        201
    );
    redis.stop();
    let r = send(req("POST", b.addr, OIDC, Some(&token), Some(&body()))).await;
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["reason"], "quota_store_unavailable", "{v}");
    assert_eq!(v["details"]["rule"], "realms.demo.quota", "{v}");
    assert!(v["hint"].as_str().unwrap().contains("Redis"), "{v}");
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(
        kc.reg_hits(),
        1,
        "a create the store could not count never reached Keycloak"
    );
    // Reads are not counted and still pass.
    assert!(
        until(Duration::from_secs(5), || async { readyz(&a).await["ready"] == false }).await,
        "readiness reflects the unreachable store"
    );
    let problems = readyz(&a).await["problems"].to_string();
    assert!(problems.contains("quota store"), "{problems}");
    let m = metrics_text(&b).await;
    assert!(
        metric(&m, "dcr_gateway_quota_store_errors_total", &[("op", "take")]).unwrap() >= 1.0,
        "{m}"
    );
    assert_eq!(metric(&m, "dcr_gateway_quota_store_up", &[]), Some(0.0));
    redis.restart().await;
    for gw in [&a, &b] {
        assert!(
            until(Duration::from_secs(10), || async { readyz(gw).await["ready"] == true }).await,
            "ready again once Redis is back"
        );
    }
    let r = send(req("POST", b.addr, OIDC, Some(&token), Some(&body()))).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(kc.reg_hits(), 2);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn redis_down_fails_open_to_local_counting_and_recovers() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let kc = Kc::start().await;
    let policy = "version = 1\n[realms.demo.quota]\ncreates = 2\nwindow = \"1h\"\n";
    let (_dir, a, b) = replicas(&kc.url(), &redis, policy, "on_error = \"open\"\ntimeout = \"200ms\"").await;
    let token = kc.bearer("demo", "app-a", CREATE);
    redis.stop();
    // Each replica now counts for itself: two creates each, then its own refusal.
    for gw in [&a, &a, &b] {
        let r = send(req("POST", gw.addr, OIDC, Some(&token), Some(&body()))).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
    let r = send(req("POST", a.addr, OIDC, Some(&token), Some(&body()))).await;
    assert_eq!(r.status, 429, "counted locally while Redis is down");
    assert_eq!(r.json()["reason"], "quota_exceeded");
    assert_eq!(kc.reg_hits(), 3);
    let m = metrics_text(&a).await;
    assert_eq!(
        metric(&m, "dcr_gateway_quota_store_fallbacks_total", &[]),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        readyz(&a).await["ready"],
        true,
        "a fail-open store does not fail readiness"
    );
    redis.restart().await;
    for gw in [&a, &b] {
        assert!(
            until(Duration::from_secs(10), || async {
                metric(&metrics_text(gw).await, "dcr_gateway_quota_store_up", &[]) == Some(1.0)
            })
            .await,
            "both replicas reach Redis again"
        );
    }
    // Back on Redis (empty after its restart): the shared count starts again.
    let other = kc.bearer("demo", "app-b", CREATE);
    for gw in [&a, &b] {
        assert_eq!(
            send(req("POST", gw.addr, OIDC, Some(&other), Some(&body())))
                .await
                .status,
            201
        );
    }
    assert_eq!(
        send(req("POST", a.addr, OIDC, Some(&other), Some(&body())))
            .await
            .status,
        429
    );
    let m = metrics_text(&a).await;
    assert_eq!(
        metric(&m, "dcr_gateway_quota_store_fallbacks_total", &[]),
        Some(3.0),
        "no more fallbacks"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn keys_are_digests_and_expire_with_the_window() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let kc = Kc::start().await;
    let policy =
        "version = 1\n[realms.demo.quota]\ncreates = 5\nwindow = \"1h\"\nrealm_creates = 50\nrealm_window = \"2s\"\n";
    let (_dir, a, b) = replicas(&kc.url(), &redis, policy, "key_prefix = \"gw-test:\"").await;
    let token = kc.bearer("demo", "evil}{*\r\nclient", CREATE);
    let r = send(req("POST", a.addr, OIDC, Some(&token), Some(&body()))).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let mut keys: Vec<String> = redis.query(redis::cmd("KEYS").arg("*"));
    keys.sort();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for k in &keys {
        assert!(k.starts_with("gw-test:q:{"), "{k}");
        assert!(
            k.chars().all(|c| c.is_ascii_hexdigit() || "gw-test:q{}".contains(c)),
            "only the prefix and digests: {k}"
        );
        assert!(!k.contains("evil") && !k.contains("demo"), "{k}");
    }
    let ttls: Vec<i64> = keys.iter().map(|k| redis.query(redis::cmd("PTTL").arg(k))).collect();
    let (hour, two_s) = (3_600_000, 2_000);
    assert!(
        ttls.iter().any(|t| (hour - 60_000..=hour).contains(t)),
        "caller key expires with its 1h window: {ttls:?}"
    );
    assert!(
        ttls.iter().any(|t| (1..=two_s).contains(t)),
        "realm key expires with its 2s window: {ttls:?}"
    );
    assert!(
        until(Duration::from_secs(10), || async {
            redis.query::<Vec<String>>(redis::cmd("KEYS").arg("*")).len() == 1
        })
        .await,
        "the realm key is gone once its window passed"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn tls_with_client_certificate_and_password() {
    let certs = support::tls::certs();
    let c = |f: &str| certs.join(f).display().to_string();
    let args = [
        "--tls-cert-file".into(),
        c("server.pem"),
        "--tls-key-file".into(),
        c("server.key"),
        "--tls-ca-cert-file".into(),
        c("ca.pem"),
        "--tls-auth-clients".into(),
        "yes".into(),
        "--requirepass".into(),
        "s3cret-pw".into(),
    ];
    let Some(redis) = RedisServer::start_with(true, &args).await else {
        return;
    };
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "s3cret-pw\n").unwrap();
    let kc = Kc::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, PER_CALLER).unwrap();
    let store = |with_client_cert: bool| {
        let mut text = format!(
            "backend = \"redis\"\nurl = \"rediss://127.0.0.1:{}\"\npassword_file = \"{}\"\n[tls]\nca = \"{}\"\n",
            redis.port,
            secret.path().display(),
            c("ca.pem")
        );
        if with_client_cert {
            text.push_str(&format!(
                "client_cert = \"{}\"\nclient_key = \"{}\"\n",
                c("client.pem"),
                c("client.key")
            ));
        }
        dcr_gateway::config::store::build(&toml::from_str(&text).unwrap()).unwrap()
    };
    let mut s = settings(&kc.url(), Some(&file));
    s.quota_store = store(true);
    let gw = gateway(s).await;
    assert!(until(Duration::from_secs(5), || async { readyz(&gw).await["ready"] == true }).await);
    let token = kc.bearer("demo", "app-a", CREATE);
    for _ in 0..3 {
        assert_eq!(
            send(req("POST", gw.addr, OIDC, Some(&token), Some(&body())))
                .await
                .status,
            201
        );
    }
    assert_eq!(
        send(req("POST", gw.addr, OIDC, Some(&token), Some(&body())))
            .await
            .status,
        429
    );
    // Without the client certificate Redis refuses the TLS handshake: fail closed.
    let mut s = settings(&kc.url(), Some(&file));
    s.quota_store = store(false);
    let no_cert = gateway(s).await;
    let r = send(req("POST", no_cert.addr, OIDC, Some(&token), Some(&body()))).await;
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(kc.reg_hits(), 3);
    gw.shutdown().await;
    no_cert.shutdown().await;
}

#[tokio::test]
async fn redis_cluster_shares_quotas_across_slots() {
    let Some(cluster) = support::redis_kit::RedisCluster::start().await else {
        return;
    };
    let kc = Kc::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, "version = 1\n[default.quota]\ncreates = 2\nwindow = \"1h\"\n").unwrap();
    let mut gws = Vec::new();
    for _ in 0..2 {
        let mut s = settings(&kc.url(), Some(&file));
        s.quota_store = cluster.store("");
        let gw = gateway(s).await;
        assert!(
            until(Duration::from_secs(10), || async { readyz(&gw).await["ready"] == true }).await,
            "{}",
            readyz(&gw).await
        );
        gws.push(gw);
    }
    // Realms hash to different slots (and nodes); each realm's quota holds across replicas.
    let realms = ["demo", "other", "third", "fourth"];
    for realm in realms {
        let token = kc.bearer(realm, "app-a", CREATE);
        let path = format!("/realms/{realm}/clients-registrations/openid-connect");
        for gw in [&gws[0], &gws[1]] {
            let r = send(req("POST", gw.addr, &path, Some(&token), Some(&body()))).await;
            assert_eq!(r.status, 201, "{realm}: {}", String::from_utf8_lossy(&r.body));
        }
        let r = send(req("POST", gws[0].addr, &path, Some(&token), Some(&body()))).await;
        assert_eq!(r.status, 429, "{realm}");
    }
    assert_eq!(kc.reg_hits(), 2 * realms.len());
    let per_node: Vec<usize> = cluster
        .nodes
        .iter()
        .map(|n| n.query::<Vec<String>>(redis::cmd("KEYS").arg("*")).len())
        .collect();
    assert_eq!(per_node.iter().sum::<usize>(), realms.len(), "{per_node:?}");
    assert!(
        per_node.iter().filter(|n| **n > 0).count() >= 2,
        "keys spread over nodes: {per_node:?}"
    );
    for gw in gws {
        gw.shutdown().await;
    }
}
