use std::pin::Pin;

use bytes::Bytes;
use http::Method;

use super::*;
use crate::net::Body;
use crate::net::pool::upload::{encode_head, push_decimal, push_hex, request_framing};

fn head(method: Method, body: &Body, headers: &[(&str, &str)]) -> String {
    let mut map = HeaderMap::new();
    for (n, v) in headers {
        map.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let uri: http::Uri = "/realms/a/x?y=1".parse().unwrap();
    let mut out = Vec::new();
    encode_head(&mut out, &method, &uri, &map, request_framing(&method, body));
    String::from_utf8(out).unwrap()
}

/// A body of unknown length, its frames ready at once.
pub(in crate::net::pool) struct Frames(pub std::collections::VecDeque<Bytes>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// `ab` then `c`, length unknown.
pub(in crate::net::pool) fn streaming() -> Body {
    crate::net::boxed(Frames([Bytes::from_static(b"ab"), Bytes::from_static(b"c")].into()))
}

#[test]
fn the_framing_is_what_is_sent_not_what_the_request_claims() {
    let claims = [("content-length", "99"), ("transfer-encoding", "chunked"), ("x-a", "1")];
    let full = crate::net::full("abc");
    let h = head(Method::POST, &full, &claims);
    assert_eq!(
        h, "POST /realms/a/x?y=1 HTTP/1.1\r\nx-a: 1\r\ncontent-length: 3\r\n\r\n",
        "a known length replaces the claimed framing"
    );
    let h = head(Method::POST, &streaming(), &claims);
    assert!(h.ends_with("x-a: 1\r\ntransfer-encoding: chunked\r\n\r\n"), "{h}");
    assert_eq!(h.matches("transfer-encoding").count(), 1, "{h}");
    assert!(!h.contains("content-length"), "{h}");
}

#[test]
fn empty_bodies_carry_a_zero_length_only_where_content_is_expected() {
    let empty = crate::net::empty();
    assert_eq!(
        head(Method::GET, &empty, &[("content-length", "0")]),
        "GET /realms/a/x?y=1 HTTP/1.1\r\n\r\n"
    );
    for m in [Method::POST, Method::PUT, Method::PATCH] {
        let h = head(m.clone(), &empty, &[]);
        assert!(h.ends_with(" HTTP/1.1\r\ncontent-length: 0\r\n\r\n"), "{m}: {h}");
    }
    assert!(!head(Method::DELETE, &empty, &[]).contains("content-length"));
}

#[test]
fn numbers_are_written_in_full() {
    for n in [0u64, 7, 10, 1234567890, u64::MAX] {
        let mut out = Vec::new();
        push_decimal(&mut out, n);
        assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
    }
    for n in [0usize, 9, 15, 16, 255, 65536] {
        let mut out = Vec::new();
        push_hex(&mut out, n);
        assert_eq!(String::from_utf8(out).unwrap(), format!("{n:x}"));
    }
}

/// The parsed head and the bytes it left.
fn parsed(raw: &str) -> Result<Option<(Response<()>, usize)>, WireError> {
    let mut buf = BytesMut::from(raw.as_bytes());
    Ok(parse_head(&mut buf)?.map(|resp| (resp, raw.len() - buf.len())))
}

fn framing(head_request: bool, raw: &str) -> Result<(Framing, bool), WireError> {
    let (resp, _) = parsed(raw)?.expect("complete");
    let f = response_framing(head_request, &resp)?;
    Ok((f, f != Framing::Close && keeps_alive(&resp)))
}

#[test]
fn response_heads_parse_and_partial_ones_wait() {
    let raw = "HTTP/1.1 201 Created\r\nLocation: /x\r\nA: 1\r\nA: 2\r\n\r\nbody";
    let (resp, used) = parsed(raw).unwrap().unwrap();
    assert_eq!(used, raw.len() - "body".len());
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["location"], "/x");
    assert_eq!(resp.headers().get_all("a").iter().count(), 2);
    assert!(parsed("HTTP/1.1 200 OK\r\nA: 1\r\n").unwrap().is_none());
    assert!(parsed("").unwrap().is_none());
    for bad in [
        "HTTX/1.1 200 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nbad name: 1\r\n\r\n",
    ] {
        assert!(matches!(parsed(bad), Err(WireError::Head(_))), "{bad}");
    }
    let many: String = (0..=MAX_HEADERS).map(|i| format!("h{i}: v\r\n")).collect();
    assert!(matches!(
        parsed(&format!("HTTP/1.1 200 OK\r\n{many}\r\n")),
        Err(WireError::Head(_))
    ));
}

#[test]
fn response_framing_follows_rfc_9112() {
    let ok = "HTTP/1.1 200 OK\r\n";
    assert_eq!(
        framing(false, &format!("{ok}content-length: 5\r\n\r\n")).unwrap(),
        (Framing::Length(5), true)
    );
    assert_eq!(
        framing(false, &format!("{ok}content-length: 5, 5\r\ncontent-length: 5\r\n\r\n"))
            .unwrap()
            .0,
        Framing::Length(5)
    );
    assert_eq!(
        framing(false, &format!("{ok}content-length: 0\r\n\r\n")).unwrap(),
        (Framing::Empty, true)
    );
    assert_eq!(
        framing(false, &format!("{ok}transfer-encoding: gzip, Chunked\r\n\r\n")).unwrap(),
        (Framing::Chunked, true)
    );
    assert_eq!(
        framing(false, &format!("{ok}transfer-encoding: chunked, gzip\r\n\r\n")).unwrap(),
        (Framing::Close, false)
    );
    assert_eq!(
        framing(
            false,
            &format!("{ok}transfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n")
        )
        .unwrap(),
        (Framing::Chunked, false),
        "chunked wins, and such a connection is not reused"
    );
    assert_eq!(framing(false, &format!("{ok}\r\n")).unwrap(), (Framing::Close, false));
    assert_eq!(
        framing(true, &format!("{ok}content-length: 5\r\n\r\n")).unwrap(),
        (Framing::Empty, true)
    );
    for status in ["204 No Content", "304 Not Modified"] {
        let raw = format!("HTTP/1.1 {status}\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(framing(false, &raw).unwrap(), (Framing::Empty, true), "{status}");
    }
    let keeps = |raw: &str| framing(false, raw).unwrap().1;
    assert!(!keeps(&format!(
        "{ok}connection: keep-alive, Close\r\ncontent-length: 1\r\n\r\n"
    )));
    assert!(!keeps("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n"));
    assert!(keeps(
        "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 1\r\n\r\n"
    ));
    for bad in [
        "content-length: 5\r\ncontent-length: 6",
        "content-length: 5, 6",
        "content-length: +5",
        "content-length: 0x5",
        "content-length:",
        "content-length: 99999999999999999999999",
    ] {
        let raw = format!("{ok}{bad}\r\n\r\n");
        assert!(matches!(framing(false, &raw), Err(WireError::Framing(_))), "{bad}");
    }
}
