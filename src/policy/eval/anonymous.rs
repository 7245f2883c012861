//! The anonymous-registration rules of the policy stage: which requests they govern, the
//! post-logout redirect check, the per-address and realm-wide quotas, and the refusal of a
//! request without a credential, answered as Keycloak answers it. Never shadowed.

use tokio::time::Instant;

use super::{Eval, Input, check_redirect};
use crate::error::{Reason, Refusal};
use crate::policy::anonymous::{AnonymousPolicy, REALM_CALLER, address_caller};
use crate::policy::metadata::{ClientMetadata, Dialect};
use crate::policy::quota::Quotas;
use crate::policy::snapshot::{QuotaPolicy, RealmPolicy, Rule, Snapshot};
use crate::route::Operation;
use crate::token::TokenKind;

/// Post-logout redirect URIs follow the anonymous redirect rule (`+`, "the redirect URIs", passes).
pub(super) fn post_logout(ev: &mut Eval<'_>, a: &AnonymousPolicy, md: &ClientMetadata, d: Dialect) -> bool {
    let logout = md
        .urls
        .iter()
        .filter(|u| u.field.starts_with("post_logout_redirect_uris"));
    for u in logout.map(|u| &u.url).filter(|u| *u != "+") {
        if let Some(r) = check_redirect(&a.metadata.redirect.value, u, d) {
            let r = r.detail("field", "post_logout_redirect_uris");
            if ev.fail(&a.metadata.redirect, r) {
                return true;
            }
        }
    }
    false
}

/// The anonymous rules that govern this request: an anonymous create in a realm with anonymous
/// registration, or (with `registration_access`) an update made with a registration access token.
pub fn anonymous_rules<'a>(policy: &'a RealmPolicy, input: &Input<'_>) -> Option<&'a AnonymousPolicy> {
    let a = policy.anonymous.as_ref()?;
    match (input.identity.kind, input.route.operation) {
        (TokenKind::Anonymous, Operation::Create) => Some(a),
        (TokenKind::RegistrationAccess, Operation::Update) if a.registration_access => Some(a),
        _ => None,
    }
}

/// Whether the request is an anonymous create the gateway forwards with its own credential.
pub fn lends_credential(snap: &Snapshot, input: &Input<'_>) -> bool {
    let policy = snap.for_realm(&input.route.realm);
    input.identity.kind == TokenKind::Anonymous
        && input.route.operation == Operation::Create
        && input.route.provider == "openid-connect"
        && policy.anonymous.is_some()
}

/// The per-address and realm-wide anonymous quotas (the same counters as `[*.quota]`).
pub(super) fn anonymous_quotas(ev: &mut Eval<'_>, a: &AnonymousPolicy, input: &Input<'_>, quotas: &Quotas) {
    let now = Instant::now();
    let by_address = quotas.take(ev.realm, &address_caller(input.peer), a.quota.value, now, false);
    if let Some(wait) = by_address.over {
        let secs = wait.as_secs().max(1);
        let msg = format!(
            "This address ({}) has registered {} clients anonymously in realm {} within {}s, the most allowed; try again in {secs}s, or register with an initial access token.",
            input.peer,
            a.quota.value.creates,
            ev.realm,
            a.quota.value.window.as_secs()
        );
        quota_refusal(ev, &a.quota, msg, secs, "address");
        return;
    }
    ev.decision.quota_slots.extend(by_address.slot);
    let realm_wide = quotas.take(ev.realm, REALM_CALLER, a.realm_quota.value, now, false);
    if let Some(wait) = realm_wide.over {
        if let Some(s) = ev.decision.quota_slots.pop() {
            quotas.refund(s);
        }
        let secs = wait.as_secs().max(1);
        let msg = format!(
            "Realm {} has taken its {} anonymous registrations per {}s; try again in {secs}s, or register with an initial access token.",
            ev.realm,
            a.realm_quota.value.creates,
            a.realm_quota.value.window.as_secs()
        );
        quota_refusal(ev, &a.realm_quota, msg, secs, "realm");
        return;
    }
    ev.decision.quota_slots.extend(realm_wide.slot);
}

fn quota_refusal(ev: &mut Eval<'_>, rule: &Rule<QuotaPolicy>, msg: String, secs: u64, scope: &str) {
    let r = Refusal::new(Reason::QuotaExceeded, msg)
        .detail("quota", scope)
        .detail("creates", rule.value.creates)
        .detail("window_seconds", rule.value.window.as_secs())
        .retry_after(secs);
    let shadow = std::mem::replace(&mut ev.global_shadow, false);
    ev.fail(rule, r);
    ev.global_shadow = shadow;
}

/// No credential where one is needed, answered as Keycloak would: 403 `insufficient_scope` on
/// create (its Trusted Hosts policy refuses), 401 `invalid_token` on a client (`Not authorized`).
pub(super) fn anonymous_refusal(realm: &str, operation: &str, allowed: &[&str]) -> Refusal {
    let (msg, face) = if operation == "create" {
        (
            format!(
                "Anonymous registration is not enabled in realm {realm}: register with an initial access token or a service-account token (Authorization: Bearer <token>), or ask the operator to enable it ([realms.{realm}.anonymous] in the gateway policy)."
            ),
            (403, "insufficient_scope"),
        )
    } else {
        (
            format!(
                "No credential was sent: to {operation} a client, send its registration access token (Authorization: Bearer <registration_access_token> from the create response)."
            ),
            (401, "invalid_token"),
        )
    };
    Refusal::new(Reason::AnonymousNotAllowed, msg)
        .detail("token_kind", TokenKind::Anonymous.as_str())
        .detail("allowed_token_kinds", allowed.to_vec())
        .face(face.0, face.1)
}
