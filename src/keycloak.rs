//! What the gateway knows about Keycloak itself, in one place: the realm's management client and
//! the roles Keycloak demands per registration operation. Used by policy, rewrite and hints.

use crate::route::Operation;

/// The realm's management client: `realm-management`, or `master-realm` in the master realm.
pub(crate) fn management_client(realm: &str) -> &'static str {
    if realm == "master" {
        "master-realm"
    } else {
        "realm-management"
    }
}

/// Keycloak's own rule: a bearer token needs one of these management-client roles.
pub(crate) fn roles_for(op: Operation) -> &'static [&'static str] {
    match op {
        Operation::Create => &["create-client", "manage-clients"],
        Operation::Read => &["view-clients", "manage-clients"],
        _ => &["manage-clients"],
    }
}

/// The narrowest role Keycloak accepts for the operation (create when unknown).
pub(crate) fn narrowest_role(op: Option<Operation>) -> &'static str {
    roles_for(op.unwrap_or(Operation::Create))
        .first()
        .copied()
        .unwrap_or("manage-clients")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_realm_has_its_own_management_client() {
        assert_eq!(management_client("master"), "master-realm");
        assert_eq!(management_client("demo"), "realm-management");
    }

    #[test]
    fn narrowest_role_per_operation() {
        assert_eq!(narrowest_role(Some(Operation::Read)), "view-clients");
        assert_eq!(narrowest_role(None), "create-client");
        assert_eq!(narrowest_role(Some(Operation::Delete)), "manage-clients");
    }
}
