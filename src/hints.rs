//! The fix for every reason code, as steps: where to click in the admin console and the
//! `kcadm.sh` or admin REST command, filled in with what the gateway knows about the request.

use serde_json::Value;

use crate::error::{Detail, Reason, Refusal, RuleId, Stage};
use crate::route::Operation;
use crate::token::TokenKind;

mod fix;
pub use fix::{ACTION_VERBS, describe, fix, names_action, required_details, sentences};

thread_local! {
    /// Detail keys a hint or description asked for that the refusal lacked (checked by tests
    /// and, in debug builds, by `respond` for each reason's required keys).
    static MISSING: std::cell::RefCell<Vec<Detail>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Takes the detail keys read since the last call that the refusal did not have.
pub fn take_missing() -> Vec<Detail> {
    MISSING.with(|m| std::mem::take(&mut *m.borrow_mut()))
}

/// What the gateway knows when it writes a hint.
#[derive(Debug, Clone, Copy, Default)]
pub struct HintCtx<'a> {
    /// Realm from the path.
    pub realm: Option<&'a str>,
    /// Operation from the path and method.
    pub operation: Option<Operation>,
    /// Provider from the path.
    pub provider: Option<&'a str>,
    /// Kind of the presented token.
    pub kind: Option<TokenKind>,
    /// Client the token was issued to.
    pub azp: Option<&'a str>,
    /// `preferred_username` of the token.
    pub username: Option<&'a str>,
    /// The gateway's public URL.
    pub public_url: &'a str,
    /// Keycloak as the gateway reaches it.
    pub upstream: &'a str,
}

fn d(r: &Refusal, key: Detail) -> Option<&Value> {
    r.get(key)
}

fn ds(r: &Refusal, key: Detail) -> String {
    match d(r, key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))
            .collect::<Vec<_>>()
            .join(", "),
        Some(v) => v.to_string(),
        None => {
            MISSING.with(|m| m.borrow_mut().push(key));
            "(not known)".to_owned()
        }
    }
}

fn mgmt(realm: &str) -> &'static str {
    crate::keycloak::management_client(realm)
}

fn new_iat(realm: &str, public: &str) -> String {
    format!(
        "Create a new initial access token: admin console → realm {realm} → Clients → Initial access token → Create (set Expiration and Count), or `curl -X POST {public}/admin/realms/{realm}/clients-initial-access -H 'Authorization: Bearer <admin token>' -H 'Content-Type: application/json' -d '{{\"expiration\":3600,\"count\":1}}'` and use the `token` of the answer. Mint it through {public} so its issuer matches."
    )
}

/// The narrowest role Keycloak accepts for the operation.
fn role_for(op: Option<Operation>) -> &'static str {
    crate::keycloak::narrowest_role(op)
}

/// The hint for a refusal.
pub fn hint(r: &Refusal, c: &HintCtx<'_>) -> String {
    // Refusals at the token stage come before the caller is known: use what they recorded.
    let kind = c.kind.or_else(|| {
        r.details
            .get("token_kind")
            .and_then(Value::as_str)
            .and_then(TokenKind::parse)
    });
    let azp_detail = r.get(Detail::Azp).and_then(Value::as_str).filter(|s| !s.is_empty());
    let c = &HintCtx {
        kind,
        azp: c.azp.or(azp_detail),
        ..*c
    };
    let s = Said {
        realm: c.realm.unwrap_or("<realm>"),
        public: c.public_url,
        azp: c.azp.unwrap_or("<client>"),
        op: c.operation.map(Operation::as_str).unwrap_or("register"),
        rule: r.rule.as_ref().map_or("<rule>", RuleId::as_str),
        m: mgmt(c.realm.unwrap_or("<realm>")),
        role: role_for(c.operation),
    };
    let found = match r.reason.stage() {
        Stage::Request => hint_request(r, c, &s),
        Stage::Token => hint_token(r, c, &s),
        Stage::Policy => hint_policy(r, c, &s),
        Stage::Gateway => hint_gateway(r, c, &s),
        Stage::Keycloak => None,
    };
    found.unwrap_or_else(|| keycloak_hint(r, c, s.realm, s.m, s.role))
}

/// What every hint may name, with placeholders for what the gateway does not know.
#[derive(Clone, Copy)]
struct Said<'a> {
    realm: &'a str,
    public: &'a str,
    azp: &'a str,
    op: &'a str,
    rule: &'a str,
    m: &'static str,
    role: &'static str,
}

/// The hint for a refusal at the routing and request shape stage; `None` for a reason it does not know.
fn hint_request(r: &Refusal, _c: &HintCtx<'_>, s: &Said<'_>) -> Option<String> {
    let Said { public, .. } = *s;
    Some(match r.reason {
        Reason::PathMalformed if d(r, Detail::Area).and_then(Value::as_str) == Some("admin") => format!("Write the admin API path plainly{} (literal lower-case segments, no encoded or doubled slashes, dot segments, ;parameters or trailing slash).", d(r, Detail::Expected).and_then(Value::as_str).map(|e| format!(", as {e}")).unwrap_or_default()),
        Reason::PathMalformed => format!("Send registration requests to {public}/realms/<realm>/clients-registrations/<provider>[/<clientId>] written plainly: no encoded slashes, dot segments, empty segments, backslashes or ;parameters."),
        Reason::RouteRefused => "This gateway serves only Keycloak's client-registration endpoint (other_paths = \"refuse\"); send other Keycloak traffic to Keycloak's own address.".into(),
        Reason::MethodNotAllowed => format!("Create with POST on …/clients-registrations/<provider>; read, update and delete with GET, PUT and DELETE on …/clients-registrations/<provider>/<clientId>. Allowed here: {}.", ds(r, Detail::Allowed)),
        Reason::RequestTargetInvalid => format!("Send the path alone as the request target (origin-form), e.g. `POST /realms/<realm>/clients-registrations/<provider> HTTP/1.1` with `Host: {}`; `OPTIONS *` is the only asterisk-form request the gateway answers, and it does not tunnel CONNECT.", public.trim_start_matches("https://").trim_start_matches("http://")),
        Reason::RequestUnparseable => "Send a well-formed HTTP/1.1 request: one request line `METHOD /path HTTP/1.1`, `Name: value` header lines, at most one Content-Length (and not together with Transfer-Encoding). The connection was closed; open a new one.".into(),
        Reason::RequestHeadTooLarge => "Send fewer or smaller headers (a big Cookie or several large tokens are the usual cause) or a shorter URI; the gateway reads at most about 100 headers and 400 KiB of header section. The connection was closed; open a new one.".into(),
        Reason::ConnectionHeaderInvalid => format!(
            "Remove `{}` from the Connection header: it names hop-by-hop headers only (e.g. `Connection: keep-alive`), and the gateway forwards the credential and addressing headers it checked.",
            ds(r, Detail::Header)
        ),
        Reason::BodyTooLarge => format!("Send a smaller registration body (at most {} bytes); the operator can raise max_body_bytes in the gateway config.", ds(r, Detail::LimitBytes)),
        Reason::BodyTimeout => format!(
            "Send the whole registration body promptly (within {}); the operator sets the limit with [timeouts] body_read.",
            ds(r, Detail::Timeout)
        ),
        Reason::BodyNotJson | Reason::BodyDuplicateKey | Reason::BodyTooDeep | Reason::BodyWrongType => {
            "Send one JSON object in UTF-8 with Content-Type: application/json, each key once, values of the documented types (redirect URIs as an array of strings), nested at most 32 levels.".into()
        }
        Reason::ClientIdMismatch => format!("Repeat the client id of the path in the body ({}: \"{}\") and change nothing else about it: Keycloak does not rename clients through registration.", ds(r, Detail::Field), ds(r, Detail::PathClientId)),
        _ => return None,
    })
}

/// The hint for a refusal at the token triage and verification stage; `None` for a reason it does not know.
fn hint_token(r: &Refusal, c: &HintCtx<'_>, s: &Said<'_>) -> Option<String> {
    let Said {
        realm, public, azp, m, ..
    } = *s;
    Some(match r.reason {
        Reason::AuthSchemeUnsupported => format!("Send `Authorization: Bearer <token>` with a service-account access token ({public}/realms/{realm}/protocol/openid-connect/token, grant_type=client_credentials), an initial access token, or the registration access token returned when the client was created."),
        Reason::TokenMalformed => "Send exactly `Authorization: Bearer <token>`: one space, then the whole token as Keycloak returned it (three base64url parts joined by dots), with no quotes or line breaks.".into(),
        Reason::TokenTypeUnsupported => format!("Use an access token from {public}/realms/{realm}/protocol/openid-connect/token (typ Bearer), an initial access token, or a registration access token. ID tokens and refresh tokens are not accepted."),
        Reason::TokenKindMismatch if c.kind == Some(TokenKind::InitialAccess) => "Use the registration access token from the create response (`registration_access_token` on openid-connect, `registrationAccessToken` on default) to read, update or delete that client, or a bearer token with manage-clients (view-clients to read).".into(),
        Reason::TokenKindMismatch => format!("Create clients with an initial access token or a service-account token that has {m}/create-client. {}", new_iat(realm, public)),
        Reason::HmacAlgorithmExpected => format!("Send the token exactly as Keycloak issued it. If in doubt: {}", new_iat(realm, public)),
        Reason::IssuerMismatch => format!(
            "The token was issued as `{}` but realm {realm} at this gateway accepts {}. Keycloak writes the scheme and host it was reached through into each token, and the gateway accepts the issuer Keycloak derives from the scheme and host this request arrived with: request the token (or the initial access token) through the same gateway URL you register through, or pin Keycloak's hostname (KC_HOSTNAME) so every token carries one issuer. Operators: list every issuer clients may present under [realms.{realm}] issuer = [\"…\"] in the gateway config, or set --public-url.",
            ds(r, Detail::TokenIssuer),
            d(r, Detail::AcceptedIssuers).map_or_else(|| format!("`{}`", ds(r, Detail::ExpectedIssuer)), |_| ds(r, Detail::AcceptedIssuers))
        ),
        Reason::IssMissing => format!("Keycloak sets iss on every token it issues, so this token was not issued by realm {realm}'s token endpoint ({public}/realms/{realm}/protocol/openid-connect/token) or was edited. Request a token there and send it unchanged."),
        Reason::TokenExpired if matches!(c.kind, Some(TokenKind::InitialAccess)) => new_iat(realm, public),
        Reason::TokenExpired => format!("Request a new token ({public}/realms/{realm}/protocol/openid-connect/token) and retry. Tokens live as long as the realm's Access Token Lifespan (admin console → Realm settings → Tokens)."),
        Reason::TokenNotYetValid | Reason::TokenIssuedInFuture => "Synchronise the clocks of Keycloak, the gateway and the client (NTP). The gateway allows the skew set by [jwt] leeway (30s by default).".into(),
        Reason::ExpMissing | Reason::KidMissing => format!("Use an access token issued by {public}/realms/{realm}/protocol/openid-connect/token; Keycloak always sets exp and kid."),
        Reason::AlgorithmNotAllowed => format!(
            "Bearer tokens must be signed with one of {}. In Keycloak: Realm settings → Tokens → Default signature algorithm, with an active key provider for it under Realm settings → Keys. Initial and registration access tokens are HMAC-signed and pass as they are: the gateway recognises them by their typ claim, so send them unchanged.",
            ds(r, Detail::Allowed)
        ),
        Reason::KidUnknown => format!(
            "The key that signed this token ({}) is not in realm {realm}'s keys ({}). If the realm's keys were rotated and the old key provider deleted or disabled (Realm settings → Keys → Providers), request a new token: it will carry the new kid. If the token is from another realm or Keycloak, use one from realm {realm}.",
            ds(r, Detail::Kid),
            d(r, Detail::JwksUri).and_then(Value::as_str).unwrap_or("Realm settings → Keys")
        ),
        Reason::KeyUnusable | Reason::SignatureInvalid => format!("The token was altered or signed by another key. Request a new token from {public}/realms/{realm}/protocol/openid-connect/token and send it unchanged."),
        Reason::AudienceMismatch => format!("Add an audience mapper: admin console → Clients → {azp} → Client scopes → {azp}-dedicated → Add mapper → By configuration → Audience → Included Client Audience = {}. Then request a new token.", ds(r, Detail::ExpectedAudiences)),
        Reason::AzpMismatch => format!("Use a token issued to one of {}, or add '{azp}' to azp under [realms.{realm}] in the gateway config.", ds(r, Detail::ExpectedAzp)),
        Reason::JwksUnavailable => format!("Check that Keycloak answers at {} from the gateway (last error: {}). The gateway retries in the background, and /readyz on its admin port lists realms whose keys are missing.", ds(r, Detail::JwksUri), ds(r, Detail::LastError)),
        _ => return None,
    })
}

/// The hint for a refusal at the policy stage; `None` for a reason it does not know.
fn hint_policy(r: &Refusal, c: &HintCtx<'_>, s: &Said<'_>) -> Option<String> {
    let Said {
        realm,
        public,
        azp,
        op,
        rule,
        m,
        role,
    } = *s;
    Some(match r.reason {
        Reason::ProviderNotAllowed => format!(
            "Use one of the allowed providers ({}), e.g. POST {public}/realms/{realm}/clients-registrations/openid-connect. To allow `{}`, add it to `providers` in {rule} of the policy.",
            ds(r, Detail::AllowedProviders),
            c.provider.unwrap_or("that provider")
        ),
        Reason::AnonymousNotAllowed => format!(
            "Authenticate the request. Either: 1. {} 2. Or use a service account: Clients → <client> → Service account roles → Assign role → filter by clients → {m} → {role}, then send its client_credentials token. To let RFC 7591 and MCP clients register without a credential, enable the gateway's anonymous mode: [realms.{realm}.anonymous] in the policy and a [realms.{realm}.registrar] credential in the gateway config (Keycloak's Trusted Hosts stays closed).",
            new_iat(realm, public)
        ),
        Reason::TokenKindNotAllowed => format!(
            "The policy allows {} to {op} clients in realm {realm} ({rule}); use one of those, or change that rule.",
            ds(r, Detail::AllowedTokenKinds)
        ),
        Reason::MissingRole => missing_role(r, c, realm, m),
        Reason::RolesNotInToken => format!(
            "The token carries no resource_access claim, so no client role is visible in it even if the service account holds {m}/{role}. This happens when the client has Full scope allowed off and no scope mapping for {m} roles (fix: Clients → {azp} → Client scopes → {azp}-dedicated → Scope → turn Full scope allowed on, or assign role {m}/{role} there), or when the `roles` client scope was removed from the client (fix: Clients → {azp} → Client scopes → Add client scope → roles, as Default). Then request a new token."
        ),
        Reason::MissingScope => format!(
            "Request the token with scope=\"{}\"; the client needs those client scopes assigned (Clients → {azp} → Client scopes → Add client scope).",
            ds(r, Detail::ScopesNeeded)
        ),
        Reason::AzpNotAllowed => format!(
            "Use a token issued to one of {} (rule {rule}), or ask the operator to add '{azp}' there.",
            ds(r, Detail::AllowedAzp)
        ),
        Reason::RedirectUriNotAllowed
        | Reason::RedirectUriFragment
        | Reason::RedirectUriMalformed
        | Reason::TooManyRedirectUris => redirect_hint(r, rule),
        Reason::GrantTypeNotAllowed => format!(
            "Ask only for allowed grant types ({}; rule {rule}). Keycloak switches grants on in several ways, all counted here: {}",
            ds(r, Detail::Allowed),
            match c.provider {
                Some("default") =>
                    "the flags standardFlowEnabled, implicitFlowEnabled, directAccessGrantsEnabled, serviceAccountsEnabled and authorizationServicesEnabled (true, \"true\" in any of Jackson's spellings, or a non-zero number), and the attributes oauth2.device.authorization.grant.enabled, oidc.ciba.grant.enabled, standard.token.exchange.enabled, oauth2.jwt.authorization.grant.enabled, use.refresh.tokens (on unless \"false\") and client_credentials.use_refresh_token (\"true\" in any case). Set the flag false, or leave the attribute out.",
                _ =>
                    "grant_types, and response_types: code or none switch on authorization_code, token or id_token (alone or combined, e.g. \"code id_token\") the implicit flow. Leaving grant_types out keeps refresh tokens on. Use response_types [\"code\"] and list the grants you need.",
            }
        ),
        Reason::ResponseTypeNotAllowed
        | Reason::AuthMethodNotAllowed
        | Reason::ScopeNotAllowed
        | Reason::ClientTypeNotAllowed => {
            format!(
                "Set {} to allowed values only ({}); the operator sets them in {rule}.",
                ds(r, Detail::Field),
                ds(r, Detail::Allowed)
            )
        }
        Reason::FieldForbidden => forbidden_hint(r, c, rule),
        Reason::BrowserUrlNotAllowed => format!(
            "Keycloak sends users' browsers to `{}` (or the browser loads it), so it follows the redirect URI rules of {rule}: an absolute URL on an allowed scheme and host, without #fragment or wildcard (a path such as /app is resolved against rootUrl). Change or remove that value.",
            ds(r, Detail::Field)
        ),
        Reason::ServerUrlNotAllowed => format!(
            "Keycloak itself calls `{}`, so it must be a URL on a public host{}: loopback, private, link-local and cloud-metadata addresses (in any spelling) and local names (localhost, single-label names, .local, .internal) are refused by {rule}. The operator can list the hosts Keycloak may call ([*.metadata.server_urls] hosts) or, for an internal deployment, set private_addresses = true there.",
            ds(r, Detail::Field),
            match d(r, Detail::AllowedHosts) {
                Some(_) => format!(" among {}", ds(r, Detail::AllowedHosts)),
                None => String::new(),
            }
        ),
        Reason::ClientIdPattern | Reason::ClientNamePattern => format!(
            "Choose a {} that matches {} (rule {rule}).",
            ds(r, Detail::Field),
            ds(r, Detail::Pattern)
        ),
        Reason::AdminWriteRefused => format!(
            "Make this change in the admin console (its user sessions are forwarded), through the registration endpoint (…/clients-registrations/default, under the same rules), or have the policy allow it: `{}` in the realm's [admin_api] (`allow = [\"{}\"]`, or `writes = \"forward\"`).",
            rule,
            d(r, Detail::AdminWrite)
                .and_then(Value::as_str)
                .unwrap_or("METHOD /path")
        ),
        Reason::QuotaExceeded => format!(
            "Wait {}s (Retry-After) before creating more clients: the quota is {} creates per {}s per caller ({rule}).",
            r.retry_after.unwrap_or(1),
            ds(r, Detail::Creates),
            ds(r, Detail::WindowSeconds)
        ),
        Reason::RealmQuotaExceeded => format!(
            "Wait {}s (Retry-After) before creating more clients: realm {} allows {} creates per {}s across all callers ({rule}).",
            r.retry_after.unwrap_or(1),
            realm,
            ds(r, Detail::RealmCreates),
            ds(r, Detail::WindowSeconds)
        ),
        Reason::ScopeMemberRefused => format!(
            "Leave `scope` out of the registration body: in realm {realm} the client then gets the realm's default client scopes, and can ask for optional ones when it requests tokens ({rule})."
        ),
        Reason::CorsOriginNotAllowed => format!(
            "Call the registration endpoint from an allowed origin ({}), or ask the operator to add `{}` to `cors.origins` ({rule}).",
            ds(r, Detail::AllowedOrigins),
            ds(r, Detail::Origin)
        ),
        _ => return None,
    })
}

/// The hint for a refusal at the the gateway itself and the upstream connection stage; `None` for a reason it does not know.
fn hint_gateway(r: &Refusal, c: &HintCtx<'_>, s: &Said<'_>) -> Option<String> {
    let Said { realm, .. } = *s;
    Some(match r.reason {
        Reason::RegistrarUnavailable => format!("Retry later. Operators: the gateway's own credential for realm {realm} ([realms.{realm}.registrar] in the gateway config) cannot be obtained; /readyz on the admin port says why."),
        Reason::NotReady => "The gateway is starting or cannot load its policy or keys; check /readyz on its admin port and retry shortly.".into(),
        Reason::QuotaStoreUnavailable => "Retry after a moment (Retry-After). Operators: the gateway counts registration quotas in Redis ([quota_store], on_error = \"closed\") and could not reach it; check Redis and the gateway's dcr_gateway_quota_store_errors_total metric and /readyz.".into(),
        Reason::Overloaded => format!("Retry after a moment (Retry-After): the gateway is at its limit of requests in flight ({}).", ds(r, Detail::Limit)),
        Reason::UpstreamUnreachable => format!("Check that Keycloak runs and is reachable from the gateway at {} (error: {}).", c.upstream, ds(r, Detail::Error)),
        Reason::UpstreamConnectTimeout | Reason::UpstreamTimeout => format!("Keycloak at {} did not answer in time ({}). Check its health and load, or raise [timeouts] in the gateway config.", c.upstream, ds(r, Detail::Timeout)),
        Reason::UpstreamProtocol => format!("Keycloak's connection broke while answering ({}); check Keycloak's log and retry.", ds(r, Detail::Error)),
        Reason::Internal => "This is a gateway bug: report it with the request_id.".into(),
        _ => return None,
    })
}

/// On create: leave the field out. On update, leaving a field out of a `default` PUT keeps it,
/// while an empty value deletes (`protocolMappers: []` removes every mapper): say so.
fn forbidden_hint(r: &Refusal, c: &HintCtx<'_>, rule: &str) -> String {
    let field = ds(r, Detail::Field);
    if c.operation != Some(Operation::Update) {
        return format!("Leave `{field}` out of the request body; rule {rule} forbids setting it.");
    }
    let keep = match c.provider {
        Some("default") => format!(
            " Keycloak's default provider keeps what a PUT leaves out, so leaving `{field}` out keeps the client's current value; do not send it empty: an empty list or object (e.g. \"protocolMappers\": []) deletes what the client has."
        ),
        _ => String::new(),
    };
    format!(
        "This update changes `{field}`, which rule {rule} forbids changing. Send `{field}` exactly as the client has it now (as GET on this URL returns it), or leave it out.{keep} Values the client already has are not refused; only changes are."
    )
}

fn missing_role(r: &Refusal, c: &HintCtx<'_>, realm: &str, m: &str) -> String {
    let needed = match d(r, Detail::RolesNeededAny).or_else(|| d(r, Detail::RolesNeededAll)) {
        Some(Value::Array(a)) => a.first().and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
    .unwrap_or_else(|| format!("{m}/{}", role_for(c.operation)));
    let (client, role) = needed
        .split_once('/')
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .unwrap_or((String::new(), needed.clone()));
    let azp = c.azp.unwrap_or("<client>");
    let service = c.username.is_none_or(|u| u.starts_with("service-account-"));
    if client.is_empty() {
        return format!(
            "Assign realm role {role}: admin console → realm {realm} → {} → Assign role → {role}. Then request a new token: roles are fixed when a token is issued.",
            if service {
                format!("Clients → {azp} → Service account roles")
            } else {
                "Users → <user> → Role mapping".to_owned()
            }
        );
    }
    let who = if service {
        format!("The service account of client '{azp}'")
    } else {
        format!("User '{}'", c.username.unwrap_or("<user>"))
    };
    let path = if service {
        format!("Clients → {azp} → Service account roles → Assign role → filter by clients → {client} → {role}")
    } else {
        format!(
            "Users → {} → Role mapping → Assign role → filter by clients → {client} → {role}",
            c.username.unwrap_or("<user>")
        )
    };
    let user = if service {
        format!("service-account-{azp}")
    } else {
        c.username.unwrap_or("<user>").to_owned()
    };
    format!(
        "{who} has no {role} role of client {client}. In the admin console: {path}. Or: `kcadm.sh add-roles -r {realm} --uusername {user} --cclientid {client} --rolename {role}`. Then request a new token: roles are fixed when a token is issued."
    )
}

fn redirect_hint(r: &Refusal, rule: &str) -> String {
    let mut allowed = Vec::new();
    for key in [Detail::AllowedSchemes, Detail::AllowedHosts] {
        if d(r, key).is_some() {
            allowed.push(format!("{}: {}", key.key().trim_start_matches("allowed_"), ds(r, key)));
        }
    }
    let allowed = if allowed.is_empty() {
        String::new()
    } else {
        format!(" ({})", allowed.join("; "))
    };
    format!(
        "Register only redirect URIs the policy allows{allowed}: absolute, without a #fragment or wildcard; native apps may use http://127.0.0.1:<port>/... when loopback is allowed. The rule is {rule}."
    )
}

fn keycloak_hint(r: &Refusal, c: &HintCtx<'_>, realm: &str, m: &str, role: &str) -> String {
    let public = c.public_url;
    let client = d(r, Detail::ClientId)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("<client>")
        .to_owned();
    match r.reason {
        Reason::TokenRevoked => format!("The gateway verified this token, yet Keycloak refused it: it was most likely revoked or its session ended (logout, admin 'Sign out', or revocation). Request a new token from {public}/realms/{realm}/protocol/openid-connect/token."),
        Reason::HmacTokenRejected => format!(
            "Send the {noun} exactly as Keycloak returned it: not re-encoded, cut short or edited (any change breaks its HMAC signature). If it was sent unchanged, the realm no longer holds the HMAC key with kid {kid} (Realm settings → Keys → Providers: an hmac-generated provider deleted or disabled after a rotation), or the token comes from another realm or Keycloak server. Either way it cannot be repaired. {} A registration access token can be reissued by an admin: Clients → <client> → Credentials → Registration access token → Regenerate.",
            new_iat(realm, public),
            noun = c.kind.map(TokenKind::noun).unwrap_or("token"),
            kid = ds(r, Detail::Kid),
        ),
        Reason::TokenRejected => format!("Keycloak could not verify the token (\"Failed decode token\"). Usual causes: the token was minted through another host name than {public} (Keycloak checks the issuer per request; pin KC_HOSTNAME), it expired, the key that signed it was rotated away, or it was revoked. Request a new token through {public}."),
        Reason::InvalidTokenType => "Keycloak accepts only access tokens (typ Bearer), initial access tokens and registration access tokens here.".into(),
        Reason::InitialTokenNotFound => format!("This initial access token no longer exists in Keycloak: it was deleted (Clients → Initial access token) or cleaned up after it expired. {}", new_iat(realm, public)),
        Reason::InitialTokenExhausted => format!("This initial access token was used as many times as its Count allowed. {}", new_iat(realm, public).replace("\"count\":1", "\"count\":10")),
        Reason::InitialTokenExpired => new_iat(realm, public),
        Reason::InitialTokenWrongOperation => "Use the registration access token from the create response to read, update or delete the client.".into(),
        Reason::RegistrationTokenInvalid => format!(
            "Keycloak answers a rotated token, another client's token and a deleted client's token alike. Keycloak rotates the registration access token on every update, so each one works once for PUT: use the `registration_access_token` (registrationAccessToken on default) from the latest create or update response of client {client}. A token from another client never works. Lost it? An admin can issue a new one: Clients → {client} → Credentials → Registration access token → Regenerate."
        ),
        Reason::RegistrationClientGone => format!(
            "The gateway asked Keycloak's token endpoint about client {client}, and realm {realm} does not know it (or has it disabled): it was deleted, through the registration endpoint (DELETE) or by an admin (Clients → {client} → Delete). Its registration access token cannot be renewed. Register the client again (POST …/clients-registrations/{} with an initial access token or a service-account token) and keep the new registration_access_token. If the client is only disabled, an admin can enable it again under Clients → {client}.",
            c.provider.unwrap_or("openid-connect")
        ),
        Reason::ContentTypeUnsupported => format!("Keycloak's registration endpoint consumes only `application/json` (the openid-connect and default providers; saml2-entity-descriptor takes `application/xml`) and answers 415 to anything else, e.g. `text/plain` (curl -d without -H, or fetch with a string body). Send the header `Content-Type: application/json` with the JSON body, e.g. `curl -H 'Content-Type: application/json' -d @client.json {public}/realms/{realm}/clients-registrations/openid-connect`."),
        Reason::OriginRejected => format!(
            "Keycloak (26.5 and later) checks the Origin header of browser calls to the openid-connect provider and answers 403 `Invalid origin` when it is not allowed. Allowed are: the Web origins of the client the bearer token was issued to (Clients → <client> → Settings → Web origins), the allowed origins of the initial access token (webOrigins when it is created) or registration access token, and those of the 'Allowed Registration Web Origins' policy (Clients → Client registration). Add `{}` there, or call without an Origin header (from a server, not a browser).",
            d(r, Detail::Origin).and_then(Value::as_str).unwrap_or("the origin")
        ),
        Reason::NotAuthorized => format!("Send the client's registration access token, or a bearer token whose service account has {m}/manage-clients ({m}/view-clients is enough to read)."),
        Reason::TrustedHostRejected => format!(
            "Keycloak's anonymous policy 'Trusted Hosts' refused the caller's address as Keycloak sees it. Behind this gateway Keycloak sees the gateway's address unless it reads proxy headers: start Keycloak with --proxy-headers xforwarded (KC_PROXY_HEADERS=xforwarded) and --proxy-trusted-addresses <gateway address> (KC_PROXY_TRUSTED_ADDRESSES) so it uses the X-Forwarded-For the gateway sets, then add the client's address under Clients → Client registration → Anonymous access policies → Trusted Hosts. Better: register with an initial access token (authenticated requests skip Trusted Hosts). {}",
            new_iat(realm, public)
        ),
        Reason::TrustedUriRejected => "Keycloak's 'Trusted Hosts' policy requires the host of every redirect URI, root URL and base URL to be a trusted host or domain: add the host under Clients → Client registration → Anonymous access policies → Trusted Hosts, or register with an initial access token.".into(),
        Reason::ClientScopeRejected => format!(
            "Keycloak's 'Allowed Client Scopes' policy refused a requested scope ({}). Request only client scopes that exist in realm {realm} and are allowed (Clients → Client registration → {} access policies → Allowed Client Scopes), or leave out the `scope` member. Note that `openid` is not a client scope in Keycloak.",
            ds(r, Detail::RequestedScopes),
            if c.kind == Some(TokenKind::Anonymous) { "Anonymous" } else { "Authenticated" }
        ),
        Reason::MaxClientsReached => "The realm has as many clients as 'Max Clients Limit' allows (built-in clients count too). Delete unused clients, or raise the limit: Clients → Client registration → Anonymous access policies → Max Clients Limit.".into(),
        Reason::ProtocolMapperRejected => "Keycloak's 'Allowed Protocol Mapper Types' policy refused a protocol mapper in the body: remove protocolMappers, or (admin) add the mapper type under Clients → Client registration → Allowed Protocol Mapper Types.".into(),
        Reason::RegistrationPolicyRejected => format!("Keycloak's client registration policy '{}' refused the request: {}. Review it under Clients → Client registration.", ds(r, Detail::Policy), ds(r, Detail::PolicyDetails)),
        Reason::ClientPolicyRejected => "A Client Policy executor refused the registration; Keycloak writes the reason only to its event log. Enable events (Realm settings → Events → User events settings → Save events), retry, then look for CLIENT_REGISTER_ERROR and its client_policy_error_detail; the policies are under Realm settings → Client policies.".into(),
        Reason::InvalidRedirectUri => "Keycloak refused a redirect URI: use absolute URIs without #fragments (a custom scheme is fine for native apps).".into(),
        Reason::ClientIdInUse => format!("A client '{client}' already exists in realm {realm}. Choose another clientId, or change the existing client with PUT …/clients-registrations/{}/{client} and its registration access token.", c.provider.unwrap_or("default")),
        Reason::ClientIdModified => "Keep the client id in the body equal to the one in the path; Keycloak does not rename clients through registration.".into(),
        Reason::ClientIdIncluded => "Leave client_id out when creating on openid-connect: Keycloak generates it (use the default provider to choose your own clientId).".into(),
        Reason::ClientMetadataInvalid => "Keycloak could not convert the client metadata: check token_endpoint_auth_method (private_key_jwt needs jwks or jwks_uri, never both), grant_types and response_types.".into(),
        Reason::UnrecognizedField => format!("Keycloak refuses members it does not know ({}), although RFC 7591 says to ignore them: remove that member from the body.", ds(r, Detail::Field)),
        Reason::ClientNotFound => format!("There is no client '{client}' in realm {realm}. On openid-connect the id is the client_id (a UUID) from the create response, not the client name."),
        Reason::HttpsRequired => format!("Realm {realm} requires HTTPS for this caller (Realm settings → General → Require SSL). Call the gateway over HTTPS, and let Keycloak trust the gateway's X-Forwarded-Proto (KC_PROXY_HEADERS=xforwarded with KC_PROXY_TRUSTED_ADDRESSES), or relax Require SSL for development."),
        Reason::ProviderNotFound => format!("Keycloak has no registration provider '{}': use openid-connect (RFC 7591) or default (Keycloak's client representation).", c.provider.unwrap_or("?")),
        Reason::RealmNotFound => format!("Keycloak has no realm '{realm}': check the realm name in the URL (it is case-sensitive) and that the realm exists (admin console → realm list)."),
        Reason::WrongClientProtocol => "The client behind the token uses another protocol than this endpoint: use openid-connect for OIDC clients and saml2-entity-descriptor for SAML clients.".into(),
        Reason::KeycloakServerError => format!("Keycloak failed internally (500); its log has the stack trace. Known causes: `Authorization: Bearer` with no token before 26.4.13/26.6.3, and invalid tokens on openid-connect in 26.6.2–26.6.4 (keycloak#49909); upgrading fixes both. The {m}/{role} role and a fresh token rule out the common causes."),
        _ => "Keycloak refused the request; its own answer is under `upstream`.".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::respond::{body_json, refusal};

    /// Every reason gets its own hint (not the generic fallback), a status and error that agree
    /// with the table, RFC 6750 challenges on 401/403, and the one body shape.
    #[test]
    fn every_reason_is_answered_with_a_fix() {
        let ctx = HintCtx {
            realm: Some("demo"),
            operation: Some(Operation::Create),
            provider: Some("default"),
            kind: Some(TokenKind::Bearer),
            azp: Some("registrar"),
            username: Some("service-account-registrar"),
            public_url: "https://sso.example.com",
            upstream: "http://keycloak:8080",
        };
        let generic = hint(&Refusal::new(Reason::KeycloakError, "x"), &ctx);
        for &reason in Reason::ALL {
            let mut r = Refusal::new(reason, "Something specific.");
            for key in required_details(reason) {
                r = r.detail(
                    *key,
                    if *key == Detail::Realm {
                        "demo".to_owned()
                    } else {
                        format!("sample-{key}")
                    },
                );
            }
            let h = hint(&r, &ctx);
            assert!(h.len() > 40, "{}: hint too short: {h}", reason.code());
            if reason != Reason::KeycloakError {
                assert_ne!(h, generic, "{} falls back to the generic hint", reason.code());
            }
            let resp = refusal(&r, &ctx, "rid");
            assert_eq!(resp.status(), reason.status(), "{}", reason.code());
            let challenge = resp.headers().get(http::header::WWW_AUTHENTICATE);
            let wants = matches!(reason.status().as_u16(), 401 | 403);
            assert_eq!(challenge.is_some(), wants, "{}", reason.code());
            if let Some(c) = challenge {
                let c = c.to_str().unwrap_or_default();
                let expected = match reason {
                    Reason::AnonymousNotAllowed => "Bearer realm=\"demo\"".to_owned(),
                    _ => format!("Bearer error=\"{}\"", reason.oauth_error()),
                };
                assert!(c.starts_with(&expected), "{c}");
            }
            let body = body_json(&r, &ctx, "rid");
            assert_eq!(body["reason"], reason.code());
            assert_eq!(body["error"], reason.oauth_error());
            assert_eq!(body["details"]["realm"], "demo");
        }
    }

    #[test]
    fn missing_role_hint_is_the_forum_answer() {
        let ctx = HintCtx {
            realm: Some("demo"),
            operation: Some(Operation::Create),
            azp: Some("registrar"),
            username: Some("service-account-registrar"),
            public_url: "http://gw",
            ..HintCtx::default()
        };
        let r = Refusal::new(Reason::MissingRole, "x").detail(
            Detail::RolesNeededAny,
            vec!["realm-management/create-client", "realm-management/manage-clients"],
        );
        let h = hint(&r, &ctx);
        assert!(
            h.starts_with(
                "The service account of client 'registrar' has no create-client role of client realm-management."
            ),
            "{h}"
        );
        assert!(h.contains("Clients → registrar → Service account roles → Assign role → filter by clients → realm-management → create-client"));
        assert!(h.contains("request a new token: roles are fixed when a token is issued"));
        let master = HintCtx {
            realm: Some("master"),
            ..ctx
        };
        let r = Refusal::new(Reason::MissingRole, "x");
        assert!(hint(&r, &master).contains("master-realm"), "{}", hint(&r, &master));
        let no_ra = hint(&Refusal::new(Reason::RolesNotInToken, "x"), &ctx);
        assert!(
            no_ra.contains("Full scope allowed") && no_ra.contains("`roles` client scope"),
            "{no_ra}"
        );
    }
}
