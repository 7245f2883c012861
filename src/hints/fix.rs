//! The fix in one sentence: what `error_description` says to do, because MCP clients, kcreg and
//! openid-client show only that (the full steps stay in `hint`). Also the style rules every
//! description follows: one or two sentences, an imperative from [`ACTION_VERBS`].

use super::{HintCtx, d, ds, mgmt, role_for};
use crate::error::{Detail, Reason, Refusal};
use crate::route::Operation;
use crate::token::TokenKind;

/// The imperative verbs a description may name its action with.
pub const ACTION_VERBS: &[&str] = &[
    "add",
    "ask",
    "assign",
    "authenticate",
    "call",
    "change",
    "check",
    "choose",
    "create",
    "delete",
    "enable",
    "give",
    "keep",
    "leave",
    "list",
    "make",
    "mint",
    "pin",
    "read",
    "register",
    "remove",
    "repeat",
    "report",
    "request",
    "retry",
    "send",
    "set",
    "start",
    "synchronise",
    "try",
    "turn",
    "use",
    "wait",
    "write",
];

/// Whether `text` names an action: a verb of [`ACTION_VERBS`] that opens a sentence or a clause
/// (after `.`, `:`, `;`, `,` or `(`, or after "then", "or", "and", "either", "first"),
/// outside backticks.
pub fn names_action(text: &str) -> bool {
    let mut prev = ".";
    let mut in_code = false;
    for raw in text.split_whitespace() {
        let ticks = raw.matches('`').count();
        let word_in_code = in_code || raw.starts_with('`');
        if ticks % 2 == 1 {
            in_code = !in_code;
        }
        if word_in_code {
            prev = if raw.ends_with(['.', ':', ';', ',']) { "." } else { "x" };
            continue;
        }
        let word: String = raw
            .trim_start_matches(['(', '"', '\''])
            .chars()
            .take_while(char::is_ascii_alphabetic)
            .collect::<String>()
            .to_ascii_lowercase();
        let opens =
            prev.ends_with(['.', ':', ';', ',', '(']) || ["then", "or", "and", "either", "first"].contains(&prev);
        if opens && ACTION_VERBS.contains(&word.as_str()) {
            return true;
        }
        prev = if raw.starts_with('(') { "(" } else { raw };
        if ["then", "or", "and", "either", "first"].contains(&prev.to_ascii_lowercase().as_str()) {
            prev = match prev.to_ascii_lowercase().as_str() {
                "then" => "then",
                "or" => "or",
                "and" => "and",
                "either" => "either",
                _ => "first",
            };
        }
    }
    false
}

/// The number of sentences in `text`: ends are `.`, `!` or `?` before a space and a capital
/// letter or the end, outside backticks; "e.g.", "i.e." and "etc." do not end one.
pub fn sentences(text: &str) -> usize {
    let chars: Vec<char> = text.trim().chars().collect();
    let mut count = 0;
    let mut in_code = false;
    for (i, &c) in chars.iter().enumerate() {
        if c == '`' {
            in_code = !in_code;
            continue;
        }
        if in_code || !matches!(c, '.' | '!' | '?') {
            continue;
        }
        let before: String = chars[..i]
            .iter()
            .rev()
            .take(4)
            .collect::<String>()
            .chars()
            .rev()
            .collect();
        if before.ends_with("e.g") || before.ends_with("i.e") || before.ends_with("etc") {
            continue;
        }
        let end = match chars.get(i + 1) {
            None => true,
            Some(' ') => chars.get(i + 2).is_some_and(|n| n.is_uppercase() || *n == '`'),
            _ => false,
        };
        if end {
            count += 1;
        }
    }
    count.max(usize::from(!text.trim().is_empty()))
}

/// The `error_description` of a refusal: the fact the stage wrote, followed by the fix when the
/// fact does not already name one.
pub fn describe(r: &Refusal, c: &HintCtx<'_>) -> String {
    if names_action(&r.description) {
        return r.description.clone();
    }
    let fact = r.description.trim();
    let fact = if fact.is_empty() || fact.ends_with(['.', '!', '?']) {
        fact.to_owned()
    } else {
        format!("{fact}.")
    };
    format!("{fact} {}", fix(r, c)).trim().to_owned()
}

/// The detail keys a reason's description and hint read by name, which every stage that makes
/// the refusal must set (`tests` and debug builds check them).
pub fn required_details(reason: Reason) -> &'static [Detail] {
    match reason {
        Reason::ConnectionHeaderInvalid => &[Detail::Header],
        Reason::MethodNotAllowed => &[Detail::Allowed],
        Reason::BodyTooLarge => &[Detail::LimitBytes],
        Reason::BodyTimeout => &[Detail::Timeout],
        Reason::ClientIdMismatch => &[Detail::Field, Detail::PathClientId],
        Reason::IssuerMismatch => &[Detail::TokenIssuer, Detail::ExpectedIssuer],
        Reason::AlgorithmNotAllowed => &[Detail::Allowed],
        Reason::KidUnknown => &[Detail::Kid],
        Reason::AudienceMismatch => &[Detail::ExpectedAudiences],
        Reason::AzpMismatch => &[Detail::ExpectedAzp],
        Reason::JwksUnavailable => &[Detail::JwksUri, Detail::LastError],
        Reason::ProviderNotAllowed => &[Detail::AllowedProviders],
        Reason::TokenKindNotAllowed => &[Detail::AllowedTokenKinds],
        Reason::MissingScope => &[Detail::ScopesNeeded],
        Reason::AzpNotAllowed => &[Detail::AllowedAzp],
        Reason::GrantTypeNotAllowed => &[Detail::Allowed],
        Reason::ResponseTypeNotAllowed
        | Reason::AuthMethodNotAllowed
        | Reason::ScopeNotAllowed
        | Reason::ClientTypeNotAllowed => &[Detail::Field, Detail::Allowed],
        Reason::FieldForbidden | Reason::BrowserUrlNotAllowed | Reason::ServerUrlNotAllowed => &[Detail::Field],
        Reason::ClientIdPattern | Reason::ClientNamePattern => &[Detail::Field, Detail::Pattern],
        Reason::QuotaExceeded => &[Detail::Creates, Detail::WindowSeconds],
        Reason::RealmQuotaExceeded => &[Detail::RealmCreates, Detail::WindowSeconds],
        Reason::CorsOriginNotAllowed => &[Detail::AllowedOrigins, Detail::Origin],
        Reason::Overloaded => &[Detail::Limit],
        Reason::UpstreamUnreachable | Reason::UpstreamProtocol => &[Detail::Error],
        Reason::UpstreamConnectTimeout | Reason::UpstreamTimeout => &[Detail::Timeout],
        Reason::HmacTokenRejected => &[Detail::Kid],
        Reason::ClientScopeRejected => &[Detail::RequestedScopes],
        Reason::RegistrationPolicyRejected => &[Detail::Policy, Detail::PolicyDetails],
        Reason::UnrecognizedField => &[Detail::Field],
        _ => &[],
    }
}

/// One imperative sentence: what the caller (or operator) does about this refusal.
pub fn fix(r: &Refusal, c: &HintCtx<'_>) -> String {
    // Refusals at the token stage come before the caller is known: use what they recorded.
    let kind = c.kind.or_else(|| {
        r.details
            .get("token_kind")
            .and_then(serde_json::Value::as_str)
            .and_then(TokenKind::parse)
    });
    let azp_detail = r
        .get(Detail::Azp)
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty());
    let c = &HintCtx {
        kind,
        azp: c.azp.or(azp_detail),
        ..*c
    };
    let realm = c.realm.unwrap_or("this realm");
    let public = c.public_url;
    let azp = c.azp.unwrap_or("the token's client");
    let m = mgmt(c.realm.unwrap_or_default());
    let role = role_for(c.operation);
    let op = c.operation.map(Operation::as_str).unwrap_or("register");
    let token_url = format!("{public}/realms/{realm}/protocol/openid-connect/token");
    let new_iat = "create a new initial access token (Clients → Initial access token → Create) and retry";
    match r.reason {
        Reason::PathMalformed => format!("Send it to {public}/realms/<realm>/clients-registrations/<provider>[/<clientId>], written plainly."),
        Reason::RouteRefused => "Send other Keycloak traffic to Keycloak's own address.".into(),
        Reason::MethodNotAllowed => format!("Use one of {} here (POST creates on …/<provider>; GET, PUT and DELETE act on …/<provider>/<clientId>).", ds(r, Detail::Allowed)),
        Reason::ConnectionHeaderInvalid => format!("Remove `{}` from the Connection header.", ds(r, Detail::Header)),
        Reason::RequestTargetInvalid => "Send the path alone as the request target, e.g. `POST /realms/<realm>/clients-registrations/openid-connect HTTP/1.1`.".into(),
        Reason::RequestUnparseable => "Send a well-formed HTTP/1.1 request on a new connection.".into(),
        Reason::RequestHeadTooLarge => "Send fewer or smaller headers, or a shorter URI, on a new connection.".into(),
        Reason::BodyTooLarge => format!("Send a smaller body (at most {} bytes).", ds(r, Detail::LimitBytes)),
        Reason::BodyTimeout => format!("Send the whole body within {}.", ds(r, Detail::Timeout)),
        Reason::BodyNotJson | Reason::BodyDuplicateKey | Reason::BodyTooDeep | Reason::BodyWrongType => {
            "Send one JSON object (Content-Type: application/json) with each key once and values of the documented types.".into()
        }
        Reason::ClientIdMismatch => format!("Repeat the path's client id as {}: \"{}\" in the body.", ds(r, Detail::Field), ds(r, Detail::PathClientId)),
        Reason::AuthSchemeUnsupported => "Send `Authorization: Bearer <token>` with a service-account token, an initial access token or a registration access token.".into(),
        Reason::TokenMalformed => "Send the token exactly as Keycloak returned it, as `Authorization: Bearer <token>` with one space and no quotes.".into(),
        Reason::TokenTypeUnsupported | Reason::InvalidTokenType => "Use an access token (typ Bearer), an initial access token or a registration access token instead.".into(),
        Reason::TokenKindMismatch if c.kind == Some(TokenKind::InitialAccess) => "Use the client's registration access token (from the create response) to read, update or delete it.".into(),
        Reason::TokenKindMismatch => format!("Create clients with an initial access token or a service-account token that has {m}/create-client."),
        Reason::HmacAlgorithmExpected => "Send the token exactly as Keycloak issued it, or create a new initial access token.".into(),
        Reason::IssuerMismatch => format!("Request the token through the same host you send this request to, or ask the operator to list `{}` under [realms.{realm}] issuer.", ds(r, Detail::TokenIssuer)),
        Reason::IssMissing => format!("Use a token issued by Keycloak for realm {realm} ({token_url}): Keycloak always sets iss."),
        Reason::TokenExpired if c.kind == Some(TokenKind::InitialAccess) => format!("{}.", capitalise(new_iat)),
        Reason::TokenExpired => format!("Request a new token ({token_url}) and retry."),
        Reason::TokenNotYetValid | Reason::TokenIssuedInFuture => "Synchronise the clocks of Keycloak, the gateway and the client (NTP), then retry.".into(),
        Reason::ExpMissing | Reason::KidMissing => format!("Use an access token issued by {token_url}: Keycloak always sets exp and kid."),
        Reason::AlgorithmNotAllowed => format!("Sign bearer tokens with one of {}: set Realm settings → Tokens → Default signature algorithm, then request a new token.", ds(r, Detail::Allowed)),
        Reason::KidUnknown => format!("Request a new token from realm {realm}: it will be signed with a current key."),
        Reason::KeyUnusable | Reason::SignatureInvalid | Reason::TokenRevoked => format!("Request a new token from {token_url} and send it unchanged."),
        Reason::AudienceMismatch => format!("Add an Audience mapper for {} to client {azp} (Clients → {azp} → Client scopes → {azp}-dedicated), then request a new token.", ds(r, Detail::ExpectedAudiences)),
        Reason::AzpMismatch => format!("Use a token issued to one of {}, or ask the operator to add '{azp}' to [realms.{realm}] azp.", ds(r, Detail::ExpectedAzp)),
        Reason::JwksUnavailable => format!("Retry shortly; operators: check that Keycloak answers at {} from the gateway.", ds(r, Detail::JwksUri)),
        Reason::ProviderNotAllowed => format!("Use one of the allowed providers ({}), e.g. …/clients-registrations/openid-connect.", ds(r, Detail::AllowedProviders)),
        Reason::AnonymousNotAllowed => format!("Send `Authorization: Bearer <token>` with an initial access token or a service-account token that has {m}/{role}."),
        Reason::TokenKindNotAllowed => format!("Use one of {} to {op} clients in realm {realm}.", ds(r, Detail::AllowedTokenKinds)),
        Reason::MissingRole => missing_role(r, c, m, role),
        Reason::RolesNotInToken => format!("Turn on Full scope allowed for client {azp} (Clients → {azp} → Client scopes → {azp}-dedicated → Scope) or add the `roles` client scope, then request a new token."),
        Reason::MissingScope => format!("Request the token with scope=\"{}\".", ds(r, Detail::ScopesNeeded)),
        Reason::AzpNotAllowed => format!("Use a token issued to one of {}.", ds(r, Detail::AllowedAzp)),
        Reason::RedirectUriNotAllowed | Reason::RedirectUriFragment | Reason::RedirectUriMalformed | Reason::TooManyRedirectUris => {
            let mut allowed = Vec::new();
            for key in [Detail::AllowedSchemes, Detail::AllowedHosts] {
                if d(r, key).is_some() {
                    allowed.push(format!("{}: {}", key.key().trim_start_matches("allowed_"), ds(r, key)));
                }
            }
            let allowed = if allowed.is_empty() { String::new() } else { format!(" ({})", allowed.join("; ")) };
            format!("Register only redirect URIs the policy allows{allowed}, absolute and without #fragment or wildcard.")
        }
        Reason::BrowserUrlNotAllowed => format!("Change or remove `{}`: it must be an absolute URL on an allowed scheme and host.", ds(r, Detail::Field)),
        Reason::ServerUrlNotAllowed => format!("Change `{}` to a URL on a public host, or remove it.", ds(r, Detail::Field)),
        Reason::GrantTypeNotAllowed => format!("Ask only for allowed grant types ({}).", ds(r, Detail::Allowed)),
        Reason::ResponseTypeNotAllowed | Reason::AuthMethodNotAllowed | Reason::ScopeNotAllowed | Reason::ClientTypeNotAllowed => {
            format!("Set {} to allowed values only ({}).", ds(r, Detail::Field), ds(r, Detail::Allowed))
        }
        Reason::FieldForbidden if c.operation == Some(Operation::Update) => format!("Send `{}` exactly as the client has it now, or leave it out.", ds(r, Detail::Field)),
        Reason::FieldForbidden => format!("Leave `{}` out of the request body.", ds(r, Detail::Field)),
        Reason::ClientIdPattern | Reason::ClientNamePattern => format!("Choose a {} that matches {}.", ds(r, Detail::Field), ds(r, Detail::Pattern)),
        Reason::QuotaExceeded | Reason::RealmQuotaExceeded => format!("Wait {}s (Retry-After) before creating more clients.", r.retry_after.unwrap_or(1)),
        Reason::AdminWriteRefused => "Make this change in the admin console, or through …/clients-registrations/default under the same rules.".into(),
        Reason::ScopeMemberRefused => "Leave `scope` out of the registration body.".into(),
        Reason::CorsOriginNotAllowed => format!("Call from an allowed origin ({}), or ask the operator to add `{}` to cors.origins.", ds(r, Detail::AllowedOrigins), ds(r, Detail::Origin)),
        Reason::NotReady => "Retry shortly; operators: check /readyz on the gateway's admin port.".into(),
        Reason::Overloaded => "Retry after a moment (Retry-After).".into(),
        Reason::QuotaStoreUnavailable => "Retry after a moment (Retry-After); operators: check the gateway's Redis quota store.".into(),
        Reason::RegistrarUnavailable => format!("Retry later; operators: check [realms.{realm}.registrar] and /readyz."),
        Reason::UpstreamUnreachable => format!("Retry later; operators: check that Keycloak runs and answers at {}.", c.upstream),
        Reason::UpstreamConnectTimeout | Reason::UpstreamTimeout => format!("Retry later; operators: check Keycloak's health at {} or raise [timeouts].", c.upstream),
        Reason::UpstreamProtocol | Reason::KeycloakServerError => "Retry; operators: read Keycloak's log (known Keycloak bugs are listed in the hint).".into(),
        Reason::Internal => "Report this gateway bug with the request_id.".into(),
        Reason::HmacTokenRejected => "Send the token exactly as Keycloak returned it; if it was unchanged, create a new initial access token (an admin can regenerate a registration access token).".into(),
        Reason::TokenRejected => format!("Request a new token through {public} and retry."),
        Reason::InitialTokenNotFound | Reason::InitialTokenExhausted | Reason::InitialTokenExpired => format!("{}.", capitalise(new_iat)),
        Reason::InitialTokenWrongOperation => "Use the registration access token from the create response to read, update or delete the client.".into(),
        Reason::RegistrationTokenInvalid => {
            let client = client_of(r);
            format!("Use the registration_access_token of the latest create or update response of client {client}, or have an admin regenerate it (Clients → {client} → Credentials).")
        }
        Reason::RegistrationClientGone => "Register the client again (POST …/clients-registrations/<provider>), then use the new registration access token.".into(),
        Reason::NotAuthorized => format!("Send the client's registration access token, or a bearer token with {m}/manage-clients."),
        Reason::TrustedHostRejected => "Register with an initial access token, or ask an admin to add the caller's address to Trusted Hosts (Clients → Client registration).".into(),
        Reason::TrustedUriRejected => "Register with an initial access token, or ask an admin to add the URL's host to Trusted Hosts (Clients → Client registration).".into(),
        Reason::ClientScopeRejected => format!("Request only client scopes that realm {realm} allows (refused: {}), or leave out `scope`.", ds(r, Detail::RequestedScopes)),
        Reason::MaxClientsReached => "Delete unused clients, or ask an admin to raise Max Clients Limit (Clients → Client registration).".into(),
        Reason::ProtocolMapperRejected => "Remove protocolMappers from the body, or ask an admin to allow that mapper type.".into(),
        Reason::RegistrationPolicyRejected => format!("Change the request to satisfy policy '{}', or ask an admin to review it (Clients → Client registration).", ds(r, Detail::Policy)),
        Reason::ClientPolicyRejected => "Ask an admin to read CLIENT_REGISTER_ERROR in the realm's events: it names the Client Policy that refused.".into(),
        Reason::InvalidRedirectUri => "Use absolute redirect URIs without #fragment.".into(),
        Reason::ClientIdInUse => "Choose another clientId, or update the existing client with PUT and its registration access token.".into(),
        Reason::ClientIdModified => "Keep the client id in the body equal to the one in the path.".into(),
        Reason::ClientIdIncluded => "Leave client_id out when creating on openid-connect: Keycloak generates it.".into(),
        Reason::ClientMetadataInvalid => "Check token_endpoint_auth_method (private_key_jwt needs jwks or jwks_uri), grant_types and response_types.".into(),
        Reason::UnrecognizedField => format!("Remove `{}` from the body.", ds(r, Detail::Field)),
        Reason::ClientNotFound => "Use the client_id from the create response (on openid-connect a UUID, not the client name).".into(),
        Reason::HttpsRequired => "Call the gateway over HTTPS.".into(),
        Reason::ProviderNotFound => "Use openid-connect or default as the provider.".into(),
        Reason::RealmNotFound => "Check the realm name in the URL: it is case-sensitive.".into(),
        Reason::WrongClientProtocol => "Use openid-connect for OIDC clients and saml2-entity-descriptor for SAML clients.".into(),
        Reason::ContentTypeUnsupported => "Send the body with `Content-Type: application/json`.".into(),
        Reason::OriginRejected => "Call from an origin in the client's Web origins (or the token's allowed origins), or leave out the Origin header outside a browser.".into(),
        Reason::KeycloakError => "Read Keycloak's own answer under `upstream` and change the request accordingly.".into(),
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn client_of(r: &Refusal) -> String {
    r.details
        .get("client_id")
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("this client")
        .to_owned()
}

fn missing_role(r: &Refusal, c: &HintCtx<'_>, m: &str, role: &str) -> String {
    let needed = match d(r, Detail::RolesNeededAny).or_else(|| d(r, Detail::RolesNeededAll)) {
        Some(serde_json::Value::Array(a)) => a.first().and_then(serde_json::Value::as_str).map(str::to_owned),
        _ => None,
    }
    .unwrap_or_else(|| format!("{m}/{role}"));
    let azp = c.azp.unwrap_or("the token's client");
    match c.username.filter(|u| !u.starts_with("service-account-")) {
        Some(user) => {
            format!("Assign {needed} to user '{user}' (Users → {user} → Role mapping), then request a new token.")
        }
        None => format!("Assign {needed} under Clients → {azp} → Service account roles, then request a new token."),
    }
}

#[cfg(test)]
mod tests;
