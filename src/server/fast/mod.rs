//! The HTTP/1.1 fast path. A connection starts here: while each request arrives whole in the
//! bytes read (head and `Content-Length` body, within 16 KiB, none of the forms listed in
//! [`parse`]), the gateway reads, serves and writes it itself — no per-request task, channel
//! or body stream between the socket and the pipeline. At the first request it does not take
//! (HTTP/2, HTTP/1.0, chunked, `Expect`, an upgrade, a body still arriving, anything malformed)
//! it hands the connection, with every byte it read and did not serve, to hyper for the rest of
//! the connection's life ([`Ended::Handoff`]). The fast path never refuses bytes itself, so
//! what hyper would refuse it still refuses, with the same answers.
//!
//! The connection's time bounds are the same as under hyper ([`super::conn`]): the next
//! request's head within `header_read` (or `idle`) of accept or of the last answer, and each
//! answer written within `response_write`; on stop, the request in flight is answered with
//! `connection: close` and the connection ends.

#[doc(hidden)]
pub mod differential;
mod parse;
mod rewind;
#[cfg(test)]
mod tests;
mod write;

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use http::Method;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use super::conn::{Bounds, CLOSE_BOUND, End, quiet_bound};
use crate::app::App;
use crate::pipeline::ctx::ConnInfo;
use parse::Parsed;
pub(crate) use rewind::Rewind;

/// Room a read asks for.
const READ_CHUNK: usize = 8 * 1024;

/// How the fast path left a connection.
pub(crate) enum Ended<IO> {
    /// The connection is over.
    Done(Result<(), End>),
    /// hyper serves the rest: `io` rereads the bytes not served; the connection has been
    /// quiet since `since`, after serving requests before (`served`).
    Handoff {
        io: Rewind<IO>,
        since: Instant,
        served: bool,
    },
}

/// Serves `io` while its requests suit the fast path (see the module's documentation).
pub(crate) async fn serve<IO>(
    app: &Arc<App>,
    info: ConnInfo,
    io: IO,
    stop: &mut watch::Receiver<bool>,
    bounds: Bounds,
    accepted: Instant,
) -> Ended<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut c = Conn {
        io,
        buf: BytesMut::with_capacity(READ_CHUNK),
        out: Vec::new(),
        scanned: 0,
        since: accepted,
        served: false,
        stopping: false,
        quiet: Box::pin(tokio::time::sleep_until(accepted + bounds.header_read)),
        bounds,
    };
    loop {
        let parsed = match c.buf.is_empty() {
            true if c.stopping || *stop.borrow() => return Ended::Done(c.close().await),
            true => Parsed::Partial,
            false if c.buf.len() < parse::MAX_MESSAGE && !head_may_end(&c.buf, c.scanned) => Parsed::Partial,
            false => parse::request(&mut c.buf),
        };
        c.scanned = match parsed {
            Parsed::Partial => c.buf.len(),
            _ => 0,
        };
        let result = match parsed {
            Parsed::Request(whole) => c.answer(app, info, *whole, stop).await,
            Parsed::Partial => c.read_more(stop).await,
            Parsed::Defer => {
                let (since, served) = (c.since, c.served);
                let io = Rewind::new(c.io, c.buf.freeze());
                return Ended::Handoff { io, since, served };
            }
        };
        if let Some(done) = result {
            return Ended::Done(done);
        }
    }
}

/// A connection on the fast path.
struct Conn<IO> {
    io: IO,
    /// Bytes read and not yet served.
    buf: BytesMut,
    /// The write buffer, reused.
    out: Vec<u8>,
    /// How much of `buf` was read when a head was last found incomplete.
    scanned: usize,
    /// Quiet since (accept, or the last answer written).
    since: Instant,
    served: bool,
    /// The gateway is stopping: answer what has begun to arrive, then close.
    stopping: bool,
    /// Wakes the read no earlier than the quiet bound's deadline; moved only when it fires
    /// early, so a request arms no timer.
    quiet: Pin<Box<Sleep>>,
    bounds: Bounds,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Conn<IO> {
    /// Serves one request and writes its answer; `Some` when the connection is over.
    async fn answer(
        &mut self,
        app: &Arc<App>,
        info: ConnInfo,
        whole: parse::Whole,
        stop: &watch::Receiver<bool>,
    ) -> Option<Result<(), End>> {
        let head = whole.request.method() == Method::HEAD;
        let resp = crate::pipeline::handle(app.clone(), info, whole.request).await;
        let keep = !whole.close && !self.stopping && !*stop.borrow();
        crate::net::turn::turn().await; // the answers of one round leave together
        let wrote = write::response(&mut self.io, &mut self.out, resp, head, keep);
        match bounded(self.bounds.response_write, wrote).await {
            Err(end) => Some(Err(end)),
            Ok(false) => Some(self.close().await),
            Ok(true) => {
                (self.since, self.served) = (Instant::now(), true);
                None
            }
        }
    }

    /// Reads more of the next request, within the quiet bound; `Some` when the connection is
    /// over.
    async fn read_more(&mut self, stop: &mut watch::Receiver<bool>) -> Option<Result<(), End>> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 2 {
            self.buf.reserve(READ_CHUNK);
        }
        loop {
            let (bound, limit) = quiet_bound(&self.bounds, self.served, false);
            let due = self.since + limit;
            if self.quiet.deadline() > due {
                self.quiet.as_mut().reset(due);
            }
            let read = tokio::select! {
                read = self.io.read_buf(&mut self.buf) => read,
                () = self.quiet.as_mut() => match Instant::now() >= due {
                    true => return Some(Err(End::Bound(bound))),
                    false => {
                        self.quiet.as_mut().reset(due); // armed for an earlier stretch
                        continue;
                    }
                },
                _ = stop.changed(), if !self.stopping => {
                    self.stopping = true;
                    return None;
                }
            };
            return match read {
                Ok(0) if self.buf.is_empty() => Some(self.close().await),
                Ok(0) => Some(Err(End::Failed(
                    "the client closed the connection within a request's head".into(),
                ))),
                Ok(_) => None,
                Err(e) => Some(Err(End::Failed(e.to_string()))),
            };
        }
    }
}

impl<IO: AsyncWrite + Unpin> Conn<IO> {
    /// Ends the connection with a shutdown (TLS: `close_notify`), within [`CLOSE_BOUND`].
    async fn close(&mut self) -> Result<(), End> {
        let _ = tokio::time::timeout(CLOSE_BOUND, self.io.shutdown()).await;
        Ok(())
    }
}

/// Whether a head may have ended in `buf` since it was last found incomplete at `scanned`
/// bytes: only bytes read since (and the three before them) can hold the blank line, so a head
/// that arrives a byte at a time is not parsed again from its start for every byte (hyper's
/// `is_complete_fast` does the same).
fn head_may_end(buf: &[u8], scanned: usize) -> bool {
    let fresh = buf.get(scanned.saturating_sub(3)..).unwrap_or(buf);
    scanned == 0 || fresh.windows(2).any(|w| w == b"\n\n") || fresh.windows(3).any(|w| w == b"\n\r\n")
}

/// Writes an answer within `limit`. The write is tried once first: an answer that goes out at
/// once (nearly all of them) arms no timer.
async fn bounded(limit: Duration, write: impl Future<Output = std::io::Result<bool>>) -> Result<bool, End> {
    let mut write = pin!(write);
    let first = poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await;
    let result = match first {
        Poll::Ready(result) => result,
        Poll::Pending => tokio::time::timeout(limit, write)
            .await
            .map_err(|_| End::Bound("response_write"))?,
    };
    result.map_err(|e| End::Failed(e.to_string()))
}
