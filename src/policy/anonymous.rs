//! Anonymous registration: the compiled `[realms.NAME.anonymous]` rules, the body changes made
//! before forwarding (unknown members and `scope` dropped), and the face of a refusal: the
//! status and `error` Keycloak itself answers for the same situation, with the fix in
//! `error_description`, which is what MCP and other RFC 7591 clients show.
//!
//! These rules lend the gateway's own credential to callers nobody authenticated, so they are
//! always enforced: shadow mode never applies to them.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Map, Value};

pub use super::model::ScopeMember;
use super::snapshot::{MetadataPolicy, QuotaPolicy, Rule};
use crate::error::{Detail, Reason, Refusal};

/// The anonymous rules of one realm.
#[derive(Debug, Clone)]
pub struct AnonymousPolicy {
    /// `realms.NAME.anonymous`.
    pub origin: String,
    /// Metadata rules (safe defaults for public clients), checked besides `[metadata]`.
    pub metadata: MetadataPolicy,
    /// Creates per client address.
    pub quota: Rule<QuotaPolicy>,
    /// Creates in the realm.
    pub realm_quota: Rule<QuotaPolicy>,
    /// Drop members Keycloak does not know.
    pub drop_unknown: bool,
    /// What to do with `scope`.
    pub scope_member: ScopeMember,
    /// Hold registration-access-token updates of the realm to these rules.
    pub registration_access: bool,
    /// The https hosts allowed besides loopback (for messages).
    pub redirect_hosts: Vec<String>,
    /// Whether loopback redirect URIs are allowed (for messages).
    pub loopback: bool,
}

/// CORS on the registration paths.
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    /// Allowed origins, lower-cased `scheme://host[:port]`.
    pub origins: Rule<BTreeSet<String>>,
    /// `Access-Control-Max-Age` of preflight answers.
    pub max_age: Duration,
}

impl CorsPolicy {
    /// Whether `origin` (as the browser sent it) may call.
    pub fn allows(&self, origin: &str) -> bool {
        self.origins.value.contains(&origin.to_ascii_lowercase())
    }
}

// === impl AnonymousPolicy ===

impl AnonymousPolicy {
    /// One line for `dcr-gateway check`.
    pub fn describe(&self) -> String {
        let hosts = if self.redirect_hosts.is_empty() {
            "-".to_owned()
        } else {
            self.redirect_hosts.join(", ")
        };
        format!(
            "  anonymous create: redirect loopback {}, https hosts {hosts}; {} per address and {} in the realm per {}s; scope {:?}; unknown members {}",
            self.loopback,
            self.quota.value.creates,
            self.realm_quota.value.creates,
            self.realm_quota.value.window.as_secs(),
            self.scope_member,
            if self.drop_unknown { "dropped" } else { "forwarded" }
        )
    }

    /// Where redirect URIs may point, as a sentence fragment for refusals.
    pub fn redirect_fix(&self) -> String {
        let loopback =
            "a loopback address with any port (http://127.0.0.1:<port>/… or http://[::1]:<port>/…, RFC 8252)";
        match (self.loopback, self.redirect_hosts.is_empty()) {
            (true, true) => loopback.to_owned(),
            (true, false) => format!("{loopback}, or https on {}", self.redirect_hosts.join(", ")),
            (false, _) => format!("https on {}", self.redirect_hosts.join(", ")),
        }
    }

    /// Applies the `scope` and unknown-member settings to a body about to be forwarded; returns
    /// the names of the members removed.
    pub fn prepare(&self, body: &mut Map<String, Value>, realm: &str) -> Result<Vec<String>, Refusal> {
        let mut dropped = Vec::new();
        if body.get("scope").is_some_and(|v| !v.is_null()) {
            match self.scope_member {
                ScopeMember::Keep => {}
                ScopeMember::Drop => {
                    body.remove("scope");
                    dropped.push("scope".to_owned());
                }
                ScopeMember::Refuse => {
                    return Err(Refusal::new(
                        Reason::ScopeMemberRefused,
                        format!("Remove the `scope` member: anonymous registration in realm {realm} does not accept it, because Keycloak would then give the client none of the realm's default client scopes (keycloak#50807). Without it the client gets them, and can request optional scopes when it asks for tokens."),
                    )
                    .detail(Detail::Field, "scope")
                    .with_rule(crate::error::RuleId::new(format!("{}.scope_member", self.origin))));
                }
            }
        }
        if self.drop_unknown {
            dropped.extend(super::members::drop_unknown(body));
        }
        Ok(dropped)
    }
}

/// What Keycloak answers for the same situation, and the fix in the description.
///
/// Keycloak refuses anonymous registrations through its anonymous Client Registration Policies,
/// always with 403 `insufficient_scope`; body problems stay 400 (`invalid_client_metadata`,
/// `invalid_redirect_uri`), an unavailable gateway credential stays 503.
pub fn face(mut r: Refusal, realm: &str, anon: Option<&AnonymousPolicy>) -> Refusal {
    if let (Some(a), Reason::RedirectUriNotAllowed | Reason::TooManyRedirectUris) = (anon, r.reason) {
        let uri = r.get(Detail::Value).and_then(Value::as_str).unwrap_or_default();
        r.description = match r.reason {
            Reason::TooManyRedirectUris => format!(
                "{} Register at most {} redirect URIs.",
                r.description,
                a.metadata.redirect.value.max.unwrap_or(0)
            ),
            _ => format!(
                "Redirect URI `{uri}` is not allowed for anonymous registration in realm {realm}: use {}.",
                a.redirect_fix()
            ),
        };
    }
    let policy_like = matches!(
        r.reason,
        Reason::RedirectUriNotAllowed
            | Reason::TooManyRedirectUris
            | Reason::GrantTypeNotAllowed
            | Reason::ResponseTypeNotAllowed
            | Reason::AuthMethodNotAllowed
            | Reason::ScopeNotAllowed
            | Reason::ClientTypeNotAllowed
            | Reason::FieldForbidden
            | Reason::BrowserUrlNotAllowed
            | Reason::ServerUrlNotAllowed
            | Reason::ClientNamePattern
            | Reason::ProviderNotAllowed
            | Reason::QuotaExceeded
    );
    if policy_like {
        r = r.face(403, "insufficient_scope");
    }
    if r.reason == Reason::QuotaExceeded && !r.description.contains("try again") {
        r.description.push_str(" Try again later.");
    }
    r
}

#[cfg(test)]
mod tests;
