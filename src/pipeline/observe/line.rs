//! The request's one log line, written when its response body is done: [`Observed`] wraps the
//! response body, counts the bytes sent, and writes the line (and releases its guard, the
//! in-flight slot) at the end of the body or when the body is dropped unfinished, e.g. because
//! the client went away; `bytes_out` is then what was sent until then.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;

use super::Ctx;
use crate::error::RuleId;
use crate::net::{Body, BoxError};
use crate::route::RegRoute;

/// What the line needs once the body is done.
pub(super) struct Line {
    pub(super) ctx: Ctx,
    pub(super) status: u16,
    pub(super) latency_ms: f64,
    pub(super) reason: &'static str,
}

/// A response body that writes the request's log line when it is done.
pub(super) struct Observed<G> {
    inner: Body,
    sent: u64,
    guard: Option<G>,
    line: Option<Line>,
}

impl<G> Observed<G> {
    pub(super) fn new(inner: Body, guard: G, line: Line) -> Self {
        Observed {
            inner,
            sent: 0,
            guard: Some(guard),
            line: Some(line),
        }
    }

    fn done(&mut self) {
        self.guard.take();
        if let Some(line) = self.line.take() {
            line.write(self.sent);
        }
    }
}

impl<G: Unpin> http_body::Body for Observed<G> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += u64::try_from(data.len()).unwrap_or(u64::MAX);
                }
            }
            Poll::Ready(None) => self.done(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<G> Drop for Observed<G> {
    fn drop(&mut self) {
        self.done();
    }
}

// === impl Line ===

impl Line {
    fn write(self, bytes_out: u64) {
        let ctx = &self.ctx;
        let bytes_in = ctx.bytes_in.as_ref().map_or(0, |n| n.load(Ordering::Relaxed));
        let user_agent = ctx
            .user_agent
            .as_ref()
            .map_or("", |v| v.to_str().unwrap_or("(not ASCII)"));
        let trace_id = ctx.trace_id.as_deref().unwrap_or("");
        match &ctx.reg {
            Some(reg) => self.audit(reg, user_agent, trace_id, bytes_in, bytes_out),
            None => tracing::info!(
                target: "dcr_gateway::access",
                method = %ctx.method,
                route = "other",
                realm = "",
                operation = "none",
                status = self.status,
                latency_ms = self.latency_ms,
                reason = self.reason,
                dropped = %ctx.dropped,
                request_id = %ctx.request_id,
                azp = ctx.identity.as_ref().and_then(|i| i.claims.client()).unwrap_or(""),
                source = %Ip(ctx.client_ip),
                peer = %Peer(ctx.conn.peer),
                user_agent,
                bytes_in,
                bytes_out,
                trace_id,
                "request"
            ),
        }
    }

    /// The line of a registration request: the decision and who asked, with the access fields.
    fn audit(&self, reg: &RegRoute, user_agent: &str, trace_id: &str, bytes_in: u64, bytes_out: u64) {
        let ctx = &self.ctx;
        let id = ctx.identity.as_ref();
        let claims = id.map(|i| &i.claims);
        let kind = id.map(|i| i.kind.as_str()).unwrap_or("unknown");
        let md = ctx.metadata.as_ref();
        tracing::info!(
            target: "audit",
            request_id = %ctx.request_id,
            method = %ctx.method,
            route = "registration",
            realm = %reg.realm,
            provider = %reg.provider,
            operation = reg.operation.as_str(),
            token_kind = kind,
            token_cached = id.is_some_and(|i| i.cached),
            azp = claims.and_then(|c| c.client()).unwrap_or(""),
            sub = claims.and_then(|c| c.sub.as_deref()).unwrap_or(""),
            source = %Ip(ctx.client_ip),
            peer = %Peer(ctx.conn.peer),
            user_agent,
            client_id = md.and_then(|m| m.client_id.as_deref()).or(reg.client_id.as_deref()).unwrap_or(""),
            client_name = md.and_then(|m| m.client_name.as_deref()).unwrap_or(""),
            decision = ctx.decision.as_str(),
            anonymous = ctx.anonymous,
            credential = ctx.lent.unwrap_or(""),
            dropped = %ctx.dropped,
            rule = ctx.rule.as_ref().map_or("", RuleId::as_str),
            reason = self.reason,
            upstream_status = ctx.upstream_status.unwrap_or(0),
            status = self.status,
            latency_ms = self.latency_ms,
            bytes_in,
            bytes_out,
            trace_id,
            "registration decision"
        );
    }
}

/// An address as `IpAddr`'s `Display` writes it, IPv4 without the formatting machinery (four
/// numbers written through it cost more than the rest of the field).
struct Ip(IpAddr);

/// A peer as `SocketAddr`'s `Display` writes it, IPv4 likewise.
struct Peer(SocketAddr);

/// `a.b.c.d`, then `:port` when given, into `buf`; the length written.
fn v4(buf: &mut [u8; 21], ip: Ipv4Addr, port: Option<u16>) -> usize {
    fn num(buf: &mut [u8; 21], at: &mut usize, n: u16) {
        let mut digits = [0u8; 5];
        let mut len = 0;
        let mut n = n;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for d in digits[..len].iter().rev() {
            buf[*at] = *d;
            *at += 1;
        }
    }
    let mut at = 0;
    for (i, o) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            buf[at] = b'.';
            at += 1;
        }
        num(buf, &mut at, u16::from(o));
    }
    if let Some(p) = port {
        buf[at] = b':';
        at += 1;
        num(buf, &mut at, p);
    }
    at
}

fn write_v4(f: &mut fmt::Formatter<'_>, ip: Ipv4Addr, port: Option<u16>) -> fmt::Result {
    let mut buf = [0u8; 21];
    let n = v4(&mut buf, ip, port);
    f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)
}

impl fmt::Display for Ip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(ip) => write_v4(f, ip, None),
            ip => fmt::Display::fmt(&ip, f),
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            SocketAddr::V4(a) => write_v4(f, *a.ip(), Some(a.port())),
            a => fmt::Display::fmt(&a, f),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn addresses_are_written_as_their_display_writes_them() {
        for s in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "1.0.100.9",
            "::1",
            "2001:db8::7",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = s.parse().unwrap();
            assert_eq!(Ip(ip).to_string(), ip.to_string());
            for port in [0, 9, 80, 443, 8080, 65535] {
                let a = SocketAddr::new(ip, port);
                assert_eq!(Peer(a).to_string(), a.to_string());
            }
        }
        let scoped: SocketAddr = "[fe80::1%3]:8443".parse().unwrap();
        assert_eq!(Peer(scoped).to_string(), scoped.to_string());
    }
}
