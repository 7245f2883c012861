//! The upload state machine under partial writes, interim and early answers, garbage,
//! cancellation, and a body that reports its end after its last byte.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::tests::pool_for;
use super::*;

/// A body fed by a channel: frames as they are sent, the end when the sender is dropped.
struct Fed {
    rx: mpsc::Receiver<Bytes>,
    exact: Option<u64>,
}

impl http_body::Body for Fed {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(http_body::Frame::data(b))))
    }
    fn size_hint(&self) -> http_body::SizeHint {
        match self.exact {
            Some(n) => http_body::SizeHint::with_exact(n),
            None => http_body::SizeHint::default(),
        }
    }
}

fn fed(exact: Option<u64>) -> (mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = mpsc::channel(4);
    (tx, crate::net::boxed(Fed { rx, exact }))
}

/// Decodes a chunked body at the start of `b`; returns (data, bytes used).
fn dechunk(b: &[u8]) -> (Vec<u8>, usize) {
    let mut at = 0;
    let mut out = Vec::new();
    loop {
        let end = at + b[at..].windows(2).position(|w| w == b"\r\n").expect("size line");
        let size = usize::from_str_radix(std::str::from_utf8(&b[at..end]).unwrap(), 16).unwrap();
        at = end + 2;
        if size == 0 {
            assert_eq!(&b[at..at + 2], b"\r\n", "last-chunk then CRLF");
            return (out, at + 2);
        }
        out.extend_from_slice(&b[at..at + size]);
        at += size;
        assert_eq!(&b[at..at + 2], b"\r\n", "CRLF after chunk data at {at}");
        at += 2;
    }
}

/// A server that reads slowly (small reads, pauses) and records every byte; answers 200
/// when the raw stream holds a complete chunked request.
async fn slow_reader() -> (BaseUrl, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let raw = Arc::new(Mutex::new(Vec::new()));
    let r = raw.clone();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut chunk = vec![0u8; 7001];
        let mut i = 0u32;
        loop {
            let n = match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            r.lock().extend_from_slice(&chunk[..n]);
            i += 1;
            if i.is_multiple_of(50) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if r.lock().ends_with(b"0\r\n\r\n") {
                sock.write_all(EMPTY).await.unwrap();
            }
        }
    });
    (format!("http://127.0.0.1:{port}").parse().unwrap(), raw)
}

const EMPTY: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";

#[tokio::test]
async fn chunked_framing_is_byte_exact_under_partial_writes() {
    let (base, raw) = slow_reader().await;
    let pool = pool_for(&base, Duration::from_secs(60));
    let (tx, body) = fed(None);
    let mut expected = Vec::new();
    let sizes = [
        1usize,
        16384,
        16385,
        3,
        70_000,
        5,
        16383,
        200_000,
        1,
        40_000,
        2,
        1 << 20,
        7,
        1 << 20,
        9,
    ];
    let mut frames = Vec::new();
    for round in 0..4u8 {
        for (i, &n) in sizes.iter().enumerate() {
            let b: Vec<u8> = (0..n)
                .map(|k| (k as u8).wrapping_mul(31).wrapping_add(i as u8 + round))
                .collect();
            expected.extend_from_slice(&b);
            frames.push(Bytes::from(b));
        }
    }
    let feeder = tokio::spawn(async move {
        for (i, f) in frames.into_iter().enumerate() {
            if i % 3 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            tx.send(f).await.unwrap();
        }
    });
    let r = Request::post(format!("{}/x", base.as_string())).body(body).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(30), pool.send(r))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    feeder.await.unwrap();
    let got = raw.lock().clone();
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let (data, used) = dechunk(&got[head_end..]);
    assert_eq!(head_end + used, got.len(), "nothing after the last chunk");
    assert!(data == expected, "data differs: {} vs {}", data.len(), expected.len());
    drop(resp);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(pool.idle_len(), 1);
}

/// A server: reads the head, writes `answer` at once, then reads and keeps everything.
async fn answers_at_head(
    answer: &'static [u8],
    then: Option<&'static [u8]>,
) -> (BaseUrl, Arc<Mutex<Vec<u8>>>, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let raw = Arc::new(Mutex::new(Vec::new()));
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (r, a) = (raw.clone(), accepted.clone());
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let n = a.fetch_add(1, Ordering::SeqCst);
            let r = r.clone();
            tokio::spawn(async move {
                let mut chunk = vec![0u8; 65536];
                let mut buf = Vec::new();
                let mut answered = false;
                loop {
                    let k = match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => k,
                    };
                    buf.extend_from_slice(&chunk[..k]);
                    r.lock().extend_from_slice(&chunk[..k]);
                    if !answered && buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        answered = true;
                        sock.write_all(if n == 0 { answer } else { EMPTY }).await.unwrap();
                    }
                    if let Some(t) = then
                        && buf.ends_with(b"0\r\n\r\n")
                    {
                        sock.write_all(t).await.unwrap();
                        buf.clear();
                        answered = false;
                    }
                }
            });
        }
    });
    (format!("http://127.0.0.1:{port}").parse().unwrap(), raw, accepted)
}

#[tokio::test]
async fn a_100_then_final_in_one_read_while_the_body_waits_is_an_early_answer() {
    let (base, _raw, _) = answers_at_head(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 413 Too Large\r\ncontent-length: 2\r\n\r\nno",
        None,
    )
    .await;
    let pool = pool_for(&base, Duration::from_secs(60));
    let (tx, body) = fed(None);
    tx.send(Bytes::from_static(b"abc")).await.unwrap();
    let r = Request::post(format!("{}/x", base.as_string())).body(body).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), pool.send(r))
        .await
        .expect("no hang")
        .unwrap();
    assert_eq!(resp.status(), 413);
    let b = crate::net::read_limited(resp.into_body(), 100).await.unwrap();
    assert_eq!(&b[..], b"no");
    assert_eq!(pool.idle_len(), 0);
    drop(tx);
}

#[tokio::test]
async fn a_100_while_the_body_waits_then_the_whole_request_keeps_the_connection() {
    let (base, raw, accepted) = answers_at_head(
        b"HTTP/1.1 100 Continue\r\n\r\n",
        Some(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok"),
    )
    .await;
    let pool = pool_for(&base, Duration::from_secs(60));
    let (tx, body) = fed(None);
    let r = Request::post(format!("{}/x", base.as_string()))
        .header("expect", "100-continue")
        .body(body)
        .unwrap();
    let feeder = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.send(Bytes::from_static(b"abc")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
    let resp = tokio::time::timeout(Duration::from_secs(5), pool.send(r))
        .await
        .expect("no hang")
        .unwrap();
    assert_eq!(resp.status(), 201);
    let b = crate::net::read_limited(resp.into_body(), 100).await.unwrap();
    assert_eq!(&b[..], b"ok");
    feeder.await.unwrap();
    assert_eq!(pool.idle_len(), 1);
    assert!(raw.lock().ends_with(b"3\r\nabc\r\n0\r\n\r\n"));
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn garbage_while_the_body_waits_fails_and_is_not_pooled() {
    let (base, _raw, _) = answers_at_head(b"SPDY/9 hello\r\n\r\n", None).await;
    let pool = pool_for(&base, Duration::from_secs(60));
    let (tx, body) = fed(None);
    let r = Request::post(format!("{}/x", base.as_string())).body(body).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), pool.send(r))
        .await
        .expect("no hang");
    assert!(got.is_err());
    assert_eq!(pool.idle_len(), 0);
    drop(tx);
}

#[tokio::test]
async fn a_timeout_during_the_upload_drops_the_connection() {
    let (base, _raw, accepted) = answers_at_head(b"", Some(EMPTY)).await;
    let pool = pool_for(&base, Duration::from_secs(60));
    let (tx, body) = fed(Some(10));
    tx.send(Bytes::from_static(b"abc")).await.unwrap();
    let r = Request::post(format!("{}/x", base.as_string())).body(body).unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), pool.send(r))
            .await
            .is_err()
    );
    assert_eq!(pool.idle_len(), 0);
    drop(tx);
    let r = Request::get(format!("{}/x", base.as_string()))
        .body(crate::net::empty())
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(2), pool.send(r)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

/// Keycloak has the whole request (all declared bytes), the body has not said it ended yet.
#[tokio::test]
async fn an_answer_after_all_declared_bytes_but_before_the_body_end() {
    let (base, _raw, accepted) = answers_at_head(b"", None).await;
    let _ = accepted;
    // a server answering after the declared bytes
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _ = base;
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let k = sock.read(&mut chunk).await.unwrap();
            if k == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..k]);
            if buf.ends_with(b"\r\n\r\nabc") {
                sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await
                    .unwrap();
                buf.clear();
            }
        }
    });
    let base: BaseUrl = format!("http://127.0.0.1:{port}").parse().unwrap();
    let pool = pool_for(&base, Duration::from_secs(60));
    let (tx, body) = fed(Some(3));
    tx.send(Bytes::from_static(b"abc")).await.unwrap();
    let r = Request::post(format!("{}/x", base.as_string())).body(body).unwrap();
    let dropper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(tx);
    });
    let resp = tokio::time::timeout(Duration::from_secs(5), pool.send(r))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    dropper.await.unwrap();
    // The request was whole on the wire; is the connection kept?
    assert_eq!(
        pool.idle_len(),
        1,
        "whole request (3 of 3 bytes sent) treated as cut short"
    );
}
