use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::config::Settings;

/// How the test server answers.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// `200 ok`, keep-alive.
    Keep,
    /// `200 ok` and `Connection: close`, then close.
    Close,
    /// `200`, half the body, the other half 300 ms later.
    Slow,
}

/// A tiny HTTP/1.1 server: counts connections and records every request head it read.
struct Server {
    base: BaseUrl,
    accepted: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

async fn server(mode: Mode) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let (a, h) = (accepted.clone(), heads.clone());
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            a.fetch_add(1, Ordering::SeqCst);
            let h = h.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = buf.drain(..end + 4).collect();
                        h.lock().push(String::from_utf8_lossy(&head).into_owned());
                        let close = mode == Mode::Close;
                        let conn = if close { "connection: close\r\n" } else { "" };
                        let body = if mode == Mode::Slow { "ok" } else { "okok" };
                        let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: 4\r\n{conn}\r\n{body}");
                        if sock.write_all(answer.as_bytes()).await.is_err() || close {
                            return;
                        }
                        if mode == Mode::Slow {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            if sock.write_all(b"ok").await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    Server {
        base: format!("http://127.0.0.1:{port}").parse().unwrap(),
        accepted,
        heads,
    }
}

pub(super) fn pool_for(base: &BaseUrl, idle: Duration) -> Arc<Pool> {
    let raw: crate::config::FileConfig = toml::from_str("").unwrap();
    let settings: Settings = crate::config::load::build(raw, None, &crate::config::Overrides::default()).unwrap();
    Pool::new(base, crate::net::connector(&settings), idle)
}

async fn get(pool: &Arc<Pool>, uri: &str) -> u16 {
    let req = Request::get(uri).body(crate::net::empty()).unwrap();
    let resp = pool.send(req).await.unwrap();
    let status = resp.status().as_u16();
    crate::net::read_limited(resp.into_body(), 1024).await.unwrap();
    status
}

#[tokio::test]
async fn one_connection_serves_requests_in_turn() {
    let s = server(Mode::Keep).await;
    let pool = pool_for(&s.base, Duration::from_secs(60));
    for _ in 0..5 {
        assert_eq!(get(&pool, &format!("{}/a?b=c", s.base.as_string())).await, 200);
    }
    assert_eq!(s.accepted.load(Ordering::SeqCst), 1);
    let heads = s.heads.lock().clone();
    assert_eq!(heads.len(), 5);
    let first = heads[0].to_ascii_lowercase();
    assert!(first.starts_with("get /a?b=c http/1.1\r\n"), "{first}");
    assert!(first.contains(&format!("host: {}\r\n", s.base.authority)), "{first}");
}

#[tokio::test]
async fn a_busy_connection_is_not_shared_and_both_are_kept() {
    let s = server(Mode::Slow).await;
    let pool = pool_for(&s.base, Duration::from_secs(60));
    let uri = format!("{}/x", s.base.as_string());
    // The first response's body is still arriving, so its connection is on loan.
    let first = pool
        .send(Request::get(&uri).body(crate::net::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(pool.idle_len(), 0);
    assert_eq!(get(&pool, &uri).await, 200);
    assert_eq!(s.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(pool.idle_len(), 1);
    let body = crate::net::read_limited(first.into_body(), 1024).await.unwrap();
    assert_eq!(&body[..], b"okok");
    assert_eq!(pool.idle_len(), 2);
    for _ in 0..3 {
        assert_eq!(get(&pool, &uri).await, 200);
    }
    assert_eq!(s.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_dropped_response_gives_its_connection_back() {
    let s = server(Mode::Keep).await;
    let pool = pool_for(&s.base, Duration::from_secs(60));
    let uri = format!("{}/x", s.base.as_string());
    let resp = pool
        .send(Request::get(&uri).body(crate::net::empty()).unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await; // the body has arrived
    drop(resp);
    assert_eq!(pool.idle_len(), 1);
    assert_eq!(get(&pool, &uri).await, 200);
    assert_eq!(s.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_the_server_closed_is_replaced() {
    let s = server(Mode::Close).await;
    let pool = pool_for(&s.base, Duration::from_secs(60));
    let uri = format!("{}/x", s.base.as_string());
    for _ in 0..3 {
        assert_eq!(get(&pool, &uri).await, 200);
    }
    assert_eq!(s.accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn an_explicit_host_is_kept() {
    let s = server(Mode::Keep).await;
    let pool = pool_for(&s.base, Duration::from_secs(60));
    let req = Request::get(format!("{}/x", s.base.as_string()))
        .header(HOST, "sso.example.org")
        .body(crate::net::empty())
        .unwrap();
    pool.send(req).await.unwrap();
    let head = s.heads.lock()[0].to_ascii_lowercase();
    assert!(head.contains("host: sso.example.org\r\n"), "{head}");
    assert_eq!(head.matches("host:").count(), 1, "{head}");
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let s = server(Mode::Keep).await;
    let pool = pool_for(&s.base, Duration::from_millis(100));
    let uri = format!("{}/x", s.base.as_string());
    assert_eq!(get(&pool, &uri).await, 200);
    assert_eq!(pool.idle_len(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(pool.idle_len(), 0);
    assert_eq!(get(&pool, &uri).await, 200);
    assert_eq!(s.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let base: BaseUrl = format!("http://127.0.0.1:{port}").parse().unwrap();
    let pool = pool_for(&base, Duration::from_secs(60));
    let req = Request::get(format!("{}/x", base.as_string()))
        .body(crate::net::empty())
        .unwrap();
    let e = pool.send(req).await.unwrap_err();
    assert!(e.is_connect(), "{e}");
    assert_eq!(pool.idle_len(), 0);
}

#[test]
fn the_host_drops_only_the_scheme_default_port() {
    let host = |url: &str| host_value(&url.parse::<BaseUrl>().unwrap());
    assert_eq!(host("http://kc:80"), "kc");
    assert_eq!(host("http://kc:8080"), "kc:8080");
    assert_eq!(host("https://kc:443/auth"), "kc");
    assert_eq!(host("https://kc:80"), "kc:80");
    assert_eq!(host("http://[::1]:8080"), "[::1]:8080");
    assert_eq!(host("http://u:p@kc:8080"), "kc:8080");
    assert_eq!(host("https://u@kc"), "kc");
}

#[test]
fn absolute_targets_go_out_in_origin_form() {
    let mut uri: Uri = "http://kc:8080/realms/a/x?y=1".parse().unwrap();
    origin_form(&mut uri);
    assert_eq!(uri.to_string(), "/realms/a/x?y=1");
    let mut root: Uri = "http://kc:8080".parse().unwrap();
    origin_form(&mut root);
    assert_eq!(root.to_string(), "/");
}
