//! Stage 7, observe: runs once for every request, refused or not. Records the request metrics
//! when the response head is ready, and writes one log line once its body has been sent (so
//! the line knows the bytes out): for registration traffic the audit line (tracing target
//! `audit`, carrying the access fields too) and the decision metric, for other traffic an access
//! line (target `dcr_gateway::access`). Never a token, a secret or an Authorization header.

mod line;

use http::Response;
use http::header::HeaderValue;
use http_body_util::BodyExt;

use super::ctx::Ctx;
use super::upstream::REQUEST_ID;
use crate::app::App;
use crate::net::Body;
use line::{Line, Observed};

/// Records the request, stamps the request id on the response, and wraps its body so that the
/// request's log line is written when the body is done (or dropped); `guard` is released then.
pub fn finish<G: Send + Sync + Unpin + 'static>(
    app: &App,
    ctx: Ctx,
    mut resp: Response<Body>,
    guard: G,
) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    let status = resp.status().as_u16();
    let elapsed = ctx.started.elapsed();
    let operation = ctx.reg.as_ref().map(|r| r.operation);
    let m = &app.metrics;
    m.request(operation, status).inc();
    m.latency_of(operation).observe(elapsed.as_secs_f64());
    m.count_http(&ctx.method, status);
    let latency_ms = (elapsed.as_secs_f64() * 100_000.0).round() / 100.0;
    let reason = ctx.reason.map(|r| r.code()).unwrap_or("ok");
    if let Some(reg) = &ctx.reg {
        let operation = reg.operation.as_str();
        m.count_decision(
            &ctx.realm_label,
            [operation, ctx.decision.as_str(), ctx.outcome, reason],
        );
        if ctx.anonymous {
            anonymous(app, &ctx, operation, reason);
        }
    }
    let line = Line {
        ctx,
        status,
        latency_ms,
        reason,
    };
    resp.map(|body| Observed::new(body, guard, line).boxed())
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
