//! Client Policies (the newer mechanism): enabled policies whose conditions match registrations
//! the gateway lets through, and their executors held against the gateway's metadata rules, both
//! ways (Keycloak refuses what the gateway allows; the gateway refuses what Keycloak allows).

use serde_json::Value;

use super::{Ctx, Finding, Severity, finding};
use crate::doctor::facts::{ClientPolicy, Facts, Part, Profile};
use crate::error::Reason;
use crate::policy::snapshot::RedirectPolicy;
use crate::token::TokenKind;

/// Executors that refuse or change registrations (beyond those compared one by one).
const REGISTRATION_EXECUTORS: &[&str] = &[
    "secure-client-authenticator",
    "secure-client-uris",
    "pkce-enforcer",
    "holder-of-key-enforcer",
    "reject-implicit-grant",
    "reject-ropc-grant",
    "secure-signature-algorithm",
    "secure-signature-algorithm-signed-jwt",
    "consent-required",
    "full-scope-disabled",
    "dpop-bind-enforcer",
    "secure-response-type",
    "secure-request-object",
    "saml-secure-client-uris",
];

/// Runs the client-policy checks.
pub(super) fn check(facts: &Facts, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let (Some(policies), Some(profiles)) = (facts.client_policies.known(), facts.profiles.known()) else {
        return;
    };
    let sources = sources(ctx);
    for p in policies.iter().filter(|p| p.enabled) {
        let Some(when) = applies(p, &sources) else {
            continue;
        };
        for ex in executors(p, profiles) {
            let subject = format!("client policy '{}' (executor {})", p.name, ex.kind);
            match ex.kind.as_str() {
                "secure-redirect-uris-enforcer" => redirects(ex, ctx, &subject, &when, out),
                "confidential-client" => public_clients(ctx, &subject, &when, out),
                k if REGISTRATION_EXECUTORS.contains(&k) => out.push(finding(
                    "client_policy.executor",
                    Severity::Notice,
                    &subject,
                    format!("Executor {k} runs on registrations {when}; it may refuse or change registrations the gateway lets through, and Keycloak then answers only an error code (e.g. invalid_client_metadata) as the description."),
                    ctx.hint_of(Reason::ClientPolicyRejected),
                )),
                _ => {}
            }
        }
    }
}

/// `update-client-source` values of registrations the gateway lets through.
fn sources(ctx: &Ctx<'_>) -> Vec<&'static str> {
    let mut out = Vec::new();
    for k in ctx.create_kinds() {
        out.push(match k {
            TokenKind::Bearer => "ByAuthenticatedUser",
            TokenKind::InitialAccess => "ByInitialAccessToken",
            TokenKind::Anonymous => "ByAnonymous",
            TokenKind::RegistrationAccess => "ByRegistrationAccessToken",
        });
    }
    out
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// `Some(description)` when the policy can match registrations from `sources`.
fn applies(p: &ClientPolicy, sources: &[&str]) -> Option<String> {
    let mut notes = Vec::new();
    for c in &p.conditions {
        let negative = truthy(c.configuration.get("is-negative-logic"));
        match c.kind.as_str() {
            "any-client" => {}
            "client-updater-context" => {
                let listed = strings(c.configuration.get("update-client-source"));
                let hit: Vec<&str> = sources
                    .iter()
                    .copied()
                    .filter(|s| listed.iter().any(|l| l == s))
                    .collect();
                let matches = if negative {
                    hit.len() < sources.len()
                } else {
                    !hit.is_empty()
                };
                if !matches {
                    return None;
                }
                if !negative {
                    notes.push(format!("made {}", hit.join(" or ")));
                }
            }
            other => notes.push(format!("when condition {other} holds")),
        }
    }
    Some(if notes.is_empty() {
        "of every kind".to_owned()
    } else {
        notes.join(", ")
    })
}

fn executors<'a>(p: &ClientPolicy, profiles: &'a [Profile]) -> Vec<&'a Part> {
    p.profiles
        .iter()
        .filter_map(|name| profiles.iter().find(|pr| &pr.name == name))
        .flat_map(|pr| pr.executors.iter())
        .collect()
}

fn redirects(ex: &Part, ctx: &Ctx<'_>, subject: &str, when: &str, out: &mut Vec<Finding>) {
    let cfg = |k: &str| truthy(ex.configuration.get(k));
    if cfg("allow-open-redirect") {
        return;
    }
    let r: &RedirectPolicy = &ctx.policy.metadata.redirect.value;
    let scheme_ok = |s: &str| r.schemes.as_ref().is_none_or(|set| set.contains(s));
    let private_allowed = r
        .schemes
        .as_ref()
        .is_none_or(|set| set.iter().any(|s| s != "http" && s != "https"));
    let oauth21 = cfg("oauth-2-1-compliant");
    let mut refused = Vec::new();
    let mut stricter = Vec::new();
    if r.loopback && !cfg("allow-ipv4-loopback-address") {
        refused
            .push("loopback redirect URIs (http://127.0.0.1:<port>/…): allow-ipv4-loopback-address is off".to_owned());
    } else if r.loopback && oauth21 {
        refused.push(
            "loopback redirect URIs with a port or on localhost: oauth-2-1-compliant forbids both at registration"
                .to_owned(),
        );
    } else if r.loopback && !cfg("allow-http-scheme") {
        refused.push("http loopback redirect URIs: allow-http-scheme is off".to_owned());
    } else if !r.loopback && cfg("allow-ipv4-loopback-address") {
        stricter.push("loopback redirect URIs (Keycloak allows them; the gateway's redirect_uris.loopback is false)");
    }
    if scheme_ok("http") && !cfg("allow-http-scheme") {
        refused.push("http redirect URIs: allow-http-scheme is off".to_owned());
    }
    if private_allowed && !cfg("allow-private-use-uri-scheme") {
        refused.push(
            "private-use scheme redirect URIs (com.example.app:/…): allow-private-use-uri-scheme is off".to_owned(),
        );
    } else if !private_allowed && cfg("allow-private-use-uri-scheme") {
        stricter.push(
            "private-use scheme redirect URIs (Keycloak allows them; the gateway's redirect_uris.schemes has none)",
        );
    }
    if r.wildcards && !cfg("allow-wildcard-context-path") {
        refused.push("wildcard redirect URIs: allow-wildcard-context-path is off".to_owned());
    }
    let domains = strings(ex.configuration.get("allow-permitted-domains"));
    if !domains.is_empty() {
        match &r.hosts {
            None => refused.push(format!(
                "hosts outside the permitted domains {}: the gateway allows any host",
                domains.join(", ")
            )),
            Some(h) => {
                let outside: Vec<&String> = h
                    .iter()
                    .filter(|p| {
                        let sample = p
                            .strip_prefix("*.")
                            .map(|d| format!("x.{d}"))
                            .unwrap_or_else(|| p.to_string());
                        !domains
                            .iter()
                            .any(|d| regex::Regex::new(&format!("^(?:{d})$")).is_ok_and(|re| re.is_match(&sample)))
                    })
                    .collect();
                if !outside.is_empty() {
                    refused.push(format!(
                        "hosts {} outside the permitted domains {}",
                        outside.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                        domains.join(", ")
                    ));
                }
            }
        }
    }
    if !refused.is_empty() {
        out.push(finding(
            "client_policy.redirect_uris",
            Severity::Error,
            subject,
            format!("On registrations {when}, Keycloak refuses {}, which the gateway's policy ({}) lets through; Keycloak answers 403 with only \"invalid_request\" as the description.", refused.join("; "), ctx.policy.metadata.redirect.origin),
            format!("Either turn those options on in the executor (Realm settings → Client policies → Profiles → the profile → {}), or narrow [realms.{}.metadata.redirect_uris] in the gateway's policy to match. {}", ex.kind, ctx.realm, ctx.hint_of(Reason::ClientPolicyRejected)),
        ));
    }
    if !stricter.is_empty() {
        out.push(finding(
            "client_policy.gateway_stricter",
            Severity::Notice,
            subject,
            format!("The gateway refuses {}: clients that Keycloak's policy admits get the gateway's redirect_uri_not_allowed.", stricter.join("; ")),
            format!("If they are meant to register, allow them under [realms.{}.metadata.redirect_uris] (loopback = true, or add the scheme).", ctx.realm),
        ));
    }
}

fn public_clients(ctx: &Ctx<'_>, subject: &str, when: &str, out: &mut Vec<Finding>) {
    let m = &ctx.policy.metadata;
    let none_ok = m.auth_methods.as_ref().is_none_or(|r| r.value.contains("none"));
    let public_ok = m.client_types.as_ref().is_none_or(|r| r.value.contains("public"));
    if none_ok && public_ok {
        out.push(finding(
            "client_policy.public_clients",
            Severity::Error,
            subject,
            format!("On registrations {when}, Keycloak refuses public clients (token_endpoint_auth_method \"none\", which MCP and other native clients use), and the gateway's policy lets them through."),
            format!("Remove confidential-client from the profile if public clients are meant to register, or refuse them at the gateway: token_endpoint_auth_methods without \"none\" (or client_types = [\"confidential\"]) under [realms.{}.metadata]. {}", ctx.realm, ctx.hint_of(Reason::ClientPolicyRejected)),
        ));
    }
}
