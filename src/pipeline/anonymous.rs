//! Stages 4f–4g of anonymous registration: the body is trimmed to what Keycloak understands
//! (unknown members and `scope` dropped, per the realm's `[realms.NAME.anonymous]`), the
//! gateway's own credential replaces the missing one, and every answer says what was dropped
//! (`DCR-Gateway-Dropped-Members`) and carries CORS headers for allowed origins.

use http::header::{AUTHORIZATION, CONTENT_LENGTH};
use http::{HeaderMap, HeaderName, HeaderValue, Response};
use serde_json::{Map, Value};

use super::ctx::Ctx;
use crate::app::App;
use crate::error::{Detail, Reason, Refusal};
use crate::net::{Body, full};
use crate::policy::anonymous::{AnonymousPolicy, CorsPolicy};
use crate::policy::members;
use crate::policy::snapshot::RealmPolicy;
use crate::route::RegRoute;

/// The response header naming the members dropped from the body.
pub const DROPPED: HeaderName = HeaderName::from_static("dcr-gateway-dropped-members");

/// A refusal of an anonymous create as Keycloak would answer it (status, `error`, no
/// `WWW-Authenticate`), fix in the description.
pub fn face(ctx: &Ctx, r: Refusal) -> Refusal {
    let Some(reg) = &ctx.reg else { return r };
    let anon = ctx
        .snapshot
        .as_ref()
        .and_then(|s| s.for_realm(&reg.realm).anonymous.as_ref());
    crate::policy::anonymous::face(r, &reg.realm, anon)
}

/// Answers a CORS preflight on a registration path (the provider must be allowed).
pub fn preflight(
    policy: &RealmPolicy,
    cors: &CorsPolicy,
    reg: &RegRoute,
    headers: &HeaderMap,
) -> Result<Response<Body>, Refusal> {
    if !policy.providers.value.contains(&reg.provider) {
        let allowed: Vec<&str> = policy.providers.value.iter().map(String::as_str).collect();
        return Err(Refusal::new(
            Reason::ProviderNotAllowed,
            format!(
                "Provider `{}` is not allowed in realm {}; allowed: {}.",
                reg.provider,
                reg.realm,
                allowed.join(", ")
            ),
        )
        .detail(Detail::Provider, reg.provider.clone())
        .detail(Detail::AllowedProviders, allowed)
        .with_rule(policy.providers.origin.clone()));
    }
    super::cors::preflight(cors, reg, headers)
}

/// Applies the anonymous body settings; returns the body to forward and the members dropped
/// (one header-safe line, empty when none were).
pub fn prepare_body(
    app: &App,
    ctx: &Ctx,
    a: &AnonymousPolicy,
    headers: &mut HeaderMap,
    mut object: Map<String, Value>,
    original: Body,
) -> Result<(Body, String), Refusal> {
    let realm = ctx.reg.as_ref().map(|r| r.realm.clone()).unwrap_or_default();
    let dropped = a.prepare(&mut object, &realm)?;
    if dropped.is_empty() {
        return Ok((original, String::new()));
    }
    app.metrics
        .anonymous_dropped
        .with_label_values(&[&ctx.realm_label])
        .inc_by(dropped.len() as u64);
    let bytes = Value::Object(object).to_string().into_bytes();
    headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    Ok((full(bytes), members::describe(&dropped)))
}

/// Puts the gateway's own credential on an anonymous create; returns the credential's kind.
pub async fn lend(app: &App, reg: &RegRoute, headers: &mut HeaderMap) -> Result<&'static str, Refusal> {
    let Some(r) = app.registrars.get(&reg.realm) else {
        return Err(crate::registrar::unavailable(
            &reg.realm,
            &format!("the gateway config has no [realms.{}.registrar]", reg.realm),
        ));
    };
    let value = r.authorization(&reg.realm).await?;
    let mut v = HeaderValue::from_str(&value)
        .map_err(|_| crate::registrar::unavailable(&reg.realm, "the credential is not a valid header value"))?;
    v.set_sensitive(true);
    headers.insert(AUTHORIZATION, v);
    Ok(r.kind())
}

/// Keycloak refused an anonymous create the gateway authenticated: a refused credential is the
/// operator's problem, so say so (and drop a cached token Keycloak no longer accepts).
pub fn keycloak_refused(app: &App, reg: &RegRoute, status: u16, mut r: Refusal) -> Refusal {
    let credential = matches!(status, 401 | 403)
        && matches!(
            r.reason,
            Reason::MissingRole
                | Reason::RolesNotInToken
                | Reason::TokenRejected
                | Reason::TokenRevoked
                | Reason::HmacTokenRejected
                | Reason::InvalidTokenType
                | Reason::InitialTokenNotFound
                | Reason::InitialTokenExhausted
                | Reason::InitialTokenExpired
                | Reason::NotAuthorized
        );
    if status == 401
        && let Some(g) = app.registrars.get(&reg.realm)
    {
        g.invalidate();
    }
    if credential {
        r.description = format!(
            "Anonymous registration in realm {} failed: Keycloak refused the gateway's own registration credential ({}). Try again later; operators: check [realms.{}.registrar] and its realm-management/create-client role.",
            reg.realm, r.description, reg.realm
        );
    }
    r
}

/// Stamps `DCR-Gateway-Dropped-Members` and the CORS headers on the answer.
pub fn decorate(ctx: &Ctx, resp: &mut Response<Body>) {
    if !ctx.dropped.is_empty()
        && let Ok(v) = HeaderValue::from_str(&ctx.dropped)
    {
        resp.headers_mut().insert(DROPPED, v);
    }
    if let Some(origin) = &ctx.cors_origin {
        super::cors::decorate(resp, origin);
    }
}
