//! Token triage and bearer-token verification, end to end: a gateway in front of a stand-in
//! Keycloak that serves the realm JWKS. Valid tokens reach the upstream; every refusal is a 401
//! with a specific reason and an RFC 6750 challenge, and never reaches the upstream.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use crate::support::testkit::{self, TestKey, now};
use serde_json::json;
use support::token_kit::*;
use support::*;

fn rsa(kid: &str) -> TestKey {
    TestKey::rsa(kid, "RS256").unwrap()
}

#[tokio::test]
async fn rs256_ps256_and_es256_service_account_tokens_are_forwarded() {
    let rs = rsa("rs");
    let ps = TestKey::rsa("ps", "PS256").unwrap();
    let es = TestKey::ec("es").unwrap();
    let kc = jwks_server(testkit::jwks(&[&rs, &ps, &es])).await;
    let iss = issuer(&kc);
    let gw = ready_gateway(&kc, |_| {}).await;
    for key in [&rs, &ps, &es] {
        let token = sa_token(key, &iss);
        let a = create(&gw, &token).await;
        assert_eq!(a.status, 201, "{}: {}", key.alg, String::from_utf8_lossy(&a.body));
        assert_eq!(a.json()["upstream"], true, "{}", key.alg);
        let seen = kc.upstream.seen.lock().last().cloned().unwrap();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.uri, CREATE);
        assert_eq!(
            seen.headers["authorization"].to_str().unwrap(),
            format!("Bearer {token}"),
            "the bearer token is forwarded untouched"
        );
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&seen.body).unwrap(), body());
    }
    assert_eq!(upstream_calls(&kc).len(), 3);
    assert_eq!(
        metric(
            &gw,
            r#"dcr_gateway_token_verifications_total{reason="ok",result="valid"}"#
        )
        .await,
        Some(3.0)
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_repeated_token_is_served_from_the_verified_token_cache() {
    let key = rsa("k1");
    let kc = jwks_server(testkit::jwks(&[&key])).await;
    let gw = ready_gateway(&kc, |_| {}).await;
    let token = sa_token(&key, &issuer(&kc));
    const VALID: &str = r#"dcr_gateway_token_verifications_total{reason="ok",result="valid"}"#;
    const CACHED: &str = r#"dcr_gateway_token_verifications_total{reason="ok",result="cached"}"#;

    assert_eq!(create(&gw, &token).await.status, 201);
    assert_eq!(metric(&gw, VALID).await, Some(1.0));
    assert_eq!(metric(&gw, CACHED).await, None);

    assert_eq!(create(&gw, &token).await.status, 201);
    assert_eq!(metric(&gw, VALID).await, Some(1.0), "no second full verification");
    assert_eq!(metric(&gw, CACHED).await, Some(1.0));

    // A different token by the same key is verified in full.
    assert_eq!(create(&gw, &sa_token(&key, &issuer(&kc))).await.status, 201);
    assert_eq!(metric(&gw, VALID).await, Some(2.0));
    assert_eq!(metric(&gw, CACHED).await, Some(1.0));
    assert_eq!(upstream_calls(&kc).len(), 3);
    gw.shutdown().await;
}

#[tokio::test]
async fn algorithm_confusion_and_unsigned_tokens_are_refused() {
    let key = rsa("k1");
    let kc = jwks_server(testkit::jwks(&[&key])).await;
    let iss = issuer(&kc);
    let gw = ready_gateway(&kc, |_| {}).await;
    let before = fetches(&kc);

    // HS256 keyed with the realm RSA key's public DER: the classic forgery.
    let forged = testkit::hmac_token(
        &key.public_der(),
        &json!({"alg": "HS256", "typ": "JWT", "kid": key.kid}),
        &sa_claims(&iss),
    );
    let v = assert_refused(&create(&gw, &forged).await, 401, "algorithm_not_allowed");
    assert_eq!(v["details"]["alg"], "HS256", "{v}");

    // The same with HS512 and no kid.
    let forged512 = testkit::hmac_token(
        &key.public_der(),
        &json!({"alg": "HS512", "typ": "JWT"}),
        &sa_claims(&iss),
    );
    assert_refused(&create(&gw, &forged512).await, 401, "algorithm_not_allowed");

    // alg none, in any spelling.
    let unsigned = testkit::unsigned_token(&sa_claims(&iss));
    let v = assert_refused(&create(&gw, &unsigned).await, 401, "algorithm_not_allowed");
    assert!(v["error_description"].as_str().unwrap().contains("none"), "{v}");
    let none_upper = key.sign(&json!({"alg": "NONE", "typ": "JWT", "kid": key.kid}), &sa_claims(&iss));
    assert_refused(&create(&gw, &none_upper).await, 401, "algorithm_not_allowed");

    // RS512 is not configured (RS256, PS256, ES256 are), even with a real key and kid.
    let rs512 = key.sign(&json!({"alg": "RS512", "typ": "JWT", "kid": key.kid}), &sa_claims(&iss));
    let v = assert_refused(&create(&gw, &rs512).await, 401, "algorithm_not_allowed");
    assert_eq!(v["details"]["alg"], "RS512", "{v}");

    // The key is published for RS256 only: a PS256 header is not verified with it, nor is an
    // ES256 header (wrong family).
    let ps_header = key.sign(&json!({"alg": "PS256", "typ": "JWT", "kid": key.kid}), &sa_claims(&iss));
    assert_refused(&create(&gw, &ps_header).await, 401, "key_unusable");
    let es_header = key.sign(&json!({"alg": "ES256", "typ": "JWT", "kid": key.kid}), &sa_claims(&iss));
    assert_refused(&create(&gw, &es_header).await, 401, "key_unusable");
    // Another key posing under the realm key's kid: the signature does not verify.
    let impostor = rsa("k1");
    assert_refused(&create(&gw, &sa_token(&impostor, &iss)).await, 401, "signature_invalid");

    assert!(upstream_calls(&kc).is_empty(), "{:?}", upstream_calls(&kc));
    assert_eq!(fetches(&kc), before, "refused algorithms never fetch keys");
    assert_eq!(
        metric(
            &gw,
            r#"dcr_gateway_token_verifications_total{reason="algorithm_not_allowed",result="invalid"}"#
        )
        .await,
        Some(5.0)
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn time_claims_are_checked_with_the_configured_leeway() {
    let key = rsa("k1");
    let kc = jwks_server(testkit::jwks(&[&key])).await;
    let iss = issuer(&kc);
    let gw = ready_gateway(&kc, |_| {}).await; // default leeway: 30 s
    let t = now();
    let cases: &[(&str, i64, Option<&str>)] = &[
        ("exp", t - 120, Some("token_expired")),
        ("exp", t - 10, None),
        ("nbf", t + 120, Some("token_not_yet_valid")),
        ("nbf", t + 10, None),
        ("iat", t + 120, Some("token_issued_in_future")),
        ("iat", t + 10, None),
    ];
    let mut accepted = 0;
    for (claim, value, refused) in cases {
        let mut c = sa_claims(&iss);
        c[*claim] = json!(value);
        let a = create(&gw, &key.token(&c)).await;
        match refused {
            Some(reason) => {
                let v = assert_refused(&a, 401, reason);
                assert_eq!(v["details"][*claim], json!(value), "{v}");
            }
            None => {
                assert_eq!(a.status, 201, "{claim}={value}: {}", String::from_utf8_lossy(&a.body));
                accepted += 1;
            }
        }
    }
    // No exp at all.
    let mut c = sa_claims(&iss);
    c.as_object_mut().unwrap().remove("exp");
    assert_refused(&create(&gw, &key.token(&c)).await, 401, "exp_missing");
    assert_eq!(upstream_calls(&kc).len(), accepted);
    gw.shutdown().await;

    // With no leeway, the same within-leeway tokens are refused.
    let gw = ready_gateway(&kc, |s| s.jwt.leeway = Duration::ZERO).await;
    for (claim, value, reason) in [
        ("exp", t - 10, "token_expired"),
        ("nbf", t + 10, "token_not_yet_valid"),
        ("iat", t + 10, "token_issued_in_future"),
    ] {
        let mut c = sa_claims(&iss);
        c[claim] = json!(value);
        assert_refused(&create(&gw, &key.token(&c)).await, 401, reason);
    }
    assert_eq!(upstream_calls(&kc).len(), accepted);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_foreign_issuer_is_refused_and_never_fetches_keys() {
    let key = rsa("k1");
    let kc = jwks_server(testkit::jwks(&[&key])).await;
    let iss = issuer(&kc);
    let gw = ready_gateway(&kc, |_| {}).await;
    // Wait out the refetch interval, so an unknown kid *would* be allowed a fetch.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = fetches(&kc);

    let foreign = "https://login.example.com/realms/demo";
    let a = create(&gw, &sa_token(&key, foreign)).await;
    let v = assert_refused(&a, 401, "issuer_mismatch");
    let desc = v["error_description"].as_str().unwrap();
    assert!(desc.contains(foreign) && desc.contains(&iss), "{desc}");
    assert_eq!(v["details"]["token_issuer"], foreign, "{v}");
    assert_eq!(v["details"]["expected_issuer"], iss, "{v}");
    let www = a.headers["www-authenticate"].to_str().unwrap();
    assert!(www.contains(foreign) && www.contains(&iss), "{www}");

    // Another realm on the same Keycloak is foreign too.
    let other_realm = format!("{}/realms/other", kc.upstream.url());
    assert_refused(
        &create(&gw, &sa_token(&key, &other_realm)).await,
        401,
        "issuer_mismatch",
    );

    // A foreign token with a kid the gateway has never seen: refused on the issuer, no fetch.
    let stranger = rsa("stranger-kid");
    assert_refused(
        &create(&gw, &sa_token(&stranger, foreign)).await,
        401,
        "issuer_mismatch",
    );
    // Expired tokens with unknown kids do not fetch either.
    let mut c = sa_claims(&iss);
    c["exp"] = json!(now() - 3600);
    assert_refused(&create(&gw, &stranger.token(&c)).await, 401, "token_expired");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fetches(&kc), before, "claims are checked before any key lookup");
    assert!(upstream_calls(&kc).is_empty(), "{:?}", upstream_calls(&kc));
    gw.shutdown().await;
}

#[tokio::test]
async fn initial_access_tokens_pass_through_on_create() {
    let key = rsa("k1");
    let kc = jwks_server(testkit::jwks(&[&key])).await;
    let iss = issuer(&kc);
    let gw = ready_gateway(&kc, |_| {}).await;
    let before = fetches(&kc);
    let iat = internal_token(&testkit::internal_claims(&iss, "InitialAccessToken", now() + 300));
    let never = internal_token(&testkit::internal_claims(&iss, "InitialAccessToken", 0));
    // Keycloak ≤ 23 signed them with HS256.
    let hs256 = testkit::hmac_token(
        b"other",
        &json!({"alg": "HS256", "typ": "JWT", "kid": "old-hmac"}),
        &testkit::internal_claims(&iss, "InitialAccessToken", 0),
    );
    for (i, token) in [&iat, &never, &hs256].into_iter().enumerate() {
        let a = create(&gw, token).await;
        assert_eq!(a.status, 201, "#{i}: {}", String::from_utf8_lossy(&a.body));
        let seen = kc.upstream.seen.lock().last().cloned().unwrap();
        assert_eq!((seen.method.as_str(), seen.uri.as_str()), ("POST", CREATE));
        assert_eq!(
            seen.headers["authorization"].to_str().unwrap(),
            format!("Bearer {token}"),
            "#{i}: Authorization must reach Keycloak intact"
        );
    }
    // The openid-connect provider too.
    let a = send(req(
        "POST",
        gw.addr,
        "/realms/demo/clients-registrations/openid-connect",
        Some(&iat),
        Some(&json!({"redirect_uris": ["https://app.example.com/cb"]})),
    ))
    .await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(upstream_calls(&kc).len(), 4);
    assert_eq!(fetches(&kc), before, "HMAC tokens never touch the JWKS");
    let (_, text) = admin(&gw, "/metrics").await;
    assert!(
        !text.contains("dcr_gateway_token_verifications_total{"),
        "internal tokens are not bearer verifications:\n{text}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn registration_access_tokens_pass_on_read_update_and_delete() {
    let key = rsa("k1");
    let kc = jwks_server(testkit::jwks(&[&key])).await;
    let iss = issuer(&kc);
    let gw = ready_gateway(&kc, |_| {}).await;
    let rat = internal_token(&testkit::internal_claims(&iss, "RegistrationAccessToken", 0));
    let c1 = json!({"clientId": "c1"});
    for (method, body) in [("GET", None), ("PUT", Some(&c1)), ("DELETE", None)] {
        let a = send(req(method, gw.addr, CLIENT, Some(&rat), body)).await;
        assert!(
            a.status.is_success(),
            "{method}: {} {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        );
        let seen = kc.upstream.seen.lock().last().cloned().unwrap();
        assert_eq!((seen.method.as_str(), seen.uri.as_str()), (method, CLIENT));
        assert_eq!(seen.headers["authorization"].to_str().unwrap(), format!("Bearer {rat}"));
    }
    assert_eq!(upstream_calls(&kc).len(), 3);
    gw.shutdown().await;
}

#[tokio::test]
async fn internal_tokens_on_the_wrong_operation_are_refused() {
    let key = rsa("k1");
    let kc = jwks_server(testkit::jwks(&[&key])).await;
    let iss = issuer(&kc);
    let gw = ready_gateway(&kc, |_| {}).await;
    let iat = internal_token(&testkit::internal_claims(&iss, "InitialAccessToken", 0));
    let rat = internal_token(&testkit::internal_claims(&iss, "RegistrationAccessToken", 0));
    let c1 = json!({"clientId": "c1"});

    for (method, body) in [("GET", None), ("PUT", Some(&c1)), ("DELETE", None)] {
        let a = send(req(method, gw.addr, CLIENT, Some(&iat), body)).await;
        let v = assert_refused(&a, 401, "token_kind_mismatch");
        assert_eq!(v["details"]["token_kind"], "initial_access", "{method}: {v}");
    }
    let v = assert_refused(&create(&gw, &rat).await, 401, "token_kind_mismatch");
    assert_eq!(v["details"]["token_kind"], "registration_access", "{v}");
    assert_eq!(v["details"]["operation"], "create", "{v}");
    assert!(upstream_calls(&kc).is_empty(), "{:?}", upstream_calls(&kc));
    gw.shutdown().await;
}

#[tokio::test]
async fn internal_tokens_are_shape_checked() {
    let key = rsa("k1");
    let kc = jwks_server(testkit::jwks(&[&key])).await;
    let iss = issuer(&kc);
    let gw = ready_gateway(&kc, |_| {}).await;

    let expired = internal_token(&testkit::internal_claims(&iss, "InitialAccessToken", now() - 3600));
    let v = assert_refused(&create(&gw, &expired).await, 401, "token_expired");
    assert_eq!(v["details"]["token_kind"], "initial_access", "{v}");

    // Expired by less than the leeway: still forwarded (Keycloak has the last word).
    let barely = internal_token(&testkit::internal_claims(&iss, "InitialAccessToken", now() - 5));
    assert_eq!(create(&gw, &barely).await.status, 201);

    let foreign = "https://other.example.com/realms/demo";
    let wrong_iss = internal_token(&testkit::internal_claims(foreign, "InitialAccessToken", 0));
    let v = assert_refused(&create(&gw, &wrong_iss).await, 401, "issuer_mismatch");
    let desc = v["error_description"].as_str().unwrap();
    assert!(desc.contains(foreign) && desc.contains(&iss), "{desc}");

    let rat_expired = internal_token(&testkit::internal_claims(&iss, "RegistrationAccessToken", now() - 3600));
    assert_refused(
        &send(req("GET", gw.addr, CLIENT, Some(&rat_expired), None)).await,
        401,
        "token_expired",
    );

    // An internal token must be HMAC-signed.
    let rs_iat = key.token(&testkit::internal_claims(&iss, "InitialAccessToken", 0));
    assert_refused(&create(&gw, &rs_iat).await, 401, "hmac_algorithm_expected");

    // Refresh tokens (HS-signed, so they would pass Keycloak's signature check), ID tokens and
    // tokens without typ are not registration credentials.
    for typ in [Some("Refresh"), Some("ID"), Some("bearer"), None] {
        let mut c = testkit::internal_claims(&iss, "x", now() + 300);
        match typ {
            Some(t) => c["typ"] = json!(t),
            None => {
                c.as_object_mut().unwrap().remove("typ");
            }
        }
        let t = internal_token(&c);
        let v = assert_refused(&create(&gw, &t).await, 401, "token_type_unsupported");
        assert_eq!(v["details"]["typ"], typ.unwrap_or(""), "{v}");
        // Signed with a realm key, the same.
        assert_refused(&create(&gw, &key.token(&c)).await, 401, "token_type_unsupported");
    }
    assert_eq!(upstream_calls(&kc).len(), 1, "only the within-leeway IAT was forwarded");
    gw.shutdown().await;
}

#[tokio::test]
async fn malformed_authorization_headers_are_refused() {
    let key = rsa("k1");
    let kc = jwks_server(testkit::jwks(&[&key])).await;
    let gw = ready_gateway(&kc, |_| {}).await;
    let raw = |value: &str| {
        http::Request::post(format!("http://{}{CREATE}", gw.addr))
            .header("authorization", value)
            .header("content-type", "application/json")
            .body(dcr_gateway::net::full(body().to_string()))
            .unwrap()
    };
    // `Bearer ` with an empty value (Keycloak answered 500 before CVE-2026-9803).
    assert_refused(&create(&gw, "").await, 401, "token_malformed");
    for value in [
        "Bearer",
        "bearer ",
        "Bearer  abc",
        "Bearer a b",
        "Bearer abc",
        "Bearer a.b",
        "Bearer !!.e30.x",
    ] {
        let a = send(raw(value)).await;
        assert_refused(&a, 401, "token_malformed");
    }
    assert!(upstream_calls(&kc).is_empty(), "{:?}", upstream_calls(&kc));
    gw.shutdown().await;
}
