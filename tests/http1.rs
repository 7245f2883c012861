//! HTTP/1.1 on one connection, byte for byte: requests pipelined in one write, a body that
//! arrives after its head (the fast path hands the connection to hyper, which serves it and
//! the rest), `Connection: close`, `HEAD`, and bodies of unknown length (4 KB, 8 MiB), each followed by
//! another request on the same connection so that a framing mistake would show.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::proxy_kit::{pattern, streamed};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One answer as read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// Reads one response from `s` (`buf` keeps what belongs to the next), decoding its framing.
async fn answer(s: &mut TcpStream, buf: &mut Vec<u8>, head_request: bool) -> Answer {
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        fill(s, buf).await;
    };
    let head = String::from_utf8(buf.drain(..head_end).collect())
        .unwrap()
        .to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: ").map(|v| v.parse::<usize>().unwrap()));
    let mut body = Vec::new();
    if head_request || status == 204 {
    } else if head.contains("\r\ntransfer-encoding: chunked\r\n") {
        loop {
            let line = loop {
                if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                    break p;
                }
                fill(s, buf).await;
            };
            let size = usize::from_str_radix(std::str::from_utf8(&buf[..line]).unwrap(), 16).unwrap();
            while buf.len() < line + 2 + size + 2 {
                fill(s, buf).await;
            }
            body.extend_from_slice(&buf[line + 2..line + 2 + size]);
            buf.drain(..line + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
    } else {
        let n = length.expect("a length or chunked");
        while buf.len() < n {
            fill(s, buf).await;
        }
        body = buf.drain(..n).collect();
    }
    Answer { status, head, body }
}

async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 16 * 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
        .await
        .expect("an answer in time")
        .unwrap();
    assert!(n > 0, "closed mid-answer: {:?}", String::from_utf8_lossy(buf));
    buf.extend_from_slice(&chunk[..n]);
}

/// An upstream that answers every request with its method, path and body (a streamed body of
/// unknown length for `/stream`).
async fn echo() -> Upstream {
    upstream(|s| async move {
        match s.uri.as_str() {
            "/stream" => return http::Response::new(streamed(4, 1000, 7)),
            "/big" => return http::Response::new(streamed(128, 64 * 1024, 9)), // 8 MiB
            _ => {}
        }
        let body = String::from_utf8_lossy(&s.body).into_owned();
        json_response(200, &json!({"method": s.method, "path": s.uri, "body": body}))
    })
    .await
}

/// The echo upstream, a gateway in front of it, and a connection to the gateway.
async fn connected() -> (Upstream, dcr_gateway::Gateway, TcpStream) {
    let up = echo().await;
    let gw = gateway(settings(&up.url(), None)).await;
    let s = TcpStream::connect(gw.addr).await.unwrap();
    (up, gw, s)
}

fn path_of(a: &Answer) -> String {
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    format!(
        "{} {} {}",
        v["method"].as_str().unwrap(),
        v["path"].as_str().unwrap(),
        v["body"].as_str().unwrap()
    )
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (up, gw, mut s) = connected().await;
    s.write_all(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyzGET /c HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let a = answer(&mut s, &mut buf, false).await;
        assert_eq!(a.status, 200, "{a:?}");
        assert!(
            a.head.contains("\r\nx-request-id: ") && a.head.contains("\r\ndate: "),
            "{}",
            a.head
        );
        seen.push(path_of(&a));
    }
    assert_eq!(seen, ["GET /a ", "POST /b xyz", "GET /c "]);
    assert_eq!(up.hits(), 3);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_body_that_arrives_after_its_head_is_served_and_the_connection_goes_on() {
    let (_up, gw, mut s) = connected().await;
    let mut buf = Vec::new();
    s.write_all(b"GET /first HTTP/1.1\r\nHost: h\r\n\r\n").await.unwrap();
    assert_eq!(path_of(&answer(&mut s, &mut buf, false).await), "GET /first ");
    s.write_all(b"POST /split HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.write_all(b" world").await.unwrap();
    assert_eq!(
        path_of(&answer(&mut s, &mut buf, false).await),
        "POST /split hello world"
    );
    // Chunked and HTTP/1.0-style requests later on the same connection: hyper's now.
    s.write_all(b"POST /chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /after HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(path_of(&answer(&mut s, &mut buf, false).await), "POST /chunked abc");
    assert_eq!(path_of(&answer(&mut s, &mut buf, false).await), "GET /after ");
    gw.shutdown().await;
}

#[tokio::test]
async fn head_and_unknown_length_bodies_keep_the_framing() {
    let (_up, gw, mut s) = connected().await;
    let mut buf = Vec::new();
    s.write_all(b"HEAD /h HTTP/1.1\r\nHost: h\r\n\r\nGET /stream HTTP/1.1\r\nHost: h\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let head = answer(&mut s, &mut buf, true).await;
    assert_eq!(head.status, 200);
    assert!(
        head.head.contains("\r\ncontent-length: "),
        "HEAD keeps the length: {}",
        head.head
    );
    let streamed = answer(&mut s, &mut buf, false).await;
    assert!(
        streamed.head.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{}",
        streamed.head
    );
    assert_eq!(streamed.body, pattern(4000, 7));
    assert_eq!(path_of(&answer(&mut s, &mut buf, false).await), "GET /next ");
    s.write_all(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n").await.unwrap();
    let big = answer(&mut s, &mut buf, false).await;
    assert!(
        big.body == pattern(128 * 64 * 1024, 9),
        "8 MiB arrive whole ({} bytes)",
        big.body.len()
    );
    s.write_all(b"GET /last HTTP/1.1\r\nHost: h\r\n\r\n").await.unwrap();
    assert_eq!(path_of(&answer(&mut s, &mut buf, false).await), "GET /last ");
    gw.shutdown().await;
}

#[tokio::test]
async fn connection_close_is_answered_and_honoured() {
    let (up, gw, mut s) = connected().await;
    let mut buf = Vec::new();
    s.write_all(b"GET /bye HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let a = answer(&mut s, &mut buf, false).await;
    assert!(a.head.contains("\r\nconnection: close\r\n"), "{}", a.head);
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(
        n + buf.len(),
        0,
        "nothing after the close: {:?}",
        String::from_utf8_lossy(&rest)
    );
    assert_eq!(up.hits(), 1, "the request after the close is not served");
    gw.shutdown().await;
}

#[tokio::test]
async fn http2_cannot_start_halfway_through_an_http1_connection() {
    let (up, gw, mut s) = connected().await;
    let mut buf = Vec::new();
    s.write_all(b"GET /first HTTP/1.1\r\nHost: h\r\n\r\n").await.unwrap();
    assert_eq!(path_of(&answer(&mut s, &mut buf, false).await), "GET /first ");
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    // hyper's HTTP/1 parser ends the connection on a preface, without an answer (as it did
    // before the fast path); what must not come back is HTTP/2 (a SETTINGS frame).
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(
        rest.is_empty() || rest.starts_with(b"HTTP/1.1 "),
        "no HTTP/2 on this connection: {rest:?}"
    );
    assert_eq!(up.hits(), 1);
    gw.shutdown().await;
}
