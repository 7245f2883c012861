//! A response written by the fast path, framed as hyper frames it (RFC 9112 §6): the status
//! line with its canonical reason, the headers as the pipeline set them, `Content-Length` from
//! the header or the body's exact size, chunked otherwise, no body for `HEAD`, `204` and `304`,
//! `connection: close` when the connection ends with it, and `date`. The head and the body's
//! first bytes leave in one write.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Buf;
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{Response, StatusCode};
use http_body::{Body as _, Frame};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::parse::{content_length, has_token};
use crate::net::Body;

/// Bytes gathered before a write while more of the body is ready.
const FLUSH_AT: usize = 32 * 1024;
/// Frames this large are written from their own buffer, not copied.
const COPY_BELOW: usize = 8 * 1024;
/// The write buffer a connection keeps between answers, at most (an answer's head and a
/// registration's JSON fit).
const KEEP: usize = 4 * 1024;

/// How the body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Exactly this many bytes (none when the response can have no body).
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
}

/// Writes `resp` to `io` (`head`: it answers a `HEAD` request; `keep`: the connection may
/// carry another request). Returns whether it still may: the response can close it too.
pub(super) async fn response<W>(
    io: &mut W,
    out: &mut Vec<u8>,
    resp: Response<Body>,
    head: bool,
    keep: bool,
) -> io::Result<bool>
where
    W: AsyncWrite + Unpin,
{
    let (parts, body) = resp.into_parts();
    out.clear();
    let (framing, keep) = encode_head(out, parts.status, &parts.headers, &body, head, keep)?;
    match framing {
        Framing::Length(0) => {} // nothing of the body goes out; dropping it ends it
        _ => write_body(io, out, body, framing).await?,
    }
    if !out.is_empty() {
        io.write_all(out).await?;
    }
    io.flush().await?;
    if out.capacity() > KEEP {
        *out = Vec::new(); // an idle connection holds no large buffer
    }
    Ok(keep)
}

/// The status line and headers into `out`; returns the body's framing and whether the
/// connection stays open.
fn encode_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &http::HeaderMap,
    body: &Body,
    head: bool,
    keep: bool,
) -> io::Result<(Framing, bool)> {
    if status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let can_length =
        !(status.is_informational() || matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED));
    let can_body = can_length && !head;
    let empty = body.is_end_stream();
    let (mut framing, mut close, mut dated, mut said_close) = (None, !keep, false, false);
    for (name, value) in headers {
        if name == TRANSFER_ENCODING {
            continue; // the framing is this writer's
        }
        if name == CONTENT_LENGTH {
            let no_content = status == StatusCode::NO_CONTENT || status.is_informational();
            if framing.is_some() || no_content || (empty && !head) {
                continue; // a second one, a 204's (RFC 9110 §8.6), an empty body's (`0` below)
            }
            let n = content_length(value.as_bytes())
                .ok_or_else(|| io::Error::other("the response's Content-Length is not a number"))?;
            framing = Some(Framing::Length(n));
        } else if name == CONNECTION && has_token(value, "close") {
            (close, said_close) = (true, true);
        } else if name == DATE {
            dated = true;
        }
        field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    let framing = match (framing, body.size_hint().exact()) {
        (Some(f), _) => f,
        (None, _) if empty => {
            if can_length && !head {
                field(out, b"content-length", b"0");
            }
            Framing::Length(0)
        }
        (None, Some(n)) => {
            if can_length {
                field(out, b"content-length", n.to_string().as_bytes());
            }
            Framing::Length(n)
        }
        (None, None) if can_body => {
            field(out, b"transfer-encoding", b"chunked");
            Framing::Chunked
        }
        (None, None) => Framing::Length(0),
    };
    if close && !said_close {
        field(out, b"connection", b"close");
    }
    if !dated {
        DATE_CACHE.with_borrow_mut(|d| field(out, b"date", d.now()));
    }
    out.extend_from_slice(b"\r\n");
    Ok((if can_body { framing } else { Framing::Length(0) }, !close))
}

/// Streams the body after the head in `out`: frames ready at once join the same write.
async fn write_body<W>(io: &mut W, out: &mut Vec<u8>, mut body: Body, framing: Framing) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let mut sent: u64 = 0;
    loop {
        // A frame that is ready now joins the bytes gathered; otherwise they go first.
        let ready = poll_fn(|cx| match Pin::new(&mut body).poll_frame(cx) {
            Poll::Ready(f) => Poll::Ready(Some(f)),
            Poll::Pending => Poll::Ready(None),
        })
        .await;
        let frame = match ready {
            Some(f) => f,
            None => {
                if !out.is_empty() {
                    io.write_all(out).await?;
                    out.clear();
                }
                poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            }
        };
        let Some(frame) = frame else { break };
        let frame: Frame<bytes::Bytes> = frame.map_err(io::Error::other)?;
        let Ok(data) = frame.into_data() else { continue }; // trailers: the gateway sends none
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        match framing {
            Framing::Length(n) if sent > n => {
                return Err(io::Error::other("the response body is longer than its Content-Length"));
            }
            Framing::Length(_) => {}
            Framing::Chunked => out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes()),
        }
        if data.len() >= COPY_BELOW {
            // a large frame goes out as it is, after what was gathered
            io.write_all(out).await?;
            out.clear();
            io.write_all(data.chunk()).await?;
        } else {
            out.extend_from_slice(data.chunk());
        }
        if framing == Framing::Chunked {
            out.extend_from_slice(b"\r\n");
        }
        if out.len() >= FLUSH_AT {
            io.write_all(out).await?;
            out.clear();
        }
    }
    match framing {
        Framing::Length(n) if sent < n => Err(io::Error::other("the response body ended before its Content-Length")),
        Framing::Length(_) => Ok(()),
        Framing::Chunked => {
            out.extend_from_slice(b"0\r\n\r\n");
            Ok(())
        }
    }
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The `date` value, formatted once a second per thread (as hyper caches it).
struct DateCache {
    second: u64,
    text: String,
}

impl DateCache {
    fn now(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = httpdate::fmt_http_date(now);
        }
        self.text.as_bytes()
    }
}

thread_local! {
    static DATE_CACHE: RefCell<DateCache> = const { RefCell::new(DateCache { second: 0, text: String::new() }) };
}
