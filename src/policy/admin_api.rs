//! Policy for writes through Keycloak's admin REST API: whose writes are governed, which admin
//! writes a governed caller may make at all, and the metadata rules the client bodies meet.

use std::collections::BTreeSet;

use super::snapshot::{MetadataPolicy, Rule};
use crate::token::Identity;

/// Whose admin writes are governed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminWrites {
    /// Service accounts and other tokens are governed; user sessions of an administrators'
    /// client (`security-admin-console`, `admin-cli`) are forwarded.
    ByCaller,
    /// Everyone's writes are governed.
    Govern,
    /// Everyone's writes are forwarded untouched.
    Forward,
    /// Every admin write to a client is refused.
    Refuse,
}

impl AdminWrites {
    /// Parses the policy value.
    pub fn parse(s: &str) -> Option<AdminWrites> {
        match s {
            "by_caller" => Some(AdminWrites::ByCaller),
            "govern" => Some(AdminWrites::Govern),
            "forward" => Some(AdminWrites::Forward),
            "refuse" => Some(AdminWrites::Refuse),
            _ => None,
        }
    }
}

/// Admin writes governed callers may make without body checks, unless a policy says otherwise:
/// none of them widens what a client can do or where it sends users.
pub const DEFAULT_ALLOW: &[&str] = &[
    "client.delete",
    "client.client-secret",
    "client.registration-access-token",
];

/// The compiled `[*.admin_api]` of one realm.
#[derive(Debug, Clone)]
pub struct AdminPolicy {
    /// Whose writes are governed.
    pub writes: Rule<AdminWrites>,
    /// Console clients whose user sessions `ByCaller` forwards.
    pub console_clients: Rule<Vec<String>>,
    /// Targets governed callers may write without body checks.
    pub allow: Rule<BTreeSet<String>>,
    /// The metadata rules client bodies meet (the realm's own unless `admin_api.metadata`).
    pub metadata: MetadataPolicy,
}

impl AdminPolicy {
    /// Whether this caller's writes are forwarded without checks.
    pub fn forwards(&self, identity: &Identity) -> bool {
        match self.writes.value {
            AdminWrites::Forward => true,
            AdminWrites::ByCaller => is_console_session(identity, &self.console_clients.value),
            AdminWrites::Govern | AdminWrites::Refuse => false,
        }
    }
}

/// A user's session in one of the console clients: `azp` is one of them and the token is not
/// a service account's (which carries `client_id` and a `service-account-` user name).
pub fn is_console_session(identity: &Identity, consoles: &[String]) -> bool {
    let c = &identity.claims;
    let service_account = c.client_id.is_some()
        || c.preferred_username
            .as_deref()
            .is_some_and(|u| u.starts_with("service-account-"));
    !service_account && c.azp.as_ref().is_some_and(|azp| consoles.contains(azp))
}
