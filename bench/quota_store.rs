//! What counting quotas in Redis adds to a create: the same anonymous creates through a gateway
//! with `[quota_store] backend = "memory"` and through one with `backend = "redis"` (a real
//! redis-server on loopback), in front of one stand-in upstream, one request at a time; prints
//! p50/p99/p99.9 of each, their difference, and the latency of the quota step alone.
//!
//!   cargo bench --bench quota_store        # 20 000 creates per configuration
//!
//! Under `cargo test --benches` it runs 50 creates per configuration, as a smoke test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]

#[path = "../tests/support/redis_kit.rs"]
mod redis_kit;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use dcr_gateway::config::store::QuotaStore;
use dcr_gateway::config::{Overrides, load};
use dcr_gateway::metrics::Metrics;
use dcr_gateway::net::{Body, full};
use dcr_gateway::policy::quota::{Ask, Limits, QuotaPolicy, Quotas, digest};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use redis_kit::RedisServer;

const POLICY: &str = "version = 1\n[realms.demo.create]\ntoken_kinds = [\"anonymous\"]\n[realms.demo.quota]\ncreates = 100000000\nwindow = \"1h\"\nrealm_creates = 100000000\n";

async fn stand_in() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    let mut r = Response::new(full(r#"{"client_id":"x"}"#));
                    *r.status_mut() = http::StatusCode::CREATED;
                    r.headers_mut()
                        .insert("content-type", "application/json".parse().unwrap());
                    Ok::<_, Infallible>(r)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn report(name: &str, mut v: Vec<Duration>) -> [Duration; 3] {
    v.sort_unstable();
    let p = [pct(&v, 0.5), pct(&v, 0.99), pct(&v, 0.999)];
    println!(
        "{name:<34} n={:<6} p50 {:>7.1} µs   p99 {:>7.1} µs   p99.9 {:>7.1} µs",
        v.len(),
        us(p[0]),
        us(p[1]),
        us(p[2])
    );
    p
}

async fn creates(upstream: &str, dir: &std::path::Path, store: QuotaStore, n: usize) -> Vec<Duration> {
    let over = Overrides {
        listen: Some("127.0.0.1:0".into()),
        admin_listen: Some("127.0.0.1:0".into()),
        upstream: Some(upstream.into()),
        policies: Some(dir.to_owned()),
        ..Overrides::default()
    };
    let mut s = load(None, &over).unwrap();
    s.quota_store = store;
    let gw = dcr_gateway::start(s).await.unwrap();
    let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build_http();
    let url = format!("http://{}/realms/demo/clients-registrations/openid-connect", gw.addr);
    let body = r#"{"redirect_uris":["https://app.example.com/cb"]}"#;
    let send = || async {
        let req = Request::post(&url)
            .header("content-type", "application/json")
            .body(full(body))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), 201);
        let _ = resp.into_body().collect().await;
    };
    for _ in 0..(n / 10).max(5) {
        send().await; // warm up connections and the script cache
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        send().await;
        out.push(t.elapsed());
    }
    gw.shutdown().await;
    out
}

async fn takes(q: &Quotas, n: usize) -> Vec<Duration> {
    let p = QuotaPolicy {
        creates: 100_000_000,
        window: Duration::from_secs(3600),
    };
    let ask = Ask {
        realm: "demo",
        limits: vec![
            Limits {
                key: digest(b'c', "demo", "ip:127.0.0.1"),
                policy: p,
            },
            Limits {
                key: digest(b'r', "demo", ""),
                policy: p,
            },
        ],
        force: false,
    };
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let taken = q.take(&ask).await.unwrap();
        out.push(t.elapsed());
        assert!(taken.slot.is_some());
    }
    out
}

fn main() {
    let full_run = std::env::args().any(|a| a == "--bench");
    let n = if full_run { 20_000 } else { 50 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let Some(redis) = RedisServer::start().await else {
            return;
        };
        let upstream = stand_in().await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.toml"), POLICY).unwrap();
        let memory = report(
            "create via gateway, memory store",
            creates(&upstream, dir.path(), QuotaStore::Memory, n).await,
        );
        let shared = report(
            "create via gateway, Redis store",
            creates(&upstream, dir.path(), redis.store(""), n).await,
        );
        println!(
            "{:<34} p50 {:>+7.1} µs   p99 {:>+7.1} µs   p99.9 {:>+7.1} µs",
            "added by Redis",
            us(shared[0]) - us(memory[0]),
            us(shared[1]) - us(memory[1]),
            us(shared[2]) - us(memory[2])
        );
        let metrics = Metrics::new().unwrap();
        let local = Quotas::default();
        report("quota step alone, memory", takes(&local, n).await);
        let remote = Quotas::new(&redis.store(""), &metrics).unwrap();
        takes(&remote, (n / 10).max(5)).await;
        report("quota step alone, Redis", takes(&remote, n).await);
    });
}
