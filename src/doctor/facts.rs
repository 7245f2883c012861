//! What `doctor` learnt about a realm: the parts of Keycloak's admin answers that findings
//! depend on, parsed from the same JSON the admin API returns (so tests replay recorded answers).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// A value that may have stayed unseen.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen<T> {
    /// Read.
    Known(T),
    /// The admin credentials may not read it (the path, with ids replaced).
    Forbidden(String),
    /// Not read: it does not exist, or an earlier step failed (why).
    Unknown(String),
}

impl<T> Seen<T> {
    /// The value, when read.
    pub fn known(&self) -> Option<&T> {
        match self {
            Seen::Known(v) => Some(v),
            _ => None,
        }
    }

    /// The path, when the admin credentials may not read it.
    pub fn forbidden(&self) -> Option<&str> {
        match self {
            Seen::Forbidden(p) => Some(p),
            _ => None,
        }
    }
}

/// The subset of a `RealmRepresentation` that matters.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RealmRep {
    /// Realm name.
    #[serde(default)]
    pub realm: String,
    /// Default signature algorithm of tokens (absent: RS256).
    pub default_signature_algorithm: Option<String>,
    /// Realm attributes (`frontendUrl`, …).
    #[serde(default)]
    pub attributes: BTreeMap<String, Value>,
}

/// The subset of a `ClientRepresentation` that matters.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientRep {
    /// Internal id.
    #[serde(default)]
    pub id: String,
    /// `clientId`.
    #[serde(default)]
    pub client_id: String,
    /// Enabled.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Service account enabled.
    #[serde(default)]
    pub service_accounts_enabled: bool,
    /// Full scope allowed (Keycloak's default: true).
    #[serde(default = "yes")]
    pub full_scope_allowed: bool,
    /// Client attributes (`access.token.signed.response.alg`, lightweight tokens, …).
    #[serde(default)]
    pub attributes: BTreeMap<String, Value>,
}

fn yes() -> bool {
    true
}

/// A client that is meant to register clients, and what its tokens would carry.
#[derive(Debug, Clone)]
pub struct Registrar {
    /// The `clientId` named by the policy or `--client`.
    pub name: String,
    /// Where the name came from (a rule id, or `--client`).
    pub origin: String,
    /// The client, if it exists.
    pub client: Seen<ClientRep>,
    /// Username of its service-account user.
    pub service_account: Seen<String>,
    /// Effective roles of the service account on the management client (composites and groups
    /// included: `…/role-mappings/clients/{id}/composite`).
    pub effective: Seen<Vec<String>>,
    /// Effective realm roles (`…/role-mappings/realm/composite`).
    pub effective_realm: Seen<Vec<String>>,
    /// Management-client roles its scope lets into tokens, whoever holds them
    /// (`evaluate-scopes/scope-mappings/{id}/granted`: the client's scope; `userId` does not narrow it).
    pub granted: Seen<Vec<String>>,
    /// Names of its default client scopes.
    pub default_scopes: Seen<Vec<String>>,
    /// `resource_access` of the example access token Keycloak generates for the service account
    /// (`Value::Null` when the token has none).
    pub example_resource_access: Seen<Value>,
}

/// A realm component (client registration policy).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    /// Component id.
    #[serde(default)]
    pub id: String,
    /// Name (Keycloak's messages quote it).
    #[serde(default)]
    pub name: String,
    /// Provider id, e.g. `trusted-hosts`.
    #[serde(default)]
    pub provider_id: String,
    /// `anonymous` or `authenticated`.
    #[serde(default)]
    pub sub_type: String,
    /// Multi-valued configuration.
    #[serde(default)]
    pub config: BTreeMap<String, Vec<String>>,
}

impl Component {
    /// A boolean option with Keycloak's default.
    pub fn flag(&self, key: &str, default: bool) -> bool {
        match self.config.get(key).and_then(|v| v.first()) {
            Some(v) => v.eq_ignore_ascii_case("true"),
            None => default,
        }
    }

    /// A list option (absent: empty).
    pub fn list(&self, key: &str) -> &[String] {
        self.config.get(key).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// An initial access token as listed by `GET …/clients-initial-access` (no token value).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Iat {
    /// Id.
    #[serde(default)]
    pub id: String,
    /// Creation time (seconds).
    #[serde(default)]
    pub timestamp: i64,
    /// Lifetime in seconds; 0 = never expires.
    #[serde(default)]
    pub expiration: i64,
    /// Uses granted.
    #[serde(default)]
    pub count: i64,
    /// Uses left.
    #[serde(default)]
    pub remaining_count: i64,
}

/// One key of `GET …/keys`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyMeta {
    /// Key id.
    #[serde(default)]
    pub kid: String,
    /// Algorithm.
    #[serde(default)]
    pub algorithm: String,
    /// `ACTIVE`, `PASSIVE` or `DISABLED`.
    #[serde(default)]
    pub status: String,
    /// `SIG` or `ENC`.
    #[serde(rename = "use", default)]
    pub use_: String,
}

/// `GET …/keys`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Keys {
    /// Active key id per algorithm.
    #[serde(default)]
    pub active: BTreeMap<String, String>,
    /// Every key.
    #[serde(default)]
    pub keys: Vec<KeyMeta>,
}

/// A client policy condition or executor: its provider id and configuration.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Part {
    /// `condition` or `executor` provider id.
    #[serde(alias = "condition", alias = "executor", default)]
    pub kind: String,
    /// Its configuration.
    #[serde(default)]
    pub configuration: BTreeMap<String, Value>,
}

/// A client policy.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClientPolicy {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Enabled.
    #[serde(default)]
    pub enabled: bool,
    /// Conditions (all must hold).
    #[serde(default)]
    pub conditions: Vec<Part>,
    /// Names of its profiles.
    #[serde(default)]
    pub profiles: Vec<String>,
}

/// A client profile: named executors.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Profile {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Executors.
    #[serde(default)]
    pub executors: Vec<Part>,
}

/// How Keycloak answered the discovery document through the gateway's public URL.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuerSeen {
    /// The `issuer` Keycloak reported.
    pub issuer: String,
    /// How it was reached (`through the gateway at …` or `at the upstream with the gateway's headers`).
    pub via: String,
}

/// Whether Keycloak honours `X-Forwarded-*` / `Forwarded` from the address `doctor` runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarded {
    /// `X-Forwarded-Host` changed the issuer (proxy-headers=xforwarded).
    XForwarded,
    /// `Forwarded` changed the issuer (proxy-headers=forwarded).
    Forwarded,
    /// Neither changed it, and the issuer follows the request host: headers are ignored.
    Ignored,
    /// The issuer is pinned (hostname or frontend URL), so the probe cannot tell.
    Pinned,
}

/// Everything `doctor` read.
#[derive(Debug, Clone)]
pub struct Facts {
    /// Realm name.
    pub realm: String,
    /// The realm.
    pub realm_rep: RealmRep,
    /// Clients in the realm (built-ins included).
    pub client_count: Seen<usize>,
    /// Registering clients.
    pub registrars: Vec<Registrar>,
    /// Client registration policies.
    pub registration_policies: Seen<Vec<Component>>,
    /// Realm default client scope names.
    pub default_scopes: Seen<Vec<String>>,
    /// Realm optional client scope names.
    pub optional_scopes: Seen<Vec<String>>,
    /// Initial access tokens.
    pub iats: Seen<Vec<Iat>>,
    /// Realm keys.
    pub keys: Seen<Keys>,
    /// Client policies.
    pub client_policies: Seen<Vec<ClientPolicy>>,
    /// Client profiles, realm and global.
    pub profiles: Seen<Vec<Profile>>,
    /// The issuer as seen through the public URL.
    pub issuer: Seen<IssuerSeen>,
    /// The forwarded-header probe.
    pub forwarded: Seen<Forwarded>,
    /// Key ids in the JWKS fetched from the gateway's upstream, or why it failed.
    pub jwks: Result<Vec<String>, String>,
    /// Where the JWKS was fetched from.
    pub jwks_uri: String,
    /// Current time (seconds).
    pub now: i64,
}

/// Names of a JSON list of objects with `name`.
pub fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|x| x["name"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Parses `{"policies": […]}`.
pub fn client_policies(v: &Value) -> Vec<ClientPolicy> {
    serde_json::from_value(v.get("policies").cloned().unwrap_or(Value::Null)).unwrap_or_default()
}

/// Parses `{"profiles": […], "globalProfiles": […]}`.
pub fn profiles(v: &Value) -> Vec<Profile> {
    let mut out: Vec<Profile> =
        serde_json::from_value(v.get("profiles").cloned().unwrap_or(Value::Null)).unwrap_or_default();
    let global: Vec<Profile> =
        serde_json::from_value(v.get("globalProfiles").cloned().unwrap_or(Value::Null)).unwrap_or_default();
    out.extend(global);
    out
}
