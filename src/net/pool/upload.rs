//! The request on the wire: the head, then the body framed by what is actually sent (its exact
//! length when known, chunked otherwise). While the body goes out the connection is watched for
//! an early answer (RFC 9112 §9.3: a client sending a body should monitor the connection for an
//! error response): a final response that arrives before the body is all sent stops the upload
//! and is returned, and its connection is not reused.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Method};
use http_body::Body as _;
use tokio::io::AsyncWrite;

use super::wire::{Conn, Framing, Head, WireError};
use crate::net::Body;

/// Request body bytes gathered before they are written; larger frames are written as they are.
const WRITE_CHUNK: usize = 16 * 1024;
/// The write buffer kept for the next request at most (a larger one is let go).
const KEEP_OUT: usize = 64 * 1024;

/// An answer that came while the upload was still going on.
pub(super) struct Early {
    pub head: Head,
    /// Every byte of the request had been written: all its declared length, flushed, only
    /// the body's end not yet reported. A connection whose request was cut short is not reused.
    pub whole: bool,
}

/// Where an upload stands.
struct Upload {
    framing: Framing,
    /// Body bytes taken so far.
    sent: u64,
    /// Bytes of `out` already written.
    at: usize,
    /// A large frame being written as it is, after `out`, and how much of it is written.
    data: Bytes,
    data_at: usize,
    /// A chunk's closing CRLF is due after `data`.
    crlf: bool,
    /// The body has ended (its terminator, if any, is in `out`).
    ended: bool,
}

impl Conn {
    /// Writes `req` (origin form, `Host` set), replacing any `Content-Length` or
    /// `Transfer-Encoding` it carries by the framing of what is sent. `Some(early)` when Keycloak
    /// answered while the upload was still going on (the rest of the body is not sent).
    pub(super) async fn write_request(
        &mut self,
        req: http::Request<Body>,
        head_request: bool,
    ) -> Result<Option<Early>, WireError> {
        let (parts, mut body) = req.into_parts();
        let framing = request_framing(&parts.method, &body);
        self.out.clear();
        encode_head(&mut self.out, &parts.method, &parts.uri, &parts.headers, framing);
        let mut up = Upload {
            framing,
            sent: 0,
            at: 0,
            data: Bytes::new(),
            data_at: 0,
            crlf: false,
            ended: framing == Framing::Empty,
        };
        crate::net::turn::turn().await; // the requests of one round leave together
        let result = std::future::poll_fn(|cx| self.poll_upload(&mut body, &mut up, head_request, cx)).await;
        if self.out.capacity() > KEEP_OUT {
            self.out = Vec::new();
        }
        self.out.clear();
        result
    }

    /// Drives the upload: gathers ready body frames, writes, and — whenever the writing or the
    /// body would wait — looks for an early answer.
    fn poll_upload(
        &mut self,
        body: &mut Body,
        up: &mut Upload,
        head_request: bool,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Early>, WireError>> {
        loop {
            let mut body_waits = false;
            while !up.ended && up.data.is_empty() && self.out.len() - up.at < WRITE_CHUNK {
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            self.take_frame(up, data)?;
                        }
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(WireError::RequestBody(e))),
                    Poll::Ready(None) => self.end_body(up)?,
                    Poll::Pending => {
                        body_waits = true;
                        break;
                    }
                }
            }
            match self.poll_write_pending(up, cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(self.answer_after(e, head_request)),
                Poll::Pending => return self.poll_early_answer(head_request, false, cx),
            }
            if up.crlf {
                up.crlf = false;
                self.out.extend_from_slice(b"\r\n");
                continue;
            }
            if up.ended || body_waits {
                let all_sent = matches!(up.framing, Framing::Length(n) if n == up.sent);
                match Pin::new(&mut self.io).poll_flush(cx) {
                    Poll::Ready(Ok(())) if up.ended => return Poll::Ready(Ok(None)),
                    Poll::Ready(Ok(())) => return self.poll_early_answer(head_request, all_sent, cx),
                    Poll::Pending => return self.poll_early_answer(head_request, false, cx),
                    Poll::Ready(Err(e)) => return Poll::Ready(self.answer_after(e, head_request)),
                }
            }
        }
    }

    /// Takes one data frame: into the write buffer when small, else as the frame to write next.
    /// A body longer than it declared fails before a byte past its length is written (Keycloak
    /// would read those bytes as another request).
    fn take_frame(&mut self, up: &mut Upload, data: Bytes) -> Result<(), WireError> {
        if data.is_empty() {
            return Ok(());
        }
        up.sent += data.len() as u64;
        if let Framing::Length(n) = up.framing
            && up.sent > n
        {
            let e = format!("it declared {n} bytes and held more");
            return Err(WireError::RequestBody(e.into()));
        }
        let chunked = up.framing == Framing::Chunked;
        if chunked {
            push_hex(&mut self.out, data.len());
            self.out.extend_from_slice(b"\r\n");
        }
        if data.len() <= WRITE_CHUNK {
            self.out.extend_from_slice(&data);
            if chunked {
                self.out.extend_from_slice(b"\r\n");
            }
        } else {
            up.data = data;
            up.data_at = 0;
            up.crlf = chunked;
        }
        Ok(())
    }

    /// The body ended: the last chunk, or a check that it held what it declared.
    fn end_body(&mut self, up: &mut Upload) -> Result<(), WireError> {
        up.ended = true;
        match up.framing {
            Framing::Chunked => self.out.extend_from_slice(b"0\r\n\r\n"),
            Framing::Length(n) if n != up.sent => {
                let e = format!("it declared {n} bytes and held {}", up.sent);
                return Err(WireError::RequestBody(e.into()));
            }
            _ => {}
        }
        Ok(())
    }

    /// Writes what is pending: the rest of the write buffer, then the large frame.
    fn poll_write_pending(&mut self, up: &mut Upload, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while up.at < self.out.len() {
            up.at += ready!(written(Pin::new(&mut self.io).poll_write(cx, &self.out[up.at..])))?;
        }
        self.out.clear();
        up.at = 0;
        while up.data_at < up.data.len() {
            up.data_at += ready!(written(Pin::new(&mut self.io).poll_write(cx, &up.data[up.data_at..])))?;
        }
        up.data = Bytes::new();
        up.data_at = 0;
        Poll::Ready(Ok(()))
    }

    /// While the upload waits: a final answer that has arrived ends it (`whole` when every byte
    /// of the request is out); anything else waits (the read side's waker is registered too).
    fn poll_early_answer(
        &mut self,
        head_request: bool,
        whole: bool,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Early>, WireError>> {
        match self.poll_head(head_request, cx) {
            Poll::Ready(Ok(head)) => Poll::Ready(Ok(Some(Early { head, whole }))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// After a failed write (Keycloak may have answered and closed): the answer if it has
    /// arrived whole, else the write error.
    fn answer_after(&mut self, e: io::Error, head_request: bool) -> Result<Option<Early>, WireError> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.poll_head(head_request, &mut cx) {
            Poll::Ready(Ok(head)) => Ok(Some(Early { head, whole: false })),
            _ => Err(WireError::Io(e)),
        }
    }
}

/// A write's count, with a zero-byte write made an error (it would loop forever).
fn written(polled: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
    match polled {
        Poll::Ready(Ok(0)) => Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
        other => other,
    }
}

/// How a request body goes out: nothing for an empty body (`Content-Length: 0` for methods
/// whose requests carry content), its exact length when known, chunked otherwise.
pub(super) fn request_framing(method: &Method, body: &Body) -> Framing {
    if body.is_end_stream() {
        let with_content = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
        return if with_content {
            Framing::Length(0)
        } else {
            Framing::Empty
        };
    }
    match body.size_hint().exact() {
        Some(n) => Framing::Length(n),
        None => Framing::Chunked,
    }
}

/// The request line and header fields, with the framing's own header and the blank line.
pub(super) fn encode_head(out: &mut Vec<u8>, method: &Method, uri: &http::Uri, headers: &HeaderMap, framing: Framing) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(uri.path_and_query().map_or("/", |pq| pq.as_str()).as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Empty | Framing::Close => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal.
pub(super) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// `n` in lower-case hexadecimal (a chunk size).
pub(super) fn push_hex(out: &mut Vec<u8>, mut n: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = HEX[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}
