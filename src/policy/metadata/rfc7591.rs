//! RFC 7591 / OpenID Connect registration bodies (`openid-connect`), read as Keycloak's
//! `DescriptionConverter.toInternal` maps them: response types derive from grant types when
//! absent, `code`/`none` switch on the standard flow and `token`/`id_token` (alone or in any
//! combination) the implicit flow, whatever `grant_types` says.

use serde_json::{Map, Value, json};

use super::{ClientMetadata, UrlKind, boolean, non_empty, push_url, string, strings};
use crate::error::Refusal;

/// Boolean members that Keycloak stores as the attribute named beside them.
const SWITCHES: [(&str, &str); 6] = [
    (
        "tls_client_certificate_bound_access_tokens",
        "tls.client.certificate.bound.access.tokens",
    ),
    ("dpop_bound_access_tokens", "dpop.bound.access.tokens"),
    (
        "require_pushed_authorization_requests",
        "require.pushed.authorization.requests",
    ),
    (
        "backchannel_logout_session_required",
        "backchannel.logout.session.required",
    ),
    (
        "backchannel_logout_revoke_offline_tokens",
        "backchannel.logout.revoke.offline.tokens",
    ),
    (
        "frontchannel_logout_session_required",
        "frontchannel.logout.session.required",
    ),
];

/// Grants Keycloak maps to client attributes or flags (the rest are named by the flows).
const MAPPED_GRANTS: [(&str, &str); 5] = [
    (
        "urn:openid:params:grant-type:ciba",
        "attributes.oidc.ciba.grant.enabled",
    ),
    (
        "urn:ietf:params:oauth:grant-type:device_code",
        "attributes.oauth2.device.authorization.grant.enabled",
    ),
    (
        "urn:ietf:params:oauth:grant-type:token-exchange",
        "attributes.standard.token.exchange.enabled",
    ),
    (
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "attributes.oauth2.jwt.authorization.grant.enabled",
    ),
    ("refresh_token", "attributes.use.refresh.tokens"),
];

/// The response types Keycloak derives, and the grants they switch on.
fn effective_responses(grants: Option<&[String]>, responses: Option<Vec<String>>) -> Vec<String> {
    match (responses.filter(|r| !r.is_empty()), grants.filter(|g| !g.is_empty())) {
        (Some(r), _) => r,
        (None, None) => vec!["code".into()],
        (None, Some(g)) => {
            let mut r = Vec::new();
            if g.iter().any(|x| x == "authorization_code") {
                r.push("code".into());
            }
            if g.iter().any(|x| x == "implicit") {
                r.push("id_token".into());
            }
            r
        }
    }
}

/// Reads one RFC 7591 body (create, or an RFC 7592 update, which replaces the client).
pub(super) fn read(m: &Map<String, Value>) -> Result<ClientMetadata, Refusal> {
    let auth_method = string(m, "token_endpoint_auth_method")?.unwrap_or_else(|| "client_secret_basic".into());
    let listed = strings(m, "grant_types")?;
    let response_types = effective_responses(listed.as_deref(), strings(m, "response_types")?);
    // Keycloak keeps refresh tokens on when grant_types is absent.
    let mut grant_types = listed
        .clone()
        .unwrap_or_else(|| vec!["authorization_code".into(), "refresh_token".into()]);
    let words: Vec<&str> = response_types.iter().flat_map(|r| r.split(' ')).collect();
    if words.iter().any(|w| *w == "code" || *w == "none") {
        grant_types.push("authorization_code".into());
    }
    if words.iter().any(|w| *w == "token" || *w == "id_token") {
        grant_types.push("implicit".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    grant_types.retain(|g| seen.insert(g.clone()));
    let mut md = ClientMetadata::default();
    for (wire, name) in [
        ("jwks", "jwks"),
        ("jwks_uri", "jwks_uri"),
        ("client_secret", "client_secret"),
        ("software_statement", "software_statement"),
    ] {
        if non_empty(m.get(wire)) {
            md.present.insert(name.to_owned(), m[wire].clone());
        }
    }
    for (wire, attr) in SWITCHES {
        if boolean(m, wire)? == Some(true) {
            md.present.insert(format!("attributes.{attr}"), json!("true"));
        }
    }
    for (grant, attr) in MAPPED_GRANTS {
        if grant_types.iter().any(|g| g == grant) {
            md.present.insert(attr.to_owned(), json!("true"));
        }
    }
    if grant_types.iter().any(|g| g == "client_credentials") {
        md.present.insert("service_accounts".into(), Value::Bool(true));
    }
    if grant_types.iter().any(|g| g.ends_with(":uma-ticket")) {
        md.present.insert("authorization_settings".into(), Value::Bool(true));
    }
    for (wire, kind) in [
        ("client_uri", UrlKind::Browser),
        ("logo_uri", UrlKind::Browser),
        ("policy_uri", UrlKind::Browser),
        ("tos_uri", UrlKind::Browser),
        ("frontchannel_logout_uri", UrlKind::Browser),
        ("initiate_login_uri", UrlKind::Browser),
        ("jwks_uri", UrlKind::Server),
        ("sector_identifier_uri", UrlKind::Server),
        ("backchannel_logout_uri", UrlKind::Server),
        ("backchannel_client_notification_endpoint", UrlKind::Server),
    ] {
        if let Some(u) = string(m, wire)? {
            push_url(&mut md.urls, kind, wire, &u);
        }
    }
    for (wire, kind) in [
        ("post_logout_redirect_uris", UrlKind::Browser),
        ("request_uris", UrlKind::Server),
    ] {
        for u in strings(m, wire)?.unwrap_or_default() {
            // Keycloak joins post-logout URIs into the attribute `post.logout.redirect.uris`,
            // where `+` means "the redirect URIs" and `-` "none", as in the Keycloak dialect.
            if wire == "post_logout_redirect_uris" && matches!(u.as_str(), "+" | "-") {
                continue;
            }
            push_url(&mut md.urls, kind, wire, &u);
        }
    }
    md.scopes = string(m, "scope")?
        .map(|s| s.split_ascii_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    md.client_id = string(m, "client_id")?;
    md.client_name = string(m, "client_name")?;
    md.redirect_uris = strings(m, "redirect_uris")?.unwrap_or_default();
    md.response_types = response_types;
    md.client_type = if auth_method == "none" {
        "public"
    } else {
        "confidential"
    };
    md.auth_method = auth_method;
    md.grant_types = grant_types;
    Ok(md)
}
