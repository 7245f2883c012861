//! The response body read straight off its connection (by length, chunked, or until close),
//! and the connection given back to the pool the moment the body is complete.

use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::Pool;
use super::wire::{Conn, Framing, WireError};

/// Longest chunk-size line or trailer line read.
const MAX_LINE: usize = 4096;
/// Most trailer bytes read (and dropped).
const MAX_TRAILERS: usize = 64 * 1024;

/// Where the body's reader stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// This many bytes of a `Content-Length` body are still to come.
    Length(u64),
    /// Until the connection closes.
    Close,
    /// Before a chunk-size line.
    ChunkSize,
    /// This many bytes of the current chunk are still to come.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// Trailer lines after the last chunk (this many bytes read so far).
    Trailers(usize),
    /// Complete.
    Done,
}

/// A response body from the pool: read from its connection in the task that polls it; the
/// connection goes back to the pool as soon as the body has been read to its end (and is
/// closed when the body is dropped before that, or the response said not to reuse it).
pub struct Returning {
    state: State,
    conn: Option<Box<Conn>>,
    keep_alive: bool,
    pool: Weak<Pool>,
}

impl std::fmt::Debug for Returning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Returning")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Returning {
    /// The body of a response framed by `framing`, read from `conn`.
    pub(super) fn new(framing: Framing, keep_alive: bool, conn: Box<Conn>, pool: Weak<Pool>) -> Returning {
        let state = match framing {
            Framing::Empty => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::Close => State::Close,
        };
        let mut body = Returning {
            state,
            conn: Some(conn),
            keep_alive,
            pool,
        };
        if body.state == State::Done {
            body.finish();
        }
        body
    }

    /// The body is complete: its connection goes back when it may carry another request and
    /// nothing beyond the body arrived on it.
    fn finish(&mut self) {
        self.state = State::Done;
        if let Some(conn) = self.conn.take()
            && self.keep_alive
            && conn.buf.is_empty()
            && let Some(pool) = self.pool.upgrade()
        {
            pool.put(conn);
        }
    }

    /// One step of the reader: a frame, the end, or a need for more bytes (`Ok(None)` after
    /// the state moved on without a frame).
    fn step(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Frame<Bytes>>, WireError>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Ok(None));
        };
        match self.state {
            State::Done => Poll::Ready(Ok(None)),
            State::Length(left) | State::ChunkData(left) => {
                if conn.buf.is_empty() && ready!(fill(conn, cx))? == 0 {
                    return Poll::Ready(Err(WireError::ClosedMidBody));
                }
                let take = conn.buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let data = conn.buf.split_to(take).freeze();
                let left = left - take as u64;
                self.state = match self.state {
                    State::Length(_) if left == 0 => State::Done,
                    State::Length(_) => State::Length(left),
                    _ if left == 0 => State::ChunkEnd,
                    _ => State::ChunkData(left),
                };
                if self.state == State::Done {
                    self.finish();
                }
                Poll::Ready(Ok(Some(Frame::data(data))))
            }
            State::Close => {
                if conn.buf.is_empty() && ready!(fill(conn, cx))? == 0 {
                    self.keep_alive = false;
                    self.finish();
                    return Poll::Ready(Ok(None));
                }
                let data = conn.buf.split().freeze();
                Poll::Ready(Ok(Some(Frame::data(data))))
            }
            State::ChunkSize => {
                let line = ready!(line(conn, cx))?;
                let size = chunk_size(&line)?;
                self.state = if size == 0 {
                    State::Trailers(0)
                } else {
                    State::ChunkData(size)
                };
                Poll::Ready(Ok(None))
            }
            State::ChunkEnd => {
                let line = ready!(line(conn, cx))?;
                if !line.is_empty() {
                    return Poll::Ready(Err(WireError::Framing("chunk data longer than its size")));
                }
                self.state = State::ChunkSize;
                Poll::Ready(Ok(None))
            }
            State::Trailers(seen) => {
                let line = ready!(line(conn, cx))?;
                if line.is_empty() {
                    self.finish();
                } else if seen + line.len() > MAX_TRAILERS {
                    return Poll::Ready(Err(WireError::Framing("trailers too large")));
                } else {
                    self.state = State::Trailers(seen + line.len() + 2);
                }
                Poll::Ready(Ok(None))
            }
        }
    }
}

impl http_body::Body for Returning {
    type Data = Bytes;
    type Error = WireError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, WireError>>> {
        loop {
            match ready!(self.step(cx)) {
                Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(None) if self.state == State::Done || self.conn.is_none() => return Poll::Ready(None),
                Ok(None) => {}
                Err(e) => {
                    self.state = State::Done;
                    self.conn = None; // a broken exchange closes its connection
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state == State::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Done => SizeHint::with_exact(0),
            State::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

impl Drop for Returning {
    /// A body dropped unread whose remaining bytes have all arrived still gives its connection
    /// back; any other unfinished body closes it.
    fn drop(&mut self) {
        if let (State::Length(left), Some(conn)) = (self.state, self.conn.as_mut())
            && conn.buf.len() as u64 == left
        {
            conn.buf.clear();
            self.finish();
        }
    }
}

/// Reads more bytes; `Ready(Ok(0))` at the end of the stream.
fn fill(conn: &mut Conn, cx: &mut Context<'_>) -> Poll<Result<usize, WireError>> {
    conn.poll_fill(cx).map_err(WireError::Io)
}

/// The next CRLF-terminated line, without its CRLF, taken from the buffer; a bare CR or LF in
/// it is refused.
fn line(conn: &mut Conn, cx: &mut Context<'_>) -> Poll<Result<Bytes, WireError>> {
    loop {
        if let Some(end) = conn.buf.windows(2).position(|w| w == b"\r\n") {
            let mut line = conn.buf.split_to(end + 2).freeze();
            line.truncate(end);
            if line.iter().any(|&b| b == b'\r' || b == b'\n') {
                return Poll::Ready(Err(WireError::Framing(
                    "a bare CR or LF in a chunk-size or trailer line",
                )));
            }
            return Poll::Ready(Ok(line));
        }
        if conn.buf.len() > MAX_LINE {
            return Poll::Ready(Err(WireError::Framing("a chunk-size or trailer line too long")));
        }
        if ready!(fill(conn, cx))? == 0 {
            return Poll::Ready(Err(WireError::ClosedMidBody));
        }
    }
}

/// The size on a chunk-size line (`1*HEXDIG`, then optional whitespace and extensions).
fn chunk_size(line: &[u8]) -> Result<u64, WireError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let rest = &line[digits..];
    let rest_ok = rest.iter().all(|&b| b == b' ' || b == b'\t') || {
        let ws = rest.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
        rest.get(ws) == Some(&b';')
    };
    if digits == 0 || digits > 16 || !rest_ok {
        return Err(WireError::Framing("a malformed chunk-size line"));
    }
    let text = std::str::from_utf8(&line[..digits]).map_err(|_| WireError::Framing("a malformed chunk-size line"))?;
    u64::from_str_radix(text, 16).map_err(|_| WireError::Framing("a chunk size too large"))
}

#[cfg(test)]
mod tests {
    use super::chunk_size;

    #[test]
    fn chunk_sizes_parse_strictly() {
        assert_eq!(chunk_size(b"1a").unwrap(), 26);
        assert_eq!(chunk_size(b"0").unwrap(), 0);
        assert_eq!(chunk_size(b"A;name=value").unwrap(), 10);
        assert_eq!(chunk_size(b"10 ; ext").unwrap(), 16);
        assert_eq!(chunk_size(b"ffffffffffffffff").unwrap(), u64::MAX);
        for bad in [&b""[..], b"x", b"-1", b"1x", b"11111111111111111", b" 1", b"1 x"] {
            assert!(chunk_size(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
