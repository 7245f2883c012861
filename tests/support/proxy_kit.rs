//! Helpers for the foundation tests: streamed bodies, checksums, free ports and the one check
//! every JSON refusal must pass.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use dcr_gateway::net::{Body, BoxError};
use http_body::Frame;
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::sync::mpsc;

use super::Answer;

/// A body fed through a channel: every `Bytes` sent is one data frame; the body ends when the
/// sender is dropped. Its length is unknown up front, so HTTP/1.1 sends it chunked.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// A streamed body and the sender that feeds it.
pub fn channel_body(buffer: usize) -> (mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = mpsc::channel(buffer);
    (tx, ChannelBody(rx).boxed())
}

/// Deterministic pseudo-random bytes (xorshift64*), different for every `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A streamed body of `chunks` chunks of `chunk` bytes each (all of `pattern(chunks * chunk,
/// seed)`), fed from a spawned task so the bytes really arrive over time.
pub fn streamed(chunks: usize, chunk: usize, seed: u64) -> Body {
    let data = Bytes::from(pattern(chunks * chunk, seed));
    let (tx, body) = channel_body(4);
    tokio::spawn(async move {
        for i in 0..chunks {
            if tx.send(data.slice(i * chunk..(i + 1) * chunk)).await.is_err() {
                return;
            }
            if i % 16 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    body
}

/// SHA-256 of `data`, hex.
pub fn sha256(data: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A port nothing listens on right now (bound, read, released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// An address on 127.0.0.1 where a connection is refused.
pub fn closed_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Checks the one refusal shape (status, JSON content type, every field, the request id in
/// body and header agreeing) and returns the body.
pub fn assert_refusal(a: &Answer, status: u16, reason: &str) -> Value {
    let text = String::from_utf8_lossy(&a.body);
    assert_eq!(a.status.as_u16(), status, "status; body: {text}");
    let ct = a
        .headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(ct.starts_with("application/json"), "content-type `{ct}`; body: {text}");
    let v = a.json();
    assert_eq!(v["reason"], reason, "reason; body: {text}");
    for key in ["error", "error_description", "hint", "request_id"] {
        let s = v[key]
            .as_str()
            .unwrap_or_else(|| panic!("`{key}` is not a string: {text}"));
        assert!(!s.is_empty(), "`{key}` is empty: {text}");
    }
    assert!(v["details"].is_object(), "`details` is not an object: {text}");
    let header = a
        .headers
        .get("x-request-id")
        .map(|v| v.to_str().unwrap())
        .expect("x-request-id on a refusal");
    assert_eq!(v["request_id"], header, "request id in body and header");
    v
}
