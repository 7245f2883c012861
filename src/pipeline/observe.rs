//! Stage 7, observe: runs once for every request, refused or not. Records the request metrics,
//! writes one access log line, and for registration traffic one audit line (tracing target
//! `audit`) and the decision metric. Never a token, a secret or an Authorization header.

use http::Response;
use http::header::HeaderValue;

use super::ctx::Ctx;
use super::upstream::REQUEST_ID;
use crate::app::App;
use crate::metrics::{method_label, status_class};
use crate::net::Body;

/// Records the request and stamps the request id on the response.
pub fn finish(app: &App, ctx: &Ctx, mut resp: Response<Body>) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    let status = resp.status().as_u16();
    let elapsed = ctx.started.elapsed();
    let (route, operation) = match &ctx.reg {
        Some(r) => ("registration", r.operation.as_str()),
        None => ("other", "none"),
    };
    let m = &app.metrics;
    m.requests
        .with_label_values(&[route, operation, status_class(status)])
        .inc();
    m.http_requests
        .with_label_values(&[method_label(&ctx.method), &status.to_string()])
        .inc();
    m.latency
        .with_label_values(&[route, operation])
        .observe(elapsed.as_secs_f64());
    let latency_ms = (elapsed.as_secs_f64() * 100_000.0).round() / 100.0;
    let reason = ctx.reason.map(|r| r.code()).unwrap_or("ok");
    let realm = ctx.reg.as_ref().map(|r| r.realm.as_str()).unwrap_or("");
    tracing::info!(
        target: "dcr_gateway::access",
        method = %ctx.method,
        route,
        realm,
        operation,
        status,
        latency_ms,
        reason,
        dropped = %ctx.dropped,
        request_id = %ctx.request_id,
        "request"
    );
    if let Some(reg) = &ctx.reg {
        audit(ctx, reg, status, latency_ms, reason);
        m.decisions
            .with_label_values(&[&ctx.realm_label, operation, ctx.decision.as_str(), ctx.outcome, reason])
            .inc();
        if ctx.anonymous {
            anonymous(app, ctx, operation, reason);
        }
    }
    resp
}

/// The anonymous-registration metrics: outcome, refusals by reason, realm quota in use.
fn anonymous(app: &App, ctx: &Ctx, operation: &str, reason: &str) {
    let m = &app.metrics;
    let outcome = match (ctx.forwarded, ctx.upstream_status) {
        (true, Some(s)) if s < 400 => "forwarded",
        (true, _) => "keycloak_refused",
        (false, _) => "refused",
    };
    m.anonymous
        .with_label_values(&[&ctx.realm_label, operation, outcome])
        .inc();
    if outcome != "forwarded" {
        m.anonymous_refusals
            .with_label_values(&[&ctx.realm_label, reason])
            .inc();
    }
    if let Some(used) = ctx.anonymous_realm_used {
        m.anonymous_quota_used
            .with_label_values(&[&ctx.realm_label])
            .set(i64::from(used));
    }
}

fn audit(ctx: &Ctx, reg: &crate::route::RegRoute, status: u16, latency_ms: f64, reason: &str) {
    let id = ctx.identity.as_ref();
    let claims = id.map(|i| &i.claims);
    let kind = id.map(|i| i.kind.as_str()).unwrap_or("unknown");
    let md = ctx.metadata.as_ref();
    tracing::info!(
        target: "audit",
        request_id = %ctx.request_id,
        realm = %reg.realm,
        provider = %reg.provider,
        operation = reg.operation.as_str(),
        token_kind = kind,
        token_cached = id.is_some_and(|i| i.cached),
        azp = claims.and_then(|c| c.client()).unwrap_or(""),
        sub = claims.and_then(|c| c.sub.as_deref()).unwrap_or(""),
        source = %ctx.client_ip,
        client_id = md.and_then(|m| m.client_id.as_deref()).or(reg.client_id.as_deref()).unwrap_or(""),
        client_name = md.and_then(|m| m.client_name.as_deref()).unwrap_or(""),
        decision = ctx.decision.as_str(),
        anonymous = ctx.anonymous,
        credential = ctx.lent.unwrap_or(""),
        dropped = %ctx.dropped,
        rule = ctx.rule.as_deref().unwrap_or(""),
        reason,
        upstream_status = ctx.upstream_status.unwrap_or(0),
        status,
        latency_ms,
        "registration decision"
    );
}
