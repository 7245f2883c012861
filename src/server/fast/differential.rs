//! The fast path's reading of a connection's bytes against hyper's, for the unit tests and the
//! `http1_fast_path` fuzz target. The gateway serves a connection by taking requests with the
//! fast path while it can and handing the rest of the bytes to hyper; that sequence of
//! requests must be exactly the one hyper alone reads from the same bytes (method, target,
//! version, header lines in order, body), and bytes the fast path declines must be left as
//! they were.

use std::convert::Infallible;

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::parse::{self, Parsed};

/// A request as a server hands it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Request target.
    pub uri: String,
    /// Version.
    pub version: http::Version,
    /// Header lines, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Body, or why it could not be read.
    pub body: Result<Vec<u8>, String>,
}

async fn seen<B>(req: Request<B>) -> Seen
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let (p, body) = req.into_parts();
    Seen {
        method: p.method.to_string(),
        uri: p.uri.to_string(),
        version: p.version,
        headers: p
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect(),
        body: body
            .collect()
            .await
            .map(|b| b.to_bytes().to_vec())
            .map_err(|e| e.to_string()),
    }
}

/// What hyper read from a connection: its requests, and whether it ended the connection
/// cleanly (not on a malformed or incomplete request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// The requests, in order.
    pub requests: Vec<Seen>,
    /// The connection ended without an error.
    pub clean: bool,
}

/// Every request hyper, configured as the gateway configures it (`http1_only`: as for a
/// connection the fast path handed over after serving on it), reads from `input` followed by
/// the end of the stream (half-closed, so that it finishes what it read).
pub async fn hyper_reads(input: &[u8], http1_only: bool) -> Result<Read, String> {
    let (client, server) = tokio::io::duplex(1 << 20);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(seen(req).await);
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        }
    });
    let mut builder = super::super::builder();
    if http1_only {
        builder = builder.http1_only();
    }
    builder.http1().half_close(true);
    let serve = tokio::spawn(async move { builder.serve_connection(TokioIo::new(server), svc).await.is_ok() });
    let (mut rd, mut wr) = tokio::io::split(client);
    let drain = tokio::spawn(async move { rd.read_to_end(&mut Vec::new()).await });
    // hyper may close before it has read everything (a malformed head): not a difference.
    let _ = wr.write_all(input).await;
    let _ = wr.shutdown().await;
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), serve).await;
    drain.abort();
    let clean = ended
        .map_err(|_| "hyper did not finish within 5 s".to_owned())?
        .map_err(|e| e.to_string())?;
    let mut requests = Vec::new();
    while let Ok(s) = rx.try_recv() {
        requests.push(s);
    }
    Ok(Read { requests, clean })
}

/// The requests the fast path takes from the start of `input`, and the bytes it leaves.
pub async fn fast_reads(input: &[u8]) -> Result<(Vec<Seen>, Bytes), String> {
    let mut buf = BytesMut::from(input);
    let mut taken = Vec::new();
    loop {
        let before = buf.clone();
        match parse::request(&mut buf) {
            Parsed::Request(w) => {
                let close = w.close;
                taken.push(seen(w.request).await);
                if close {
                    return Ok((taken, Bytes::new())); // nothing after a close is read
                }
            }
            Parsed::Partial | Parsed::Defer if buf != before => {
                return Err("the fast path changed bytes it did not take".into());
            }
            Parsed::Partial | Parsed::Defer => return Ok((taken, buf.freeze())),
        }
    }
}

/// Whether the gateway's reading of `input` (fast path, then hyper for the rest) is hyper's:
/// the same requests, and the connection ending the same way. Returns how many requests the
/// fast path took; an error describes a difference.
pub async fn compare(input: &[u8]) -> Result<usize, String> {
    let (taken, rest) = fast_reads(input).await?;
    let n = taken.len();
    if n == 0 {
        return Ok(0); // all of it is hyper's, as it is without the fast path
    }
    let mut ours = Read {
        requests: taken,
        clean: true,
    };
    if !rest.is_empty() {
        let after = hyper_reads(&rest, true).await?;
        ours.requests.extend(after.requests);
        ours.clean = after.clean;
    }
    let theirs = hyper_reads(input, false).await?;
    if ours != theirs {
        return Err(format!(
            "input {:?}\n  gateway: {ours:?}\n  hyper:   {theirs:?}",
            String::from_utf8_lossy(input)
        ));
    }
    Ok(n)
}
