//! One view of client metadata from both body dialects: RFC 7591 snake_case on `openid-connect`
//! and Keycloak's `ClientRepresentation` camelCase on `default`, with Keycloak's own defaults
//! applied, so that one set of rules governs both.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::error::{Reason, Refusal};

/// Which body format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// RFC 7591 / OIDC DCR (`openid-connect`).
    Rfc7591,
    /// Keycloak `ClientRepresentation` (`default`).
    Keycloak,
}

impl Dialect {
    /// The dialect of a provider, if its body is JSON client metadata.
    pub fn of(provider: &str) -> Option<Dialect> {
        match provider {
            "openid-connect" => Some(Dialect::Rfc7591),
            "default" => Some(Dialect::Keycloak),
            _ => None,
        }
    }
}

/// Client metadata, normalised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientMetadata {
    /// Requested client id (`clientId` / `client_id`).
    pub client_id: Option<String>,
    /// Display name (`name` / `client_name`).
    pub client_name: Option<String>,
    /// Redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Effective grant types, OAuth names (`authorization_code`, `client_credentials`, ...).
    pub grant_types: Vec<String>,
    /// Effective response types.
    pub response_types: Vec<String>,
    /// Effective token endpoint auth method.
    pub auth_method: String,
    /// Requested client scopes.
    pub scopes: Vec<String>,
    /// `public` or `confidential` (or `bearer-only`).
    pub client_type: &'static str,
    /// Normalised names of noteworthy fields present (for `forbidden_fields`).
    pub present: BTreeSet<String>,
    /// Body keys present, as written.
    pub raw_keys: BTreeSet<String>,
}

fn wrong_type(wire: &str, expected: &str) -> Refusal {
    Refusal::new(Reason::BodyWrongType, format!("Field `{wire}` must be {expected}.")).detail("field", wire)
}

fn string(m: &Map<String, Value>, wire: &str) -> Result<Option<String>, Refusal> {
    match m.get(wire) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(wrong_type(wire, "a string")),
    }
}

fn strings(m: &Map<String, Value>, wire: &str) -> Result<Option<Vec<String>>, Refusal> {
    match m.get(wire) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| wrong_type(wire, "an array of strings"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(wrong_type(wire, "an array of strings")),
    }
}

fn boolean(m: &Map<String, Value>, wire: &str) -> Result<Option<bool>, Refusal> {
    match m.get(wire) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(wrong_type(wire, "true or false")),
    }
}

fn non_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// Normalises a parsed body of the given dialect.
/// `create` is false for an update: RFC 7592 updates replace the whole client (so RFC 7591
/// bodies get their defaults either way), Keycloak's representation updates are partial.
pub fn normalise(dialect: Dialect, m: &Map<String, Value>, create: bool) -> Result<ClientMetadata, Refusal> {
    let mut md = match dialect {
        Dialect::Rfc7591 => rfc7591(m)?,
        Dialect::Keycloak => keycloak(m, create)?,
    };
    md.raw_keys = m.iter().filter(|(_, v)| !v.is_null()).map(|(k, _)| k.clone()).collect();
    Ok(md)
}

fn rfc7591(m: &Map<String, Value>) -> Result<ClientMetadata, Refusal> {
    let auth_method = string(m, "token_endpoint_auth_method")?.unwrap_or_else(|| "client_secret_basic".into());
    let grant_types = strings(m, "grant_types")?.unwrap_or_else(|| vec!["authorization_code".into()]);
    let mut present = BTreeSet::new();
    for (wire, name) in [
        ("jwks", "jwks"),
        ("jwks_uri", "jwks_uri"),
        ("client_secret", "client_secret"),
        ("software_statement", "software_statement"),
    ] {
        if non_empty(m.get(wire)) {
            present.insert(name.to_owned());
        }
    }
    if grant_types.iter().any(|g| g == "client_credentials") {
        present.insert("service_accounts".into());
    }
    let scopes = string(m, "scope")?
        .map(|s| s.split_ascii_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    Ok(ClientMetadata {
        client_id: string(m, "client_id")?,
        client_name: string(m, "client_name")?,
        redirect_uris: strings(m, "redirect_uris")?.unwrap_or_default(),
        response_types: strings(m, "response_types")?.unwrap_or_else(|| vec!["code".into()]),
        client_type: if auth_method == "none" {
            "public"
        } else {
            "confidential"
        },
        auth_method,
        grant_types,
        scopes,
        present,
        raw_keys: BTreeSet::new(),
    })
}

/// Grants that Keycloak enables through client attributes (`"true"` as a string).
const ATTRIBUTE_GRANTS: [(&str, &str); 3] = [
    (
        "oauth2.device.authorization.grant.enabled",
        "urn:ietf:params:oauth:grant-type:device_code",
    ),
    ("oidc.ciba.grant.enabled", "urn:openid:params:grant-type:ciba"),
    (
        "standard.token.exchange.enabled",
        "urn:ietf:params:oauth:grant-type:token-exchange",
    ),
];

/// Keycloak's dialect. A create gets Keycloak's defaults for absent fields; an update is
/// partial (absent fields stay as they are), so only what it sets is evaluated.
fn keycloak(m: &Map<String, Value>, create: bool) -> Result<ClientMetadata, Refusal> {
    let public = boolean(m, "publicClient")?;
    let bearer_only = boolean(m, "bearerOnly")?;
    let mut grant_types = Vec::new();
    for (wire, grant, default) in [
        ("standardFlowEnabled", "authorization_code", true),
        ("implicitFlowEnabled", "implicit", false),
        ("directAccessGrantsEnabled", "password", false),
        ("serviceAccountsEnabled", "client_credentials", false),
    ] {
        if boolean(m, wire)?.unwrap_or(create && default) {
            grant_types.push(grant.to_owned());
        }
    }
    if let Some(attrs) = m.get("attributes").and_then(Value::as_object) {
        for (attr, grant) in ATTRIBUTE_GRANTS {
            if attrs.get(attr).and_then(Value::as_str) == Some("true") {
                grant_types.push(grant.to_owned());
            }
        }
    }
    let authenticator = string(m, "clientAuthenticatorType")?;
    let auth_method = match (public, authenticator) {
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
    };
    let client_type = match (bearer_only, public) {
        (Some(true), _) => "bearer-only",
        (_, Some(true)) => "public",
        (_, Some(false)) => "confidential",
        _ if create => "confidential",
        _ => "",
    };
    let mut present = BTreeSet::new();
    for (wire, name) in [
        ("protocolMappers", "protocol_mappers"),
        ("attributes", "attributes"),
        ("authorizationSettings", "authorization_settings"),
        ("authorizationServicesEnabled", "authorization_settings"),
        ("secret", "client_secret"),
    ] {
        if non_empty(m.get(wire)) {
            present.insert(name.to_owned());
        }
    }
    // Keycloak creates a full-scope client unless told otherwise (or consent is required).
    let consent = boolean(m, "consentRequired")?.unwrap_or(false);
    if boolean(m, "fullScopeAllowed")?.unwrap_or(create && !consent) {
        present.insert("full_scope_allowed".into());
    }
    if grant_types.iter().any(|g| g == "client_credentials") {
        present.insert("service_accounts".into());
    }
    let mut scopes = strings(m, "defaultClientScopes")?.unwrap_or_default();
    scopes.extend(strings(m, "optionalClientScopes")?.unwrap_or_default());
    Ok(ClientMetadata {
        client_id: string(m, "clientId")?,
        client_name: string(m, "name")?,
        redirect_uris: strings(m, "redirectUris")?.unwrap_or_default(),
        grant_types,
        response_types: Vec::new(),
        auth_method,
        scopes,
        client_type,
        present,
        raw_keys: BTreeSet::new(),
    })
}

/// Normalised names usable in `forbidden_fields` (set from either dialect).
pub const NORMALISED_FIELDS: &[&str] = &[
    "protocol_mappers",
    "service_accounts",
    "attributes",
    "authorization_settings",
    "client_secret",
    "full_scope_allowed",
    "jwks",
    "jwks_uri",
    "software_statement",
];

/// Top-level members of RFC 7591 / OpenID Connect registration bodies.
pub const RFC7591_FIELDS: &[&str] = &[
    "redirect_uris",
    "token_endpoint_auth_method",
    "grant_types",
    "response_types",
    "client_name",
    "client_uri",
    "logo_uri",
    "scope",
    "contacts",
    "tos_uri",
    "policy_uri",
    "jwks_uri",
    "jwks",
    "software_id",
    "software_version",
    "software_statement",
    "client_id",
    "client_secret",
    "sector_identifier_uri",
    "subject_type",
    "id_token_signed_response_alg",
    "id_token_encrypted_response_alg",
    "id_token_encrypted_response_enc",
    "userinfo_signed_response_alg",
    "userinfo_encrypted_response_alg",
    "userinfo_encrypted_response_enc",
    "request_object_signing_alg",
    "request_object_encryption_alg",
    "request_object_encryption_enc",
    "token_endpoint_auth_signing_alg",
    "default_max_age",
    "require_auth_time",
    "default_acr_values",
    "initiate_login_uri",
    "request_uris",
    "post_logout_redirect_uris",
    "frontchannel_logout_uri",
    "frontchannel_logout_session_required",
    "backchannel_logout_uri",
    "backchannel_logout_session_required",
    "tls_client_certificate_bound_access_tokens",
    "tls_client_auth_subject_dn",
    "dpop_bound_access_tokens",
    "authorization_signed_response_alg",
    "authorization_encrypted_response_alg",
    "authorization_encrypted_response_enc",
    "require_pushed_authorization_requests",
];

/// Top-level members of Keycloak's `ClientRepresentation`.
pub const KEYCLOAK_FIELDS: &[&str] = &[
    "id",
    "clientId",
    "name",
    "description",
    "type",
    "rootUrl",
    "adminUrl",
    "baseUrl",
    "surrogateAuthRequired",
    "enabled",
    "alwaysDisplayInConsole",
    "clientAuthenticatorType",
    "secret",
    "registrationAccessToken",
    "defaultRoles",
    "redirectUris",
    "webOrigins",
    "notBefore",
    "bearerOnly",
    "consentRequired",
    "standardFlowEnabled",
    "implicitFlowEnabled",
    "directAccessGrantsEnabled",
    "serviceAccountsEnabled",
    "authorizationServicesEnabled",
    "directGrantsOnly",
    "publicClient",
    "frontchannelLogout",
    "protocol",
    "attributes",
    "authenticationFlowBindingOverrides",
    "fullScopeAllowed",
    "nodeReRegistrationTimeout",
    "registeredNodes",
    "protocolMappers",
    "clientTemplate",
    "useTemplateConfig",
    "useTemplateScope",
    "useTemplateMappers",
    "defaultClientScopes",
    "optionalClientScopes",
    "authorizationSettings",
    "access",
    "origin",
];

/// Whether `name` can be used in `forbidden_fields`.
pub fn known_field(name: &str) -> bool {
    NORMALISED_FIELDS.contains(&name) || RFC7591_FIELDS.contains(&name) || KEYCLOAK_FIELDS.contains(&name)
}

/// The body's own key for a normalised field name.
pub fn wire_name(dialect: Dialect, name: &str) -> &str {
    match (dialect, name) {
        (Dialect::Keycloak, "redirect_uris") => "redirectUris",
        (Dialect::Keycloak, "client_id") => "clientId",
        (Dialect::Keycloak, "client_name") => "name",
        (Dialect::Keycloak, "scopes") => "defaultClientScopes/optionalClientScopes",
        (Dialect::Keycloak, "grant_types") => {
            "standardFlowEnabled/implicitFlowEnabled/directAccessGrantsEnabled/serviceAccountsEnabled"
        }
        (Dialect::Keycloak, "token_endpoint_auth_method") => "clientAuthenticatorType/publicClient",
        (Dialect::Keycloak, "client_type") => "publicClient/bearerOnly",
        (Dialect::Keycloak, "protocol_mappers") => "protocolMappers",
        (Dialect::Keycloak, "service_accounts") => "serviceAccountsEnabled",
        (Dialect::Rfc7591, "scopes") => "scope",
        (Dialect::Rfc7591, "client_type") => "token_endpoint_auth_method",
        (Dialect::Rfc7591, "service_accounts") => "grant_types",
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn normalise_create(d: Dialect, m: &Map<String, Value>) -> Result<ClientMetadata, Refusal> {
        normalise(d, m, true)
    }

    #[test]
    fn keycloak_updates_are_partial_and_creates_get_defaults() {
        let md = normalise(
            Dialect::Keycloak,
            &obj(json!({"clientId": "c1", "description": "x"})),
            false,
        )
        .unwrap();
        assert!(md.grant_types.is_empty() && md.client_type.is_empty() && md.auth_method.is_empty());
        assert!(!md.present.contains("full_scope_allowed"));
        let md = normalise(Dialect::Keycloak, &obj(json!({"clientId": "c1"})), true).unwrap();
        assert!(
            md.present.contains("full_scope_allowed"),
            "Keycloak makes new clients full-scope"
        );
        let md = normalise(
            Dialect::Keycloak,
            &obj(json!({"clientId": "c1", "consentRequired": true})),
            true,
        )
        .unwrap();
        assert!(!md.present.contains("full_scope_allowed"));
        let md = normalise(
            Dialect::Keycloak,
            &obj(json!({"clientId": "c1", "fullScopeAllowed": false})),
            true,
        )
        .unwrap();
        assert!(!md.present.contains("full_scope_allowed"));
        let attrs = json!({"clientId": "c1", "attributes": {"oauth2.device.authorization.grant.enabled": "true"}});
        let md = normalise(Dialect::Keycloak, &obj(attrs), false).unwrap();
        assert_eq!(md.grant_types, ["urn:ietf:params:oauth:grant-type:device_code"]);
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn rfc7591_defaults_and_fields() {
        let md = normalise_create(
            Dialect::Rfc7591,
            &obj(json!({"client_name": "x", "redirect_uris": ["https://a/cb"], "scope": "openid email"})),
        )
        .unwrap();
        assert_eq!(md.grant_types, ["authorization_code"]);
        assert_eq!(md.response_types, ["code"]);
        assert_eq!(md.auth_method, "client_secret_basic");
        assert_eq!(md.client_type, "confidential");
        assert_eq!(md.scopes, ["openid", "email"]);
        let md = normalise_create(Dialect::Rfc7591, &obj(json!({"token_endpoint_auth_method": "none", "grant_types": ["client_credentials"], "jwks_uri": "https://k"}))).unwrap();
        assert_eq!(md.client_type, "public");
        assert!(md.present.contains("service_accounts") && md.present.contains("jwks_uri"));
    }

    #[test]
    fn keycloak_dialect_maps_flags_to_grants() {
        let md = normalise_create(Dialect::Keycloak, &obj(json!({"clientId": "c1"}))).unwrap();
        assert_eq!(md.client_id.as_deref(), Some("c1"));
        assert_eq!(md.grant_types, ["authorization_code"]);
        let md = normalise_create(
            Dialect::Keycloak,
            &obj(json!({"clientId": "c1", "standardFlowEnabled": false, "serviceAccountsEnabled": true, "directAccessGrantsEnabled": true,
                        "protocolMappers": [{"name": "m"}], "publicClient": false, "redirectUris": ["https://x/cb"], "defaultClientScopes": ["email"]})),
        )
        .unwrap();
        assert_eq!(md.grant_types, ["password", "client_credentials"]);
        assert!(md.present.contains("protocol_mappers") && md.present.contains("service_accounts"));
        assert_eq!(md.redirect_uris, ["https://x/cb"]);
        assert_eq!(md.scopes, ["email"]);
        let md = normalise_create(Dialect::Keycloak, &obj(json!({"publicClient": true}))).unwrap();
        assert_eq!((md.client_type, md.auth_method.as_str()), ("public", "none"));
    }

    #[test]
    fn wrong_types_named() {
        let e = normalise_create(Dialect::Rfc7591, &obj(json!({"redirect_uris": "https://a/cb"}))).unwrap_err();
        assert_eq!(e.reason, Reason::BodyWrongType);
        assert!(e.description.contains("redirect_uris"));
        let e = normalise_create(Dialect::Keycloak, &obj(json!({"publicClient": "yes"}))).unwrap_err();
        assert!(e.description.contains("publicClient"));
        let e = normalise_create(Dialect::Keycloak, &obj(json!({"redirectUris": [1]}))).unwrap_err();
        assert!(e.description.contains("array of strings"));
    }
}
