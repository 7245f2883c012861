//! The JWKS cache end to end: key rotation, unknown-kid floods, a key set that is down at start
//! or goes down later, and the metrics that show it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::testkit::{self, TestKey};
use serde_json::json;
use support::token_kit::*;
use support::*;
use tokio::time::{Instant, sleep};

/// A little more than `min_refetch_interval` in `support::settings` (500 ms).
const PAST_INTERVAL: Duration = Duration::from_millis(600);

fn rsa(kid: &str) -> TestKey {
    TestKey::rsa(kid, "RS256").unwrap()
}

#[tokio::test]
async fn rotation_picks_up_a_new_key_and_drops_a_removed_one() {
    let a_key = rsa("key-a");
    let b_key = rsa("key-b");
    let kc = jwks_server(testkit::jwks(&[&a_key])).await;
    let iss = issuer(&kc);
    let gw = ready_gateway(&kc, |_| {}).await;
    let by_a = sa_token(&a_key, &iss);
    assert_eq!(create(&gw, &by_a).await.status, 201);
    assert_eq!(create(&gw, &by_a).await.status, 201, "now cached");

    // B signs before it is published: refused after one refetch that does not find it.
    sleep(PAST_INTERVAL).await;
    let f0 = fetches(&kc);
    let by_b = sa_token(&b_key, &iss);
    let v = assert_refused(&create(&gw, &by_b).await, 401, "kid_unknown");
    assert_eq!(v["details"]["kid"], "key-b", "{v}");
    assert_eq!(v["details"]["known_kids"], json!(["key-a"]), "{v}");
    assert_eq!(fetches(&kc), f0 + 1, "one refetch for the unknown kid");

    // B is published; once the refetch interval has passed, B is accepted after one refetch.
    *kc.doc.lock() = testkit::jwks(&[&a_key, &b_key]);
    sleep(PAST_INTERVAL).await;
    let a = create(&gw, &by_b).await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(fetches(&kc), f0 + 2, "exactly one more refetch");
    assert_eq!(create(&gw, &by_b).await.status, 201);
    assert_eq!(fetches(&kc), f0 + 2);

    // A is retired. A new unknown kid after the interval forces the refresh.
    *kc.doc.lock() = testkit::jwks(&[&b_key]);
    sleep(PAST_INTERVAL).await;
    let junk = rsa("key-c");
    assert_refused(&create(&gw, &sa_token(&junk, &iss)).await, 401, "kid_unknown");
    assert_eq!(fetches(&kc), f0 + 3);

    // The token by A that was cached is refused now: the cache does not outlive its key.
    let v = assert_refused(&create(&gw, &by_a).await, 401, "kid_unknown");
    assert_eq!(v["details"]["known_kids"], json!(["key-b"]), "{v}");
    assert_refused(&create(&gw, &sa_token(&a_key, &iss)).await, 401, "kid_unknown");
    // B is unaffected, and served from the cache.
    assert_eq!(create(&gw, &by_b).await.status, 201);
    assert_eq!(metric(&gw, r#"dcr_gateway_jwks_keys{realm="demo"}"#).await, Some(1.0));
    assert_eq!(
        upstream_calls(&kc).len(),
        5,
        "A twice, B twice, B once more: {:?}",
        upstream_calls(&kc)
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_background_refresh_purges_tokens_of_a_removed_key() {
    let a_key = rsa("key-a");
    let b_key = rsa("key-b");
    let kc = jwks_server(testkit::jwks(&[&a_key, &b_key])).await;
    let iss = issuer(&kc);
    let gw = ready_gateway(&kc, |s| s.jwks.refresh_interval = Duration::from_millis(300)).await;
    let by_a = sa_token(&a_key, &iss);
    assert_eq!(create(&gw, &by_a).await.status, 201);
    // A is removed; no request forces anything, the refresher notices on its own.
    let f0 = fetches(&kc);
    *kc.doc.lock() = testkit::jwks(&[&b_key]);
    assert!(until(Duration::from_secs(2), || fetches(&kc) >= f0 + 2).await);
    assert_refused(&create(&gw, &by_a).await, 401, "kid_unknown");
    assert_eq!(upstream_calls(&kc).len(), 1);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_flood_costs_at_most_two_fetches() {
    let key = rsa("realm-key");
    let kc = jwks_server(testkit::jwks(&[&key])).await;
    let iss = issuer(&kc);
    // An interval longer than the flood takes on a loaded machine; the on-demand budget is
    // unused after start (the start-up fetch does not count), so the first unknown kid fetches.
    let gw = ready_gateway(&kc, |s| s.jwks.min_refetch_interval = Duration::from_secs(20)).await;
    let f0 = fetches(&kc);
    let attacker = TestKey::ec("unpublished").unwrap();
    let tokens: Vec<String> = (0..200)
        .map(|i| {
            attacker.sign(
                &json!({"alg": "ES256", "typ": "JWT", "kid": format!("junk-{i}-{}", nonce())}),
                &sa_claims(&iss),
            )
        })
        .collect();
    let flood = |tokens: Vec<String>| {
        let addr = gw.addr;
        async move {
            let tasks: Vec<_> = tokens
                .into_iter()
                .map(|t| tokio::spawn(async move { send(req("POST", addr, CREATE, Some(&t), Some(&body()))).await }))
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        }
    };
    let started = Instant::now();
    for a in flood(tokens.clone()).await {
        assert_refused(&a, 401, "kid_unknown");
    }
    let n = fetches(&kc) - f0;
    assert!(
        (1..=2).contains(&n),
        "{n} fetches for 200 junk kids in {:?}",
        started.elapsed()
    );
    // The same junk again: remembered or rate limited; at most the one fetch per interval.
    let f1 = fetches(&kc);
    for a in flood(tokens[..50].to_vec()).await {
        assert_refused(&a, 401, "kid_unknown");
    }
    assert!(fetches(&kc) - f1 <= 1, "{} fetches for a replay", fetches(&kc) - f1);
    assert!(upstream_calls(&kc).is_empty(), "{:?}", upstream_calls(&kc));
    assert_eq!(
        metric(
            &gw,
            r#"dcr_gateway_token_verifications_total{reason="kid_unknown",result="invalid"}"#
        )
        .await,
        Some(250.0)
    );
    // The realm key still works.
    assert_eq!(create(&gw, &sa_token(&key, &iss)).await.status, 201);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_down_at_start_is_not_ready_then_recovers_without_restart() {
    let key = rsa("k1");
    let kc = jwks_server(testkit::jwks(&[&key])).await;
    kc.failing.store(true, Ordering::SeqCst);
    let iss = issuer(&kc);
    let started = Instant::now();
    let gw = gateway(demo_settings(&kc, |_| {})).await;

    assert!(until(Duration::from_secs(1), || fetches(&kc) >= 1).await);
    let (status, text) = admin(&gw, "/readyz").await;
    assert_eq!(status, 503, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["ready"], false, "{v}");
    assert!(
        v["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().contains("demo")),
        "{v}"
    );

    let token = sa_token(&key, &iss);
    let v = assert_refused(&create(&gw, &token).await, 503, "jwks_unavailable");
    assert!(
        v["details"]["jwks_uri"]
            .as_str()
            .unwrap()
            .ends_with("/realms/demo/protocol/openid-connect/certs"),
        "{v}"
    );
    assert!(v["details"]["last_error"].as_str().unwrap().contains("503"), "{v}");

    // Retried in the background with backoff: more than once in ~2 s, but not in a tight loop.
    sleep(Duration::from_millis(2200).saturating_sub(started.elapsed())).await;
    let n = fetches(&kc);
    assert!((2..=5).contains(&n), "{n} fetches in {:?}", started.elapsed());
    assert!(
        metric(&gw, r#"dcr_gateway_jwks_fetches_total{realm="demo",result="error"}"#)
            .await
            .unwrap()
            >= 2.0
    );
    assert_eq!(admin(&gw, "/readyz").await.0, 503);

    // Keycloak comes back: the gateway gets ready on its own, no request needed.
    kc.failing.store(false, Ordering::SeqCst);
    wait_ready(&gw, Duration::from_secs(3)).await;
    assert!(started.elapsed() < Duration::from_secs(6));
    let a = create(&gw, &token).await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(upstream_calls(&kc).len(), 1);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_down_later_serves_stale_keys_until_max_staleness() {
    let key = rsa("k1");
    let kc = jwks_server(testkit::jwks(&[&key])).await;
    let iss = issuer(&kc);
    let gw = ready_gateway(&kc, |s| {
        s.jwks.max_staleness = Duration::from_secs(2);
        s.jwks.refresh_interval = Duration::from_millis(300);
    })
    .await;
    let early = sa_token(&key, &iss);
    assert_eq!(create(&gw, &early).await.status, 201);

    kc.failing.store(true, Ordering::SeqCst);
    let down = Instant::now();
    let f0 = fetches(&kc);

    // Stale keys are served: a new token and the cached one are both accepted.
    sleep(Duration::from_millis(1000)).await;
    let a = create(&gw, &sa_token(&key, &iss)).await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(create(&gw, &early).await.status, 201);
    assert_eq!(admin(&gw, "/readyz").await.0, 200);
    assert!(fetches(&kc) > f0, "the refresher keeps trying");

    // Past max_staleness (2 s after the last good fetch, at most 300 ms before `down`).
    sleep(Duration::from_millis(2300).saturating_sub(down.elapsed())).await;
    let v = assert_refused(&create(&gw, &sa_token(&key, &iss)).await, 503, "jwks_unavailable");
    assert!(
        v["error_description"].as_str().unwrap().contains("max_staleness"),
        "{v}"
    );
    assert_refused(&create(&gw, &early).await, 503, "jwks_unavailable");
    let (status, text) = admin(&gw, "/readyz").await;
    assert_eq!(status, 503, "{text}");
    let n = fetches(&kc) - f0;
    assert!((3..=12).contains(&n), "{n} fetches while down for {:?}", down.elapsed());
    assert_eq!(upstream_calls(&kc).len(), 3);

    // And back.
    kc.failing.store(false, Ordering::SeqCst);
    wait_ready(&gw, Duration::from_secs(2)).await;
    assert_eq!(create(&gw, &early).await.status, 201);
    gw.shutdown().await;
}

#[tokio::test]
async fn jwks_and_verification_metrics_are_exported() {
    let a_key = rsa("key-a");
    let b_key = TestKey::ec("key-b").unwrap();
    let kc = jwks_server(testkit::jwks(&[&a_key, &b_key])).await;
    let iss = issuer(&kc);
    let gw = ready_gateway(&kc, |_| {}).await;
    assert_eq!(create(&gw, &sa_token(&a_key, &iss)).await.status, 201);
    let mut c = sa_claims(&iss);
    c["exp"] = json!(testkit::now() - 3600);
    assert_refused(&create(&gw, &b_key.token(&c)).await, 401, "token_expired");

    let (status, text) = admin(&gw, "/metrics").await;
    assert_eq!(status, 200);
    let get = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    assert!(get(r#"dcr_gateway_jwks_fetches_total{realm="demo",result="success"}"#) >= 1.0);
    assert_eq!(get(r#"dcr_gateway_jwks_keys{realm="demo"}"#), 2.0);
    let age = get(r#"dcr_gateway_jwks_age_seconds{realm="demo"}"#);
    assert!((0.0..5.0).contains(&age), "{age}");
    assert_eq!(
        get(r#"dcr_gateway_token_verifications_total{reason="ok",result="valid"}"#),
        1.0
    );
    assert_eq!(
        get(r#"dcr_gateway_token_verifications_total{reason="token_expired",result="invalid"}"#),
        1.0
    );
    assert_eq!(get("dcr_gateway_ready"), 1.0);
    assert!(
        !text.contains(r#"realm="other""#),
        "demo is named, never `other`:\n{text}"
    );

    // The age grows between fetches.
    sleep(Duration::from_millis(300)).await;
    let later = metric(&gw, r#"dcr_gateway_jwks_age_seconds{realm="demo"}"#)
        .await
        .unwrap();
    assert!(later > age, "{later} <= {age}");
    gw.shutdown().await;
}

/// Realms nobody named share 32 key-set slots. Junk realms (whose keys cannot be fetched) must
/// not lock a real realm out: slots that never loaded are reclaimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_realms_cannot_exhaust_the_unnamed_slots() {
    let key = rsa("real");
    let doc = testkit::jwks(&[&key]);
    let up = upstream(move |s: Seen| {
        let doc = doc.clone();
        async move {
            match s.uri.as_str() {
                "/realms/legit/protocol/openid-connect/certs" => json_response(200, &doc),
                u if u.ends_with("/certs") => json_response(404, &json!({"error": "Realm does not exist"})),
                _ => json_response(201, &json!({"created": true})),
            }
        }
    })
    .await;
    let gw = gateway(settings(&up.url(), None)).await;
    let junk = rsa("junk");
    for i in 0..40 {
        let iss = format!("{}/realms/junk{i}", up.url());
        let path = format!("/realms/junk{i}/clients-registrations/openid-connect");
        let a = send(req(
            "POST",
            gw.addr,
            &path,
            Some(&junk.token(&sa_claims(&iss))),
            Some(&body()),
        ))
        .await;
        assert!(a.status == 503 || a.status == 401, "junk{i}: {}", a.status);
    }
    let iss = format!("{}/realms/legit", up.url());
    let path = "/realms/legit/clients-registrations/openid-connect";
    let a = send(req(
        "POST",
        gw.addr,
        path,
        Some(&key.token(&sa_claims(&iss))),
        Some(&body()),
    ))
    .await;
    assert_eq!(
        a.status,
        201,
        "a real realm still gets a key set: {}",
        String::from_utf8_lossy(&a.body)
    );
    gw.shutdown().await;
}
