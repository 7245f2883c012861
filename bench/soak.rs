//! Soak: the gateway binary under mixed traffic for a fixed time, with policy reloads every
//! 10 s and key rotations every 60 s, against in-process stand-ins for Keycloak and its JWKS
//! (loopback only). Reports RSS and open descriptors at start and end, p50/p99 latency and the
//! answers by status; exits 1 when an answer was lost or unexpected.
//!
//!   bench/soak.sh 600          # or: cargo bench --bench soak -- --seconds 60 --bin PATH
//!
//! Without `--seconds` (as under `cargo test --benches`) it does nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[allow(dead_code)]
#[path = "../tests/support/testkit.rs"]
mod testkit;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::testkit::TestKey;
use bytes::Bytes;
use dcr_gateway::net::{Body, empty, full};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const WORKERS: usize = 16;
const CREATE: &str = "/realms/demo/clients-registrations/default";

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Stand-in Keycloak + JWKS on one port: `/certs` answers the current key set, creates 201.
async fn stand_in(doc: Arc<RwLock<Value>>, creates: Arc<AtomicU64>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else { return };
            let (doc, creates) = (doc.clone(), creates.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (doc, creates) = (doc.clone(), creates.clone());
                    async move {
                        let path = req.uri().path().to_owned();
                        let _ = req.into_body().collect().await;
                        let (status, v) = if path.ends_with("/certs") {
                            (200, doc.read().clone())
                        } else {
                            creates.fetch_add(1, Ordering::Relaxed);
                            (201, json!({"clientId": "soak", "client_secret": "s"}))
                        };
                        let mut r = Response::new(full(v.to_string()));
                        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        r.headers_mut()
                            .insert("content-type", "application/json".parse().unwrap());
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

fn policy(generation: u64) -> String {
    format!(
        "# soak generation {generation}\nversion = 1\n[realms.demo]\nproviders = [\"default\"]\n[realms.demo.create]\ntoken_kinds = [\"bearer\"]\nroles_any = [\"$management/create-client\"]\n"
    )
}

/// RSS in KiB and open descriptors of `pid`.
fn sample(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    (rss, fds)
}

struct Keys {
    signing: TestKey,
    pool: Vec<String>,
    refused: Vec<String>,
}

fn mint(key: &TestKey, iss: &str, roles: &[&str], n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let mut c = testkit::service_account_claims(iss, "soak", roles, 3600);
            c["nonce"] = json!(format!("{}-{i}-{}", key_id(key), testkit::now()));
            key.token(&c)
        })
        .collect()
}

fn key_id(k: &TestKey) -> String {
    k.jwk()["kid"].as_str().unwrap_or_default().to_owned()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(seconds) = arg("--seconds").and_then(|s| s.parse::<u64>().ok()) else {
        println!("soak: skipped (run bench/soak.sh SECONDS)");
        return;
    };
    let bin = arg("--bin").unwrap_or_else(|| "target/release/dcr-gateway".into());
    let first = TestKey::rsa("soak-0", "RS256").unwrap();
    let doc = Arc::new(RwLock::new(testkit::jwks(&[&first])));
    let creates = Arc::new(AtomicU64::new(0));
    let upstream = stand_in(doc.clone(), creates.clone()).await;
    let iss = format!("{upstream}/realms/demo");
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("demo.toml"), policy(0)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(&bin)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .args(["--upstream", &upstream, "--policies", policies.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
    let pid = child.id().unwrap();
    let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build_http();
    let base = format!("http://127.0.0.1:{port}");
    let ready = format!("http://127.0.0.1:{admin}/readyz");
    let start_wait = Instant::now();
    loop {
        let r = client.request(Request::get(&ready).body(empty()).unwrap()).await;
        if r.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            start_wait.elapsed() < Duration::from_secs(20),
            "the gateway never got ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let keys = Arc::new(RwLock::new(Keys {
        pool: mint(&first, &iss, &["create-client"], 200),
        refused: mint(&first, &iss, &["view-clients"], 50),
        signing: first,
    }));
    let junk = TestKey::ec("junk").unwrap();
    let counts: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<u32>>> = Arc::default();
    let unexpected = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let budget = Arc::new(AtomicU64::new(seconds * 20_000)); // bounded in count too

    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss0, fds0) = sample(pid);
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (client, keys, counts, latencies, unexpected, stop, budget, base, iss) = (
            client.clone(),
            keys.clone(),
            counts.clone(),
            latencies.clone(),
            unexpected.clone(),
            stop.clone(),
            budget.clone(),
            base.clone(),
            iss.clone(),
        );
        let junk = TestKey::ec(&format!("junk-{w}")).unwrap_or_else(|_| TestKey::ec("junk").unwrap());
        workers.push(tokio::spawn(async move {
            let mut i: u64 = w as u64;
            while !stop.load(Ordering::Relaxed) && budget.fetch_sub(1, Ordering::Relaxed) > 0 {
                i = i.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let pick = (i >> 33) % 100;
                let (token, expect, kind) = {
                    let k = keys.read();
                    match pick {
                        0..60 => (k.pool[(i as usize >> 7) % k.pool.len()].clone(), 201, "valid"),
                        60..80 => (k.refused[(i as usize >> 7) % k.refused.len()].clone(), 403, "refused"),
                        80..92 => (mint(&k.signing, &iss, &["create-client"], 1).remove(0), 201, "distinct"),
                        _ => {
                            let h = json!({"alg": "ES256", "typ": "JWT", "kid": format!("junk-{i}")});
                            (
                                junk.sign(&h, &testkit::service_account_claims(&iss, "x", &["create-client"], 60)),
                                401,
                                "junk_kid",
                            )
                        }
                    }
                };
                let req = Request::post(format!("{base}{CREATE}"))
                    .header("authorization", format!("Bearer {token}"))
                    .header("content-type", "application/json")
                    .body(full(Bytes::from_static(br#"{"clientId":"soak"}"#)))
                    .unwrap();
                let t = Instant::now();
                let answer = tokio::time::timeout(Duration::from_secs(30), async {
                    let r = client.request(req).await.ok()?;
                    let s = r.status().as_u16();
                    r.into_body().collect().await.ok()?;
                    Some(s)
                })
                .await
                .ok()
                .flatten();
                let us = u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX);
                latencies.lock().push(us);
                let label = match answer {
                    Some(s) => s.to_string(),
                    None => "no_answer".into(),
                };
                if answer != Some(expect) {
                    unexpected.fetch_add(1, Ordering::Relaxed);
                    if unexpected.load(Ordering::Relaxed) <= 5 {
                        eprintln!("soak: {kind} answered {label}, expected {expect}");
                    }
                }
                *counts.lock().entry(label).or_default() += 1;
            }
        }));
    }
    let _ = &junk;

    // Reloads every 10 s, rotations every 30 s (the old key stays published one more period).
    let mut generation = 0;
    let mut previous: Option<TestKey> = None;
    let mut rotations = 0;
    let warmup_ticks = (seconds / 100).max(1); // RSS is compared from the end of the warm-up
    let mut warm = (0, 0);
    let mut next_tick = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        tokio::time::sleep(
            next_tick
                .saturating_duration_since(Instant::now())
                .min(deadline - Instant::now().min(deadline)),
        )
        .await;
        if Instant::now() >= deadline {
            break;
        }
        next_tick += Duration::from_secs(10);
        generation += 1;
        std::fs::write(policies.join("demo.toml"), policy(generation)).unwrap();
        // Rotation as Keycloak operators do it: publish the new key first (a provider of lower
        // priority), sign with it two periods later (junk kids keep the on-demand refetch busy,
        // so a kid may wait one `min_refetch_interval`), retire the old key two periods after.
        match generation % 6 {
            1 => {
                let new = TestKey::rsa(&format!("soak-{generation}"), "RS256").unwrap();
                let k = keys.read();
                *doc.write() = testkit::jwks(&[&k.signing, &new]);
                previous = Some(new);
            }
            3 => {
                if let Some(new) = previous.take() {
                    let mut k = keys.write();
                    k.pool = mint(&new, &iss, &["create-client"], 200);
                    k.refused = mint(&new, &iss, &["view-clients"], 50);
                    let old = std::mem::replace(&mut k.signing, new);
                    *doc.write() = testkit::jwks(&[&k.signing, &old]);
                    rotations += 1;
                }
            }
            5 => *doc.write() = testkit::jwks(&[&keys.read().signing]),
            _ => {}
        }
        if generation == warmup_ticks {
            warm = sample(pid);
        }
    }
    let _ = previous;
    if warm.0 == 0 {
        warm = sample(pid);
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let (rss1, fds1) = sample(pid);
    let _ = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await;
    let code = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .ok()
        .and_then(|r| r.ok())
        .and_then(|s| s.code());

    let mut lat = std::mem::take(&mut *latencies.lock());
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let total: u64 = counts.lock().values().sum();
    let growth = (rss1 as f64 - warm.0 as f64) / warm.0.max(1) as f64 * 100.0;
    println!(
        "soak: {seconds} s, {WORKERS} workers, {total} requests ({:.0}/s), {generation} policy reloads, {rotations} key rotations",
        total as f64 / seconds as f64
    );
    println!("soak: answers by status: {:?}", counts.lock());
    println!(
        "soak: latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(0.50) as f64 / 1000.0,
        pct(0.99) as f64 / 1000.0,
        lat.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    println!(
        "soak: RSS {rss0} KiB at start, {} KiB after {} s of warm-up, {rss1} KiB at end ({growth:+.1} % since the warm-up, goal < 5 %: {})",
        warm.0,
        warmup_ticks * 10,
        if growth < 5.0 { "met" } else { "NOT met" }
    );
    println!("soak: open descriptors {fds0} at start, {fds1} at end");
    println!(
        "soak: creates that reached the stand-in Keycloak: {}",
        creates.load(Ordering::Relaxed)
    );
    println!(
        "soak: unexpected answers {}, exit code after SIGTERM {code:?}",
        unexpected.load(Ordering::Relaxed)
    );
    let expected_creates: u64 = counts.lock().get("201").copied().unwrap_or(0);
    if unexpected.load(Ordering::Relaxed) > 0 || code != Some(0) || creates.load(Ordering::Relaxed) != expected_creates
    {
        println!("soak: FAILED");
        std::process::exit(1);
    }
    println!("soak: ok");
}
