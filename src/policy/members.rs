//! The members Keycloak's `openid-connect` provider understands, and dropping the others.
//!
//! RFC 7591 §2 says a server MUST ignore client metadata it does not understand; Keycloak instead
//! answers 400 `Unrecognized field`. The members it knows are the field set of Keycloak's
//! `OIDCClientRepresentation` (Jackson field visibility, no other properties), identical in
//! 26.5.6 and 26.7.3 (read from both distributions' `keycloak-core` jars): the field inventory's
//! RFC 7591 list without `software_statement`.

use serde_json::{Map, Value};

use super::metadata::RFC7591_FIELDS;

/// Members of RFC 7591 bodies that `OIDCClientRepresentation` does not deserialise.
const KEYCLOAK_UNKNOWN: &[&str] = &["software_statement"];

/// Whether Keycloak's `openid-connect` provider deserialises member `name`: every member of the
/// field inventory's `RFC7591_FIELDS` but `software_statement`.
pub fn keycloak_knows(name: &str) -> bool {
    RFC7591_FIELDS.contains(&name) && !KEYCLOAK_UNKNOWN.contains(&name)
}

/// Removes the members Keycloak does not know; returns their names, sorted.
pub fn drop_unknown(body: &mut Map<String, Value>) -> Vec<String> {
    let unknown: Vec<String> = body.keys().filter(|k| !keycloak_knows(k)).cloned().collect();
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
}
