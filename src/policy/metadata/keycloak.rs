//! Keycloak's own dialect, `ClientRepresentation` on the `default` provider. Top-level flags
//! are read as Jackson binds `Boolean` fields, attributes as Jackson fills the
//! `Map<String, String>` and as Keycloak then reads them (`Boolean.parseBoolean`, `##`-joined
//! lists). A create gets Keycloak's defaults for absent fields; an update is partial (absent
//! fields stay as they are), so only what it sets is evaluated.

use serde_json::{Map, Value, json};

use super::inventory::{Attr, attribute};
use super::{ClientMetadata, UrlKind, UrlRef, boolean, non_empty, push_url, string, strings, wrong_type};
use crate::error::Refusal;
use crate::policy::coerce::{jackson_string, parse_boolean};

/// Grants that need a user (and so give refresh tokens when `use.refresh.tokens` is on).
const USER_GRANTS: [&str; 4] = [
    "authorization_code",
    "password",
    "urn:ietf:params:oauth:grant-type:device_code",
    "urn:openid:params:grant-type:ciba",
];

/// The attributes, each as Keycloak stores it (`None`: removed or null).
fn attributes(m: &Map<String, Value>) -> Result<Vec<(String, Option<String>)>, Refusal> {
    match m.get("attributes") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| {
                let s = jackson_string(v).map_err(|_| wrong_type(&format!("attributes.{k}"), "a string"))?;
                Ok((k.clone(), s.filter(|s| !s.is_empty())))
            })
            .collect(),
        Some(_) => Err(wrong_type("attributes", "an object of strings")),
    }
}

/// Reads one `ClientRepresentation` body.
pub(super) fn read(m: &Map<String, Value>, create: bool) -> Result<ClientMetadata, Refusal> {
    let public = boolean(m, "publicClient")?;
    let bearer_only = boolean(m, "bearerOnly")?;
    let mut grant_types = Vec::new();
    for (wire, grant, default) in [
        ("standardFlowEnabled", "authorization_code", true),
        ("implicitFlowEnabled", "implicit", false),
        ("directAccessGrantsEnabled", "password", false),
        ("serviceAccountsEnabled", "client_credentials", false),
        (
            "authorizationServicesEnabled",
            "urn:ietf:params:oauth:grant-type:uma-ticket",
            false,
        ),
    ] {
        if boolean(m, wire)?.unwrap_or(create && default) {
            grant_types.push(grant.to_owned());
        }
    }
    let attrs = attributes(m)?;
    let mut md = ClientMetadata::default();
    let mut refresh = None;
    for (name, value) in &attrs {
        let Some(kind) = attribute(name) else { continue };
        let field = format!("attributes.{name}");
        let on = value.as_deref().is_some_and(parse_boolean);
        match kind {
            Attr::Grant("refresh_token") if name == "use.refresh.tokens" => refresh = Some(on),
            Attr::Grant(g) if on => grant_types.push(g.to_owned()),
            Attr::Url(k) => push_url(&mut md.urls, k, &field, value.as_deref().unwrap_or_default()),
            Attr::Urls(k) => {
                for part in value.as_deref().unwrap_or_default().split("##") {
                    if !matches!(part, "+" | "-") {
                        push_url(&mut md.urls, k, &field, part);
                    }
                }
            }
            _ => {}
        }
        let set = match kind {
            Attr::Grant(_) | Attr::Switch => on,
            Attr::Url(_) | Attr::Urls(_) => value.is_some(),
        };
        if set {
            md.present.insert(field, json!(value));
        }
    }
    // Keycloak reads `use.refresh.tokens` with the default "true".
    if refresh.unwrap_or(create) && (refresh.is_some() || grant_types.iter().any(|g| USER_GRANTS.contains(&g.as_str())))
    {
        grant_types.push("refresh_token".to_owned());
    }
    grant_types.dedup();
    urls(m, &mut md.urls)?;
    md.auth_method = auth_method(public, string(m, "clientAuthenticatorType")?, create);
    md.client_type = match (bearer_only, public) {
        (Some(true), _) => "bearer-only",
        (_, Some(true)) => "public",
        (_, Some(false)) => "confidential",
        _ if create => "confidential",
        _ => "",
    };
    for (wire, name) in [
        ("protocolMappers", "protocol_mappers"),
        ("attributes", "attributes"),
        ("secret", "client_secret"),
    ] {
        if non_empty(m.get(wire)) {
            md.present.insert(name.to_owned(), m[wire].clone());
        }
    }
    if non_empty(m.get("authorizationSettings")) || grant_types.iter().any(|g| g.ends_with(":uma-ticket")) {
        let v = json!({"authorizationSettings": m.get("authorizationSettings"), "authorizationServicesEnabled": true});
        md.present.insert("authorization_settings".into(), v);
    }
    // Keycloak creates a full-scope client unless told otherwise (or consent is required).
    let consent = boolean(m, "consentRequired")?.unwrap_or(false);
    if boolean(m, "fullScopeAllowed")?.unwrap_or(create && !consent) {
        md.present.insert("full_scope_allowed".into(), Value::Bool(true));
    }
    if grant_types.iter().any(|g| g == "client_credentials") {
        md.present.insert("service_accounts".into(), Value::Bool(true));
    }
    let mut scopes = strings(m, "defaultClientScopes")?.unwrap_or_default();
    scopes.extend(strings(m, "optionalClientScopes")?.unwrap_or_default());
    md.client_id = string(m, "clientId")?;
    md.client_name = string(m, "name")?;
    md.redirect_uris = strings(m, "redirectUris")?.unwrap_or_default();
    md.grant_types = grant_types;
    md.scopes = scopes;
    Ok(md)
}

fn auth_method(public: Option<bool>, authenticator: Option<String>, create: bool) -> String {
    match (public, authenticator) {
        (Some(true), _) => "none".to_owned(),
        (_, Some(a)) => match a.as_str() {
            "client-secret" => "client_secret_basic".to_owned(),
            "client-jwt" => "private_key_jwt".to_owned(),
            "client-secret-jwt" => "client_secret_jwt".to_owned(),
            "client-x509" => "tls_client_auth".to_owned(),
            _ => a,
        },
        _ if create => "client_secret_basic".to_owned(),
        _ => String::new(),
    }
}

/// The top-level URLs, the cluster nodes and the mappers' sector identifier URIs.
fn urls(m: &Map<String, Value>, out: &mut Vec<UrlRef>) -> Result<(), Refusal> {
    for (wire, kind) in [
        ("rootUrl", UrlKind::Root),
        ("baseUrl", UrlKind::Browser),
        ("adminUrl", UrlKind::Server),
    ] {
        if let Some(u) = string(m, wire)? {
            push_url(out, kind, wire, &u);
        }
    }
    for o in strings(m, "webOrigins")?.unwrap_or_default() {
        if o != "+" {
            push_url(out, UrlKind::Origin, "webOrigins", &o);
        }
    }
    match m.get("registeredNodes") {
        None | Some(Value::Null) => {}
        Some(Value::Object(nodes)) => {
            for host in nodes.keys() {
                push_url(out, UrlKind::Node, "registeredNodes", host);
            }
        }
        Some(_) => return Err(wrong_type("registeredNodes", "an object of host names")),
    }
    if let Some(Value::Array(mappers)) = m.get("protocolMappers") {
        for (i, mapper) in mappers.iter().enumerate() {
            let Some(config) = mapper.get("config").and_then(Value::as_object) else {
                continue;
            };
            for (k, v) in config
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("sectorIdentifierUri"))
            {
                let field = format!("protocolMappers[{i}].config.{k}");
                let u = jackson_string(v).map_err(|_| wrong_type(&field, "a string"))?;
                push_url(out, UrlKind::Server, &field, u.as_deref().unwrap_or_default());
            }
        }
    }
    Ok(())
}
