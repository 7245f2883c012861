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
use tracing::Level;
use tracing_subscriber::fmt::time::FormatTime;

use super::Ctx;
use crate::error::RuleId;
use crate::logformat::Object;
use crate::logwriter::{self, Clock};
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

/// The values both forms of the line share, read once.
struct Values<'a> {
    line: &'a Line,
    user_agent: &'a str,
    trace_id: &'a str,
    bytes_in: u64,
    bytes_out: u64,
}

impl Line {
    /// Writes the line: straight into the log writer's buffer when the JSON format serves it
    /// directly (see [`logwriter::direct`]), else through `tracing`. Both give the same bytes.
    fn write(self, bytes_out: u64) {
        let ctx = &self.ctx;
        let v = Values {
            line: &self,
            user_agent: ctx
                .user_agent
                .as_ref()
                .map_or("", |v| v.to_str().unwrap_or("(not ASCII)")),
            trace_id: ctx.trace_id.as_deref().unwrap_or(""),
            bytes_in: ctx.bytes_in.as_ref().map_or(0, |n| n.load(Ordering::Relaxed)),
            bytes_out,
        };
        let direct = logwriter::direct();
        match (&ctx.reg, direct) {
            (Some(reg), Some(out)) if tracing::enabled!(target: "audit", Level::INFO) => {
                out.push(&v.audit_json(reg, &Clock::default()))
            }
            (None, Some(out)) if tracing::enabled!(target: "dcr_gateway::access", Level::INFO) => {
                out.push(&v.access_json(&Clock::default()))
            }
            (Some(reg), _) => v.audit(reg),
            (None, _) => v.access(),
        }
    }
}

// === impl Values ===

impl Values<'_> {
    /// The line of any other request, through `tracing`.
    fn access(&self) {
        let (line, ctx) = (self.line, &self.line.ctx);
        tracing::info!(
            target: "dcr_gateway::access",
            method = %ctx.method,
            route = "other",
            realm = "",
            operation = "none",
            status = line.status,
            latency_ms = line.latency_ms,
            reason = line.reason,
            dropped = %ctx.dropped,
            request_id = %ctx.request_id,
            azp = azp(ctx),
            source = %Ip(ctx.client_ip),
            peer = %Peer(ctx.conn.peer),
            user_agent = self.user_agent,
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            trace_id = self.trace_id,
            "request"
        );
    }

    /// The same line, as the JSON format writes it.
    fn access_json(&self, timer: &impl FormatTime) -> Vec<u8> {
        let (line, ctx) = (self.line, &self.line.ctx);
        let mut o = Object::new(timer, &Level::INFO);
        o.str("message", "request")
            .str("method", ctx.method.as_str())
            .str("route", "other")
            .str("realm", "")
            .str("operation", "none")
            .u64("status", u64::from(line.status))
            .f64("latency_ms", line.latency_ms)
            .str("reason", line.reason)
            .str("dropped", &ctx.dropped)
            .str("request_id", &ctx.request_id)
            .str("azp", azp(ctx))
            .str("source", Ip(ctx.client_ip).text().as_str())
            .str("peer", Peer(ctx.conn.peer).text().as_str())
            .str("user_agent", self.user_agent)
            .u64("bytes_in", self.bytes_in)
            .u64("bytes_out", self.bytes_out)
            .str("trace_id", self.trace_id);
        o.finish("dcr_gateway::access")
    }

    /// The line of a registration request: the decision and who asked, with the access fields.
    fn audit(&self, reg: &RegRoute) {
        let (line, ctx) = (self.line, &self.line.ctx);
        let a = Audit::of(ctx, reg);
        tracing::info!(
            target: "audit",
            request_id = %ctx.request_id,
            method = %ctx.method,
            route = "registration",
            realm = %reg.realm,
            provider = %reg.provider,
            operation = reg.operation.as_str(),
            token_kind = a.kind,
            token_cached = a.cached,
            azp = azp(ctx),
            sub = a.sub,
            source = %Ip(ctx.client_ip),
            peer = %Peer(ctx.conn.peer),
            user_agent = self.user_agent,
            client_id = a.client_id,
            client_name = a.client_name,
            decision = ctx.decision.as_str(),
            anonymous = ctx.anonymous,
            credential = ctx.lent.unwrap_or(""),
            dropped = %ctx.dropped,
            rule = a.rule,
            reason = line.reason,
            upstream_status = ctx.upstream_status.unwrap_or(0),
            status = line.status,
            latency_ms = line.latency_ms,
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            trace_id = self.trace_id,
            "registration decision"
        );
    }

    /// The same line, as the JSON format writes it.
    fn audit_json(&self, reg: &RegRoute, timer: &impl FormatTime) -> Vec<u8> {
        let (line, ctx) = (self.line, &self.line.ctx);
        let a = Audit::of(ctx, reg);
        let mut o = Object::new(timer, &Level::INFO);
        o.str("message", "registration decision")
            .str("request_id", &ctx.request_id)
            .str("method", ctx.method.as_str())
            .str("route", "registration")
            .str("realm", &reg.realm)
            .str("provider", &reg.provider)
            .str("operation", reg.operation.as_str())
            .str("token_kind", a.kind)
            .bool("token_cached", a.cached)
            .str("azp", azp(ctx))
            .str("sub", a.sub)
            .str("source", Ip(ctx.client_ip).text().as_str())
            .str("peer", Peer(ctx.conn.peer).text().as_str())
            .str("user_agent", self.user_agent)
            .str("client_id", a.client_id)
            .str("client_name", a.client_name)
            .str("decision", ctx.decision.as_str())
            .bool("anonymous", ctx.anonymous)
            .str("credential", ctx.lent.unwrap_or(""))
            .str("dropped", &ctx.dropped)
            .str("rule", a.rule)
            .str("reason", line.reason)
            .u64("upstream_status", u64::from(ctx.upstream_status.unwrap_or(0)))
            .u64("status", u64::from(line.status))
            .f64("latency_ms", line.latency_ms)
            .u64("bytes_in", self.bytes_in)
            .u64("bytes_out", self.bytes_out)
            .str("trace_id", self.trace_id);
        o.finish("audit")
    }
}

fn azp(ctx: &Ctx) -> &str {
    ctx.identity.as_ref().and_then(|i| i.claims.client()).unwrap_or("")
}

/// The audit line's own fields.
struct Audit<'a> {
    kind: &'static str,
    cached: bool,
    sub: &'a str,
    client_id: &'a str,
    client_name: &'a str,
    rule: &'a str,
}

impl<'a> Audit<'a> {
    fn of(ctx: &'a Ctx, reg: &'a RegRoute) -> Self {
        let id = ctx.identity.as_ref();
        let md = ctx.metadata.as_ref();
        Audit {
            kind: id.map(|i| i.kind.as_str()).unwrap_or("unknown"),
            cached: id.is_some_and(|i| i.cached),
            sub: id.and_then(|i| i.claims.sub.as_deref()).unwrap_or(""),
            client_id: md
                .and_then(|m| m.client_id.as_deref())
                .or(reg.client_id.as_deref())
                .unwrap_or(""),
            client_name: md.and_then(|m| m.client_name.as_deref()).unwrap_or(""),
            rule: ctx.rule.as_ref().map_or("", RuleId::as_str),
        }
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

/// An address's text: IPv4 on the stack, anything else through its `Display`.
enum Text {
    Short([u8; 21], usize),
    Long(String),
}

impl Text {
    fn as_str(&self) -> &str {
        match self {
            // `v4` writes ASCII digits, dots and a colon only.
            Text::Short(buf, n) => std::str::from_utf8(&buf[..*n]).unwrap_or(""),
            Text::Long(s) => s,
        }
    }

    fn v4(ip: Ipv4Addr, port: Option<u16>) -> Self {
        let mut buf = [0u8; 21];
        let n = v4(&mut buf, ip, port);
        Text::Short(buf, n)
    }
}

impl Ip {
    fn text(&self) -> Text {
        match self.0 {
            IpAddr::V4(ip) => Text::v4(ip, None),
            ip => Text::Long(ip.to_string()),
        }
    }
}

impl Peer {
    fn text(&self) -> Text {
        match self.0 {
            SocketAddr::V4(a) => Text::v4(*a.ip(), Some(a.port())),
            a => Text::Long(a.to_string()),
        }
    }
}

impl fmt::Display for Ip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().as_str())
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().as_str())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use std::sync::Arc;

    use crate::logformat::JsonLine;
    use crate::logformat::tests::Capture;
    use crate::policy::Verdict;
    use crate::policy::metadata::ClientMetadata;
    use crate::route::Operation;
    use crate::token::{Identity, TokenKind};

    #[derive(Clone)]
    struct Fixed;

    impl FormatTime for Fixed {
        fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> fmt::Result {
            w.write_str("2026-12-02T08:10:11.000042Z")
        }
    }

    /// A line with every member set, some needing escapes.
    fn line(peer: &str, registration: bool) -> Line {
        let req = http::Request::post("/x")
            .header("user-agent", "kcreg \"26\" \\ tab\t é")
            .body(())
            .unwrap();
        let peer: SocketAddr = peer.parse().unwrap();
        let mut ctx = Ctx::new(&req, crate::pipeline::ConnInfo { peer, tls: false });
        ctx.request_id = "req-\"1\"".into();
        ctx.dropped = "software_statement".into();
        ctx.trace_id = Some("0af7651916cd43dd8448eb211c80319c".into());
        ctx.upstream_status = Some(201);
        ctx.decision = Verdict::ShadowDeny;
        ctx.lent = Some("service_account");
        ctx.anonymous = true;
        ctx.rule = Some(RuleId::new("realms.demo.create.roles_any"));
        let claims = serde_json::from_value(serde_json::json!({"azp": "ci-bot", "sub": "1f2e"})).unwrap();
        ctx.identity = Some(Identity {
            kind: TokenKind::Bearer,
            claims: Arc::new(claims),
            kid: None,
            cached: true,
        });
        ctx.metadata = Some(ClientMetadata {
            client_name: Some("App \u{1}\n".into()),
            ..ClientMetadata::default()
        });
        if registration {
            ctx.reg = Some(RegRoute {
                realm: "demo".into(),
                provider: "openid-connect".into(),
                client_id: Some("c-1".into()),
                operation: Operation::Create,
            });
        }
        Line {
            ctx,
            status: 201,
            latency_ms: 0.418,
            reason: "shadowed",
        }
    }

    /// What `tracing` with the gateway's JSON format writes for `emit`.
    fn through_tracing(emit: impl FnOnce()) -> String {
        let out = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(out.clone())
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .event_format(JsonLine::new(Fixed))
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn the_direct_line_is_the_bytes_tracing_writes() {
        for peer in ["10.1.2.3:40000", "[2001:db8::7]:443"] {
            for registration in [false, true] {
                let line = line(peer, registration);
                let v = Values {
                    line: &line,
                    user_agent: "kcreg \"26\" \\ tab\t é",
                    trace_id: "0af7651916cd43dd8448eb211c80319c",
                    bytes_in: 73,
                    bytes_out: 21,
                };
                let (stock, direct) = match &line.ctx.reg {
                    Some(reg) => (through_tracing(|| v.audit(reg)), v.audit_json(reg, &Fixed)),
                    None => (through_tracing(|| v.access()), v.access_json(&Fixed)),
                };
                assert!(stock.contains("\"azp\":\"ci-bot\""), "{stock}");
                assert_eq!(String::from_utf8(direct).unwrap(), stock);
            }
        }
    }

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
