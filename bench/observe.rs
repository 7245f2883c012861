//! Criterion benchmarks for what every request pays outside the token check: the observe stage
//! (metrics and its one JSON log line, written when the response body drops, through the real subscriber and log writer into a sink),
//! metric label look-ups, the request id, and the verified-token cache key.
//!
//!   cargo bench --bench observe

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[allow(dead_code)]
#[path = "../tests/support/testkit.rs"]
mod testkit;

use std::hint::black_box;
use std::sync::Arc;

use crate::testkit::{TestKey, service_account_claims};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use dcr_gateway::config::{Overrides, load};
use dcr_gateway::metrics::Metrics;
use dcr_gateway::net::empty;
use dcr_gateway::net::ids::request_id;
use dcr_gateway::pipeline::ctx::{ConnInfo, Ctx};
use dcr_gateway::pipeline::observe;
use dcr_gateway::route::{Operation, RegRoute};
use dcr_gateway::token::cache::digest;
use dcr_gateway::token::{Claims, Identity, TokenKind};
use http::{Request, Response};

const ISS: &str = "http://127.0.0.1:8080/realms/demo";

/// The gateway's JSON logging, as `serve` sets it up, writing into a sink.
fn json_logging() -> dcr_gateway::logwriter::Guard {
    let (writer, guard) = dcr_gateway::logwriter::new(std::io::sink());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_timer(dcr_gateway::logwriter::Clock::default())
        .with_writer(writer)
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .event_format(dcr_gateway::logformat::JsonLine::new(
            dcr_gateway::logwriter::Clock::default(),
        ))
        .init();
    guard
}

fn registration_ctx() -> Ctx {
    let req = Request::post("/realms/demo/clients-registrations/default")
        .body(())
        .unwrap();
    let mut ctx = Ctx::new(
        &req,
        ConnInfo {
            peer: "127.0.0.1:4000".parse().unwrap(),
            tls: false,
        },
    );
    let claims: Claims =
        serde_json::from_value(service_account_claims(ISS, "registrar", &["create-client"], 3600)).unwrap();
    ctx.reg = Some(RegRoute {
        realm: "demo".into(),
        provider: "openid-connect".into(),
        client_id: None,
        operation: Operation::Create,
    });
    ctx.identity = Some(Identity {
        kind: TokenKind::Bearer,
        claims: Arc::new(claims),
        kid: Some("k1".into()),
        cached: true,
    });
    ctx.realm_label = "demo".into();
    ctx.upstream_status = Some(201);
    ctx
}

fn observe_bench(c: &mut Criterion) {
    let _guard = json_logging();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = rt.block_on(async {
        let s = load(
            None,
            &Overrides {
                upstream: Some("http://127.0.0.1:8080".into()),
                policies: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/demo.toml").into()),
                ..Default::default()
            },
        )
        .unwrap();
        dcr_gateway::App::new(s).unwrap()
    });
    // The line is written when the response body is dropped, so the routine drops it.
    c.bench_function("observe/finish_registration_json", |b| {
        b.iter_batched(
            registration_ctx,
            |ctx| {
                let resp = Response::builder().status(201).body(empty()).unwrap();
                drop(black_box(observe::finish(&app, ctx, resp, ())))
            },
            BatchSize::SmallInput,
        )
    });
    let other_ctx = || {
        let mut other = registration_ctx();
        other.reg = None;
        other.identity = None;
        other
    };
    c.bench_function("observe/finish_other_json", |b| {
        b.iter_batched(
            other_ctx,
            |ctx| {
                let resp = Response::builder().status(200).body(empty()).unwrap();
                drop(black_box(observe::finish(&app, ctx, resp, ())))
            },
            BatchSize::SmallInput,
        )
    });
}

fn metrics_bench(c: &mut Criterion) {
    let m = Metrics::new().unwrap();
    c.bench_function("metrics/with_label_values_request_and_latency", |b| {
        b.iter(|| {
            m.requests
                .with_label_values(&[black_box("registration"), "create", "2xx"])
                .inc();
            m.latency
                .with_label_values(&[black_box("registration"), "create"])
                .observe(0.001);
        })
    });
    c.bench_function("metrics/resolved_request_and_latency", |b| {
        b.iter(|| {
            m.request(black_box(Some(Operation::Create)), 201).inc();
            m.latency_of(black_box(Some(Operation::Create))).observe(0.001);
        })
    });
}

fn id_and_key_bench(c: &mut Criterion) {
    c.bench_function("request_id/new", |b| b.iter(request_id));
    let key = TestKey::rsa("k1", "RS256").unwrap();
    let token = key.token(&service_account_claims(ISS, "registrar", &["create-client"], 3600));
    c.bench_function(&format!("token_cache/digest_{}_bytes", token.len()), |b| {
        b.iter(|| digest(black_box(&token)))
    });
}

criterion_group!(benches, observe_bench, metrics_bench, id_and_key_bench);
criterion_main!(benches);
