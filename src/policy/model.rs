//! The policy files as operators write them (TOML, every key optional, unknown keys refused).
//! `docs/policy.md` documents each key; `compile` turns these into a checked `Snapshot`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::config::{Dur, Mode};

/// A list value that remembers where it was written.
pub type List = Spanned<Vec<String>>;

/// One policy file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Format version: required, and only 1 exists.
    pub version: Option<Spanned<u32>>,
    /// Rules for realms not named under `[realms]`.
    pub default: Option<Spanned<RealmRaw>>,
    /// Rules per realm.
    #[serde(default)]
    pub realms: BTreeMap<String, Spanned<RealmRaw>>,
}

/// `[default]` or `[realms.NAME]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealmRaw {
    /// `enforce` or `shadow` for every rule of this realm.
    pub mode: Option<Mode>,
    /// Providers that may be used.
    pub providers: Option<List>,
    /// Who may create.
    pub create: Option<OpRaw>,
    /// Who may read.
    pub read: Option<OpRaw>,
    /// Who may update.
    pub update: Option<OpRaw>,
    /// Who may delete.
    pub delete: Option<OpRaw>,
    /// Client-metadata rules on create and update.
    pub metadata: Option<MetadataRaw>,
    /// Registration quota.
    pub quota: Option<QuotaRaw>,
    /// Writes to clients through Keycloak's admin REST API.
    pub admin_api: Option<AdminApiRaw>,
    /// Anonymous registration through the gateway's own credential (`[realms.NAME]` only).
    pub anonymous: Option<Spanned<AnonymousRaw>>,
    /// CORS for browser clients on the registration paths.
    pub cors: Option<CorsRaw>,
}

/// `[realms.NAME.admin_api]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminApiRaw {
    /// `by_caller`, `govern`, `forward` or `refuse`.
    pub writes: Option<Spanned<String>>,
    /// `by_caller`: user sessions of these clients (`azp`) are forwarded.
    pub console_clients: Option<List>,
    /// Admin writes governed callers may make without body checks (e.g. `client.delete`).
    pub allow: Option<List>,
    /// A rule set of their own for admin writes (default: the realm's `metadata`).
    pub metadata: Option<MetadataRaw>,
}

/// `[realms.NAME.create]` and the other operations.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpRaw {
    /// `enforce` or `shadow` for this operation's rules.
    pub mode: Option<Mode>,
    /// Token kinds allowed: `bearer`, `initial_access`, `registration_access`, `anonymous`.
    pub token_kinds: Option<List>,
    /// Bearer tokens need at least one of these roles (`client/role` or a realm role).
    pub roles_any: Option<List>,
    /// Bearer tokens need all of these roles.
    pub roles_all: Option<List>,
    /// Bearer tokens need all of these scopes in `scope`.
    pub scopes: Option<List>,
    /// Bearer tokens must have been issued to one of these clients (`azp`).
    pub azp: Option<List>,
}

/// `[realms.NAME.metadata]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataRaw {
    /// `enforce` or `shadow` for the metadata rules.
    pub mode: Option<Mode>,
    /// Redirect-URI rules (also for the other URLs a browser is sent to).
    pub redirect_uris: Option<RedirectRaw>,
    /// Rules for URLs Keycloak itself calls.
    pub server_urls: Option<ServerUrlsRaw>,
    /// Allowed grant types.
    pub grant_types: Option<List>,
    /// Allowed response types.
    pub response_types: Option<List>,
    /// Allowed token endpoint auth methods.
    pub token_endpoint_auth_methods: Option<List>,
    /// Allowed requested client scopes.
    pub scopes: Option<List>,
    /// Allowed client types: `public`, `confidential`, `bearer-only`.
    pub client_types: Option<List>,
    /// Fields that must not be present.
    pub forbidden_fields: Option<List>,
    /// Regular expression the whole client id must match.
    pub client_id_pattern: Option<Spanned<String>>,
    /// Regular expression the whole client name must match.
    pub client_name_pattern: Option<Spanned<String>>,
}

/// `[realms.NAME.metadata.redirect_uris]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectRaw {
    /// Allowed schemes (`https`, `http`, or a private-use scheme like `com.example.app`).
    pub schemes: Option<List>,
    /// Allowed hosts for http(s) URIs: exact, or `*.example.com`.
    pub hosts: Option<List>,
    /// Allow `http`/`https` on loopback hosts with any port (RFC 8252).
    pub loopback: Option<bool>,
    /// Allow `*` wildcards (Keycloak's pattern syntax).
    pub wildcards: Option<bool>,
    /// Maximum number of redirect URIs.
    pub max: Option<Spanned<usize>>,
}

/// `[realms.NAME.metadata.server_urls]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerUrlsRaw {
    /// Allowed schemes (default `http`, `https`).
    pub schemes: Option<List>,
    /// Allowed hosts: exact, or `*.example.com`.
    pub hosts: Option<List>,
    /// Allow loopback, private, link-local and cloud-metadata addresses (default false).
    pub private_addresses: Option<bool>,
}

/// `[realms.NAME.quota]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaRaw {
    /// `enforce` or `shadow` for the quota.
    pub mode: Option<Mode>,
    /// Creates allowed per caller per window.
    pub creates: Option<Spanned<u32>>,
    /// The window, e.g. `1h`.
    pub window: Option<Spanned<Dur>>,
    /// Creates allowed per window in the realm, across all callers.
    pub realm_creates: Option<Spanned<u32>>,
    /// The realm-wide window; default `window`.
    pub realm_window: Option<Spanned<Dur>>,
}

/// What to do with the `scope` member of anonymous registration bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScopeMember {
    /// Remove it, so the client gets the realm's default client scopes (keycloak#50807).
    #[default]
    Drop,
    /// Forward it: Keycloak then gives the client only `basic` as default scope.
    Keep,
    /// Refuse bodies that carry it.
    Refuse,
}

/// `[realms.NAME.anonymous]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnonymousRaw {
    /// `false` switches anonymous registration off again.
    pub enabled: Option<bool>,
    /// https hosts allowed in redirect URIs besides loopback (exact or `*.domain`).
    pub redirect_hosts: Option<List>,
    /// Allow http(s) redirect URIs on loopback with any port (RFC 8252).
    pub loopback: Option<bool>,
    /// Maximum number of redirect URIs.
    pub max_redirect_uris: Option<Spanned<usize>>,
    /// Allowed grant types.
    pub grant_types: Option<List>,
    /// Allowed response types.
    pub response_types: Option<List>,
    /// Allowed token endpoint auth methods.
    pub token_endpoint_auth_methods: Option<List>,
    /// Allowed words of `scope`.
    pub scopes: Option<List>,
    /// Regular expression the whole client name must match.
    pub client_name_pattern: Option<Spanned<String>>,
    /// Members that must not be set.
    pub forbidden_fields: Option<List>,
    /// Drop members Keycloak does not know before forwarding (RFC 7591 §2).
    pub drop_unknown_members: Option<bool>,
    /// `drop`, `keep` or `refuse` the `scope` member.
    pub scope_member: Option<ScopeMember>,
    /// Hold updates made with a registration access token in this realm to the same rules.
    pub registration_access: Option<bool>,
    /// Creates per client address.
    pub quota: Option<QuotaRaw>,
    /// Creates in the whole realm.
    pub realm_quota: Option<QuotaRaw>,
}

/// `[realms.NAME.cors]` and `[default.cors]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsRaw {
    /// Origins (`scheme://host[:port]`) whose scripts may call the registration endpoint.
    pub origins: Option<List>,
    /// How long browsers may cache a preflight answer.
    pub max_age: Option<Spanned<Dur>>,
}
