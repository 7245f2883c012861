//! The anonymous-registration rules of the policy stage: which requests they govern, and the
//! refusal of a request without a credential, answered as Keycloak answers it. Never shadowed
//! (the quotas they add are counted in `eval::quota`).

use super::Input;
use crate::error::{Detail, Reason, Refusal};
use crate::policy::anonymous::AnonymousPolicy;
use crate::policy::snapshot::{RealmPolicy, Snapshot};
use crate::route::Operation;
use crate::token::TokenKind;

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
        .detail(Detail::TokenKind, TokenKind::Anonymous.as_str())
        .detail(Detail::AllowedTokenKinds, allowed.to_vec())
        .face(face.0, face.1)
}
