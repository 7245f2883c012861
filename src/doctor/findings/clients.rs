//! Clients meant to register: do they exist, have a service account, hold `create-client` or
//! `manage-clients` (effective: composites and groups included), and would their tokens carry it?

use serde_json::Value;

use super::{Ctx, Finding, Severity, finding};
use crate::doctor::facts::{ClientRep, Facts, Registrar, Seen};
use crate::error::{Detail, Reason, Refusal};
use crate::keycloak::roles_for as keycloak_roles;
use crate::route::Operation;

/// Runs the client checks for every registering client.
pub(super) fn check(facts: &Facts, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for r in &facts.registrars {
        one(r, ctx, out);
    }
}

fn one(r: &Registrar, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let m = ctx.mgmt();
    let name = r.name.as_str();
    let client = match &r.client {
        Seen::Known(c) => c,
        Seen::Unknown(why) if why == "no such client" => {
            out.push(finding(
                "client.not_found",
                Severity::Error,
                name,
                format!("Client '{name}' (named by {}) does not exist in realm {}.", r.origin, ctx.realm),
                format!("Create it (Clients → Create client, Client authentication on, Service accounts roles on) and give its service account {m}/create-client, or correct {}.", r.origin),
            ));
            return;
        }
        _ => return,
    };
    if !client.enabled {
        out.push(finding(
            "client.disabled",
            Severity::Error,
            name,
            format!("Client '{name}' is disabled: Keycloak issues it no tokens."),
            format!("Enable it: Clients → {name} → Enabled on."),
        ));
        return;
    }
    if !client.service_accounts_enabled {
        out.push(finding(
            "client.no_service_account",
            Severity::Error,
            name,
            format!("Client '{name}' has no service account, so it cannot get a client_credentials token to register with."),
            format!("Clients → {name} → Settings → Capability config → Client authentication on and Service accounts roles on; then give the service account {m}/create-client."),
        ));
        return;
    }
    let needed = keycloak_roles(Operation::Create);
    let holds = holds_role(r, needed, m);
    let roles_any: Vec<String> = needed.iter().map(|x| format!("{m}/{x}")).collect();
    if holds == Some(false) {
        let effective = r
            .effective
            .known()
            .map(|e| if e.is_empty() { "none".to_owned() } else { e.join(", ") })
            .unwrap_or_else(|| "(seen through the client's scope only)".into());
        let refusal = Refusal::new(Reason::MissingRole, "").detail(Detail::RolesNeededAny, roles_any.clone());
        out.push(finding(
            "client.missing_role",
            Severity::Error,
            name,
            format!(
                "The service account of client '{name}' holds neither {} (its effective {m} roles, composites and groups included: {effective}). Keycloak answers its registrations 403 insufficient_scope \"Forbidden\".",
                roles_any.join(" nor ")
            ),
            ctx.hint(&refusal, Some(name)),
        ));
        return;
    }
    if let Some(cause) = roles_missing_from_token(r, client, needed, m) {
        out.push(finding(
            "client.roles_not_in_token",
            Severity::Error,
            name,
            match (holds, holds_which(r, needed)) {
                (Some(true), Some(role)) => format!("The service account of client '{name}' holds {m}/{role} but its tokens would not carry it: {cause}. Keycloak and the gateway read roles from the token, so registrations get 403."),
                _ => format!("The tokens of client '{name}' would carry neither {} (whether its service account holds one cannot be seen with these admin credentials): {cause}. Keycloak and the gateway read roles from the token, so registrations get 403.", roles_any.join(" nor ")),
            },
            ctx.hint(&Refusal::new(Reason::RolesNotInToken, ""), Some(name)),
        ));
    }
}

/// Whether the service account holds one of `needed` on the management client; `None` when
/// that cannot be seen with the admin credentials at hand.
fn holds_role(r: &Registrar, needed: &[&str], m: &str) -> Option<bool> {
    if let Some(e) = r.effective.known() {
        return Some(e.iter().any(|x| needed.contains(&x.as_str())));
    }
    // Without view-users: the example token shows the role when the client's scope lets it in
    // (`granted` is the client's scope, whoever the user).
    let carried = carried(r.example_resource_access.known()?, needed, m);
    let scope_lets_in = r
        .granted
        .known()
        .is_some_and(|g| g.iter().any(|x| needed.contains(&x.as_str())))
        && r.default_scopes.known().is_some_and(|d| d.iter().any(|s| s == "roles"));
    if carried {
        Some(true)
    } else if scope_lets_in {
        Some(false)
    } else {
        None
    }
}

fn carried(ra: &Value, needed: &[&str], m: &str) -> bool {
    ra.get(m)
        .and_then(|c| c.get("roles"))
        .and_then(Value::as_array)
        .is_some_and(|l| l.iter().any(|x| x.as_str().is_some_and(|s| needed.contains(&s))))
}

/// Registering clients whose role holding could not be seen (for `doctor.unreadable`).
pub(super) fn unverified(facts: &Facts, m: &str) -> Vec<String> {
    let needed = keycloak_roles(Operation::Create);
    facts
        .registrars
        .iter()
        .filter(|r| {
            r.client
                .known()
                .is_some_and(|c| c.enabled && c.service_accounts_enabled)
        })
        .filter(|r| holds_role(r, needed, m).is_none())
        .map(|r| r.name.clone())
        .collect()
}

fn holds_which<'a>(r: &'a Registrar, needed: &[&str]) -> Option<&'a str> {
    r.effective
        .known()
        .or(r.granted.known())
        .and_then(|e| e.iter().find(|x| needed.contains(&x.as_str())))
        .map(String::as_str)
}

/// Why the token would lack the role, if it would.
fn roles_missing_from_token(r: &Registrar, client: &ClientRep, needed: &[&str], m: &str) -> Option<String> {
    let full_scope = client.full_scope_allowed;
    let lightweight = client
        .attributes
        .get("client.use.lightweight.access.token.enabled")
        .and_then(Value::as_str)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let roles_scope = r.default_scopes.known().map(|d| d.iter().any(|s| s == "roles"));
    let in_scope = r
        .granted
        .known()
        .map(|g| g.iter().any(|x| needed.contains(&x.as_str())));
    let cause = || {
        let mut why = Vec::new();
        if !full_scope && in_scope != Some(true) {
            why.push(format!(
                "Full scope allowed is off and no scope mapping lets {m} roles into its tokens"
            ));
        }
        if roles_scope == Some(false) {
            why.push(
                "the `roles` client scope (whose mapper writes resource_access) is not among its default client scopes"
                    .to_owned(),
            );
        }
        if lightweight {
            why.push("it uses lightweight access tokens (Always use lightweight access token is on), which leave resource_access out; Keycloak still finds the role, but the gateway cannot".to_owned());
        }
        if why.is_empty() {
            why.push("the example token Keycloak generates for it has no such role in resource_access".to_owned());
        }
        why.join("; and ")
    };
    match r.example_resource_access.known() {
        Some(ra) => (!carried(ra, needed, m)).then(cause),
        None => (in_scope == Some(false) || roles_scope == Some(false)).then(cause),
    }
}
