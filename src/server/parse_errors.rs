//! HTTP/1 requests hyper cannot parse (a malformed request line or header, conflicting
//! `Content-Length`, a head too large) never reach the pipeline: hyper answers them itself with
//! a bare `400`, `414` or `431` and closes the connection. hyper has no hook for that answer, so
//! the connection's I/O is wrapped: a response head hyper writes on its own (recognisable
//! because every answer the gateway writes carries `x-request-id`, and hyper's automatic one is
//! only a status line, `content-length: 0` and `date`) is replaced by the gateway's JSON error
//! before it reaches the socket. Nothing was parsed, so nothing was forwarded.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::StatusCode;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::{Detail, Reason, Refusal};
use crate::hints::HintCtx;

pin_project! {
    /// A connection whose hyper-made parse-error answers are rewritten into the JSON shape.
    pub struct JsonParseErrors<T> {
        #[pin]
        inner: T,
        // The JSON answer still to be written, replacing hyper's own.
        pending: Option<Bytes>,
        public_url: String,
    }
}

impl<T> JsonParseErrors<T> {
    /// Wraps a connection; `public_url` fills in the hints.
    pub(crate) fn new(inner: T, public_url: &str) -> Self {
        JsonParseErrors {
            inner,
            pending: None,
            public_url: public_url.to_owned(),
        }
    }
}

/// The status of hyper's automatic parse-error answer, if `buf` is exactly one.
pub(crate) fn automatic_answer(buf: &[u8]) -> Option<StatusCode> {
    let text = std::str::from_utf8(buf).ok()?;
    let head = text.strip_suffix("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let rest = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))?;
    let code: u16 = rest.get(..3)?.parse().ok()?;
    if !matches!(code, 400 | 414 | 431 | 505) {
        return None;
    }
    let mut zero_length = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" if value.trim() == "0" => zero_length = true,
            "date" | "connection" => {}
            _ => return None, // the gateway's own answers carry more (x-request-id, content-type)
        }
    }
    zero_length.then(|| StatusCode::from_u16(code).ok()).flatten()
}

/// The refusal that stands for hyper's automatic answer with `status`.
pub(crate) fn refusal_for(status: StatusCode) -> Refusal {
    match status.as_u16() {
        431 => Refusal::new(
            Reason::RequestHeadTooLarge,
            "The request's header section is larger than the gateway accepts.",
        ),
        414 => Refusal::new(Reason::RequestHeadTooLarge, "The request target (URI) is too long."),
        _ => Refusal::new(
            Reason::RequestUnparseable,
            "The request could not be parsed as HTTP/1.1: a malformed request line or header, a duplicate or conflicting Content-Length, or Content-Length together with Transfer-Encoding.",
        ),
    }
    .detail(Detail::Status, status.as_u16())
}

/// The bytes of the JSON answer replacing hyper's, keeping hyper's status.
pub(crate) fn json_answer(status: StatusCode, public_url: &str) -> Bytes {
    let refusal = refusal_for(status);
    let request_id = crate::net::ids::request_id();
    let hints = HintCtx {
        public_url,
        upstream: "",
        ..HintCtx::default()
    };
    let body = crate::respond::body_json(&refusal, &hints, &request_id).to_string();
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncache-control: no-store\r\nx-request-id: {request_id}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    tracing::debug!(
        status = status.as_u16(),
        reason = refusal.reason.code(),
        "request not parseable; answered in the gateway's error shape"
    );
    Bytes::from([head.into_bytes(), body.into_bytes()].concat())
}

impl<T: AsyncWrite> JsonParseErrors<T> {
    /// Writes what is pending; `Ready(Ok)` once nothing is.
    fn drain(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut this = self.project();
        while let Some(p) = this.pending.as_mut() {
            if p.is_empty() {
                *this.pending = None;
                break;
            }
            let n = std::task::ready!(this.inner.as_mut().poll_write(cx, p))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            p.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead> AsyncRead for JsonParseErrors<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<T: AsyncWrite> AsyncWrite for JsonParseErrors<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        std::task::ready!(self.as_mut().drain(cx))?;
        if let Some(status) = automatic_answer(buf) {
            let answer = json_answer(status, &self.public_url);
            *self.as_mut().project().pending = Some(answer);
            std::task::ready!(self.as_mut().drain(cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut non_empty = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (non_empty.next(), non_empty.next())
            && automatic_answer(only).is_some()
        {
            return self.poll_write(cx, only);
        }
        std::task::ready!(self.as_mut().drain(cx))?;
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.as_mut().drain(cx))?;
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.as_mut().drain(cx))?;
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_hypers_automatic_answers_only() {
        let date = "date: Tue, 01 Dec 2026 20:00:00 GMT";
        assert_eq!(
            automatic_answer(format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n{date}\r\n\r\n").as_bytes()),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            automatic_answer(
                format!("HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n{date}\r\n\r\n")
                    .as_bytes()
            ),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        for not in [
            format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-request-id: a\r\n{date}\r\n\r\n"),
            format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 5\r\n{date}\r\n\r\n"),
            format!("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n{date}\r\n\r\n"),
            format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n{date}\r\n\r\nbody"),
            "{\"x\":1}".to_owned(),
        ] {
            assert_eq!(automatic_answer(not.as_bytes()), None, "{not}");
        }
    }

    #[test]
    fn answer_is_the_json_shape() {
        let bytes = json_answer(StatusCode::BAD_REQUEST, "http://gw");
        let text = std::str::from_utf8(&bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["reason"], "request_unparseable");
        assert_eq!(v["error"], "invalid_request");
        assert!(v["hint"].as_str().is_some_and(|h| !h.is_empty()));
    }
}
