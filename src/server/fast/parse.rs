//! The request heads the fast path takes: a strict subset of what hyper accepts, read with
//! the same parser (httparse, hyper's default configuration) and turned into the same
//! `http::Request` hyper would build. Anything outside the subset is left to hyper, bytes
//! untouched, so the subset can only narrow what is served here, never widen what is accepted.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, EXPECT, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};
use http_body_util::Full;

/// Most header fields in a request the fast path takes (hyper allows 100).
const MAX_HEADERS: usize = 64;
/// Most bytes of a head and its body the fast path waits for (hyper buffers up to ~400 KiB).
pub(super) const MAX_MESSAGE: usize = 16 * 1024;

/// What the start of a connection's unread bytes holds.
pub(super) enum Parsed {
    /// A whole request (head and body), its bytes taken from the buffer.
    Request(Box<Whole>),
    /// The start of a request the fast path would take: more bytes are needed.
    Partial,
    /// Something the fast path leaves to hyper: another protocol, HTTP/1.0, chunked or
    /// `Expect`, an upgrade, a body not yet whole, anything malformed or unusual.
    Defer,
}

/// A request read whole.
pub(super) struct Whole {
    pub request: Request<Full<Bytes>>,
    /// The client asked to close after this answer (`Connection: close`).
    pub close: bool,
}

/// Reads one request from the start of `buf`, taking its bytes only when it is whole.
pub(super) fn request(buf: &mut BytesMut) -> Parsed {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let config = httparse::ParserConfig::default();
    let head_len = match config.parse_request_with_uninit_headers(&mut req, &buf[..], &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_MESSAGE => return Parsed::Partial,
        _ => return Parsed::Defer,
    };
    let (Some(method), Some(path), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::Defer;
    };
    if !path.starts_with('/') {
        return Parsed::Defer; // absolute-form, authority-form, `*`: hyper's
    }
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::Defer;
    };
    if method == Method::CONNECT {
        return Parsed::Defer;
    }
    let Some(body_len) = body_length(req.headers) else {
        return Parsed::Defer;
    };
    let Some(total) = head_len.checked_add(body_len).filter(|t| *t <= MAX_MESSAGE) else {
        return Parsed::Defer;
    };
    if buf.len() < total {
        // The head is here and the body is not: hyper streams the rest.
        return Parsed::Defer;
    }
    // Offsets into the head (within 16 KiB: u16), so that the head can be taken and shared.
    let at = |part: &[u8]| {
        u16::try_from(offset(buf, part))
            .ok()
            .filter(|o| usize::from(*o) + part.len() <= head_len)
    };
    let span = |part: &[u8]| at(part).map(|o| (o, o + part.len() as u16));
    let Some(path_range) = span(path.as_bytes()) else {
        return Parsed::Defer;
    };
    let mut fields = [Field::default(); MAX_HEADERS];
    for (f, h) in fields.iter_mut().zip(req.headers.iter()) {
        let (Some(name), Some(value)) = (span(h.name.as_bytes()), span(h.value)) else {
            return Parsed::Defer; // cannot happen: httparse's slices are the head's
        };
        *f = Field { name, value };
    }
    let fields = &fields[..req.headers.len()];
    build(buf, head_len, body_len, method, path_range, fields)
}

/// Where a header line's name and value are in the head (start, end).
#[derive(Debug, Clone, Copy, Default)]
struct Field {
    name: (u16, u16),
    value: (u16, u16),
}

/// The body length a head declares, if the fast path takes the head: no `Transfer-Encoding`,
/// `Expect` or `Upgrade`, and at most one `Content-Length` of plain digits.
fn body_length(headers: &[httparse::Header<'_>]) -> Option<usize> {
    let mut length = None;
    for h in headers {
        let name = h.name.as_bytes();
        if [TRANSFER_ENCODING, EXPECT, UPGRADE]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n.as_str().as_bytes()))
        {
            return None;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            if length.is_some() {
                return None;
            }
            length = Some(usize::try_from(content_length(h.value)?).ok()?);
        }
    }
    Some(length.unwrap_or(0))
}

/// A `Content-Length` value of plain digits, the only spelling the fast path takes (hyper
/// also reads lists and spaces; those go to hyper), and the only one the gateway writes.
pub(super) fn content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    v.iter().try_fold(0u64, |n, d| {
        d.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))?
    })
}

/// Builds the request from the buffer's first `head_len + body_len` bytes, as hyper does:
/// the URI and header values share the head's bytes.
fn build(
    buf: &mut BytesMut,
    head_len: usize,
    body_len: usize,
    method: Method,
    path: (u16, u16),
    fields: &[Field],
) -> Parsed {
    let head = buf.split_to(head_len).freeze();
    let body = buf.split_to(body_len).freeze();
    let Ok(uri) = Uri::from_maybe_shared(head.slice(range(path))) else {
        return undo(buf, head, body);
    };
    // Room for the fields the upstream request adds (`X-Forwarded-*`, `Forwarded`, the request
    // id), so that they do not grow the map.
    let mut headers = HeaderMap::with_capacity(fields.len() + ADDED_UPSTREAM);
    let mut close = false;
    for f in fields {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&head[range(f.name)]),
            HeaderValue::from_maybe_shared(head.slice(range(f.value))),
        ) else {
            return undo(buf, head, body);
        };
        if name == CONNECTION {
            close |= has_token(&value, "close");
        }
        headers.append(name, value);
    }
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Parsed::Request(Box::new(Whole { request, close }))
}

/// Puts the taken bytes back in front of the rest and leaves the request to hyper.
fn undo(buf: &mut BytesMut, head: Bytes, body: Bytes) -> Parsed {
    let mut whole = BytesMut::with_capacity(head.len() + body.len() + buf.len());
    whole.extend_from_slice(&head);
    whole.extend_from_slice(&body);
    whole.extend_from_slice(buf);
    *buf = whole;
    Parsed::Defer
}

/// Fields `pipeline::upstream::prepare` adds at most.
const ADDED_UPSTREAM: usize = 6;

/// Whether a comma-separated header value lists `token` (hyper's test for `close`).
pub(super) fn has_token(value: &HeaderValue, token: &str) -> bool {
    value
        .to_str()
        .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

fn range((start, end): (u16, u16)) -> std::ops::Range<usize> {
    usize::from(start)..usize::from(end)
}

/// Where `part`, a slice of `buf`, starts in it.
fn offset(buf: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize)
}
