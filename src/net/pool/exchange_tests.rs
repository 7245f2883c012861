//! The exchange on the wire, against scripted raw-TCP servers: request framing as the server
//! reads it, response bodies by every framing, and when a connection is reused.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::tests::pool_for;
use super::*;

/// One scripted answer: written in segments with a short pause between them, then the
/// connection is closed (after a pause) when `close` is set.
#[derive(Clone)]
struct Answer {
    segments: Vec<&'static [u8]>,
    close: bool,
}

fn answer(segments: &[&'static [u8]]) -> Answer {
    Answer {
        segments: segments.to_vec(),
        close: false,
    }
}

fn closing(segments: &[&'static [u8]]) -> Answer {
    Answer {
        segments: segments.to_vec(),
        close: true,
    }
}

struct Script {
    base: BaseUrl,
    accepted: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Every byte received, on any connection.
    raw: Arc<Mutex<Vec<u8>>>,
}

/// A server whose connections answer their requests in turn with `answers` (cycling).
async fn scripted(answers: Vec<Answer>) -> Script {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let raw = Arc::new(Mutex::new(Vec::new()));
    let (a, r, w) = (accepted.clone(), requests.clone(), raw.clone());
    tokio::spawn(async move {
        loop {
            let (sock, _) = listener.accept().await.unwrap();
            a.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(sock, answers.clone(), r.clone(), w.clone()));
        }
    });
    Script {
        base: format!("http://127.0.0.1:{port}").parse().unwrap(),
        accepted,
        requests,
        raw,
    }
}

async fn serve(
    mut sock: TcpStream,
    answers: Vec<Answer>,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
    raw: Arc<Mutex<Vec<u8>>>,
) {
    let mut buf = Vec::new();
    for i in 0.. {
        let Some(request) = read_request(&mut sock, &mut buf, &raw).await else {
            return;
        };
        requests.lock().push(request);
        let a = &answers[i % answers.len()];
        for (n, segment) in a.segments.iter().enumerate() {
            if n > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if sock.write_all(segment).await.is_err() {
                return;
            }
        }
        if a.close {
            tokio::time::sleep(Duration::from_millis(50)).await;
            return;
        }
    }
}

/// One whole request (head and body, by `Content-Length` or chunked) taken from `buf`,
/// reading more as needed.
async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>, raw: &Mutex<Vec<u8>>) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map(|n| n.trim().parse::<usize>().unwrap());
            let whole = match length {
                Some(n) if buf.len() >= end + 4 + n => Some(end + 4 + n),
                None if head.contains("transfer-encoding: chunked") => {
                    buf.windows(5).position(|w| w == b"0\r\n\r\n").map(|p| p + 5)
                }
                None => Some(end + 4),
                _ => None,
            };
            if let Some(whole) = whole {
                return Some(buf.drain(..whole).collect());
            }
        }
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                raw.lock().extend_from_slice(&chunk[..n]);
            }
        }
    }
}

fn req(s: &Script, method: Method, body: Body) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(format!("{}/x", s.base.as_string()))
        .body(body)
        .unwrap()
}

/// Status and body, or the error text of whichever failed.
async fn exchange(pool: &Arc<Pool>, r: Request<Body>) -> Result<(u16, Bytes), String> {
    let resp = pool.send(r).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = crate::net::read_limited(resp.into_body(), 1 << 20)
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok((status, body))
}

/// The status of an exchange that must succeed, its body read.
async fn status(pool: &Arc<Pool>, r: Request<Body>) -> u16 {
    exchange(pool, r).await.unwrap().0
}

const EMPTY_200: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";

#[tokio::test]
async fn request_bodies_arrive_framed_by_what_is_sent() {
    let s = scripted(vec![answer(&[EMPTY_200])]).await;
    let pool = pool_for(&s.base, Duration::from_secs(60));
    let mut claimed = req(&s, Method::POST, crate::net::full("abc"));
    claimed
        .headers_mut()
        .insert("content-length", HeaderValue::from_static("99"));
    assert_eq!(status(&pool, claimed).await, 200);
    assert_eq!(
        status(&pool, req(&s, Method::POST, wire::tests::streaming())).await,
        200
    );
    let big = vec![b'x'; 50_000];
    assert_eq!(
        status(&pool, req(&s, Method::PUT, crate::net::full(big.clone()))).await,
        200
    );
    let seen = s.requests.lock().clone();
    let text = |i: usize| String::from_utf8_lossy(&seen[i]).into_owned();
    assert!(text(0).ends_with("content-length: 3\r\n\r\nabc"), "{}", text(0));
    assert!(!text(0).contains("99"), "{}", text(0));
    assert!(
        text(1).ends_with("transfer-encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n"),
        "{}",
        text(1)
    );
    assert!(seen[2].ends_with(&big) && text(2).contains("content-length: 50000\r\n"));
    assert_eq!(s.accepted.load(Ordering::SeqCst), 1, "one connection carried all three");
}

#[tokio::test]
async fn chunked_bodies_decode_across_reads_and_the_connection_is_reused() {
    let s = scripted(vec![answer(&[
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhel",
        b"lo\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n",
        b"\r\n",
    ])])
    .await;
    let pool = pool_for(&s.base, Duration::from_secs(60));
    for _ in 0..2 {
        let (status, body) = exchange(&pool, req(&s, Method::GET, crate::net::empty()))
            .await
            .unwrap();
        assert_eq!((status, &body[..]), (200, &b"hello world"[..]));
    }
    assert_eq!(s.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn interim_responses_are_skipped_and_bodiless_ones_keep_the_connection() {
    let s = scripted(vec![
        answer(&[
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok",
        ]),
        answer(&[b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"]),
        answer(&[b"HTTP/1.1 204 No Content\r\ncontent-length: 10\r\n\r\n"]),
        answer(&[b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nend"]),
    ])
    .await;
    let pool = pool_for(&s.base, Duration::from_secs(60));
    let got = exchange(&pool, req(&s, Method::POST, crate::net::full("x")))
        .await
        .unwrap();
    assert_eq!((got.0, &got.1[..]), (201, &b"ok"[..]));
    let got = exchange(&pool, req(&s, Method::HEAD, crate::net::empty()))
        .await
        .unwrap();
    assert_eq!((got.0, got.1.len()), (200, 0), "a HEAD answer has no body");
    let got = exchange(&pool, req(&s, Method::DELETE, crate::net::empty()))
        .await
        .unwrap();
    assert_eq!((got.0, got.1.len()), (204, 0));
    let got = exchange(&pool, req(&s, Method::GET, crate::net::empty()))
        .await
        .unwrap();
    assert_eq!((got.0, &got.1[..]), (200, &b"end"[..]));
    assert_eq!(s.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_body_until_close_ends_at_the_close_and_its_connection_is_not_reused() {
    let s = scripted(vec![closing(&[b"HTTP/1.1 200 OK\r\n\r\npart1", b"part2"])]).await;
    let pool = pool_for(&s.base, Duration::from_secs(60));
    for _ in 0..2 {
        let (_, body) = exchange(&pool, req(&s, Method::GET, crate::net::empty()))
            .await
            .unwrap();
        assert_eq!(&body[..], b"part1part2");
    }
    assert_eq!(s.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_connection_closed_while_idle_is_not_used() {
    let s = scripted(vec![closing(&[b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"])]).await;
    let pool = pool_for(&s.base, Duration::from_secs(60));
    assert_eq!(status(&pool, req(&s, Method::POST, crate::net::full("a"))).await, 200);
    assert_eq!(pool.idle_len(), 1, "nothing said the connection would close");
    tokio::time::sleep(Duration::from_millis(200)).await; // the server has closed it by now
    assert_eq!(status(&pool, req(&s, Method::POST, crate::net::full("b"))).await, 200);
    assert_eq!(s.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(s.requests.lock().len(), 2, "each request was written once");
}

#[tokio::test]
async fn bytes_beyond_the_body_keep_the_connection_out_of_the_pool() {
    let s = scripted(vec![answer(&[b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA"])]).await;
    let pool = pool_for(&s.base, Duration::from_secs(60));
    let (_, body) = exchange(&pool, req(&s, Method::GET, crate::net::empty()))
        .await
        .unwrap();
    assert_eq!(&body[..], b"ok");
    assert_eq!(pool.idle_len(), 0);
}

#[tokio::test]
async fn broken_answers_fail_and_are_not_reused() {
    let cases: [(&'static [u8], &str); 6] = [
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2;a\nb\r\nok\r\n0\r\n\r\n",
            "bare CR or LF",
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabcd",
            "closed before the response body ended",
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n",
            "longer than its size",
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            "chunk-size",
        ),
        (b"NOT HTTP\r\n\r\n", "malformed response head"),
        (b"HTTP/1.1 200", "closed before a complete response head (12 bytes"),
    ];
    for (raw, expect) in cases {
        let s = scripted(vec![closing(&[raw])]).await;
        let pool = pool_for(&s.base, Duration::from_secs(60));
        let e = exchange(&pool, req(&s, Method::GET, crate::net::empty()))
            .await
            .unwrap_err();
        assert!(e.contains(expect), "{}: {e}", String::from_utf8_lossy(raw));
        assert_eq!(pool.idle_len(), 0);
    }
}

#[tokio::test]
async fn a_large_body_streams_through_and_the_connection_is_kept() {
    let body: &'static [u8] = Box::leak(
        [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n"[..],
            &[b'y'; 100_000][..],
        ]
        .concat()
        .into_boxed_slice(),
    );
    let s = scripted(vec![answer(&[body])]).await;
    let pool = pool_for(&s.base, Duration::from_secs(60));
    let (_, got) = exchange(&pool, req(&s, Method::GET, crate::net::empty()))
        .await
        .unwrap();
    assert!(got.len() == 100_000 && got.iter().all(|&b| b == b'y'));
    assert_eq!(pool.idle_len(), 1);
}

#[tokio::test]
async fn a_body_longer_than_it_declared_is_never_written_past_its_length() {
    let s = scripted(vec![answer(&[EMPTY_200])]).await;
    let pool = pool_for(&s.base, Duration::from_secs(60));
    // Large enough that it would be written straight out, not gathered first.
    let smuggled = Bytes::from(b"GET /smuggled HTTP/1.1\r\n\r\n".repeat(1000));
    let frames = wire::tests::Frames([Bytes::from_static(b"ab"), smuggled].into());
    let liar = Liar {
        frames: frames.0,
        claim: 2,
        pause: false,
        wait: false,
    };
    let e = exchange(&pool, req(&s, Method::POST, crate::net::boxed(liar)))
        .await
        .unwrap_err();
    assert!(e.contains("declared 2 bytes and held more"), "{e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!String::from_utf8_lossy(&s.raw.lock()).contains("smuggled"));
    assert_eq!(pool.idle_len(), 0);
}

/// A body that declares `claim` bytes whatever it holds; with `pause`, it waits once before
/// each frame (so that what was gathered is written out first).
struct Liar {
    frames: std::collections::VecDeque<Bytes>,
    claim: u64,
    pause: bool,
    wait: bool,
}

impl http_body::Body for Liar {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.pause && std::mem::replace(&mut self.wait, false) {
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        self.wait = true;
        std::task::Poll::Ready(self.frames.pop_front().map(|b| Ok(http_body::Frame::data(b))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.claim)
    }
}

#[tokio::test]
async fn bytes_past_the_declared_length_never_reach_the_upstream_even_between_waits() {
    let s = scripted(vec![answer(&[EMPTY_200])]).await;
    let pool = pool_for(&s.base, Duration::from_secs(60));
    let liar = Liar {
        frames: [
            Bytes::from_static(b"abc"),
            Bytes::from_static(b"GET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n"),
        ]
        .into(),
        claim: 3,
        pause: true,
        wait: false,
    };
    let r = exchange(&pool, req(&s, Method::POST, crate::net::boxed(liar))).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!String::from_utf8_lossy(&s.raw.lock()).contains("/smuggled"), "{r:?}");
}

/// A server that reads one request head, then answers with `head` and `body_len` bytes
/// without reading the request body first; then drains what comes until the client closes.
async fn early_answerer(head: String, body_len: usize, close_after: bool) -> BaseUrl {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let (mut buf, mut chunk) = (Vec::new(), [0u8; 8192]);
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = sock.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
        }
        sock.write_all(head.as_bytes()).await.unwrap();
        sock.write_all(&vec![b'r'; body_len]).await.unwrap();
        if close_after {
            tokio::time::sleep(Duration::from_millis(50)).await;
            return; // closed with the request body unread: the peer sees a reset
        }
        let mut sink = vec![0u8; 65536];
        while let Ok(n) = sock.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    });
    format!("http://127.0.0.1:{port}").parse().unwrap()
}

fn big_post(base: &BaseUrl, n: usize) -> Request<Body> {
    Request::post(format!("{}/x", base.as_string()))
        .body(crate::net::full(vec![b'q'; n]))
        .unwrap()
}

#[tokio::test]
async fn an_answer_before_the_body_is_sent_is_read_not_deadlocked() {
    const N: usize = 16 << 20;
    let base = early_answerer(format!("HTTP/1.1 200 OK\r\ncontent-length: {N}\r\n\r\n"), N, false).await;
    let pool = pool_for(&base, Duration::from_secs(60));
    let got = tokio::time::timeout(Duration::from_secs(20), async {
        let resp = pool.send(big_post(&base, N)).await.map_err(|e| e.to_string())?;
        let body = crate::net::read_limited(resp.into_body(), 2 * N)
            .await
            .map_err(|e| format!("{e:?}"))?;
        Ok::<usize, String>(body.len())
    })
    .await;
    assert!(matches!(got, Ok(Ok(n)) if n == N), "{got:?}");
    assert_eq!(
        pool.idle_len(),
        0,
        "a connection whose request was cut short is not reused"
    );
}

#[tokio::test]
async fn an_early_refusal_then_close_reaches_the_caller() {
    let head = "HTTP/1.1 413 Request Entity Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let base = early_answerer(head.to_owned(), 0, true).await;
    let pool = pool_for(&base, Duration::from_secs(60));
    let got = tokio::time::timeout(Duration::from_secs(10), pool.send(big_post(&base, 8 << 20))).await;
    let status = match &got {
        Ok(Ok(resp)) => Some(resp.status().as_u16()),
        _ => None,
    };
    assert_eq!(
        status,
        Some(413),
        "{:?}",
        got.as_ref().map(|r| r.as_ref().err().map(|e| e.to_string()))
    );
}

#[tokio::test]
async fn chunked_in_http_1_0_and_a_request_saying_close_are_not_pooled() {
    let s = scripted(vec![answer(&[
        b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    ])])
    .await;
    let pool = pool_for(&s.base, Duration::from_secs(60));
    let (_, body) = exchange(&pool, req(&s, Method::GET, crate::net::empty()))
        .await
        .unwrap();
    assert_eq!(&body[..], b"ok");
    assert_eq!(pool.idle_len(), 0);

    let s = scripted(vec![answer(&[EMPTY_200])]).await;
    let pool = pool_for(&s.base, Duration::from_secs(60));
    let mut r = req(&s, Method::GET, crate::net::empty());
    r.headers_mut().insert("connection", HeaderValue::from_static("close"));
    exchange(&pool, r).await.unwrap();
    assert_eq!(pool.idle_len(), 0);
}
