//! HTTP/1.1 on one upstream connection, driven by the task of the request that holds it: the
//! connection, and the response head read and framed (RFC 9112 §6.3); [`super::upload`] writes
//! the request. No task, channel or wake-up stands between the request and the socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, Version};
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::net::BoxError;

/// The byte stream of one upstream connection, TCP or TLS.
pub(super) type Io = TokioIo<MaybeHttpsStream<TokioIo<TcpStream>>>;

/// Most bytes of a response head.
const MAX_HEAD: usize = 128 * 1024;
/// Most header fields in a response head.
const MAX_HEADERS: usize = 128;
/// Bytes a read asks room for.
const READ_CHUNK: usize = 8 * 1024;

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

/// One connection: the stream, the bytes read but not yet used, a reused write buffer, and
/// the timer that bounds its exchanges.
pub(super) struct Conn {
    pub(super) io: Io,
    pub(super) buf: BytesMut,
    /// Bytes to write (see [`super::upload`]).
    pub(super) out: Vec<u8>,
    /// Bounds each exchange (see [`super::deadline::within`]); taken out while one runs.
    pub(super) timer: Option<Pin<Box<Sleep>>>,
}

impl Conn {
    /// A fresh connection over `io`.
    pub(super) fn new(io: Io) -> Conn {
        Conn {
            io,
            buf: BytesMut::with_capacity(READ_CHUNK),
            out: Vec::with_capacity(1024),
            timer: None,
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

    /// Closes an idle connection the pool lets go: a TLS connection says `close_notify` first
    /// (in a task of its own, for at most a second); a plain one is just closed.
    pub(super) fn retire(self: Box<Self>) {
        if matches!(self.io.inner(), MaybeHttpsStream::Https(_)) {
            let mut conn = self;
            tokio::spawn(async move {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), conn.io.shutdown()).await;
            });
        }
    }

    /// Takes the final response head off the buffer if it is all there, skipping interim
    /// (1xx) responses (`head_request` for `HEAD`).
    pub(super) fn take_head(&mut self, head_request: bool) -> Result<Option<Head>, WireError> {
        while let Some(response) = parse_head(&mut self.buf)? {
            let status = response.status();
            if status == StatusCode::SWITCHING_PROTOCOLS {
                return Err(WireError::Head(
                    "101 Switching Protocols to a request that asked for no upgrade".into(),
                ));
            }
            if status.is_informational() {
                continue;
            }
            let framing = response_framing(head_request, &response)?;
            let keep_alive = framing != Framing::Close && keeps_alive(&response);
            return Ok(Some(Head {
                response,
                framing,
                keep_alive,
            }));
        }
        Ok(None)
    }

    /// Reads until the final response head is complete.
    pub(super) fn poll_head(&mut self, head_request: bool, cx: &mut Context<'_>) -> Poll<Result<Head, WireError>> {
        loop {
            if let Some(head) = self.take_head(head_request)? {
                return Poll::Ready(Ok(head));
            }
            if self.buf.len() >= MAX_HEAD {
                let e = format!("the head is larger than {MAX_HEAD} bytes");
                return Poll::Ready(Err(WireError::Head(e)));
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) => return Poll::Ready(Err(WireError::ClosedBeforeHead(self.buf.len()))),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(WireError::Io(e))),
            }
        }
    }

    /// The final response head.
    pub(super) async fn read_head(&mut self, head_request: bool) -> Result<Head, WireError> {
        std::future::poll_fn(|cx| self.poll_head(head_request, cx)).await
    }

    /// Writes `req` and reads the final response head; `true` with it when the request went
    /// out whole (see [`super::upload`]).
    pub(super) async fn exchange(
        &mut self,
        req: http::Request<crate::net::Body>,
        head_request: bool,
    ) -> Result<(Head, bool), WireError> {
        match self.write_request(req, head_request).await? {
            Some(early) => Ok((early.head, early.whole)), // answered while the upload went on
            None => Ok((self.read_head(head_request).await?, true)),
        }
    }
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
    let mut headers = HeaderMap::with_capacity(spans.len() + 1); // and the request id, added later
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
            .map(|v| v.to_str().unwrap_or("?")) // a value that is not text ends in no chunked
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
/// `Content-Length` (a message that could be read two ways), nor after one in HTTP/1.0 (RFC 9112
/// §6.1: faulty framing, close after the message).
fn keeps_alive(response: &Response<()>) -> bool {
    let headers = response.headers();
    let coded = headers.contains_key(TRANSFER_ENCODING);
    if coded && (headers.contains_key(CONTENT_LENGTH) || response.version() == Version::HTTP_10) {
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
