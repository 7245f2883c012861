//! The compiled policy: one immutable `Snapshot` that every request pins for its whole life.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;

use crate::error::RuleId;
use crate::route::Operation;
use crate::token::TokenKind;

/// A compiled rule value with where it came from and whether it is only watched.
#[derive(Debug, Clone)]
pub struct Rule<T> {
    /// The value.
    pub value: T,
    /// Rule id, e.g. `realms.demo.create.roles_any` or `built-in.create.roles_any`.
    pub origin: RuleId,
    /// Shadow mode: evaluated and recorded, not enforced.
    pub shadow: bool,
}

impl<T> Rule<T> {
    /// An enforced rule.
    pub fn new(value: T, origin: impl Into<String>) -> Self {
        Rule {
            value,
            origin: RuleId::new(origin),
            shadow: false,
        }
    }

    /// Sets shadow mode.
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }
}

/// Which client a client role belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientRef {
    /// The realm's management client: `realm-management`, or `master-realm` in `master`.
    Management,
    /// A named client.
    Named(String),
}

/// A required role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRef {
    /// The client, for client roles; `None` for realm roles.
    pub client: Option<ClientRef>,
    /// The role name.
    pub role: String,
}

impl RoleRef {
    /// Parses `client/role`, `$management/role` or `role`.
    pub fn parse(s: &str) -> Option<RoleRef> {
        match s.split_once('/') {
            Some((c, r)) if !c.is_empty() && !r.is_empty() => {
                let client = if c == "$management" {
                    ClientRef::Management
                } else {
                    ClientRef::Named(c.to_owned())
                };
                Some(RoleRef {
                    client: Some(client),
                    role: r.to_owned(),
                })
            }
            Some(_) => None,
            None if !s.is_empty() => Some(RoleRef {
                client: None,
                role: s.to_owned(),
            }),
            None => None,
        }
    }

    /// The client id this role belongs to in `realm`.
    pub fn client_in(&self, realm: &str) -> Option<&str> {
        self.client.as_ref().map(|c| match c {
            ClientRef::Management => crate::keycloak::management_client(realm),
            ClientRef::Named(n) => n.as_str(),
        })
    }

    /// `client/role` in `realm`, or the realm role's name.
    pub fn display_in(&self, realm: &str) -> String {
        if realm == "any" && self.client == Some(ClientRef::Management) {
            return format!("$management/{}", self.role);
        }
        match self.client_in(realm) {
            Some(c) => format!("{c}/{}", self.role),
            None => self.role.clone(),
        }
    }
}

/// Rules for one operation.
#[derive(Debug, Clone)]
pub struct OpPolicy {
    /// Token kinds allowed.
    pub kinds: Rule<Vec<TokenKind>>,
    /// Bearer: one of these roles.
    pub roles_any: Rule<Vec<RoleRef>>,
    /// Bearer: all of these roles.
    pub roles_all: Rule<Vec<RoleRef>>,
    /// Bearer: all of these scopes.
    pub scopes: Rule<Vec<String>>,
    /// Bearer: `azp` one of these (empty: any).
    pub azp: Rule<Vec<String>>,
}

/// Redirect-URI rules.
#[derive(Debug, Clone, Default)]
pub struct RedirectPolicy {
    /// Allowed schemes (`None`: any).
    pub schemes: Option<BTreeSet<String>>,
    /// Allowed hosts for http(s) (`None`: any).
    pub hosts: Option<Vec<String>>,
    /// http/https on loopback with any port.
    pub loopback: bool,
    /// `*` allowed.
    pub wildcards: bool,
    /// At most this many.
    pub max: Option<usize>,
}

/// Rules for URLs Keycloak itself calls (back-channel logout, `jwks_uri`, `adminUrl`, ...).
#[derive(Debug, Clone)]
pub struct ServerUrlPolicy {
    /// Allowed schemes.
    pub schemes: BTreeSet<String>,
    /// Allowed hosts (`None`: any public host).
    pub hosts: Option<Vec<String>>,
    /// Loopback, private, link-local and metadata addresses allowed.
    pub private_addresses: bool,
}

impl Default for ServerUrlPolicy {
    fn default() -> Self {
        ServerUrlPolicy {
            schemes: ["http", "https"].into_iter().map(str::to_owned).collect(),
            hosts: None,
            private_addresses: false,
        }
    }
}

/// Client-metadata rules.
#[derive(Debug, Clone)]
pub struct MetadataPolicy {
    /// Redirect URIs (and the other URLs a browser is sent to).
    pub redirect: Rule<RedirectPolicy>,
    /// URLs Keycloak calls.
    pub server_urls: Rule<ServerUrlPolicy>,
    /// Allowed grant types.
    pub grant_types: Option<Rule<BTreeSet<String>>>,
    /// Allowed response types.
    pub response_types: Option<Rule<BTreeSet<String>>>,
    /// Allowed token endpoint auth methods.
    pub auth_methods: Option<Rule<BTreeSet<String>>>,
    /// Allowed requested scopes.
    pub scopes: Option<Rule<BTreeSet<String>>>,
    /// Allowed client types.
    pub client_types: Option<Rule<BTreeSet<String>>>,
    /// Forbidden fields.
    pub forbidden_fields: Option<Rule<BTreeSet<String>>>,
    /// Client id pattern (anchored).
    pub client_id_pattern: Option<Rule<Regex>>,
    /// Client name pattern (anchored).
    pub client_name_pattern: Option<Rule<Regex>>,
}

/// A create quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaPolicy {
    /// Creates per caller per window.
    pub creates: u32,
    /// The window.
    pub window: Duration,
}

/// Everything that governs one realm.
#[derive(Debug, Clone)]
pub struct RealmPolicy {
    /// `default` or the realm name.
    pub name: String,
    /// Allowed providers.
    pub providers: Rule<BTreeSet<String>>,
    /// Create, read, update, delete.
    pub ops: [OpPolicy; 4],
    /// Metadata rules.
    pub metadata: MetadataPolicy,
    /// Create quota per caller.
    pub quota: Option<Rule<QuotaPolicy>>,
    /// Admin REST API writes.
    pub admin: super::admin_api::AdminPolicy,
    /// Create quota of the realm, across all callers.
    pub realm_quota: Option<Rule<QuotaPolicy>>,
    /// Anonymous registration through the gateway's own credential, when enabled.
    pub anonymous: Option<super::anonymous::AnonymousPolicy>,
    /// CORS on the registration paths, when configured.
    pub cors: Option<super::anonymous::CorsPolicy>,
}

/// One whole, validated policy.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// 1 for the first load, +1 per successful reload.
    pub generation: u64,
    /// Checksum of the files it was compiled from.
    pub checksum: String,
    /// The files.
    pub sources: Vec<PathBuf>,
    /// Rules for realms not named.
    pub default: RealmPolicy,
    /// Rules per named realm.
    pub realms: HashMap<String, RealmPolicy>,
}

impl RealmPolicy {
    /// The rules of one governed operation.
    pub fn op(&self, op: Operation) -> Option<&OpPolicy> {
        Operation::GOVERNED.iter().position(|o| *o == op).map(|i| &self.ops[i])
    }
}

impl Snapshot {
    /// The rules that govern `realm`.
    pub fn for_realm(&self, realm: &str) -> &RealmPolicy {
        self.realms.get(realm).unwrap_or(&self.default)
    }

    /// A human summary of what each realm allows (for `dcr-gateway check`).
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let mut names: Vec<&String> = self.realms.keys().collect();
        names.sort();
        for (label, p) in names
            .iter()
            .map(|n| (format!("realm {n}"), &self.realms[*n]))
            .chain([("realms not named (default)".to_owned(), &self.default)])
        {
            let realm = if p.name == "default" { "any" } else { &p.name };
            let _ = writeln!(out, "{label}:");
            let _ = writeln!(
                out,
                "  providers: {}",
                p.providers.value.iter().cloned().collect::<Vec<_>>().join(", ")
            );
            for (op, rules) in Operation::GOVERNED.iter().zip(&p.ops) {
                let kinds: Vec<&str> = rules.kinds.value.iter().map(|k| k.as_str()).collect();
                let mut line = format!(
                    "  {:<7} {}",
                    op.as_str(),
                    if kinds.is_empty() {
                        "nobody".into()
                    } else {
                        kinds.join(", ")
                    }
                );
                if rules.kinds.value.contains(&TokenKind::Bearer) && !rules.roles_any.value.is_empty() {
                    let roles: Vec<String> = rules.roles_any.value.iter().map(|r| r.display_in(realm)).collect();
                    let _ = write!(line, "; bearer needs one of {}", roles.join(" | "));
                }
                if !rules.roles_all.value.is_empty() {
                    let roles: Vec<String> = rules.roles_all.value.iter().map(|r| r.display_in(realm)).collect();
                    let _ = write!(line, "; and all of {}", roles.join(", "));
                }
                if !rules.scopes.value.is_empty() {
                    let _ = write!(line, "; scopes {}", rules.scopes.value.join(" "));
                }
                if !rules.azp.value.is_empty() {
                    let _ = write!(line, "; azp in {}", rules.azp.value.join(", "));
                }
                if rules.kinds.shadow {
                    line.push_str(" [shadow]");
                }
                let _ = writeln!(out, "{line}");
            }
            let r = &p.metadata.redirect.value;
            let schemes = r
                .schemes
                .as_ref()
                .map(|s| s.iter().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_else(|| "any".into());
            let hosts = r.hosts.as_ref().map(|h| h.join(", ")).unwrap_or_else(|| "any".into());
            let _ = writeln!(
                out,
                "  redirect_uris: schemes {schemes}; hosts {hosts}; loopback {}; max {}",
                r.loopback,
                r.max.map(|m| m.to_string()).unwrap_or_else(|| "-".into())
            );
            let su = &p.metadata.server_urls.value;
            let _ = writeln!(
                out,
                "  server_urls: schemes {}; hosts {}; private_addresses {}",
                su.schemes.iter().cloned().collect::<Vec<_>>().join(", "),
                su.hosts
                    .as_ref()
                    .map(|h| h.join(", "))
                    .unwrap_or_else(|| "any public".into()),
                su.private_addresses
            );
            for (name, rule) in [
                ("grant_types", &p.metadata.grant_types),
                ("token_endpoint_auth_methods", &p.metadata.auth_methods),
                ("scopes", &p.metadata.scopes),
                ("forbidden_fields", &p.metadata.forbidden_fields),
            ] {
                if let Some(rule) = rule {
                    let _ = writeln!(
                        out,
                        "  {name}: {}",
                        rule.value.iter().cloned().collect::<Vec<_>>().join(", ")
                    );
                }
            }
            if let Some(a) = &p.anonymous {
                let _ = writeln!(out, "{}", a.describe());
            }
            if let Some(c) = &p.cors {
                let origins: Vec<&str> = c.origins.value.iter().map(String::as_str).collect();
                let _ = writeln!(out, "  cors: {}", origins.join(", "));
            }
            if let Some(q) = &p.quota {
                let _ = writeln!(
                    out,
                    "  quota: {} creates per {}s per caller",
                    q.value.creates,
                    q.value.window.as_secs()
                );
            }
            if let Some(q) = &p.realm_quota {
                let _ = writeln!(
                    out,
                    "  realm quota: {} creates per {}s across all callers",
                    q.value.creates,
                    q.value.window.as_secs()
                );
            }
        }
        out
    }
}
