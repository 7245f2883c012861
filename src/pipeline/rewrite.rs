//! Stage 6, rewrite: Keycloak's error answers on registration routes become the gateway's one
//! error shape, keeping Keycloak's status and body and adding a diagnosis from what the gateway
//! knows (decoded token, path, body, configuration). Successful answers are untouched, except
//! that `Location` and `registration_client_uri` are moved to the public URL.

use std::time::Duration;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::{HeaderValue, Response};
use serde_json::Value;

use crate::app::App;
use crate::error::{Detail, Reason, Refusal, UpstreamAnswer};
use crate::keycloak;
use crate::net::{Body, ReadError, full, read_within};
use crate::policy::metadata::ClientMetadata;
use crate::route::RegRoute;
use crate::token::checks::{self, IssuerFault, Lifetime, TimeFault};
use crate::token::{Identity, TokenKind};

/// What the gateway knows about a request when Keycloak refuses it.
#[derive(Debug)]
pub struct Known<'a> {
    /// The route.
    pub route: &'a RegRoute,
    /// The caller.
    pub identity: &'a Identity,
    /// The request's client metadata, when it had a body.
    pub metadata: Option<&'a ClientMetadata>,
    /// `scheme://host` as this request reached Keycloak (see [`Known::seen_issuer`]).
    pub seen_origin: &'a str,
    /// The request's `Origin` and `Content-Type`.
    pub sent: &'a crate::pipeline::ctx::Sent,
}

impl Known<'_> {
    /// The issuer Keycloak derives from the host this request reached it through; written
    /// only when an answer needs it.
    pub fn seen_issuer(&self) -> String {
        format!("{}/realms/{}", self.seen_origin, self.route.realm)
    }
}

/// Keycloak's `error` and `error_description` (or its plain-text body).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KcError {
    /// OAuth error code, when JSON.
    pub error: String,
    /// Description, or the plain text.
    pub description: String,
}

/// Parses Keycloak's error body.
pub fn parse_error(body: &[u8]) -> (KcError, Value) {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => {
            let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
            let mut error = s("error");
            let mut description = [s("error_description"), s("errorMessage"), s("message")]
                .into_iter()
                .find(|x| !x.is_empty())
                .unwrap_or_default();
            // Keycloak sometimes puts a sentence in `error` and no description.
            if description.is_empty() && error.contains(' ') {
                description = std::mem::take(&mut error);
            }
            (KcError { error, description }, v)
        }
        Err(_) => {
            let text = String::from_utf8_lossy(&body[..body.len().min(2048)]).trim().to_owned();
            (
                KcError {
                    error: String::new(),
                    description: text.clone(),
                },
                Value::String(text),
            )
        }
    }
}

fn policy_parts(desc: &str) -> Option<(String, String)> {
    let rest = desc.strip_prefix("Policy '")?;
    let (name, rest) = rest.split_once('\'')?;
    let details = rest
        .split_once("Details:")
        .map(|(_, d)| d.trim().to_owned())
        .unwrap_or_default();
    Some((name.to_owned(), details))
}

/// What Keycloak's answer means, before the token-specific diagnosis of `Failed decode token`.
pub fn classify(status: u16, e: &KcError, k: &Known<'_>) -> Refusal {
    let desc = e.description.as_str();
    let op = k.route.operation.as_str();
    let r = |reason: Reason, text: String| Refusal::new(reason, text);
    let client = k.route.client_id.as_deref().unwrap_or_default();
    match (status, desc) {
        (401, "Invalid type of token") => r(Reason::InvalidTokenType, "Keycloak does not accept this kind of token on the registration endpoint.".into()),
        (401, "Initial Access Token not found") => r(Reason::InitialTokenNotFound, "Keycloak no longer knows this initial access token: it was deleted or has been cleaned up.".into()),
        (401, "No remaining count on initial access token") => r(Reason::InitialTokenExhausted, "This initial access token has no uses left.".into()),
        (401, "Expired initial access token") => r(Reason::InitialTokenExpired, "This initial access token has expired.".into()),
        (401, "Not initial access token allowed") => r(Reason::InitialTokenWrongOperation, format!("An initial access token cannot be used to {op} a client.")),
        (401, d) if d.starts_with("Not authorized to") && k.identity.kind == TokenKind::RegistrationAccess => r(
            Reason::RegistrationTokenInvalid,
            format!("Keycloak refused this registration access token for client `{client}`: it was replaced by a newer one (every update rotates it), belongs to another client, or the client was deleted."),
        )
        .detail(Detail::ClientId, client),
        (401, d) if d.starts_with("Not authorized to") || d.contains("authenticate") || d.contains("authenticated") => {
            r(Reason::NotAuthorized, format!("Keycloak found no credential that may {op} this client."))
        }
        (401, "Failed decode token") => r(Reason::TokenRejected, "Keycloak could not verify the token (\"Failed decode token\").".into()),
        (403, "Forbidden") => {
            let roles = keycloak::roles_for(k.route.operation);
            let who = k.identity.claims.client().map(|a| format!("client '{a}'")).unwrap_or_else(|| "the caller".into());
            let mgmt = keycloak::management_client(&k.route.realm);
            let needed = roles.join(" or ");
            r(Reason::MissingRole, format!("Keycloak refused to let {who} {op} clients: its token has no {mgmt} role {needed}."))
                .detail(Detail::RolesNeededAny, roles.iter().map(|x| format!("{mgmt}/{x}")).collect::<Vec<_>>())
                .detail(Detail::TokenRoles, k.identity.claims.role_names())
        }
        (403, "HTTPS required") => r(Reason::HttpsRequired, format!("Realm {} requires HTTPS for this caller.", k.route.realm)),
        (403, d) if policy_parts(d).is_some() => policy_refusal(d, k),
        (403, d) if !d.is_empty() && !d.contains(' ') && e.error == "insufficient_scope" => {
            r(Reason::ClientPolicyRejected, format!("A Keycloak client policy refused the registration with `{d}`.")).detail(Detail::ClientPolicyError, d)
        }
        (400, "Client Identifier in use") => r(Reason::ClientIdInUse, "Keycloak already has a client with this client id.".into()),
        (400, "Client Identifier modified") => r(Reason::ClientIdModified, "The client id in the body differs from the one in the path.".into()),
        (400, "Client Identifier included") => r(Reason::ClientIdIncluded, "openid-connect generates client ids: the create body may not contain client_id.".into()),
        (400, d) if d.contains("Unrecognized field") => {
            let field = d.split('"').nth(1).unwrap_or_default().to_owned();
            r(Reason::UnrecognizedField, format!("Keycloak refused an unknown member `{field}` in the body.")).detail(Detail::Field, field)
        }
        (400, d) if e.error == "invalid_redirect_uri" => r(Reason::InvalidRedirectUri, format!("Keycloak refused a redirect URI: {d}")),
        (400, d) if e.error == "invalid_client_metadata" => r(Reason::ClientMetadataInvalid, format!("Keycloak refused the client metadata: {d}")),
        (400, "Wrong client protocol.") => r(Reason::WrongClientProtocol, "The client behind the token speaks another protocol than this endpoint.".into()),
        (404, "Client not found") => r(Reason::ClientNotFound, format!("Keycloak has no client `{}` in realm {}.", k.route.client_id.as_deref().unwrap_or_default(), k.route.realm)),
        (404, "Realm does not exist") => r(Reason::RealmNotFound, format!("Keycloak has no realm `{}`.", k.route.realm)),
        (404, d) if d.contains("provider not found") => r(Reason::ProviderNotFound, format!("Keycloak has no registration provider `{}`.", k.route.provider)),
        (415, _) => {
            let sent = k.sent.content_type.as_deref().unwrap_or("no Content-Type");
            r(Reason::ContentTypeUnsupported, format!("Keycloak accepts registration bodies only as JSON, and this request sent `{sent}`."))
                .detail(Detail::ContentType, sent)
        }
        (403, "Invalid origin") => {
            let origin = k.sent.origin.as_deref().unwrap_or_default();
            r(Reason::OriginRejected, format!("Keycloak refused the browser origin `{origin}`: it is not an allowed web origin of the credential's client (or of the initial or registration access token)."))
                .detail(Detail::Origin, origin)
        }
        (500..=599, _) => r(Reason::KeycloakServerError, format!("Keycloak failed with {status} while handling the registration.")),
        _ => {
            let said: Vec<&str> = [e.error.as_str(), desc].into_iter().filter(|s| !s.is_empty()).collect();
            r(Reason::KeycloakError, format!("Keycloak refused the request with {status}: {}.", if said.is_empty() { "no explanation".to_owned() } else { said.join(" / ") }))
        }
    }
}

fn policy_refusal(desc: &str, k: &Known<'_>) -> Refusal {
    let (name, details) = policy_parts(desc).unwrap_or_default();
    let (reason, text) = if details.starts_with("Host not trusted") {
        (
            Reason::TrustedHostRejected,
            "Keycloak's Trusted Hosts policy refused the caller's address, as Keycloak sees it.".to_owned(),
        )
    } else if details.contains("trusted host") || details.contains("is malformed") {
        (
            Reason::TrustedUriRejected,
            "Keycloak's Trusted Hosts policy refused a URL in the client metadata.".to_owned(),
        )
    } else if details.contains("clientScope") {
        (
            Reason::ClientScopeRejected,
            "Keycloak's Allowed Client Scopes policy refused a requested scope.".to_owned(),
        )
    } else if details.contains("clients per realm") {
        (
            Reason::MaxClientsReached,
            format!("Keycloak's Max Clients Limit policy refused: {details}"),
        )
    } else if details.contains("ProtocolMapper") {
        (
            Reason::ProtocolMapperRejected,
            "Keycloak's Allowed Protocol Mapper Types policy refused a protocol mapper.".to_owned(),
        )
    } else {
        (
            Reason::RegistrationPolicyRejected,
            format!("Keycloak's registration policy '{name}' refused the request: {details}"),
        )
    };
    let mut r = Refusal::new(reason, text)
        .detail(Detail::Policy, name)
        .detail(Detail::PolicyDetails, details);
    if let Some(md) = k.metadata.filter(|_| reason == Reason::ClientScopeRejected) {
        r = r.detail(Detail::RequestedScopes, md.scopes.clone());
    }
    if k.identity.kind == TokenKind::RegistrationAccess
        && k.identity.claims.registration_auth.as_deref() == Some("anonymous")
    {
        r = r.detail(Detail::RegistrationAuth, "anonymous");
    }
    r
}

/// Sharpens `Failed decode token` with what the gateway can check itself. `kid_still_held` says
/// whether a bearer token's key is still in the realm's (just refetched) key set.
pub fn diagnose_decode_failure(r: Refusal, k: &Known<'_>, kid_still_held: Option<bool>) -> Refusal {
    let c = &k.identity.claims;
    let kid = k.identity.kid.clone().unwrap_or_default();
    let seen = k.seen_issuer();
    if let Err(IssuerFault::Other(iss)) = checks::issuer(c.iss.as_deref(), &[seen.as_str()]) {
        return Refusal::new(
            Reason::IssuerMismatch,
            format!("Keycloak refused the token: it was issued as `{iss}`, but this request reached Keycloak as `{seen}`, and Keycloak checks the issuer against the host it is reached through."),
        )
        .detail(Detail::TokenIssuer, iss)
        .detail(Detail::ExpectedIssuer, seen);
    }
    if let Err(TimeFault::Expired(exp)) = checks::check_times(c, Lifetime::Keycloak, crate::token::now(), 0) {
        return Refusal::new(Reason::TokenExpired, "Keycloak refused the token: it has expired.")
            .detail(Detail::Exp, exp);
    }
    match (k.identity.kind, kid_still_held) {
        (TokenKind::Bearer, Some(false)) => Refusal::new(Reason::KidUnknown, format!("Keycloak refused the token: key {kid} that signed it was removed from realm {} (rotated away).", k.route.realm)).detail(Detail::Kid, kid),
        (TokenKind::Bearer, None) => r,
        (TokenKind::Bearer, Some(true)) => Refusal::new(Reason::TokenRevoked, "Keycloak refused a token whose signature, issuer and expiry the gateway verified: it was most likely revoked or its session ended.".to_owned()),
        (TokenKind::InitialAccess | TokenKind::RegistrationAccess, _) => Refusal::new(
            Reason::HmacTokenRejected,
            format!(
                "Keycloak could not verify the signature of this {} although its issuer and expiry are right: it was altered, realm {}'s HMAC key {kid} was rotated away or deleted, or another realm or Keycloak signed it.",
                k.identity.kind.noun(),
                k.route.realm
            ),
        )
        .detail(Detail::Kid, kid),
        _ => r,
    }
}

/// Attaches Keycloak's answer and the request's client id to a rewritten refusal.
pub fn with_upstream(mut r: Refusal, status: u16, body: Value, k: &Known<'_>) -> Refusal {
    r.upstream = Some(Box::new(UpstreamAnswer { status, body }));
    let client = k
        .route
        .client_id
        .clone()
        .or_else(|| k.metadata.and_then(|m| m.client_id.clone()));
    if let Some(c) = client {
        r = r.detail(Detail::ClientId, c);
    }
    r
}

/// Moves a URL that Keycloak built from its back-end address onto the public URL.
pub fn public_location(value: &str, upstream: &str, public: &str) -> Option<String> {
    let rest = value.strip_prefix(upstream)?;
    (rest.is_empty() || rest.starts_with('/')).then(|| format!("{public}{rest}"))
}

/// Moves `Location` and `registration_client_uri` from Keycloak's back-end address to the
/// public URL, when they differ.
pub async fn relocate(
    resp: Response<Body>,
    upstream: &str,
    public: &str,
    within: Duration,
) -> Result<Response<Body>, Refusal> {
    if upstream == public {
        return Ok(resp);
    }
    let (mut parts, body) = resp.into_parts();
    if let Some(moved) = parts
        .headers
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|l| public_location(l, upstream, public))
        && let Ok(v) = HeaderValue::from_str(&moved)
    {
        parts.headers.insert(LOCATION, v);
    }
    let json = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    let small = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n <= 1 << 20);
    if !(json && small) {
        return Ok(Response::from_parts(parts, body));
    }
    let bytes = read_within(body, 1 << 20, within).await.map_err(|e| {
        let why = match e {
            ReadError::TooLarge => "the answer grew past its declared length".to_owned(),
            ReadError::Failed(m) => m,
        };
        Refusal::new(
            Reason::UpstreamProtocol,
            "Keycloak's answer broke off while the gateway read it.",
        )
        .detail(Detail::Error, why)
    })?;
    let mut out = bytes.to_vec();
    if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&bytes)
        && let Some(moved) = v
            .get("registration_client_uri")
            .and_then(|u| u.as_str())
            .and_then(|u| public_location(u, upstream, public))
    {
        v["registration_client_uri"] = moved.into();
        out = v.to_string().into_bytes();
    }
    parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(out.len()));
    Ok(Response::from_parts(parts, full(out)))
}

pub mod probe;

/// The `client_id` detail of a registration-access-token refusal.
fn client_of(r: &Refusal) -> String {
    r.details
        .get("client_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The refusal of a registration access token whose client Keycloak no longer knows.
pub fn client_gone(r: Refusal, realm: &str) -> Refusal {
    let client = client_of(&r);
    let mut gone = Refusal::new(
        Reason::RegistrationClientGone,
        format!("Client `{client}` no longer exists in realm {realm} (it was deleted, or it is disabled), so its registration access token is void."),
    )
    .detail(Detail::ClientId, client);
    gone.upstream = r.upstream;
    gone
}

/// The refusal of a registration access token whose client still exists: rotated or foreign.
pub fn client_kept(mut r: Refusal) -> Refusal {
    let client = client_of(&r);
    r.description = format!(
        "Keycloak refused this registration access token for client `{client}`, which still exists: the token was replaced by a newer one (every update rotates it) or belongs to another client."
    );
    r
}

/// Stage 6 as a whole: a success is relocated to the public URL; an error is read (64 KiB at
/// most), classified, diagnosed further where the gateway can find out more (is the client of
/// a rejected registration access token still there, is the key of a rejected token still
/// published), and answered in the one error shape with Keycloak's own answer kept.
pub async fn answer(app: &App, known: &Known<'_>, lent: bool, resp: Response<Body>) -> Result<Response<Body>, Refusal> {
    let status = resp.status().as_u16();
    if status < 400 {
        return relocate(resp, &app.upstream_url, &app.public_url, app.settings.timeouts.response).await;
    }
    let (_, body) = resp.into_parts();
    let bytes = read_within(body, 64 * 1024, app.settings.timeouts.response)
        .await
        .unwrap_or_default();
    let (kc, raw) = parse_error(&bytes);
    let reg = known.route;
    let mut refusal = classify(status, &kc, known);
    if refusal.reason == Reason::RegistrationTokenInvalid
        && let Some(id) = reg.client_id.as_deref()
    {
        refusal = match probe::client_exists(&app.client, &app.settings, &reg.realm, id).await {
            Some(false) => client_gone(refusal, &reg.realm),
            Some(true) => client_kept(refusal),
            None => refusal,
        };
    }
    if refusal.reason == Reason::TokenRejected {
        let held = match (known.identity.kind, &known.identity.kid) {
            (TokenKind::Bearer, Some(kid)) => app.verifier.jwks.kid_status(&reg.realm, kid).await,
            _ => None,
        };
        refusal = diagnose_decode_failure(refusal, known, held);
    }
    if lent {
        refusal = super::anonymous::keycloak_refused(app, reg, status, refusal);
    }
    app.metrics.rewrites.with_label_values(&[refusal.reason.code()]).inc();
    Err(with_upstream(refusal, status, raw, known))
}

#[cfg(test)]
mod tests;
