//! HTTP/1.1 on one upstream connection, driven by the task of the request that holds it: the
//! request head written out with the body framed by what is actually sent, and the response
//! head read and framed (RFC 9112 §6.3). No task, channel or wake-up stands between the request
//! and the socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};
use http_body::Body as _;
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::net::{Body, BoxError};

/// The byte stream of one upstream connection, TCP or TLS.
pub(super) type Io = TokioIo<MaybeHttpsStream<TokioIo<TcpStream>>>;

/// Most bytes of a response head.
const MAX_HEAD: usize = 128 * 1024;
/// Most header fields in a response head.
const MAX_HEADERS: usize = 128;
/// Bytes a read asks room for.
const READ_CHUNK: usize = 8 * 1024;
/// Request body bytes gathered before they are written.
const WRITE_CHUNK: usize = 16 * 1024;

/// Why an exchange on a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Reading from or writing to the connection failed.
    #[error("connection error: {0}")]
    Io(#[source] io::Error),
    /// The connection closed before a complete response head.
    #[error("the connection closed before a complete response head ({0} bytes of it received)")]
    ClosedBeforeHead(usize),
    /// The connection closed before the response body ended.
    #[error("the connection closed before the response body ended")]
    ClosedMidBody,
    /// The response head is not HTTP/1.x.
    #[error("malformed response head: {0}")]
    Head(String),
    /// The response body's framing is broken (length or chunk syntax).
    #[error("malformed response body: {0}")]
    Framing(&'static str),
    /// The request body failed while it was being sent.
    #[error("the request body failed: {0}")]
    RequestBody(#[source] BoxError),
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// A response head as read: the response without its body, how the body is framed, and
/// whether the connection can carry another request once the body has been read.
pub(super) struct Head {
    pub response: Response<()>,
    pub framing: Framing,
    pub keep_alive: bool,
}

/// One connection: the stream, the bytes read but not yet used, and a reused write buffer.
pub(super) struct Conn {
    pub(super) io: Io,
    pub(super) buf: BytesMut,
    out: Vec<u8>,
}

impl Conn {
    /// A fresh connection over `io`.
    pub(super) fn new(io: Io) -> Conn {
        Conn {
            io,
            buf: BytesMut::with_capacity(READ_CHUNK),
            out: Vec::with_capacity(1024),
        }
    }

    /// Reads more bytes into the buffer (`Ready(Ok(0))` at the end of the stream).
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.buf.reserve(READ_CHUNK);
        let read = std::pin::pin!(self.io.read_buf(&mut self.buf));
        read.poll(cx)
    }

    /// Whether an idle connection can take a request: nothing arrived on it (no end of stream,
    /// no error, no unasked-for bytes). Never waits.
    pub(super) fn is_idle_usable(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.buf.is_empty() && self.poll_fill(&mut cx).is_pending()
    }

    /// Writes `req` (origin form, `Host` set): the head, then the body, framed by its exact
    /// length when known and chunked otherwise; any `Content-Length` or `Transfer-Encoding` the
    /// request carries is replaced by that framing.
    pub(super) async fn write_request(&mut self, req: http::Request<Body>) -> Result<(), WireError> {
        let (parts, mut body) = req.into_parts();
        let framing = request_framing(&parts.method, &body);
        self.out.clear();
        encode_head(&mut self.out, &parts.method, &parts.uri, &parts.headers, framing);
        if framing != Framing::Empty {
            self.write_body(&mut body, framing).await?;
        }
        self.flush_out().await.map_err(WireError::Io)?;
        self.io.flush().await.map_err(WireError::Io)
    }

    /// The body after the head: gathered into the write buffer, written when it fills or when
    /// the body has nothing ready.
    async fn write_body(&mut self, body: &mut Body, framing: Framing) -> Result<(), WireError> {
        let chunked = framing == Framing::Chunked;
        let mut sent: u64 = 0;
        loop {
            let frame = match now_or_pending(body).await {
                Some(frame) => frame,
                None => {
                    self.flush_out().await.map_err(WireError::Io)?;
                    self.io.flush().await.map_err(WireError::Io)?;
                    std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
                }
            };
            let data = match frame {
                None => break,
                Some(Err(e)) => return Err(WireError::RequestBody(e)),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => data,
                    _ => continue, // trailers and empty frames are not sent
                },
            };
            sent += data.len() as u64;
            if let Framing::Length(n) = framing
                && sent > n
            {
                // Checked before a byte of it is written: more than declared would be read by
                // Keycloak as the start of another request.
                return Err(WireError::RequestBody(
                    format!("it declared {n} bytes and held more").into(),
                ));
            }
            if chunked {
                push_hex(&mut self.out, data.len());
                self.out.extend_from_slice(b"\r\n");
            }
            self.push_data(&data).await.map_err(WireError::Io)?;
            if chunked {
                self.out.extend_from_slice(b"\r\n");
            }
        }
        match framing {
            Framing::Chunked => self.out.extend_from_slice(b"0\r\n\r\n"),
            Framing::Length(n) if n != sent => {
                let e = format!("it declared {n} bytes and held {sent}");
                return Err(WireError::RequestBody(e.into()));
            }
            _ => {}
        }
        Ok(())
    }

    /// Appends `data` to the write buffer, or writes both out when that makes it large.
    async fn push_data(&mut self, data: &Bytes) -> io::Result<()> {
        if self.out.len() + data.len() <= WRITE_CHUNK {
            self.out.extend_from_slice(data);
            return Ok(());
        }
        self.flush_out().await?;
        self.io.write_all(data).await
    }

    /// Writes the write buffer out and empties it.
    async fn flush_out(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.io.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Reads the response head to a request (`head_request` for `HEAD`), skipping interim
    /// (1xx) responses.
    pub(super) async fn read_head(&mut self, head_request: bool) -> Result<Head, WireError> {
        loop {
            if let Some(response) = parse_head(&mut self.buf)? {
                let status = response.status();
                if status.is_informational() {
                    if status == StatusCode::SWITCHING_PROTOCOLS {
                        return Err(WireError::Head(
                            "101 Switching Protocols to a request that asked for no upgrade".into(),
                        ));
                    }
                    continue;
                }
                let framing = response_framing(head_request, &response)?;
                let keep_alive = framing != Framing::Close && keeps_alive(&response);
                return Ok(Head {
                    response,
                    framing,
                    keep_alive,
                });
            }
            if self.buf.len() >= MAX_HEAD {
                return Err(WireError::Head(format!("the head is larger than {MAX_HEAD} bytes")));
            }
            let n = std::future::poll_fn(|cx| self.poll_fill(cx))
                .await
                .map_err(WireError::Io)?;
            if n == 0 {
                return Err(WireError::ClosedBeforeHead(self.buf.len()));
            }
        }
    }
}

/// The next frame if the body has one ready now (`Some(None)` at its end), `None` if it would
/// wait (its waker is then registered).
async fn now_or_pending(body: &mut Body) -> Option<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
    std::future::poll_fn(|cx| match Pin::new(&mut *body).poll_frame(cx) {
        Poll::Ready(frame) => Poll::Ready(Some(frame)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// How a request body goes out: nothing for an empty body (`Content-Length: 0` for methods
/// whose requests carry content), its exact length when known, chunked otherwise.
fn request_framing(method: &Method, body: &Body) -> Framing {
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
fn encode_head(out: &mut Vec<u8>, method: &Method, uri: &http::Uri, headers: &HeaderMap, framing: Framing) {
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

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
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

fn push_hex(out: &mut Vec<u8>, n: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = n;
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

/// Takes a complete response head off the start of `buf` (header values are slices of it, not
/// copies), or `None` when more bytes are needed.
fn parse_head(buf: &mut BytesMut) -> Result<Option<Response<()>>, WireError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut fields);
    let used = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(WireError::Head(format!("more than {MAX_HEADERS} header fields")));
        }
        Err(e) => return Err(WireError::Head(e.to_string())),
    };
    let code = parsed.code.unwrap_or_default();
    let status = StatusCode::from_u16(code).map_err(|_| WireError::Head(format!("status {code}")))?;
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let start = buf.as_ptr() as usize;
    let mut spans = Vec::with_capacity(parsed.headers.len());
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| WireError::Head(format!("header name {:?}", field.name)))?;
        let at = field.value.as_ptr() as usize - start;
        spans.push((name, at, at + field.value.len()));
    }
    let head = buf.split_to(used).freeze();
    let mut headers = HeaderMap::with_capacity(spans.len());
    for (name, from, to) in spans {
        let value = HeaderValue::from_maybe_shared(head.slice(from..to))
            .map_err(|_| WireError::Head(format!("the value of {name}")))?;
        headers.append(name, value);
    }
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    Ok(Some(response))
}

/// The response body's framing (RFC 9112 §6.3): none for `HEAD`, 1xx, 204 and 304; chunked
/// when chunked is the final transfer coding, until close for any other transfer coding; else
/// `Content-Length` (every value the same), else until close.
fn response_framing(head_request: bool, response: &Response<()>) -> Result<Framing, WireError> {
    let status = response.status();
    if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Empty);
    }
    let headers = response.headers();
    if headers.contains_key(TRANSFER_ENCODING) {
        let last = headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|coding| !coding.is_empty());
        let chunked = last.is_some_and(|c| c.eq_ignore_ascii_case("chunked"));
        return Ok(if chunked { Framing::Chunked } else { Framing::Close });
    }
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        let text = value
            .to_str()
            .map_err(|_| WireError::Framing("a Content-Length that is not a number"))?;
        for piece in text.split(',') {
            let piece = piece.trim();
            if piece.is_empty() || !piece.bytes().all(|b| b.is_ascii_digit()) {
                return Err(WireError::Framing("a Content-Length that is not a number"));
            }
            let n: u64 = piece
                .parse()
                .map_err(|_| WireError::Framing("a Content-Length too large"))?;
            if length.is_some_and(|l| l != n) {
                return Err(WireError::Framing("Content-Length values that differ"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::Close,
    })
}

/// Whether the connection stays open after this response: HTTP/1.1 unless `Connection: close`,
/// HTTP/1.0 only with `Connection: keep-alive`; never after a `Transfer-Encoding` beside a
/// `Content-Length` (a message that could be read two ways).
fn keeps_alive(response: &Response<()>) -> bool {
    let headers = response.headers();
    if headers.contains_key(TRANSFER_ENCODING) && headers.contains_key(CONTENT_LENGTH) {
        return false;
    }
    let has = |token: &str| {
        headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    match response.version() {
        Version::HTTP_10 => has("keep-alive"),
        _ => !has("close"),
    }
}

#[cfg(test)]
pub(super) mod tests;
