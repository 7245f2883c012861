//! The fault model on the real binary. Each fault ends with "nothing lost": every request gets
//! exactly one answer, an allowed create reaches Keycloak exactly once (never retried), a
//! refused one never, and the gateway recovers without a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::testkit::{self, TestKey};
use bytes::Bytes;
use dcr_gateway::net::{Body, full};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::{Value, json};
use support::binary::{self, Binary};
use support::proxy_kit::channel_body;
use support::token_kit::{self, CREATE, body, sa_token};
use support::*;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

const ISS: &str = "http://sso.test/realms/demo";

/// A stand-in Keycloak that can be killed (listener and every connection dropped) and started
/// again on the same port. Creates are counted; in `mode` [`HANG`] they are never answered, in
/// [`STALL`] they get the head and the first bytes of a 400 and then nothing.
struct Keycloak {
    addr: SocketAddr,
    creates: Arc<AtomicUsize>,
    mode: Arc<AtomicU8>,
    tasks: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

const HANG: u8 = 1;
const STALL: u8 = 2;

async fn keycloak_answer(req: Request<Incoming>, creates: Arc<AtomicUsize>, mode: Arc<AtomicU8>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let _ = req.into_body().collect().await;
    match path.as_str() {
        CREATE => {
            creates.fetch_add(1, Ordering::SeqCst);
            match mode.load(Ordering::SeqCst) {
                HANG => std::future::pending::<()>().await,
                STALL => return stalled_error(),
                _ => {}
            }
            json_response(201, &json!({"clientId": "x", "n": creates.load(Ordering::SeqCst)}))
        }
        "/realms/demo/slow" => {
            let (tx, body) = channel_body(1);
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from_static(b"first chunk;")).await;
                std::future::pending::<()>().await; // then nothing, forever
                drop(tx);
            });
            Response::new(body)
        }
        "/realms/demo/broken" => {
            let (tx, body) = channel_body(1);
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from_static(b"0123456789")).await;
            });
            let mut r = Response::new(body);
            r.headers_mut().insert("content-length", "100".parse().unwrap());
            r
        }
        _ => json_response(404, &json!({"error": "not here"})),
    }
}

/// A 400 whose JSON body is declared 100 bytes long and stops after 20.
fn stalled_error() -> Response<Body> {
    let (tx, body) = channel_body(1);
    tokio::spawn(async move {
        let _ = tx.send(Bytes::from_static(b"{\"error\":\"invalid_cl")).await;
        std::future::pending::<()>().await;
        drop(tx);
    });
    let mut r = Response::new(body);
    *r.status_mut() = http::StatusCode::BAD_REQUEST;
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r.headers_mut().insert("content-length", "100".parse().unwrap());
    r
}

impl Keycloak {
    async fn start() -> Keycloak {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let k = Keycloak {
            addr: listener.local_addr().unwrap(),
            creates: Arc::default(),
            mode: Arc::default(),
            tasks: Mutex::new(None),
        };
        k.serve(listener);
        k
    }

    fn serve(&self, listener: TcpListener) {
        let (creates, mode) = (self.creates.clone(), self.mode.clone());
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((s, _)) = listener.accept().await else { return };
                let (creates, mode) = (creates.clone(), mode.clone());
                conns.spawn(async move {
                    let svc = service_fn(move |req| {
                        let (creates, mode) = (creates.clone(), mode.clone());
                        async move { Ok::<_, Infallible>(keycloak_answer(req, creates, mode).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        *self.tasks.lock() = Some(task);
    }

    /// Kills it: the listener and every open connection go at once (the JoinSet is dropped).
    async fn kill(&self) {
        let task = self.tasks.lock().take();
        if let Some(t) = task {
            t.abort();
            let _ = t.await;
        }
    }

    async fn restart(&self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn config(kc: &Keycloak, jwks: &str, extra: &str) -> String {
    format!(
        "upstream = \"{}\"\n{extra}\n[realms.demo]\nissuer = \"{ISS}\"\njwks_uri = \"{jwks}/realms/demo/protocol/openid-connect/certs\"\n",
        kc.url()
    )
}

async fn create(gw: &Binary, key: &TestKey) -> Answer {
    let r = req("POST", gw.addr, CREATE, Some(&sa_token(key, ISS)), Some(&body()));
    tokio::time::timeout(Duration::from_secs(30), send(r))
        .await
        .expect("every request gets an answer")
}

#[track_caller]
fn assert_json_error(a: &Answer, status: u16, reasons: &[&str]) -> Value {
    let v = a.json();
    assert_eq!(a.status, status, "{v}");
    assert!(reasons.contains(&v["reason"].as_str().unwrap_or_default()), "{v}");
    for k in ["error", "error_description", "hint"] {
        assert!(v[k].as_str().is_some_and(|s| !s.is_empty()), "no {k}: {v}");
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keycloak_hanging_killed_mid_request_and_restarted() {
    let key = TestKey::rsa("k1", "RS256").unwrap();
    let jw = jwks_server(testkit::jwks(&[&key])).await;
    let kc = Keycloak::start().await;
    let extra = "[timeouts]\nresponse = \"2s\"\n[jwks]\nprefetch = [\"demo\"]\n";
    let gw = binary::start(&config(&kc, &jw.upstream.url(), extra), None, None).await;
    gw.wait_ready(200, Duration::from_secs(10)).await;
    for _ in 0..3 {
        assert_eq!(create(&gw, &key).await.status, 201, "{}", gw.logs()); // pooled connections now
    }

    // Keycloak hangs: 504 upstream_timeout, and the create was sent once, not retried.
    kc.mode.store(HANG, Ordering::SeqCst);
    assert_json_error(&create(&gw, &key).await, 504, &["upstream_timeout"]);
    assert_eq!(kc.creates.load(Ordering::SeqCst), 4);

    // Keycloak sends a refusal's head and then stalls its body: the gateway stops waiting at
    // the response bound and answers the refusal it has (no hang; create's own bound is 30 s).
    kc.mode.store(STALL, Ordering::SeqCst);
    let a = create(&gw, &key).await;
    assert_eq!(a.status, 400, "{}", String::from_utf8_lossy(&a.body));
    assert!(a.json().get("error").is_some_and(Value::is_string), "{a:?}");
    assert_eq!(kc.creates.load(Ordering::SeqCst), 5);

    // Killed while a create is in flight (Keycloak hangs again): a clear 502, once.
    kc.mode.store(HANG, Ordering::SeqCst);
    let pending = {
        let (addr, t) = (gw.addr, sa_token(&key, ISS));
        tokio::spawn(async move { send(req("POST", addr, CREATE, Some(&t), Some(&body()))).await })
    };
    assert!(token_kit::until(Duration::from_secs(10), || kc.creates.load(Ordering::SeqCst) == 6).await);
    kc.kill().await;
    let a = tokio::time::timeout(Duration::from_secs(30), pending)
        .await
        .unwrap()
        .unwrap();
    assert_json_error(&a, 502, &["upstream_unreachable", "upstream_protocol"]);

    // While it is down: 502 upstream_unreachable, nothing reaches it.
    assert_json_error(&create(&gw, &key).await, 502, &["upstream_unreachable"]);
    assert_eq!(admin_ok(&gw).await, 200, "the admin port answers");

    // Back: served again without a gateway restart, over new connections; exactly once each.
    kc.mode.store(0, Ordering::SeqCst);
    kc.restart().await;
    for _ in 0..3 {
        let a = create(&gw, &key).await;
        assert_eq!(a.status, 201, "{}\n{}", String::from_utf8_lossy(&a.body), gw.logs());
    }
    assert_eq!(
        kc.creates.load(Ordering::SeqCst),
        9,
        "3 + 1 timed out + 1 stalled + 1 killed + 3; none retried"
    );
    assert_eq!(gw.stop().await, Some(0));
}

async fn admin_ok(gw: &Binary) -> u16 {
    gw.admin("/healthz").await.map(|(s, _)| s).unwrap_or(0)
}

/// A JWKS endpoint whose behaviour the test switches: 0 good, 1 HTTP 503, 2 garbage, 3 slow.
async fn switchable_jwks(doc: Value) -> (Upstream, Arc<AtomicU8>) {
    let mode = Arc::new(AtomicU8::new(0));
    let m = mode.clone();
    let up = upstream(move |_s: Seen| {
        let (m, doc) = (m.clone(), doc.clone());
        async move {
            match m.load(Ordering::SeqCst) {
                1 => json_response(503, &json!({"error": "down"})),
                2 => Response::new(full("<html>not a key set</html>")),
                3 => {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    json_response(200, &doc)
                }
                _ => json_response(200, &doc),
            }
        }
    })
    .await;
    (up, mode)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_failing_garbage_or_slow_serves_last_good_keys_until_max_staleness_then_recovers() {
    let key = TestKey::rsa("k1", "RS256").unwrap();
    let (jw, mode) = switchable_jwks(testkit::jwks(&[&key])).await;
    let kc = Keycloak::start().await;
    let extra = "[jwks]\nprefetch = [\"demo\"]\nrefresh_interval = \"300ms\"\nmax_staleness = \"3s\"\nfetch_timeout = \"500ms\"\nmin_refetch_interval = \"1s\"\n";
    let gw = binary::start(&config(&kc, &jw.url(), extra), None, None).await;
    gw.wait_ready(200, Duration::from_secs(10)).await;
    let mut allowed = 0;
    for (bad, name) in [(1u8, "failing"), (2, "garbage"), (3, "slow")] {
        mode.store(bad, Ordering::SeqCst);
        // Last good keys still verify a new token.
        let a = create(&gw, &key).await;
        assert_eq!(a.status, 201, "{name}: {}", String::from_utf8_lossy(&a.body));
        allowed += 1;
        // Past max_staleness: not ready, and tokens get 503 jwks_unavailable.
        gw.wait_ready(503, Duration::from_secs(20)).await;
        let v = assert_json_error(&create(&gw, &key).await, 503, &["jwks_unavailable"]);
        assert!(
            v["error_description"].as_str().unwrap().contains("max_staleness"),
            "{name}: {v}"
        );
        // The next good fetch recovers.
        mode.store(0, Ordering::SeqCst);
        gw.wait_ready(200, Duration::from_secs(20)).await;
        assert_eq!(create(&gw, &key).await.status, 201, "{name}: recovered");
        allowed += 1;
    }
    assert_eq!(
        kc.creates.load(Ordering::SeqCst),
        allowed,
        "refused creates never reached Keycloak"
    );
    assert_eq!(gw.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_broken_upstream_bodies_end_and_free_their_slots() {
    let key = TestKey::rsa("k1", "RS256").unwrap();
    let jw = jwks_server(testkit::jwks(&[&key])).await;
    let kc = Keycloak::start().await;
    let extra = "[timeouts]\nresponse_write = \"2s\"\n";
    let gw = binary::start(&config(&kc, &jw.upstream.url(), extra), None, None).await;
    for path in ["/realms/demo/slow", "/realms/demo/broken"] {
        // Either the head and then a body that fails, or no complete answer at all: never a
        // truncated body that looks complete, and never a hang.
        let outcome = tokio::time::timeout(Duration::from_secs(30), async {
            let resp = client().request(req("GET", gw.addr, path, None, None)).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body.to_bytes()))
        })
        .await
        .unwrap_or_else(|_| panic!("{path}: the answer neither ended nor failed"));
        assert!(
            outcome.is_err(),
            "{path}: an incomplete body looked complete: {outcome:?}"
        );
    }
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = gw.admin("/metrics").await.unwrap();
        if token_kit_sample(&text, "dcr_gateway_in_flight_requests") == Some(0.0) {
            break;
        }
        assert!(tokio::time::Instant::now() < end, "slots still held:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(create(&gw, &key).await.status, 201);
    assert_eq!(gw.stop().await, Some(0));
}

fn token_kit_sample(text: &str, series: &str) -> Option<f64> {
    support::token_kit::sample(text, series)
}

fn policy(allow_create: bool) -> String {
    let role = if allow_create {
        "create-client"
    } else {
        "manage-clients"
    };
    format!(
        "version = 1\n[realms.demo]\nproviders = [\"default\"]\n[realms.demo.create]\ntoken_kinds = [\"bearer\"]\nroles_any = [\"$management/{role}\"]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_directory_deleted_restored_and_reload_storms_lose_nothing() {
    let key = TestKey::rsa("k1", "RS256").unwrap();
    let jw = jwks_server(testkit::jwks(&[&key])).await;
    let kc = Keycloak::start().await;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("policies");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("demo.toml"), policy(true)).unwrap();
    let extra = "[timeouts]\npolicy_poll = \"200ms\"\n";
    let gw = binary::start(&config(&kc, &jw.upstream.url(), extra), Some(&dir), None).await;
    gw.wait_ready(200, Duration::from_secs(10)).await;
    assert_eq!(create(&gw, &key).await.status, 201);

    // Deleted: the last good policy stays active.
    std::fs::remove_dir_all(&dir).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(create(&gw, &key).await.status, 201, "{}", gw.logs());
    // Restored with a policy that refuses: applied.
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("demo.toml"), policy(false)).unwrap();
    let mut applied = false;
    for _ in 0..100 {
        if create(&gw, &key).await.status == 403 {
            applied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(applied, "the restored policy was never applied: {}", gw.logs());

    // A storm: the file rewritten every 20 ms (allowing, refusing, broken) while creates flow.
    let before = kc.creates.load(Ordering::SeqCst);
    let storm = {
        let dir = dir.clone();
        tokio::spawn(async move {
            for i in 0..150 {
                let text = match i % 3 {
                    0 => policy(true),
                    1 => policy(false),
                    _ => "version = 2\n[realms.demo".to_owned(),
                };
                std::fs::write(dir.join("demo.toml"), text).unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            std::fs::write(dir.join("demo.toml"), policy(false)).unwrap();
        })
    };
    let mut created = 0;
    let mut refused = 0;
    while !storm.is_finished() {
        let a = create(&gw, &key).await;
        match a.status.as_u16() {
            201 => created += 1,
            403 => refused += 1,
            s => panic!("unexpected {s} during the storm: {}", String::from_utf8_lossy(&a.body)),
        }
    }
    storm.await.unwrap();
    assert!(created + refused > 10, "{created} + {refused}");
    assert_eq!(
        kc.creates.load(Ordering::SeqCst) - before,
        created,
        "every allowed create reached Keycloak once, no refused one did"
    );
    // It settles on the last file written.
    let mut last = 0;
    for _ in 0..100 {
        last = create(&gw, &key).await.status.as_u16();
        if last == 403 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, 403, "{}", gw.logs());
    assert!(gw.admin("/healthz").await.is_some());
    assert_eq!(gw.stop().await, Some(0));
}

/// Open files of process `pid`: (soft, hard).
fn open_files_limit(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = text.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let n: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    (n[0], n[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_descriptor_soft_limit_is_raised_to_the_hard_limit() {
    let key = TestKey::rsa("k1", "RS256").unwrap();
    let jw = jwks_server(testkit::jwks(&[&key])).await;
    let kc = Keycloak::start().await;
    let hard = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap().1;
    assert!(hard > 300, "this test needs a hard limit above 300 (it is {hard})");
    let gw = binary::start(&config(&kc, &jw.upstream.url(), ""), None, Some("ulimit -Sn 256")).await;
    let (soft, hard_now) = open_files_limit(gw.pid());
    assert_eq!(hard_now, hard);
    assert_eq!(soft, hard, "the soft limit was not raised: {}", gw.logs());
    assert_eq!(gw.stop().await, Some(0));
}

/// 600 connections that never send a byte, with only 256 descriptors (soft = hard): the
/// admin port still answers and another client is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_under_a_low_descriptor_limit_leave_admin_and_others_served() {
    let key = TestKey::rsa("k1", "RS256").unwrap();
    let jw = jwks_server(testkit::jwks(&[&key])).await;
    let kc = Keycloak::start().await;
    let extra = "max_connections_per_peer = 16\n[timeouts]\nheader_read = \"60s\"\n";
    let gw = binary::start(&config(&kc, &jw.upstream.url(), extra), None, Some("ulimit -n 256")).await;
    let mut idle = Vec::new();
    for _ in 0..600 {
        match tokio::net::TcpStream::connect(gw.addr).await {
            Ok(s) => idle.push(s),
            Err(_) => break,
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let health = gw.admin("/healthz").await;
    assert_eq!(health.map(|(s, _)| s), Some(200), "admin starved: {}", gw.logs());
    let r = req("POST", gw.addr, CREATE, Some(&sa_token(&key, ISS)), Some(&body()));
    let a = send_from("127.0.0.2".parse().unwrap(), r, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("another client starved: {}", gw.logs()));
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    drop(idle);
    assert_eq!(gw.stop().await, Some(0));
}
