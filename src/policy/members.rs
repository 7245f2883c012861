//! The members Keycloak's `openid-connect` provider understands, and dropping the others.
//!
//! RFC 7591 §2 says a server MUST ignore client metadata it does not understand; Keycloak instead
//! answers 400 `Unrecognized field`. The list is the field set of Keycloak's
//! `OIDCClientRepresentation` (Jackson field visibility, no other properties), identical in
//! 26.5.6 and 26.7.3 (read from both distributions' `keycloak-core` jars).

use serde_json::{Map, Value};

/// Every member `OIDCClientRepresentation` deserialises, in Keycloak's declaration order.
pub const KEYCLOAK_OIDC_MEMBERS: &[&str] = &[
    "redirect_uris",
    "token_endpoint_auth_method",
    "token_endpoint_auth_signing_alg",
    "grant_types",
    "response_types",
    "application_type",
    "client_id",
    "client_secret",
    "client_name",
    "client_uri",
    "logo_uri",
    "scope",
    "contacts",
    "tos_uri",
    "policy_uri",
    "jwks_uri",
    "jwks",
    "sector_identifier_uri",
    "subject_type",
    "id_token_signed_response_alg",
    "id_token_encrypted_response_alg",
    "id_token_encrypted_response_enc",
    "userinfo_signed_response_alg",
    "userinfo_encrypted_response_alg",
    "userinfo_encrypted_response_enc",
    "request_object_signing_alg",
    "request_object_encryption_alg",
    "request_object_encryption_enc",
    "default_max_age",
    "require_auth_time",
    "default_acr_values",
    "initiate_login_uri",
    "request_uris",
    "tls_client_certificate_bound_access_tokens",
    "tls_client_auth_subject_dn",
    "dpop_bound_access_tokens",
    "post_logout_redirect_uris",
    "software_id",
    "software_version",
    "client_id_issued_at",
    "client_secret_expires_at",
    "registration_client_uri",
    "registration_access_token",
    "backchannel_logout_uri",
    "backchannel_logout_session_required",
    "backchannel_logout_revoke_offline_tokens",
    "backchannel_token_delivery_mode",
    "backchannel_client_notification_endpoint",
    "backchannel_authentication_request_signing_alg",
    "authorization_signed_response_alg",
    "authorization_encrypted_response_alg",
    "authorization_encrypted_response_enc",
    "require_pushed_authorization_requests",
    "frontchannel_logout_uri",
    "frontchannel_logout_session_required",
];

/// Removes the members Keycloak does not know; returns their names, sorted.
pub fn drop_unknown(body: &mut Map<String, Value>) -> Vec<String> {
    let unknown: Vec<String> = body
        .keys()
        .filter(|k| !KEYCLOAK_OIDC_MEMBERS.contains(&k.as_str()))
        .cloned()
        .collect();
    for k in &unknown {
        body.remove(k);
    }
    unknown
}

/// The dropped names as one header- and log-safe line: names made of `A-Z a-z 0-9 _ - .` (at
/// most 64 characters) are listed, up to 16 of them; the others are counted.
pub fn describe(dropped: &[String]) -> String {
    let plain = |n: &&String| {
        n.len() <= 64
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    };
    let shown: Vec<&str> = dropped.iter().filter(plain).take(16).map(String::as_str).collect();
    let others = dropped.len() - shown.len();
    let mut out = shown.join(", ");
    if others > 0 {
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(&format!("({others} other)"));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn unknown_members_are_dropped_and_known_ones_kept() {
        let mut m = json!({"client_name": "x", "resource": "https://mcp.example/", "scope": "a",
                           "software_statement": "e.y.z", "redirect_uris": []})
        .as_object()
        .unwrap()
        .clone();
        assert_eq!(drop_unknown(&mut m), ["resource", "software_statement"]);
        let keys: Vec<&String> = m.keys().collect();
        assert_eq!(keys, ["client_name", "redirect_uris", "scope"]);
    }

    #[test]
    fn names_are_made_safe_for_headers() {
        let d = vec!["resource".to_owned(), "bad\r\nname".to_owned(), "x".repeat(65)];
        assert_eq!(describe(&d), "resource, (2 other)");
        assert_eq!(describe(&[]), "");
    }

    #[test]
    fn every_rfc7591_member_keycloak_knows_is_listed() {
        for m in crate::policy::metadata::RFC7591_FIELDS {
            if *m != "software_statement" {
                assert!(KEYCLOAK_OIDC_MEMBERS.contains(m), "{m}");
            }
        }
    }
}
