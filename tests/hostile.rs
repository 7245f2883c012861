//! Hostile load in process: HTTP/2 streams held at a zero window, connections that never send
//! a byte, forged tokens for junk realms, key rotation races, and readiness before keys.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::testkit::{self, TestKey};
use bytes::Bytes;
use serde_json::json;
use support::token_kit::*;
use support::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep};

const OTHER_PEER: &str = "127.0.0.2";

fn other_peer() -> IpAddr {
    OTHER_PEER.parse().unwrap()
}

fn rsa(kid: &str) -> TestKey {
    TestKey::rsa(kid, "RS256").unwrap()
}

/// Opens an HTTP/2 (h2c) connection that advertises SETTINGS_INITIAL_WINDOW_SIZE = 0, so the
/// gateway can send response headers but never a byte of any body, and keeps opening streams
/// (GETs the gateway refuses with a JSON body). Counts the response heads received.
async fn zero_window_attacker(
    addr: std::net::SocketAddr,
    streams: usize,
    heads: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    let conn_task = tokio::spawn(async move {
        let _ = conn.await;
    });
    tokio::spawn(async move {
        let mut client = client;
        let mut pending = Vec::new();
        for _ in 0..streams {
            let Ok(ready) = client.ready().await else { break };
            client = ready;
            let req = http::Request::get(format!("http://{addr}{CREATE}")).body(()).unwrap();
            let Ok((resp, _)) = client.send_request(req, true) else {
                break;
            };
            let heads = heads.clone();
            pending.push(tokio::spawn(async move {
                if let Ok(r) = resp.await {
                    heads.fetch_add(1, Ordering::SeqCst);
                    let _body = r.into_body(); // held, never read: the window stays at zero
                    std::future::pending::<()>().await;
                }
            }));
        }
        let _ = conn_task.await; // until the gateway closes the connection
        for p in pending {
            p.abort();
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_streams_held_at_a_zero_window_cannot_starve_other_clients() {
    let key = rsa("k1");
    let kc = jwks_server(testkit::jwks(&[&key])).await;
    let gw = ready_gateway(&kc, |s| {
        short_bounds(s, Duration::from_secs(30), Duration::from_secs(3))
    })
    .await;
    let heads = Arc::new(AtomicUsize::new(0));
    let mut attackers = Vec::new();
    for _ in 0..12 {
        attackers.push(zero_window_attacker(gw.addr, 100, heads.clone()).await);
    }
    // Every stream the gateway let open got its response head (its body is stuck).
    assert!(
        until(Duration::from_secs(30), || heads.load(Ordering::SeqCst) >= 1200).await,
        "only {} response heads",
        heads.load(Ordering::SeqCst)
    );
    let held = gauge(&gw, "in_flight_requests").await.expect("the in-flight gauge");
    assert!(held > 0, "the attack holds slots");
    assert!(
        held <= gw.settings().max_in_flight_per_peer as i64,
        "{held} slots held by one peer"
    );

    // Another client is served, not shed.
    let iss = issuer(&kc);
    let a = send_from(
        other_peer(),
        req("POST", gw.addr, CREATE, Some(&sa_token(&key, &iss)), Some(&body())),
        Duration::from_secs(10),
    )
    .await
    .expect("an answer for another client");
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));

    // The stall is bounded: after response_write the attacker's connections are closed and
    // every slot comes back.
    for t in attackers {
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("the gateway closes a connection whose writes stall")
            .unwrap();
    }
    assert!(
        support::policy_kit::until(Duration::from_secs(10), || async {
            gauge(&gw, "in_flight_requests").await == Some(0)
        })
        .await,
        "{:?} slots still held",
        gauge(&gw, "in_flight_requests").await
    );
    let text = admin(&gw, "/metrics").await.1;
    assert!(
        sample(
            &text,
            r#"dcr_gateway_connections_timed_out_total{bound="response_write"}"#
        )
        .unwrap_or(0.0)
            >= 12.0,
        "{text}"
    );
    gw.shutdown().await;
}

/// Reads until EOF or error; `true` if the peer closed within `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 64];
    let end = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_capped_per_peer_and_closed_after_header_read() {
    let key = rsa("k1");
    let kc = jwks_server(testkit::jwks(&[&key])).await;
    let gw = ready_gateway(&kc, |s| {
        short_bounds(s, Duration::from_secs(2), Duration::from_secs(5));
        peer_connection_cap(s, 20);
    })
    .await;
    // 60 sockets that never send a byte (plus two that send half a request line or half an
    // HTTP/2 preface, which stall protocol detection).
    let mut idle = Vec::new();
    for _ in 0..60 {
        idle.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    for partial in [
        &b"GET /realms/demo/clients-registrations"[..],
        &b"PRI * HTTP/2.0\r\n"[..],
    ] {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut s, partial).await.unwrap();
        idle.push(s);
    }
    // Another client still gets in and is served; the admin port answers.
    let iss = issuer(&kc);
    let a = send_from(
        other_peer(),
        req("POST", gw.addr, CREATE, Some(&sa_token(&key, &iss)), Some(&body())),
        Duration::from_secs(10),
    )
    .await
    .expect("another client is served");
    assert_eq!(a.status, 201);
    assert_eq!(admin(&gw, "/healthz").await.0, 200);
    let open = gauge(&gw, "open_connections")
        .await
        .expect("the open-connections gauge");
    assert!(open <= 21, "{open} open");
    // Every silent socket is closed by the gateway: past the cap at once, the others after
    // header_read.
    for (i, s) in idle.iter_mut().enumerate() {
        assert!(closed_within(s, Duration::from_secs(20)).await, "socket {i} still open");
    }
    let text = admin(&gw, "/metrics").await.1;
    assert!(
        sample(
            &text,
            r#"dcr_gateway_connections_refused_total{reason="max_connections_per_peer"}"#
        )
        .unwrap_or(0.0)
            >= 40.0,
        "{text}"
    );
    assert!(
        sample(&text, r#"dcr_gateway_connections_timed_out_total{bound="header_read"}"#).unwrap_or(0.0) >= 19.0,
        "{text}"
    );
    // A kept-alive connection that goes quiet is closed after `idle`.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut s, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(&mut s, Duration::from_secs(20)).await,
        "idle keep-alive connection still open"
    );
    gw.shutdown().await;
}

/// On HTTP/1.1 the next request's headers are due within `header_read` of the previous answer
/// (the shorter of it and `idle`): a kept-alive connection that then goes quiet, or dribbles a
/// request head, is closed long before `idle`, and the close is counted under `header_read`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_requests_after_the_first_must_arrive_within_header_read() {
    let key = rsa("k1");
    let kc = jwks_server(testkit::jwks(&[&key])).await;
    let gw = ready_gateway(&kc, |s| {
        s.timeouts.header_read = Duration::from_secs(1);
        s.timeouts.idle = Duration::from_secs(60);
    })
    .await;
    let mut quiet = TcpStream::connect(gw.addr).await.unwrap();
    let mut dribbling = TcpStream::connect(gw.addr).await.unwrap();
    for s in [&mut quiet, &mut dribbling] {
        tokio::io::AsyncWriteExt::write_all(s, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 "),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    let started = Instant::now();
    let drip = tokio::spawn(async move {
        for b in b"GET /realms/demo/account HTTP/1.1\r\nHost: x\r\nX-Slow: "
            .iter()
            .cycle()
            .take(200)
        {
            if tokio::io::AsyncWriteExt::write_all(&mut dribbling, &[*b])
                .await
                .is_err()
            {
                return Some(started.elapsed()); // closed by the gateway
            }
            sleep(Duration::from_millis(100)).await;
        }
        None
    });
    assert!(
        closed_within(&mut quiet, Duration::from_secs(10)).await,
        "quiet keep-alive connection still open"
    );
    let closed_after = started.elapsed();
    assert!(
        closed_after < Duration::from_secs(5),
        "closed after {closed_after:?}, not header_read"
    );
    let dripped = drip.await.unwrap().expect("the dribbling connection is closed");
    assert!(
        dripped < Duration::from_secs(10),
        "dribbling connection closed after {dripped:?}"
    );
    let text = admin(&gw, "/metrics").await.1;
    assert!(
        sample(&text, r#"dcr_gateway_connections_timed_out_total{bound="header_read"}"#).unwrap_or(0.0) >= 2.0,
        "{text}"
    );
    gw.shutdown().await;
}

/// Forged tokens (valid `iss`, a signature by no published key) for 48 junk realms whose key
/// sets load fine: none of them may keep a slot, so a real unnamed realm still gets one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_cannot_pin_unnamed_realm_slots() {
    let key = rsa("real");
    let kc = jwks_server(testkit::jwks(&[&key])).await;
    let gw = gateway(settings(&kc.upstream.url(), None)).await;
    let forger = TestKey::rsa("real", "RS256").unwrap(); // the same kid, another key
    for i in 0..48 {
        let iss = format!("{}/realms/victim{i}", kc.upstream.url());
        let path = format!("/realms/victim{i}/clients-registrations/openid-connect");
        let a = send(req(
            "POST",
            gw.addr,
            &path,
            Some(&forger.token(&sa_claims(&iss))),
            Some(&body()),
        ))
        .await;
        assert_eq!(a.status, 401, "victim{i}: {}", String::from_utf8_lossy(&a.body));
    }
    let iss = format!("{}/realms/legit", kc.upstream.url());
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
        "a real realm gets a slot: {}",
        String::from_utf8_lossy(&a.body)
    );
    gw.shutdown().await;
}

/// Keycloak adds a key right after the gateway's start-up fetch: a token by it is accepted at
/// once (the scheduled and start-up fetches do not use up the unknown-kid refetch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_added_right_after_start_is_accepted_at_once() {
    let (a_key, b_key) = (rsa("key-a"), rsa("key-b"));
    let kc = jwks_server(testkit::jwks(&[&a_key])).await;
    let iss = issuer(&kc);
    let gw = ready_gateway(&kc, |s| s.jwks.min_refetch_interval = Duration::from_secs(30)).await;
    *kc.doc.lock() = testkit::jwks(&[&a_key, &b_key]);
    let a = create(&gw, &sa_token(&b_key, &iss)).await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_added_right_after_a_scheduled_refresh_is_accepted_at_once() {
    let (a_key, b_key) = (rsa("key-a"), rsa("key-b"));
    let kc = jwks_server(testkit::jwks(&[&a_key])).await;
    let iss = issuer(&kc);
    let gw = ready_gateway(&kc, |s| {
        s.jwks.min_refetch_interval = Duration::from_secs(30);
        s.jwks.refresh_interval = Duration::from_millis(700);
    })
    .await;
    let f0 = fetches(&kc);
    assert!(
        until(Duration::from_secs(10), || fetches(&kc) > f0).await,
        "no scheduled refresh"
    );
    *kc.doc.lock() = testkit::jwks(&[&a_key, &b_key]);
    let a = create(&gw, &sa_token(&b_key, &iss)).await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    gw.shutdown().await;
}

/// Behind a load-balanced Keycloak one fetch may miss a key that is already signing. Once the
/// JWKS serves it, it is accepted after at most one refetch interval (not `unknown_kid_ttl`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kid_missed_by_one_fetch_is_accepted_one_interval_after_it_appears() {
    let (a_key, b_key) = (rsa("key-a"), rsa("key-b"));
    let kc = jwks_server(testkit::jwks(&[&a_key])).await;
    let iss = issuer(&kc);
    let gw = ready_gateway(&kc, |s| {
        s.jwks.min_refetch_interval = Duration::from_secs(1);
        s.jwks.unknown_kid_ttl = Duration::from_secs(60);
    })
    .await;
    sleep(Duration::from_millis(1100)).await; // past the interval: the unknown kid refetches
    let f0 = fetches(&kc);
    let by_b = sa_token(&b_key, &iss);
    let v = assert_refused(&create(&gw, &by_b).await, 401, "kid_unknown");
    assert_eq!(fetches(&kc), f0 + 1, "one refetch that missed it: {v}");
    *kc.doc.lock() = testkit::jwks(&[&a_key, &b_key]);
    sleep(Duration::from_millis(1100)).await;
    let a = create(&gw, &by_b).await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    gw.shutdown().await;
}

/// A flood of random kids right after start costs one fetch in the interval, however many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_kid_flood_costs_at_most_one_fetch_per_interval() {
    let key = rsa("k1");
    let kc = jwks_server(testkit::jwks(&[&key])).await;
    let iss = issuer(&kc);
    let gw = ready_gateway(&kc, |s| s.jwks.min_refetch_interval = Duration::from_secs(60)).await;
    let f0 = fetches(&kc);
    let junk = TestKey::ec("x").unwrap();
    for round in 0..3 {
        let tasks: Vec<_> = (0..60)
            .map(|i| {
                let t = junk.sign(
                    &json!({"alg": "ES256", "typ": "JWT", "kid": format!("junk-{round}-{i}")}),
                    &sa_claims(&iss),
                );
                let addr = gw.addr;
                tokio::spawn(async move { send(req("POST", addr, CREATE, Some(&t), Some(&body()))).await })
            })
            .collect();
        for t in tasks {
            assert_refused(&t.await.unwrap(), 401, "kid_unknown");
        }
    }
    assert!(
        fetches(&kc) - f0 <= 1,
        "{} fetches for 180 junk kids",
        fetches(&kc) - f0
    );
    assert_eq!(create(&gw, &sa_token(&key, &iss)).await.status, 201);
    gw.shutdown().await;
}

/// The gateway started before the realm existed: its fetches failed and back off. A token sent
/// once the realm exists causes one fetch at once (shared by concurrent requests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_realm_created_after_start_is_fetched_at_once_on_demand() {
    let key = rsa("k1");
    let kc = jwks_server(testkit::jwks(&[&key])).await;
    kc.failing.store(true, Ordering::SeqCst);
    let iss = issuer(&kc);
    let gw = gateway(demo_settings(&kc, |s| {
        s.jwks.min_refetch_interval = Duration::from_secs(10)
    }))
    .await;
    assert!(
        until(Duration::from_secs(10), || fetches(&kc) >= 3).await,
        "backing off"
    );
    kc.failing.store(false, Ordering::SeqCst);
    let f0 = fetches(&kc);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let t = sa_token(&key, &iss);
            let addr = gw.addr;
            tokio::spawn(async move { send(req("POST", addr, CREATE, Some(&t), Some(&body()))).await })
        })
        .collect();
    for t in tasks {
        let a = t.await.unwrap();
        assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    }
    assert!(fetches(&kc) - f0 <= 2, "{} fetches", fetches(&kc) - f0);
    gw.shutdown().await;
}

/// The demo policy names realm `demo`; Keycloak is unreachable, so its keys never load: not
/// ready, without any `prefetch` setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_while_the_policy_named_realms_keys_never_loaded() {
    let policies = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let dead = support::proxy_kit::closed_addr();
    let s = settings(&format!("http://{dead}"), Some(&policies));
    assert!(s.jwks.prefetch.is_empty());
    let gw = gateway(s).await;
    sleep(Duration::from_millis(300)).await;
    let (status, text) = admin(&gw, "/readyz").await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("keys of realm demo not loaded"), "{text}");
    assert_eq!(metric(&gw, "dcr_gateway_ready").await, Some(0.0));
    gw.shutdown().await;
}

/// The proxy's listen backlog is `max_connections` (as HAProxy's is `maxconn`), not tokio's
/// 1,024: connections a burst opens while the gateway is held up wait in the kernel's queue
/// instead of having their SYNs dropped (and retried 1, 3, 7 s later). Read with `ss`, which
/// shows a listening socket's backlog in its Send-Q column; the kernel caps it at somaxconn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listen_backlog_is_max_connections() {
    let up = upstream(|_req| async { json_response(200, &json!({})) }).await;
    let mut s = settings(&up.url(), None);
    s.max_connections = 2000;
    let gw = gateway(s).await;
    let out = std::process::Command::new("ss")
        .args(["-Hltn", &format!("sport = :{}", gw.addr.port())])
        .output()
        .expect("this test needs ss (iproute2)");
    let text = String::from_utf8_lossy(&out.stdout);
    let backlog: u64 = text
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no listening socket in ss output: {text:?}"));
    let somaxconn: u64 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(backlog, 2000.min(somaxconn), "ss: {text}");
    if somaxconn > 1024 {
        assert_ne!(backlog, 1024, "tokio's default backlog");
    }
}
