//! The admin REST API stage: a write that creates or changes a client (see `route::admin`) is
//! decided per caller. The bearer token is verified (against its own realm, the path's or
//! `master`); a console user session is forwarded under `by_caller`; any other caller's client
//! body is read, parsed strictly in Keycloak's `ClientRepresentation` dialect and held to the
//! realm's metadata rules (or `admin_api.metadata`), and writes the rules cannot judge are
//! refused unless `admin_api.allow` names them. The bytes checked are the bytes forwarded.

use http::Request;

use super::ctx::{Ctx, Found};
use crate::app::App;
use crate::config::Mode;
use crate::error::{Detail, Reason, Refusal, RuleId};
use crate::net::{Body, ReadError, full, read_limited};
use crate::policy::admin_api::{AdminPolicy, AdminWrites};
use crate::policy::json::parse_object;
use crate::policy::metadata::{Dialect, normalise};
use crate::route::admin::{AdminRoute, AdminTarget};
use crate::route::{Operation, RegRoute};
use crate::token::claims::decode;
use crate::token::triage::{Presented, check_issuer, extract};
use crate::token::{Identity, TokenKind};

/// Headers some frameworks read as the real method; a governed write may not carry them.
const METHOD_OVERRIDES: [&str; 3] = ["x-http-method-override", "x-http-method", "x-method-override"];

fn refused(route: &AdminRoute, rule: &str, why: String) -> Refusal {
    Refusal::new(
        Reason::AdminWriteRefused,
        format!(
            "{} {} through the admin API is refused: {why}.",
            route.method,
            route.target.name()
        ),
    )
    .detail(Detail::AdminWrite, route.target.name())
    .detail(Detail::Realm, route.realm.clone().unwrap_or_default())
    .with_rule(RuleId::new(rule))
}

/// Judges one admin write: the request to forward, or the refusal; and what was learned on the
/// way, for `run` to record.
pub async fn handle(
    app: &App,
    ctx: &Ctx,
    route: AdminRoute,
    req: Request<Body>,
) -> (Found, Result<Request<Body>, Refusal>) {
    let snap = app.policy.current();
    let realm = route.realm.clone().unwrap_or_else(|| "master".into());
    let mut found = Found {
        realm_label: Some(match snap.realms.contains_key(&realm) {
            true => realm.clone(),
            false => "other".into(),
        }),
        ..Found::default()
    };
    let policy = &snap.for_realm(&realm).admin;
    let shadow = app.settings.mode == Mode::Shadow;
    let outcome = match decide(
        app,
        ctx,
        &mut found,
        Write {
            route: &route,
            realm: &realm,
            policy,
        },
        req,
    )
    .await
    {
        Ok(req) => Ok(req),
        Err((refusal, Some(req))) if shadow || refusal_is_shadowed(&refusal, policy) => {
            let rule = refusal.rule.as_ref().map(RuleId::as_str);
            tracing::warn!(target: "audit", request_id = %ctx.request_id, reason = refusal.reason.code(), rule = ?rule, description = %refusal.description, "shadow mode: policy would refuse this admin write");
            found.shadowed = true;
            found.reason = Some(refusal.reason);
            Ok(req)
        }
        Err((refusal, _)) => Err(refusal),
    };
    (found, outcome)
}

fn refusal_is_shadowed(r: &Refusal, policy: &AdminPolicy) -> bool {
    let rule = r.rule.as_ref().map(RuleId::as_str);
    [
        (&policy.writes.origin, policy.writes.shadow),
        (&policy.allow.origin, policy.allow.shadow),
    ]
    .iter()
    .any(|(origin, shadow)| *shadow && rule == Some(origin.as_str()))
}

type Outcome = Result<Request<Body>, (Refusal, Option<Request<Body>>)>;

/// The admin write being judged: its route, realm and the realm's admin policy.
#[derive(Clone, Copy)]
struct Write<'a> {
    route: &'a AdminRoute,
    realm: &'a str,
    policy: &'a AdminPolicy,
}

async fn decide(app: &App, ctx: &Ctx, found: &mut Found, w: Write<'_>, req: Request<Body>) -> Outcome {
    let Write { route, realm, policy } = w;
    let writes = &policy.writes;
    match writes.value {
        AdminWrites::Forward => return Ok(req),
        AdminWrites::Refuse => {
            let why = "this realm's policy refuses every admin write to clients through the gateway".to_owned();
            return Err((refused(route, writes.origin.as_str(), why), Some(req)));
        }
        AdminWrites::ByCaller | AdminWrites::Govern => {}
    }
    let identity = match caller(app, ctx, realm, &req).await {
        Ok(id) => id,
        Err(r) => return Err((r, None)),
    };
    found.identity = Some(identity.clone());
    if policy.forwards(&identity) {
        return Ok(req);
    }
    if let Some(h) = METHOD_OVERRIDES.iter().find(|h| req.headers().contains_key(**h)) {
        return Err((
            refused(
                route,
                writes.origin.as_str(),
                format!("it carries `{h}`, which could change the method Keycloak sees"),
            ),
            None,
        ));
    }
    if !matches!(route.method.as_str(), "POST" | "PUT" | "DELETE") {
        let why = format!(
            "`{}` is not a method Keycloak's admin API writes clients with (POST, PUT, DELETE)",
            route.method
        );
        return Err((refused(route, writes.origin.as_str(), why), None));
    }
    let wrap = match &route.target {
        AdminTarget::ClientCreate | AdminTarget::ClientUpdate => false,
        AdminTarget::ProtocolMappers => true,
        _ => {
            let allow = &policy.allow;
            if allow.value.contains(&route.target.name()) {
                return Ok(req);
            }
            let why = format!(
                "the gateway cannot judge this write against the realm's rules, and `admin_api.allow` does not name `{}` (allowed: {})",
                route.target.name(),
                allow.value.iter().cloned().collect::<Vec<_>>().join(", ")
            );
            return Err((refused(route, allow.origin.as_str(), why), Some(req)));
        }
    };
    check_body(app, ctx, found, w, req, wrap).await
}

/// Verifies the caller's bearer token against its own realm: the path's, or `master`.
async fn caller(app: &App, ctx: &Ctx, realm: &str, req: &Request<Body>) -> Result<Identity, Refusal> {
    let headers = req.headers();
    let accepted =
        |r: &str| crate::pipeline::upstream::accepted_issuers(req, &app.settings, ctx.conn.peer.ip(), ctx.conn.tls, r);
    let need_bearer = |why: &str| {
        Refusal::new(
            Reason::AdminWriteRefused,
            format!("Admin writes to clients through the gateway need a bearer access token: {why}."),
        )
        .with_rule(RuleId::new("built-in.admin_api.credential"))
    };
    let token = match extract(headers)? {
        Presented::Bearer(t) => t,
        _ => return Err(need_bearer("the request has none")),
    };
    let d = decode(token).map_err(|e| {
        Refusal::new(
            Reason::TokenMalformed,
            format!("The bearer token is malformed: {}.", e.0),
        )
    })?;
    if d.claims.typ.as_deref() != Some("Bearer") {
        return Err(need_bearer("this token's typ is not Bearer"));
    }
    let iss = d.claims.iss.as_deref().unwrap_or("");
    let token_realm = [realm, "master"]
        .into_iter()
        .find(|r| accepted(r).iter().any(|a| a == iss))
        .map_or_else(|| check_issuer(Some(iss), realm, &accepted(realm)).map(|()| realm), Ok)?;
    let synthetic = RegRoute {
        realm: token_realm.to_owned(),
        provider: "admin-api".into(),
        client_id: Some("admin-api".into()),
        operation: Operation::Update,
    };
    let identity = app
        .verifier
        .authenticate(&synthetic, headers, &accepted(token_realm))
        .await?;
    if identity.kind != TokenKind::Bearer {
        return Err(need_bearer("the token is not a bearer access token"));
    }
    Ok(identity)
}

/// Reads the body whole, checks it as a client representation, and forwards those bytes.
async fn check_body(
    app: &App,
    ctx: &Ctx,
    found: &mut Found,
    w: Write<'_>,
    req: Request<Body>,
    mappers: bool,
) -> Outcome {
    let Write { route, realm, policy } = w;
    let (parts, body) = req.into_parts();
    let limit = app.settings.max_body_bytes;
    let read = tokio::time::timeout(app.settings.timeouts.body_read, read_limited(body, limit)).await;
    let bytes = match read {
        Ok(Ok(b)) => b,
        Ok(Err(ReadError::TooLarge)) => {
            let r = Refusal::new(
                Reason::BodyTooLarge,
                format!("The admin request body is larger than {limit} bytes."),
            )
            .detail(Detail::LimitBytes, limit);
            return Err((r, None));
        }
        Ok(Err(ReadError::Failed(m))) => {
            return Err((
                Refusal::new(Reason::BodyNotJson, format!("The request body could not be read: {m}.")),
                None,
            ));
        }
        Err(_) => {
            return Err((
                Refusal::new(Reason::BodyTimeout, "The admin request body did not arrive in time.").detail(
                    Detail::Timeout,
                    format!("{}ms", app.settings.timeouts.body_read.as_millis()),
                ),
                None,
            ));
        }
    };
    let object = if mappers {
        // One mapper or a list of them: judged as a client carrying these protocol mappers.
        if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_err() {
            return Err((
                Refusal::new(Reason::BodyNotJson, "The protocol mapper body is not one JSON value."),
                None,
            ));
        }
        let mut wrapped = b"{\"protocolMappers\":".to_vec();
        wrapped.extend_from_slice(&bytes);
        wrapped.push(b'}');
        parse_object(&wrapped)
    } else {
        parse_object(&bytes)
    };
    let object = match object {
        Ok(o) => o,
        Err(r) => return Err((r, None)),
    };
    let create = route.target == AdminTarget::ClientCreate;
    let md = match normalise(Dialect::Keycloak, &object, create) {
        Ok(md) => md,
        Err(r) => return Err((r, None)),
    };
    let decision =
        crate::policy::eval::decide_metadata(&policy.metadata, realm, &md, app.settings.mode == Mode::Shadow);
    found.rule = decision.rule.clone();
    found.shadowed = !decision.shadowed.is_empty();
    for s in &decision.shadowed {
        let rule = s.rule.as_ref().map(RuleId::as_str);
        tracing::warn!(target: "audit", request_id = %ctx.request_id, reason = s.reason.code(), rule = ?rule, description = %s.description, "shadow mode: policy would refuse this admin write");
    }
    found.metadata = Some(md);
    match decision.refusal {
        Some(r) => Err((r.detail(Detail::AdminWrite, route.target.name()), None)),
        None => Ok(Request::from_parts(parts, full(bytes))),
    }
}
