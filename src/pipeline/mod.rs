//! The request pipeline. `handle` runs the stages in order — route (1), CORS (1a), token
//! triage and verification (2–3), policy (4a caller, 4b body, 4c metadata, 4d an update's
//! changes, 4e quotas, 4f–4g anonymous body and credential), upstream (5), rewrite (6) — and
//! `observe` (7) once at the end. A stage that refuses returns a `Refusal`, which `respond`
//! turns into the one JSON error shape; stages return what they found, and only this module
//! writes the per-request `Ctx`.

pub mod admin_api;
pub mod anonymous;
pub mod body;
pub mod cors;
pub mod ctx;
pub mod current;
pub mod observe;
pub mod rewrite;
pub mod target;
pub mod trace;
pub mod upstream;

use std::sync::Arc;

use http::{Request, Response};
use http_body::Body as _;
use http_body_util::BodyExt;
use prometheus::IntGauge;
use tokio::sync::OwnedSemaphorePermit;

use crate::app::App;
use crate::config::Mode;
use crate::error::{Detail, Reason, Refusal};
use crate::net::{Body, boxed};
use crate::policy::{self, Input, Verdict};
use crate::route::{self, RegRoute, Route};
use crate::token::Identity;
use ctx::{ConnInfo, Ctx};

/// Holds a concurrency slot and the in-flight gauge until the response body is done.
struct InFlight {
    _permit: OwnedSemaphorePermit,
    _peer: crate::net::peers::PeerSlot,
    gauge: IntGauge,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// The future `handle` returns (boxed, so the server's spawn sees one concrete `Send` type).
pub type Handled = std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send>>;

/// Serves one request: the stages in order, then `observe`, whatever happened. Any request
/// body will do (the server's, or a test's `Full`), so the pipeline runs without a socket.
pub fn handle<B>(app: Arc<App>, conn: ConnInfo, req: Request<B>) -> Handled
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    B::Error: Into<crate::net::BoxError>,
{
    Box::pin(serve_one(app, conn, req.map(boxed)))
}

async fn serve_one(app: Arc<App>, conn: ConnInfo, mut req: Request<Body>) -> Response<Body> {
    let mut ctx = Ctx::new(&req, conn);
    ctx.client_ip = upstream::client_ip(conn.peer.ip(), req.headers(), &app.settings.trusted_proxies);
    ctx.trace_id = trace::take(req.headers_mut());
    let (slot, result) = match acquire(&app, ctx.client_ip) {
        Ok(slot) => {
            let req = req.map(|b| counted(b, &mut ctx));
            (Some(slot), run(&app, &mut ctx, req).await)
        }
        Err(refusal) => (None, Err(refusal)),
    };
    let refused = result.is_err();
    let mut resp = match result {
        Ok(resp) => resp,
        Err(refusal) => {
            let refusal = match ctx.anonymous {
                true => anonymous::face(&ctx, refusal),
                false => refusal,
            };
            ctx.reason = Some(refusal.reason);
            if ctx.rule.is_none() {
                ctx.rule = refusal.rule.clone();
            }
            let hints = ctx.hint_ctx(&app.public_url, &app.upstream_url);
            crate::respond::refusal(&refusal, &hints, &ctx.request_id)
        }
    };
    // The one place the decision is set: a refusal before Keycloak saw the request is a denial.
    ctx.decision = match refused {
        true if !ctx.forwarded => Verdict::Deny,
        _ if ctx.shadowed => Verdict::ShadowDeny,
        _ => Verdict::Allow,
    };
    ctx.outcome = crate::metrics::outcome(refused, ctx.forwarded, ctx.upstream_status);
    app.quotas.settle(ctx.quota_slot.take(), ctx.upstream_status).await; // may ask Redis
    anonymous::decorate(&ctx, &mut resp);
    observe::finish(&app, ctx, resp, slot) // the slot is held until the body is sent
}

/// The request body, counting the bytes received into `ctx.bytes_in` unless it has none.
fn counted(body: Body, ctx: &mut Ctx) -> Body {
    if body.is_end_stream() {
        return body;
    }
    let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
    ctx.bytes_in = Some(n.clone());
    crate::net::Counted::new(body, n).boxed()
}

/// A slot in the global and in the client's own in-flight budget, or the `overloaded` refusal.
fn acquire(app: &App, client: std::net::IpAddr) -> Result<InFlight, Refusal> {
    let shed = |what: String| Refusal::new(Reason::Overloaded, what).retry_after(1);
    let Some(peer) = app.peer_in_flight.try_acquire(client) else {
        return Err(shed(format!(
            "This client already has {} requests in flight (max_in_flight_per_peer); the gateway sheds this one.",
            app.peer_in_flight.limit()
        ))
        .detail(Detail::Limit, "max_in_flight_per_peer"));
    };
    let Ok(permit) = app.limiter.clone().try_acquire_owned() else {
        return Err(shed(format!(
            "The gateway already serves {} requests and sheds this one.",
            app.settings.max_in_flight
        ))
        .detail(Detail::Limit, "max_in_flight"));
    };
    app.metrics.in_flight.inc();
    Ok(InFlight {
        _permit: permit,
        _peer: peer,
        gauge: app.metrics.in_flight.clone(),
    })
}

/// The stages in order; each returns what it found, and only this function and its stage
/// helpers below record it in `ctx`. Rare or deep stages (the admin API, a read-back, a
/// lent credential, a signature check, a new upstream connection, Redis) are awaited boxed, so
/// that the future every request moves into its `Box` stays small.
async fn run(app: &App, ctx: &mut Ctx, req: Request<Body>) -> Result<Response<Body>, Refusal> {
    upstream::check_connection(req.headers())?;
    if let Some(answer) = target::check(&req)? {
        return Ok(answer); // `OPTIONS *`: about the gateway, never forwarded
    }
    match route::classify(req.method(), req.uri().path(), &app.settings.path_prefix)? {
        Route::Registration(reg) => registration(app, ctx, reg, req).await, // 1
        Route::Admin(admin) => {
            let (found, judged) = Box::pin(admin_api::handle(app, ctx, admin, req)).await;
            ctx.learn(found);
            forward(app, ctx, judged?).await
        }
        Route::Other => other(app, ctx, req).await,
    }
}

/// Registration traffic, on one pinned policy snapshot: CORS (1a), the caller (2–3), policy
/// (4), the request as forwarded (4f–4g), Keycloak (5), its answer (6).
async fn registration(app: &App, ctx: &mut Ctx, reg: RegRoute, req: Request<Body>) -> Result<Response<Body>, Refusal> {
    let snap = app.policy.current(); // pinned: in-flight requests keep the policy they began with
    ctx.realm_label = app.verifier.jwks.realm_label(&reg.realm);
    ctx.reg = Some(reg.clone());
    let realm_policy = snap.for_realm(&reg.realm);
    if let Some(c) = &realm_policy.cors {
        ctx.cors_origin = cors::allowed_origin(c, req.headers());
        if reg.operation == route::Operation::Preflight {
            return anonymous::preflight(realm_policy, c, &reg, req.headers()); // 1a: answered here
        }
    }
    let issuers = upstream::accepted_issuers(&req, &app.settings, ctx.conn.peer.ip(), ctx.conn.tls, &reg.realm);
    let identity = app.verifier.authenticate(&reg, req.headers(), &issuers).await?; // 2–3
    ctx.identity = Some(identity.clone());
    let caller = Input {
        route: &reg,
        identity: &identity,
        metadata: None,
        current: None,
        peer: ctx.client_ip,
    };
    ctx.anonymous = policy::eval::lends_credential(&snap, &caller);
    if ctx.anonymous {
        ctx.snapshot = Some(snap.clone());
    }
    let (mut parts, body, decision, read) = decide(app, ctx, &snap, &caller, req).await?; // 4
    let (metadata, object) = read.map(|r| (r.metadata, r.object)).unzip();
    ctx.metadata = metadata; // moved: the object alone is read from here on
    ctx.shadowed = !decision.shadowed.is_empty();
    ctx.rule = decision.rule;
    ctx.reason = decision.shadowed.first().map(|s| s.reason);
    ctx.quota_slot = decision.quota_slot;
    ctx.anonymous_realm_used = decision.anonymous_realm_used;
    if let Some(refusal) = decision.refusal {
        return Err(refusal);
    }
    let mut body = body;
    if let Some(object) = object
        && let Some(a) = policy::eval::anonymous_rules(realm_policy, &caller)
    {
        let (prepared, dropped) = anonymous::prepare_body(app, ctx, a, &mut parts.headers, object, body)?; // 4f
        (body, ctx.dropped) = (prepared, dropped);
    }
    if ctx.anonymous {
        ctx.lent = Some(Box::pin(anonymous::lend(app, &reg, &mut parts.headers)).await?); // 4g: the gateway's credential
    }
    if realm_policy.cors.is_some() {
        parts.headers.remove(http::header::ORIGIN); // CORS is answered by the gateway
    }
    let resp = forward(app, ctx, Request::from_parts(parts, body)).await?; // 5
    rewrite(app, ctx, &reg, &identity, resp).await // 6
}

/// The body as read for policy: its metadata, the object (for anonymous mode's changes).
struct Read {
    metadata: policy::metadata::ClientMetadata,
    object: serde_json::Map<String, serde_json::Value>,
}

/// Stage 4: the caller rules before the body is read (4a), the body (4b) and the rules on it
/// (4c), an update refused by them judged again by what it changes (4d), quotas counted (4e).
async fn decide(
    app: &App,
    ctx: &Ctx,
    snap: &policy::Snapshot,
    caller: &Input<'_>,
    req: Request<Body>,
) -> Result<(http::request::Parts, Body, policy::Decision, Option<Read>), Refusal> {
    let shadow = app.settings.mode == Mode::Shadow;
    let reg = caller.route;
    let who = policy::precheck(snap, caller, shadow); // 4a: who is asking
    if let Some(refusal) = who.refusal {
        return Err(refusal); // refused on who is asking: the body is never read
    }
    let (parts, body) = req.into_parts();
    let limits = body::Limits {
        bytes: app.settings.max_body_bytes,
        time: app.settings.timeouts.body_read,
    };
    let (body, metadata) = body::read(reg, body, limits).await?; // 4b
    let md = metadata.as_ref().map(|(m, d, _)| (m, *d));
    let input = Input {
        metadata: md,
        ..*caller
    };
    let mut decision = policy::finish(who.caller_part(), snap, &input, shadow); // 4c: what is asked
    if let Some((_, dialect)) = md
        && current::worth_reading(reg, &decision)
        && let Some(now) = Box::pin(current::read(app, ctx, &parts, dialect)).await
    // rare: boxed
    {
        let again = Input {
            current: Some(&now),
            ..input
        };
        decision = policy::finish(who, snap, &again, shadow); // 4d: judged by what it changes
    }
    policy::eval::count(&mut decision, &app.quotas).await; // 4e: counted, maybe in Redis
    audit_shadowed(&ctx.request_id, &decision);
    let read = metadata.map(|(metadata, _, object)| Read { metadata, object });
    Ok((parts, body, decision, read))
}

/// Traffic outside the registration endpoint: forwarded untouched, or refused by setting.
async fn other(app: &App, ctx: &mut Ctx, req: Request<Body>) -> Result<Response<Body>, Refusal> {
    if app.settings.other_paths == crate::config::OtherPaths::Refuse {
        return Err(Refusal::new(
            Reason::RouteRefused,
            "This gateway serves only Keycloak's client-registration endpoint.",
        )
        .detail(Detail::Path, req.uri().path()));
    }
    forward(app, ctx, req).await
}

/// Shadowed refusals are logged (and counted by `observe`), never enforced.
fn audit_shadowed(request_id: &str, decision: &policy::Decision) {
    for s in &decision.shadowed {
        tracing::warn!(target: "audit", request_id = %request_id, reason = s.reason.code(), rule = ?s.rule.as_ref().map(|r| serde_json::Value::from(r.as_str())), description = %s.description, "shadow mode: policy would refuse this request");
    }
}

/// Stage 5: sends the request to Keycloak, recording how it reached Keycloak and the status.
async fn forward(app: &App, ctx: &mut Ctx, req: Request<Body>) -> Result<Response<Body>, Refusal> {
    let hop = upstream::Hop {
        peer: ctx.conn.peer.ip(),
        tls: ctx.conn.tls,
        request_id: &ctx.request_id,
    };
    let req = upstream::prepare(&app.settings, &hop, req)?;
    if ctx.reg.is_some() {
        ctx.seen_origin = upstream::seen_origin(&req, &app.settings); // read by stage 6 only
    }
    ctx.forwarded = true; // a refusal from here on is not a policy denial
    let resp = upstream::forward(app, ctx.reg.as_ref().map(|r| r.operation), req).await?;
    ctx.upstream_status = Some(resp.status().as_u16());
    Ok(resp)
}

/// Stage 6: rewrites Keycloak's error answers; moves back-end URLs in successful ones.
async fn rewrite(
    app: &App,
    ctx: &Ctx,
    reg: &RegRoute,
    identity: &Identity,
    resp: Response<Body>,
) -> Result<Response<Body>, Refusal> {
    let known = rewrite::Known {
        route: reg,
        identity,
        metadata: ctx.metadata.as_ref(),
        seen_origin: &ctx.seen_origin,
        sent: &ctx.sent,
    };
    rewrite::answer(app, &known, ctx.lent.is_some(), resp).await
}
