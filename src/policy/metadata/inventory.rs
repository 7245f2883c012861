//! The members of both dialects the gateway knows, and the client attributes it reads, taken
//! from Keycloak 26.5.6 and 26.7.3 (`OIDCClientRepresentation`, `ClientRepresentation`,
//! `OIDCConfigAttributes`, `OAuth2DeviceConfig`, `CibaConfig`, the SAML client attributes).
//! `docs/policy.md` lists the same inventory with how each member is governed.

use super::UrlKind;

/// How Keycloak reads a client attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attr {
    /// A grant, on when `Boolean.parseBoolean` says so.
    Grant(&'static str),
    /// A capability switch, on when `Boolean.parseBoolean` says so.
    Switch,
    /// One URL.
    Url(UrlKind),
    /// URLs joined with `##` (Keycloak's multivalued attributes).
    Urls(UrlKind),
}

/// Client attributes that enable a grant, a capability, or register a URL.
pub const KEYCLOAK_ATTRIBUTES: &[(&str, Attr)] = &[
    // grants (parseBoolean; see keycloak.rs for the grant names)
    (
        "oauth2.device.authorization.grant.enabled",
        Attr::Grant("urn:ietf:params:oauth:grant-type:device_code"),
    ),
    (
        "oidc.ciba.grant.enabled",
        Attr::Grant("urn:openid:params:grant-type:ciba"),
    ),
    (
        "standard.token.exchange.enabled",
        Attr::Grant("urn:ietf:params:oauth:grant-type:token-exchange"),
    ),
    (
        "oauth2.jwt.authorization.grant.enabled",
        Attr::Grant("urn:ietf:params:oauth:grant-type:jwt-bearer"),
    ),
    ("use.refresh.tokens", Attr::Grant("refresh_token")),
    ("client_credentials.use_refresh_token", Attr::Grant("refresh_token")),
    // capability switches (parseBoolean)
    ("standard.token.exchange.enableRefreshRequestedTokenType", Attr::Switch),
    ("external.token.enabled", Attr::Switch),
    ("oid4vci.enabled", Attr::Switch),
    ("allow.token.introspection.without.audience.check", Attr::Switch),
    ("allow.userinfo.with.lightweight.access.token", Attr::Switch),
    ("allow.oidc.params.in.redirect.uris", Attr::Switch),
    ("client.introspection.response.allow.jwt.claim.enabled", Attr::Switch),
    ("client.use.lightweight.access.token.enabled", Attr::Switch),
    ("exclude.session.state.from.auth.response", Attr::Switch),
    ("exclude.issuer.from.auth.response", Attr::Switch),
    ("x509.allow.regex.pattern.comparison", Attr::Switch),
    ("use.jwks.url", Attr::Switch),
    ("use.jwks.string", Attr::Switch),
    ("client.secret.rotation.enabled", Attr::Switch),
    ("saml.artifact.binding", Attr::Switch),
    ("saml.allow.ecp.flow", Attr::Switch),
    // browser-facing URLs
    ("post.logout.redirect.uris", Attr::Urls(UrlKind::Browser)),
    ("frontchannel.logout.url", Attr::Url(UrlKind::Browser)),
    ("logoUri", Attr::Url(UrlKind::Browser)),
    ("policyUri", Attr::Url(UrlKind::Browser)),
    ("tosUri", Attr::Url(UrlKind::Browser)),
    ("saml_assertion_consumer_url_post", Attr::Url(UrlKind::Browser)),
    ("saml_assertion_consumer_url_redirect", Attr::Url(UrlKind::Browser)),
    ("saml_artifact_binding_url", Attr::Url(UrlKind::Browser)),
    ("saml_single_logout_service_url_post", Attr::Url(UrlKind::Browser)),
    ("saml_single_logout_service_url_redirect", Attr::Url(UrlKind::Browser)),
    ("saml_single_logout_service_url_artifact", Attr::Url(UrlKind::Browser)),
    // URLs Keycloak calls
    ("backchannel.logout.url", Attr::Url(UrlKind::Server)),
    ("jwks.url", Attr::Url(UrlKind::Server)),
    ("sectorIdentifierUri", Attr::Url(UrlKind::Server)),
    ("request.uris", Attr::Urls(UrlKind::Server)),
    (
        "ciba.backchannel.client.notification.endpoint",
        Attr::Url(UrlKind::Server),
    ),
    ("saml_single_logout_service_url_soap", Attr::Url(UrlKind::Server)),
    ("saml_artifact_resolution_service_url", Attr::Url(UrlKind::Server)),
];

/// The attribute's kind, when the gateway reads it.
pub(super) fn attribute(name: &str) -> Option<Attr> {
    KEYCLOAK_ATTRIBUTES.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}

/// Normalised names usable in `forbidden_fields` (set from either dialect), besides
/// `attributes.<name>` for every attribute of `KEYCLOAK_ATTRIBUTES`.
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

/// Top-level members of RFC 7591 / OpenID Connect registration bodies (Keycloak's
/// `OIDCClientRepresentation`, plus `software_statement`).
pub const RFC7591_FIELDS: &[&str] = &[
    "redirect_uris",
    "token_endpoint_auth_method",
    "token_endpoint_auth_signing_alg",
    "grant_types",
    "response_types",
    "application_type",
    "client_id",
    "client_secret",
    "client_name",
    "client_uri",
    "logo_uri",
    "scope",
    "contacts",
    "tos_uri",
    "policy_uri",
    "jwks_uri",
    "jwks",
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
    "default_max_age",
    "require_auth_time",
    "default_acr_values",
    "initiate_login_uri",
    "request_uris",
    "tls_client_certificate_bound_access_tokens",
    "tls_client_auth_subject_dn",
    "dpop_bound_access_tokens",
    "post_logout_redirect_uris",
    "software_id",
    "software_version",
    "software_statement",
    "client_id_issued_at",
    "client_secret_expires_at",
    "registration_client_uri",
    "registration_access_token",
    "backchannel_logout_uri",
    "backchannel_logout_session_required",
    "backchannel_logout_revoke_offline_tokens",
    "backchannel_token_delivery_mode",
    "backchannel_client_notification_endpoint",
    "backchannel_authentication_request_signing_alg",
    "authorization_signed_response_alg",
    "authorization_encrypted_response_alg",
    "authorization_encrypted_response_enc",
    "require_pushed_authorization_requests",
    "frontchannel_logout_uri",
    "frontchannel_logout_session_required",
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
    NORMALISED_FIELDS.contains(&name)
        || RFC7591_FIELDS.contains(&name)
        || KEYCLOAK_FIELDS.contains(&name)
        || name.strip_prefix("attributes.").is_some_and(|a| attribute(a).is_some())
}
