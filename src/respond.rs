//! The only place a `Refusal` becomes an HTTP response: one JSON shape for every error the
//! gateway returns, its own or rewritten from Keycloak, with RFC 6750 `WWW-Authenticate` on
//! 401 and 403 and `Retry-After` where a retry makes sense.

use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use serde_json::{Map, Value, json};

use crate::error::{Detail, Reason, Refusal};
use crate::hints::{HintCtx, describe, hint, required_details, take_missing};
use crate::net::{Body, full};

/// Makes a string safe for an RFC 6750 quoted `error_description` (no `"` or `\`, ASCII only):
/// arrows, ellipses, dashes and curly quotes get ASCII spellings, other characters become `?`.
pub fn header_safe(s: &str) -> String {
    let mut cleaned = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' | '\u{2018}' | '\u{2019}' | '\u{201c}' | '\u{201d}' => cleaned.push('\''),
            '\\' => cleaned.push('/'),
            '\u{2192}' => cleaned.push_str("->"),
            '\u{2026}' => cleaned.push_str("..."),
            '\u{2013}' | '\u{2014}' => cleaned.push('-'),
            c if (' '..='~').contains(&c) => cleaned.push(c),
            _ => cleaned.push('?'),
        }
    }
    match cleaned.char_indices().nth(HEADER_DESCRIPTION_MAX) {
        Some((i, _)) => format!("{}...", &cleaned[..i]),
        None => cleaned,
    }
}

/// The longest `error_description` in a `WWW-Authenticate` challenge, in characters.
pub const HEADER_DESCRIPTION_MAX: usize = 600;

/// The `error_description` and `hint` of a refusal. In debug builds (tests) a detail key the
/// reason requires (`hints::required_details`) that the refusal lacks is a panic: users would
/// otherwise read "(not known)" where a fact belongs.
pub fn texts(r: &Refusal, ctx: &HintCtx<'_>) -> (String, String) {
    take_missing();
    let description = describe(r, ctx);
    let hint = hint(r, ctx);
    let missing = take_missing();
    let required: Vec<&Detail> = missing
        .iter()
        .filter(|k| required_details(r.reason).contains(k))
        .collect();
    debug_assert!(
        required.is_empty(),
        "refusal {} lacks required detail keys {required:?}",
        r.reason.code()
    );
    (description, hint)
}

/// The JSON body of a refusal.
pub fn body_json(r: &Refusal, ctx: &HintCtx<'_>, request_id: &str) -> Value {
    let mut details = Map::new();
    if let Some(realm) = ctx.realm {
        details.insert(Detail::Realm.key().into(), realm.into());
    }
    if let Some(op) = ctx.operation {
        details.insert(Detail::Operation.key().into(), op.as_str().into());
    }
    if let Some(p) = ctx.provider {
        details.insert(Detail::Provider.key().into(), p.into());
    }
    if let Some(k) = ctx.kind {
        details.insert(Detail::TokenKind.key().into(), k.as_str().into());
    }
    details.extend(r.details.clone());
    if let Some(rule) = &r.rule {
        details.insert("rule".into(), rule.as_str().into());
    }
    let (description, hint) = texts(r, ctx);
    let mut out = json!({
        "error": r.oauth_error(),
        "error_description": description,
        "hint": hint,
        "reason": r.reason.code(),
        "details": details,
        "request_id": request_id,
    });
    if let Some(u) = &r.upstream {
        out["upstream"] = json!({ "status": u.status, "body": u.body });
    }
    out
}

/// Builds the response for a refusal.
pub fn refusal(r: &Refusal, ctx: &HintCtx<'_>, request_id: &str) -> Response<Body> {
    let status = r.status();
    let body = body_json(r, ctx, request_id);
    let mut resp = Response::new(full(body.to_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if r.face.is_some() {
        // Answered as Keycloak answers (which sends no challenge on this endpoint): a challenge
        // would make OAuth client libraries report the header instead of error_description.
    } else if r.reason == Reason::AnonymousNotAllowed {
        // No credential was sent: RFC 6750 §3.1 asks for a bare challenge, without an error code.
        let realm = header_safe(ctx.realm.unwrap_or("keycloak"));
        if let Ok(v) = HeaderValue::from_str(&format!("Bearer realm=\"{realm}\"")) {
            h.insert(WWW_AUTHENTICATE, v);
        }
    } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        let mut challenge = format!(
            "Bearer error=\"{}\", error_description=\"{}\"",
            r.oauth_error(),
            header_safe(body["error_description"].as_str().unwrap_or_default())
        );
        if let Some(scope) = &r.scope {
            challenge.push_str(&format!(", scope=\"{}\"", header_safe(scope)));
        }
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            h.insert(WWW_AUTHENTICATE, v);
        }
    }
    if let Some(secs) = r.retry_after {
        h.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::UpstreamAnswer;

    fn ctx() -> HintCtx<'static> {
        HintCtx {
            realm: Some("demo"),
            public_url: "http://gw",
            ..HintCtx::default()
        }
    }

    #[test]
    fn shape_and_challenge() {
        let r = Refusal::new(Reason::MissingRole, "The token has none of \"x\".")
            .with_scope("realm-management/create-client");
        let resp = refusal(&r, &ctx(), "rid-1");
        assert_eq!(resp.status(), 403);
        let www = resp.headers()[WWW_AUTHENTICATE].to_str().unwrap();
        assert!(www.starts_with("Bearer error=\"insufficient_scope\""), "{www}");
        assert!(www.contains("scope=\"realm-management/create-client\""));
        assert!(!www.contains("\\\""));
        let v = body_json(&r, &ctx(), "rid-1");
        for key in ["error", "error_description", "hint", "reason", "details", "request_id"] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert_eq!(v["details"]["realm"], "demo");
        assert!(v.get("upstream").is_none());
    }

    #[test]
    fn upstream_kept() {
        let mut r = Refusal::new(Reason::InitialTokenExhausted, "x");
        r.upstream = Some(Box::new(UpstreamAnswer {
            status: 401,
            body: json!({"error": "invalid_token"}),
        }));
        let v = body_json(&r, &ctx(), "r");
        assert_eq!(v["upstream"]["status"], 401);
        let resp = refusal(&r.clone().retry_after(3), &ctx(), "r");
        assert_eq!(resp.headers()[RETRY_AFTER], "3");
    }

    #[test]
    fn header_safety() {
        assert_eq!(header_safe("a \"b\" \\ é"), "a 'b' / ?");
        assert!(header_safe(&"x".repeat(1000)).len() < HEADER_DESCRIPTION_MAX + 10);
        assert_eq!(header_safe("Clients → a … b — c"), "Clients -> a ... b - c");
    }
}
