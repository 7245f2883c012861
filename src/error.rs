//! The one error model: a closed set of stable reason codes and the `Refusal` every stage returns.
//!
//! A reason code labels the response body, the metrics and the audit line alike; `docs/errors.md`
//! documents every code and a test keeps the two in step.

use http::StatusCode;
use serde_json::{Map, Value};

macro_rules! reasons {
    ($( $group:ident $title:literal {
        $( $variant:ident => ($code:literal, $status:literal, $error:literal) ),* $(,)?
    } )*) => {
        /// A stable, documented machine code for why a request was refused or rewritten.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason { $( $( #[doc = $code] $variant, )* )* }

        /// Which part of the gateway a reason comes from: the groups of `docs/errors.md`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Stage { $( #[doc = $title] $group, )* }

        impl Stage {
            /// Every stage, in declaration order.
            pub const ALL: &'static [Stage] = &[$(Stage::$group),*];

            /// The stage's title, as `docs/errors.md` heads its group.
            pub fn title(self) -> &'static str {
                match self { $(Stage::$group => $title),* }
            }
        }

        impl Reason {
            /// Every reason, in declaration order (used by docs and tests).
            pub const ALL: &'static [Reason] = &[$( $( Reason::$variant, )* )*];

            /// The stable code, e.g. `missing_role`.
            pub fn code(self) -> &'static str {
                match self { $( $( Reason::$variant => $code, )* )* }
            }

            /// The stage the reason belongs to.
            pub fn stage(self) -> Stage {
                match self { $( $( Reason::$variant => Stage::$group, )* )* }
            }

            /// The usual HTTP status (an upstream answer keeps Keycloak's own status).
            pub fn status(self) -> StatusCode {
                let code: u16 = match self { $( $( Reason::$variant => $status, )* )* };
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }

            /// The RFC 6749 / 6750 / 7591 `error` value.
            pub fn oauth_error(self) -> &'static str {
                match self { $( $( Reason::$variant => $error, )* )* }
            }
        }
    };
}

reasons! {
    Request "routing and request shape (gateway)" {
        PathMalformed => ("path_malformed", 400, "invalid_request"),
        RouteRefused => ("route_refused", 404, "invalid_request"),
        MethodNotAllowed => ("method_not_allowed", 405, "invalid_request"),
        ConnectionHeaderInvalid => ("connection_header_invalid", 400, "invalid_request"),
        RequestTargetInvalid => ("request_target_invalid", 400, "invalid_request"),
        RequestUnparseable => ("request_unparseable", 400, "invalid_request"),
        RequestHeadTooLarge => ("request_head_too_large", 431, "invalid_request"),
        BodyTooLarge => ("body_too_large", 413, "invalid_request"),
        BodyTimeout => ("body_timeout", 408, "invalid_request"),
        BodyNotJson => ("body_not_json", 400, "invalid_client_metadata"),
        BodyDuplicateKey => ("body_duplicate_key", 400, "invalid_client_metadata"),
        BodyTooDeep => ("body_too_deep", 400, "invalid_client_metadata"),
        BodyWrongType => ("body_wrong_type", 400, "invalid_client_metadata"),
        ClientIdMismatch => ("client_id_mismatch", 400, "invalid_client_metadata"),
    }
    Token "token triage and verification (gateway)" {
        AuthSchemeUnsupported => ("auth_scheme_unsupported", 401, "invalid_request"),
        TokenMalformed => ("token_malformed", 401, "invalid_token"),
        TokenTypeUnsupported => ("token_type_unsupported", 401, "invalid_token"),
        TokenKindMismatch => ("token_kind_mismatch", 401, "invalid_token"),
        HmacAlgorithmExpected => ("hmac_algorithm_expected", 401, "invalid_token"),
        IssuerMismatch => ("issuer_mismatch", 401, "invalid_token"),
        TokenExpired => ("token_expired", 401, "invalid_token"),
        TokenNotYetValid => ("token_not_yet_valid", 401, "invalid_token"),
        TokenIssuedInFuture => ("token_issued_in_future", 401, "invalid_token"),
        ExpMissing => ("exp_missing", 401, "invalid_token"),
        IssMissing => ("iss_missing", 401, "invalid_token"),
        AlgorithmNotAllowed => ("algorithm_not_allowed", 401, "invalid_token"),
        KidMissing => ("kid_missing", 401, "invalid_token"),
        KidUnknown => ("kid_unknown", 401, "invalid_token"),
        KeyUnusable => ("key_unusable", 401, "invalid_token"),
        SignatureInvalid => ("signature_invalid", 401, "invalid_token"),
        AudienceMismatch => ("audience_mismatch", 401, "invalid_token"),
        AzpMismatch => ("azp_mismatch", 401, "invalid_token"),
        JwksUnavailable => ("jwks_unavailable", 503, "temporarily_unavailable"),
    }
    Policy "policy (gateway)" {
        ProviderNotAllowed => ("provider_not_allowed", 403, "access_denied"),
        AnonymousNotAllowed => ("anonymous_not_allowed", 403, "insufficient_scope"),
        TokenKindNotAllowed => ("token_kind_not_allowed", 403, "access_denied"),
        MissingRole => ("missing_role", 403, "insufficient_scope"),
        RolesNotInToken => ("roles_not_in_token", 403, "insufficient_scope"),
        MissingScope => ("missing_scope", 403, "insufficient_scope"),
        AzpNotAllowed => ("azp_not_allowed", 403, "insufficient_scope"),
        RedirectUriNotAllowed => ("redirect_uri_not_allowed", 400, "invalid_redirect_uri"),
        RedirectUriFragment => ("redirect_uri_fragment", 400, "invalid_redirect_uri"),
        RedirectUriMalformed => ("redirect_uri_malformed", 400, "invalid_redirect_uri"),
        TooManyRedirectUris => ("too_many_redirect_uris", 400, "invalid_redirect_uri"),
        BrowserUrlNotAllowed => ("browser_url_not_allowed", 400, "invalid_client_metadata"),
        ServerUrlNotAllowed => ("server_url_not_allowed", 400, "invalid_client_metadata"),
        GrantTypeNotAllowed => ("grant_type_not_allowed", 400, "invalid_client_metadata"),
        ResponseTypeNotAllowed => ("response_type_not_allowed", 400, "invalid_client_metadata"),
        AuthMethodNotAllowed => ("auth_method_not_allowed", 400, "invalid_client_metadata"),
        ScopeNotAllowed => ("scope_not_allowed", 400, "invalid_client_metadata"),
        ClientTypeNotAllowed => ("client_type_not_allowed", 400, "invalid_client_metadata"),
        FieldForbidden => ("field_forbidden", 400, "invalid_client_metadata"),
        ClientIdPattern => ("client_id_pattern", 400, "invalid_client_metadata"),
        ClientNamePattern => ("client_name_pattern", 400, "invalid_client_metadata"),
        QuotaExceeded => ("quota_exceeded", 429, "temporarily_unavailable"),
        AdminWriteRefused => ("admin_write_refused", 403, "access_denied"),
        RealmQuotaExceeded => ("realm_quota_exceeded", 429, "temporarily_unavailable"),
        ScopeMemberRefused => ("scope_member_refused", 400, "invalid_client_metadata"),
        CorsOriginNotAllowed => ("cors_origin_not_allowed", 403, "access_denied"),
    }
    Gateway "the gateway itself and the upstream connection" {
        NotReady => ("not_ready", 503, "temporarily_unavailable"),
        Overloaded => ("overloaded", 503, "temporarily_unavailable"),
        QuotaStoreUnavailable => ("quota_store_unavailable", 503, "temporarily_unavailable"),
        RegistrarUnavailable => ("registrar_unavailable", 503, "temporarily_unavailable"),
        UpstreamUnreachable => ("upstream_unreachable", 502, "temporarily_unavailable"),
        UpstreamConnectTimeout => ("upstream_connect_timeout", 504, "temporarily_unavailable"),
        UpstreamTimeout => ("upstream_timeout", 504, "temporarily_unavailable"),
        UpstreamProtocol => ("upstream_protocol", 502, "temporarily_unavailable"),
        Internal => ("internal_error", 500, "server_error"),
    }
    Keycloak "Keycloak's own answers, rewritten" {
        TokenRevoked => ("token_revoked", 401, "invalid_token"),
        HmacTokenRejected => ("hmac_token_rejected", 401, "invalid_token"),
        TokenRejected => ("token_rejected", 401, "invalid_token"),
        InvalidTokenType => ("invalid_token_type", 401, "invalid_token"),
        InitialTokenNotFound => ("initial_token_not_found", 401, "invalid_token"),
        InitialTokenExhausted => ("initial_token_exhausted", 401, "invalid_token"),
        InitialTokenExpired => ("initial_token_expired", 401, "invalid_token"),
        InitialTokenWrongOperation => ("initial_token_wrong_operation", 401, "invalid_token"),
        RegistrationTokenInvalid => ("registration_token_invalid", 401, "invalid_token"),
        RegistrationClientGone => ("registration_client_gone", 401, "invalid_token"),
        NotAuthorized => ("not_authorized", 401, "invalid_token"),
        TrustedHostRejected => ("trusted_host_rejected", 403, "insufficient_scope"),
        TrustedUriRejected => ("trusted_uri_rejected", 403, "insufficient_scope"),
        ClientScopeRejected => ("client_scope_rejected", 403, "insufficient_scope"),
        MaxClientsReached => ("max_clients_reached", 403, "insufficient_scope"),
        ProtocolMapperRejected => ("protocol_mapper_rejected", 403, "insufficient_scope"),
        RegistrationPolicyRejected => ("registration_policy_rejected", 403, "insufficient_scope"),
        ClientPolicyRejected => ("client_policy_rejected", 403, "insufficient_scope"),
        InvalidRedirectUri => ("invalid_redirect_uri", 400, "invalid_redirect_uri"),
        ClientIdInUse => ("client_id_in_use", 400, "invalid_client_metadata"),
        ClientIdModified => ("client_id_modified", 400, "invalid_client_metadata"),
        ClientIdIncluded => ("client_id_included", 400, "invalid_client_metadata"),
        ClientMetadataInvalid => ("client_metadata_invalid", 400, "invalid_client_metadata"),
        UnrecognizedField => ("unrecognized_field", 400, "invalid_client_metadata"),
        ClientNotFound => ("client_not_found", 404, "invalid_request"),
        HttpsRequired => ("https_required", 403, "invalid_request"),
        ProviderNotFound => ("provider_not_found", 404, "invalid_request"),
        RealmNotFound => ("realm_not_found", 404, "invalid_request"),
        WrongClientProtocol => ("wrong_client_protocol", 400, "invalid_client"),
        ContentTypeUnsupported => ("content_type_unsupported", 415, "invalid_request"),
        OriginRejected => ("origin_rejected", 403, "access_denied"),
        KeycloakServerError => ("keycloak_server_error", 500, "server_error"),
        KeycloakError => ("keycloak_error", 400, "invalid_request"),
    }
}

macro_rules! details {
    ($( $variant:ident => $key:literal ),* $(,)?) => {
        /// A key of a refusal's `details`: the facts the gateway records, which descriptions and
        /// hints read back. A closed set, so a misspelt key is a compile error.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Detail { $( #[doc = $key] $variant ),* }

        impl Detail {
            /// Every key, alphabetically.
            pub const ALL: &'static [Detail] = &[$(Detail::$variant),*];

            /// The key as written under `details` in the response body.
            pub fn key(self) -> &'static str {
                match self { $(Detail::$variant => $key),* }
            }

            /// The key named `key`, if it is one.
            pub fn from_key(key: &str) -> Option<Detail> {
                Detail::ALL.iter().copied().find(|d| d.key() == key)
            }
        }
    };
}

details! {
    AcceptedIssuers => "accepted_issuers",
    AdminWrite => "admin_write",
    Alg => "alg",
    Allowed => "allowed",
    AllowedAzp => "allowed_azp",
    AllowedHosts => "allowed_hosts",
    AllowedOrigins => "allowed_origins",
    AllowedProviders => "allowed_providers",
    AllowedSchemes => "allowed_schemes",
    AllowedTokenKinds => "allowed_token_kinds",
    Area => "area",
    Aud => "aud",
    Azp => "azp",
    Caller => "caller",
    ClientId => "client_id",
    ClientPolicyError => "client_policy_error",
    Column => "column",
    ContentType => "content_type",
    Creates => "creates",
    Error => "error",
    Exp => "exp",
    Expected => "expected",
    ExpectedAudiences => "expected_audiences",
    ExpectedAzp => "expected_azp",
    ExpectedIssuer => "expected_issuer",
    Field => "field",
    Form => "form",
    Header => "header",
    Host => "host",
    Iat => "iat",
    JwksUri => "jwks_uri",
    Kid => "kid",
    KnownKids => "known_kids",
    LastError => "last_error",
    LeewaySeconds => "leeway_seconds",
    Limit => "limit",
    LimitBytes => "limit_bytes",
    Line => "line",
    Max => "max",
    Method => "method",
    Nbf => "nbf",
    Operation => "operation",
    Origin => "origin",
    Path => "path",
    PathClientId => "path_client_id",
    Pattern => "pattern",
    Policy => "policy",
    PolicyDetails => "policy_details",
    Provider => "provider",
    Quota => "quota",
    Realm => "realm",
    RealmCreates => "realm_creates",
    RegistrationAuth => "registration_auth",
    RequestedScopes => "requested_scopes",
    RolesNeededAll => "roles_needed_all",
    RolesNeededAny => "roles_needed_any",
    Scheme => "scheme",
    ScopesNeeded => "scopes_needed",
    Status => "status",
    StoreError => "store_error",
    Target => "target",
    Timeout => "timeout",
    TokenIssuer => "token_issuer",
    TokenKind => "token_kind",
    TokenRoles => "token_roles",
    TokenScopes => "token_scopes",
    Typ => "typ",
    Value => "value",
    WindowSeconds => "window_seconds",
}

impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

/// Keycloak's own answer, kept verbatim beside the rewritten one.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamAnswer {
    /// Keycloak's status code.
    pub status: u16,
    /// Keycloak's body, parsed when it was JSON, else as a string.
    pub body: Value,
}

/// Why a request is refused or an upstream error rewritten: built by a stage, turned into a
/// response only by `respond`.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The stable reason code.
    pub reason: Reason,
    /// One sentence a person understands.
    pub description: String,
    /// Facts the gateway knows (realm, roles, field, rule, ...), shown under `details`.
    pub details: Map<String, Value>,
    /// Keycloak's original answer, when the refusal is a rewrite.
    pub upstream: Option<Box<UpstreamAnswer>>,
    /// `scope="…"` for `insufficient_scope` challenges.
    pub scope: Option<Box<str>>,
    /// Seconds for `Retry-After` (429, 503).
    pub retry_after: Option<u64>,
    /// Status and `error` to answer instead of the reason's own: what Keycloak itself would
    /// answer in the same situation (anonymous registration), so clients keep working.
    pub face: Option<Box<(u16, &'static str)>>,
    /// The policy rule that refused, shown as `details.rule`.
    pub rule: Option<RuleId>,
}

/// A policy rule's id, e.g. `realms.demo.create.roles_any` or `built-in.update.client_id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleId(std::sync::Arc<str>);

// === impl RuleId ===

impl RuleId {
    /// Wraps a rule id.
    pub fn new(id: impl Into<String>) -> Self {
        RuleId(std::sync::Arc::from(id.into()))
    }

    /// The id as written in metrics, logs and `details.rule`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is one of the gateway's built-in update checks (not a policy rule).
    pub fn is_built_in_update(&self) -> bool {
        self.0.starts_with("built-in.update")
    }
}

impl PartialEq<str> for RuleId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for RuleId {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

// === impl Refusal ===

impl Refusal {
    /// A refusal with a reason and a description.
    pub fn new(reason: Reason, description: impl Into<String>) -> Self {
        Refusal {
            reason,
            description: description.into(),
            details: Map::new(),
            upstream: None,
            scope: None,
            retry_after: None,
            rule: None,
            face: None,
        }
    }

    /// Answers with this status and `error` instead of the reason's own.
    pub fn face(mut self, status: u16, error: &'static str) -> Self {
        self.face = Some(Box::new((status, error)));
        self
    }

    /// The OAuth `error` of the response.
    pub fn oauth_error(&self) -> &'static str {
        self.face
            .as_ref()
            .map(|f| f.1)
            .unwrap_or_else(|| self.reason.oauth_error())
    }

    /// Names the policy rule that refused.
    pub fn with_rule(mut self, rule: RuleId) -> Self {
        self.rule = Some(rule);
        self
    }

    /// Adds one detail.
    pub fn detail(mut self, key: Detail, value: impl Into<Value>) -> Self {
        self.details.insert(key.key().to_owned(), value.into());
        self
    }

    /// A detail recorded with [`Refusal::detail`].
    pub fn get(&self, key: Detail) -> Option<&Value> {
        self.details.get(key.key())
    }

    /// Sets the `scope` of an `insufficient_scope` challenge.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into().into_boxed_str());
        self
    }

    /// Sets `Retry-After`.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// The status of the response: Keycloak's when this is a rewrite, else the face's, else the
    /// reason's own.
    pub fn status(&self) -> StatusCode {
        self.upstream
            .as_ref()
            .map(|u| u.status)
            .or(self.face.as_ref().map(|f| f.0))
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or_else(|| self.reason.status())
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason.code(), self.description)
    }
}

impl std::error::Error for Refusal {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_snake_case() {
        let mut seen = HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.code()), "duplicate code {}", r.code());
            assert!(r.code().chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
    }

    #[test]
    fn detail_keys_are_unique_sorted_and_snake_case() {
        let keys: Vec<&str> = Detail::ALL.iter().map(|d| d.key()).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(keys, sorted);
        assert!(
            keys.iter()
                .all(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
        let r = Refusal::new(Reason::KidUnknown, "x").detail(Detail::Kid, "k1");
        assert_eq!(r.get(Detail::Kid), Some(&Value::from("k1")));
        assert_eq!(r.details.get("kid"), Some(&Value::from("k1")));
    }

    #[test]
    fn upstream_status_wins() {
        let mut r = Refusal::new(Reason::MissingRole, "x");
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        r.upstream = Some(Box::new(UpstreamAnswer {
            status: 401,
            body: Value::Null,
        }));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
}
