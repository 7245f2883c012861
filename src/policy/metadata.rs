//! One view of client metadata from both body dialects: RFC 7591 snake_case on `openid-connect`
//! and Keycloak's `ClientRepresentation` camelCase on `default`, read as Keycloak reads them
//! (Jackson's coercions, `Boolean.parseBoolean` on attributes, the description converter's
//! derivations) with Keycloak's defaults applied, so that one set of rules governs both.

mod inventory;
mod keycloak;
mod rfc7591;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::error::{Detail, Reason, Refusal};
pub use inventory::{KEYCLOAK_ATTRIBUTES, KEYCLOAK_FIELDS, NORMALISED_FIELDS, RFC7591_FIELDS, known_field};

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

/// Who follows a registered URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum UrlKind {
    /// Keycloak sends the user's browser there (or the browser loads it): redirect rules.
    Browser,
    /// A CORS origin (`webOrigins`): redirect rules on scheme and host; `+` and `*` are special.
    Origin,
    /// `rootUrl`: a browser URL, and the base Keycloak resolves relative server-called URLs
    /// (such as a relative `adminUrl` already on the client) against, so also never internal.
    Root,
    /// Keycloak itself calls it: the server URL rules.
    Server,
    /// A cluster node host (`registeredNodes`) that Keycloak calls through `adminUrl`.
    Node,
}

/// One URL a body registers, other than the redirect URIs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UrlRef {
    /// Who follows it.
    pub kind: UrlKind,
    /// Where it is in the body, as written (`attributes.backchannel.logout.url`, `jwks_uri`).
    pub field: String,
    /// The value.
    pub url: String,
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
    /// Effective token endpoint auth method (empty: not set by this update).
    pub auth_method: String,
    /// Requested client scopes.
    pub scopes: Vec<String>,
    /// `public`, `confidential` or `bearer-only` (empty: not set by this update).
    pub client_type: &'static str,
    /// Every other URL the body registers.
    pub urls: Vec<UrlRef>,
    /// Normalised names of fields set to a value that does something (for `forbidden_fields`),
    /// each with that value as Keycloak would store it (to tell whether an update changes it).
    pub present: BTreeMap<String, Value>,
    /// Body keys present with a non-null value, as written, with their values.
    pub raw_keys: BTreeMap<String, Value>,
}

impl ClientMetadata {
    /// What this update body changes on a client whose current metadata is `current`: values
    /// the client already has are dropped, so the rules judge only what the update adds.
    pub fn changes_from(&self, current: &ClientMetadata) -> ClientMetadata {
        let new = |mine: &[String], theirs: &[String]| -> Vec<String> {
            mine.iter().filter(|v| !theirs.contains(v)).cloned().collect()
        };
        let kept = |mine: &BTreeMap<String, Value>, theirs: &BTreeMap<String, Value>| {
            mine.iter()
                .filter(|(k, v)| !theirs.get(*k).is_some_and(|c| super::coerce::unchanged(v, c)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        ClientMetadata {
            client_id: self.client_id.clone(),
            client_name: self
                .client_name
                .clone()
                .filter(|n| current.client_name.as_ref() != Some(n)),
            redirect_uris: new(&self.redirect_uris, &current.redirect_uris),
            grant_types: new(&self.grant_types, &current.grant_types),
            response_types: new(&self.response_types, &current.response_types),
            auth_method: match self.auth_method == current.auth_method {
                true => String::new(),
                false => self.auth_method.clone(),
            },
            scopes: new(&self.scopes, &current.scopes),
            client_type: match self.client_type == current.client_type {
                true => "",
                false => self.client_type,
            },
            urls: self
                .urls
                .iter()
                .filter(|u| !current.urls.contains(u))
                .cloned()
                .collect(),
            present: kept(&self.present, &current.present),
            raw_keys: kept(&self.raw_keys, &current.raw_keys),
        }
    }
}

pub(crate) fn wrong_type(wire: &str, expected: &str) -> Refusal {
    Refusal::new(Reason::BodyWrongType, format!("Field `{wire}` must be {expected}.")).detail(Detail::Field, wire)
}

pub(crate) fn string(m: &Map<String, Value>, wire: &str) -> Result<Option<String>, Refusal> {
    match m.get(wire) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(wrong_type(wire, "a string")),
    }
}

pub(crate) fn strings(m: &Map<String, Value>, wire: &str) -> Result<Option<Vec<String>>, Refusal> {
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

/// A `Boolean` member, as Jackson binds it (see `coerce::jackson_bool`).
pub(crate) fn boolean(m: &Map<String, Value>, wire: &str) -> Result<Option<bool>, Refusal> {
    match m.get(wire) {
        None => Ok(None),
        Some(v) => super::coerce::jackson_bool(v).map_err(|_| {
            wrong_type(
                wire,
                "true or false (Keycloak also reads \"true\"/\"True\"/\"TRUE\", integers and \"\"; nothing else)",
            )
        }),
    }
}

pub(crate) fn non_empty(v: Option<&Value>) -> bool {
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
        Dialect::Rfc7591 => rfc7591::read(m)?,
        Dialect::Keycloak => keycloak::read(m, create)?,
    };
    md.raw_keys = m
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    md.urls.sort();
    md.urls.dedup();
    Ok(md)
}

/// Adds a URL unless it is empty (Keycloak treats `""` as unset).
pub(crate) fn push_url(urls: &mut Vec<UrlRef>, kind: UrlKind, field: &str, url: &str) {
    if !url.is_empty() {
        urls.push(UrlRef {
            kind,
            field: field.to_owned(),
            url: url.to_owned(),
        });
    }
}

/// The body's own key for a normalised field name.
pub fn wire_name(dialect: Dialect, name: &str) -> &str {
    match (dialect, name) {
        (Dialect::Keycloak, "redirect_uris") => "redirectUris",
        (Dialect::Keycloak, "client_id") => "clientId",
        (Dialect::Keycloak, "client_name") => "name",
        (Dialect::Keycloak, "scopes") => "defaultClientScopes/optionalClientScopes",
        (Dialect::Keycloak, "grant_types") => {
            "standardFlowEnabled/implicitFlowEnabled/directAccessGrantsEnabled/serviceAccountsEnabled/authorizationServicesEnabled/attributes"
        }
        (Dialect::Keycloak, "token_endpoint_auth_method") => "clientAuthenticatorType/publicClient",
        (Dialect::Keycloak, "client_type") => "publicClient/bearerOnly",
        (Dialect::Keycloak, "protocol_mappers") => "protocolMappers",
        (Dialect::Keycloak, "service_accounts") => "serviceAccountsEnabled",
        (Dialect::Rfc7591, "scopes") => "scope",
        (Dialect::Rfc7591, "client_type") => "token_endpoint_auth_method",
        (Dialect::Rfc7591, "service_accounts") => "grant_types",
        (Dialect::Rfc7591, "grant_types") => "grant_types/response_types",
        _ => name,
    }
}

/// The set of attribute names the gateway reads, for `forbidden_fields` validation.
pub fn attribute_names() -> BTreeSet<&'static str> {
    KEYCLOAK_ATTRIBUTES.iter().map(|(n, _)| *n).collect()
}

#[cfg(test)]
mod tests;
