//! Criterion benchmarks for the token hot path: triage, bearer verification with and without
//! the verified-token cache, and a JWKS refresh (parse + swap, and a fetch over loopback).
//!
//!   cargo bench --bench token

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[allow(dead_code)]
#[path = "../tests/support/testkit.rs"]
mod testkit;

use std::hint::black_box;
use std::sync::Arc;

use crate::testkit::{TestKey, hmac_token, internal_claims, jwks, now, service_account_claims};
use criterion::{Criterion, criterion_group, criterion_main};
use dcr_gateway::config::{Overrides, load};
use dcr_gateway::metrics::Metrics;
use dcr_gateway::route::{Operation, RegRoute};
use dcr_gateway::token::Verifier;
use dcr_gateway::token::cache::TokenCache;
use dcr_gateway::token::claims::decode;
use dcr_gateway::token::jwks::{Jwks, parse_key, parse_set};
use dcr_gateway::token::triage::{Presented, triage};
use dcr_gateway::token::verify::{check_alg, check_claims, check_signature};
use http::HeaderMap;
use jsonwebtoken::Algorithm;
use serde_json::json;

const ISS: &str = "http://127.0.0.1:8080/realms/demo";

fn route() -> RegRoute {
    RegRoute {
        realm: "demo".into(),
        provider: "openid-connect".into(),
        client_id: None,
        operation: Operation::Create,
    }
}

fn triage_bench(c: &mut Criterion) {
    let key = TestKey::rsa("k1", "RS256").unwrap();
    let bearer = key.token(&service_account_claims(ISS, "registrar", &["create-client"], 3600));
    let iat = hmac_token(
        b"secret",
        &json!({"alg": "HS512", "typ": "JWT", "kid": "h"}),
        &internal_claims(ISS, "InitialAccessToken", 0),
    );
    let r = route();
    let t = now();
    c.bench_function("triage/bearer", |b| {
        b.iter(|| triage(Presented::Bearer(black_box(&bearer)), &r, &[ISS.to_owned()], 30, t).unwrap())
    });
    c.bench_function("triage/initial_access", |b| {
        b.iter(|| triage(Presented::Bearer(black_box(&iat)), &r, &[ISS.to_owned()], 30, t).unwrap())
    });
}

fn signature_bench(c: &mut Criterion) {
    let rs = dcr_gateway::config::RealmSettings::default();
    for (name, key) in [
        ("RS256", TestKey::rsa("r", "RS256").unwrap()),
        ("PS256", TestKey::rsa("p", "PS256").unwrap()),
        ("ES256", TestKey::ec("e").unwrap()),
    ] {
        let token = key.token(&service_account_claims(ISS, "registrar", &["create-client"], 3600));
        let parsed = parse_key(&key.jwk()).unwrap();
        let allowed = [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256];
        c.bench_function(&format!("verify_uncached/{name}"), |b| {
            b.iter(|| {
                let d = decode(black_box(&token)).unwrap();
                let alg = check_alg(&d.header.alg, &allowed).unwrap();
                check_claims(&d.claims, "demo", &[ISS.to_owned()], &rs, 30, now()).unwrap();
                check_signature(&token, &d, &parsed, alg).unwrap();
            })
        });
    }
}

/// A verifier whose realm `demo` holds `key` (fetched once from a loopback JWKS server), with a
/// token cache of `capacity` entries.
fn verifier(rt: &tokio::runtime::Runtime, key: &TestKey, capacity: usize) -> Verifier {
    rt.block_on(async {
        let url = serve_jwks(jwks_doc(key)).await;
        let mut s = load(
            None,
            &Overrides {
                upstream: Some(url),
                ..Default::default()
            },
        )
        .unwrap();
        s.jwt.token_cache_capacity = capacity;
        s.jwks.refresh_interval = std::time::Duration::from_secs(3600);
        s.jwks.min_refetch_interval = std::time::Duration::from_secs(3600);
        let s = Arc::new(s);
        let metrics = Metrics::new().unwrap();
        let client = dcr_gateway::net::client(&s);
        let cache = Arc::new(TokenCache::new(capacity));
        let jwks = Arc::new(Jwks::new(s.clone(), client, metrics.clone(), cache.clone()));
        jwks.realm("demo").unwrap().fetch_now().await.unwrap();
        Verifier::new(s, jwks, cache, metrics)
    })
}

fn jwks_doc(key: &TestKey) -> String {
    jwks(&[key]).to_string()
}

fn authenticate_bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = TestKey::rsa("k1", "RS256").unwrap();
    let token = key.token(&service_account_claims(ISS, "registrar", &["create-client"], 3600));
    let mut headers = HeaderMap::new();
    headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    let r = route();
    let accepted = [ISS.to_owned()];
    for (name, capacity) in [("authenticate/RS256_no_cache", 0), ("authenticate/RS256_cached", 1000)] {
        let v = verifier(&rt, &key, capacity);
        rt.block_on(v.authenticate(&r, &headers, &[ISS.to_owned()])).unwrap();
        c.bench_function(name, |b| {
            b.iter(|| rt.block_on(v.authenticate(black_box(&r), &headers, &accepted)).unwrap())
        });
    }
}

fn jwks_bench(c: &mut Criterion) {
    let keys = [
        TestKey::rsa("a", "RS256").unwrap(),
        TestKey::rsa("b", "RS256").unwrap(),
        TestKey::ec("c").unwrap(),
    ];
    let mut doc = jwks(&keys.iter().collect::<Vec<_>>());
    // Keycloak also publishes an encryption key, which is skipped.
    doc["keys"].as_array_mut().unwrap().push(
        json!({"kid": "enc", "kty": "RSA", "use": "enc", "alg": "RSA-OAEP", "n": keys[0].jwk()["n"], "e": "AQAB"}),
    );
    let body = doc.to_string();
    c.bench_function("jwks/parse_4_keys", |b| {
        b.iter(|| parse_set(black_box(body.as_bytes())).unwrap())
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let url = rt.block_on(serve_jwks(body.clone()));
    let s = load(
        None,
        &Overrides {
            upstream: Some(url.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let client = dcr_gateway::net::client(&s);
    let uri = format!("{url}/realms/demo/protocol/openid-connect/certs");
    c.bench_function("jwks/fetch_loopback_parse", |b| {
        b.iter(|| {
            rt.block_on(async {
                let bytes = dcr_gateway::net::get_bytes(&client, &uri, std::time::Duration::from_secs(2), 1 << 20)
                    .await
                    .unwrap();
                parse_set(&bytes).unwrap()
            })
        })
    });
}

async fn serve_jwks(body: String) -> String {
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let body = body.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let body = body.clone();
                    async move { Ok::<_, std::convert::Infallible>(http::Response::new(dcr_gateway::net::full(body))) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

criterion_group!(benches, triage_bench, signature_bench, authenticate_bench, jwks_bench);
criterion_main!(benches);
