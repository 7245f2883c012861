//! Holds what `doctor` read against the gateway's policy and Keycloak's registration rules.
//! Pure: the same `Facts` always give the same findings (tests replay recorded admin answers).

mod client_policies;
mod clients;
mod keycloak;
mod tokens;

use serde::Serialize;

use super::facts::Facts;
use crate::config::Settings;
use crate::error::{Reason, Refusal};
use crate::hints::{HintCtx, hint};
use crate::policy::snapshot::RealmPolicy;
use crate::route::Operation;
use crate::token::TokenKind;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Requests will fail (or pass that should not).
    Error,
    /// Requests may fail, or will soon.
    Warning,
    /// Worth knowing; does not change the exit status.
    Notice,
}

impl Severity {
    /// Upper-case label for human output.
    pub fn label(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
            Severity::Notice => "NOTICE",
        }
    }
}

/// One problem, with its fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable id, e.g. `client.missing_role` (documented in docs/doctor.md).
    pub id: &'static str,
    /// How bad.
    pub severity: Severity,
    /// What it is about: a client, a policy, a token id, a URL.
    pub subject: String,
    /// What is wrong, with the evidence.
    pub problem: String,
    /// What to change (the gateway's hint text where one applies).
    pub fix: String,
}

/// Every finding id, in report order (docs/doctor.md lists each; a test checks).
pub const IDS: &[&str] = &[
    "client.not_found",
    "client.disabled",
    "client.no_service_account",
    "client.missing_role",
    "client.roles_not_in_token",
    "issuer.mismatch",
    "issuer.unchecked",
    "anonymous.trusted_hosts_refuse_all",
    "anonymous.redirect_hosts_untrusted",
    "anonymous.forwarded_headers_ignored",
    "anonymous.forwarded_headers_unknown",
    "anonymous.no_trusted_hosts",
    "anonymous.open_at_keycloak",
    "keycloak_policy.client_scopes",
    "keycloak_policy.max_clients",
    "keycloak_policy.protocol_mappers",
    "keycloak_policy.consent_required",
    "client_policy.redirect_uris",
    "client_policy.public_clients",
    "client_policy.executor",
    "client_policy.gateway_stricter",
    "initial_access.expired",
    "initial_access.expiring",
    "initial_access.used_up",
    "initial_access.none_usable",
    "signing.algorithm_not_allowed",
    "signing.no_active_key",
    "jwks.unreachable",
    "jwks.signing_key_missing",
    "doctor.unreadable",
];

/// What the findings are held against.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// Realm name.
    pub realm: &'a str,
    /// The gateway's rules for the realm.
    pub policy: &'a RealmPolicy,
    /// The gateway's settings.
    pub settings: &'a Settings,
    /// Initial access tokens expiring sooner than this (seconds) are reported.
    pub warn_within: i64,
}

impl Ctx<'_> {
    /// Token kinds the gateway lets create clients.
    pub fn create_kinds(&self) -> Vec<TokenKind> {
        self.policy
            .op(Operation::Create)
            .map(|o| o.kinds.value.clone())
            .unwrap_or_default()
    }

    /// Whether the gateway lets `kind` create clients.
    pub fn creates_with(&self, kind: TokenKind) -> bool {
        self.create_kinds().contains(&kind)
    }

    /// Keycloak's policy sets (`anonymous`, `authenticated`) that requests through the gateway meet.
    pub fn policy_sets(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.creates_with(TokenKind::Anonymous) {
            out.push("anonymous");
        }
        let authenticated = Operation::GOVERNED.iter().any(|op| {
            self.policy.op(*op).is_some_and(|o| {
                o.kinds.value.iter().any(|k| {
                    matches!(
                        k,
                        TokenKind::Bearer | TokenKind::InitialAccess | TokenKind::RegistrationAccess
                    )
                })
            })
        });
        if authenticated {
            out.push("authenticated");
        }
        out
    }

    /// The management client of the realm.
    pub fn mgmt(&self) -> &'static str {
        crate::keycloak::management_client(self.realm)
    }

    /// The gateway's hint for `r`, as a request by `azp` (a service account) would get it.
    pub fn hint(&self, r: &Refusal, azp: Option<&str>) -> String {
        let kind = if azp.is_some() {
            TokenKind::Bearer
        } else {
            TokenKind::Anonymous
        };
        self.hint_as(r, azp, kind)
    }

    /// The gateway's hint for `r` as a request with a `kind` token would get it.
    pub fn hint_as(&self, r: &Refusal, azp: Option<&str>, kind: TokenKind) -> String {
        let public = self.settings.public_url.as_string();
        let upstream = self.settings.upstream.as_string();
        let username = azp.map(|a| format!("service-account-{a}"));
        let c = HintCtx {
            realm: Some(self.realm),
            operation: Some(Operation::Create),
            provider: Some("openid-connect"),
            kind: Some(kind),
            azp,
            username: username.as_deref(),
            public_url: &public,
            upstream: &upstream,
        };
        hint(r, &c)
    }

    /// The hint of a bare reason.
    pub fn hint_of(&self, reason: Reason) -> String {
        self.hint(&Refusal::new(reason, ""), None)
    }
}

/// Builds a finding.
pub fn finding(
    id: &'static str,
    severity: Severity,
    subject: impl Into<String>,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> Finding {
    Finding {
        id,
        severity,
        subject: subject.into(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// Every finding for `facts`, most severe first, in `IDS` order within a severity.
pub fn evaluate(facts: &Facts, ctx: &Ctx<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    clients::check(facts, ctx, &mut out);
    tokens::issuer(facts, ctx, &mut out);
    keycloak::check(facts, ctx, &mut out);
    client_policies::check(facts, ctx, &mut out);
    tokens::initial_access(facts, ctx, &mut out);
    tokens::signing(facts, ctx, &mut out);
    unreadable(facts, ctx, &mut out);
    let rank = |id: &str| IDS.iter().position(|i| *i == id).unwrap_or(usize::MAX);
    out.sort_by(|a, b| a.severity.cmp(&b.severity).then(rank(a.id).cmp(&rank(b.id))));
    out
}

fn unreadable(facts: &Facts, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let mut paths: Vec<&str> = [
        facts.registration_policies.forbidden(),
        facts.iats.forbidden(),
        facts.keys.forbidden(),
        facts.client_policies.forbidden(),
        facts.profiles.forbidden(),
    ]
    .into_iter()
    .flatten()
    .collect();
    for r in &facts.registrars {
        for p in [
            r.service_account.forbidden(),
            r.effective.forbidden(),
            r.example_resource_access.forbidden(),
        ]
        .into_iter()
        .flatten()
        {
            if !paths.contains(&p) {
                paths.push(p);
            }
        }
    }
    if !paths.is_empty() {
        let unverified = clients::unverified(facts, ctx.mgmt());
        let which = if unverified.is_empty() {
            String::new()
        } else {
            format!(
                " Whether the service accounts of {} hold {}/create-client or manage-clients could not be seen.",
                unverified.join(", "),
                ctx.mgmt()
            )
        };
        out.push(finding(
            "doctor.unreadable",
            Severity::Notice,
            "admin credentials",
            format!("The admin credentials may not read {}; the checks that need it were done from what was readable, or skipped.{which}", paths.join(", ")),
            "Give doctor's account the realm-management roles view-realm, view-clients and view-users (or run it as a realm administrator) to check everything.",
        ));
    }
}

#[cfg(test)]
mod tests;
