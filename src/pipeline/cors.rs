//! CORS for browser clients on the registration paths, per the realm's `[*.cors]` policy: the
//! gateway answers preflights itself, stamps `Access-Control-Allow-Origin` on every answer
//! (its own refusals included) for allowed origins, and keeps `Origin` away from Keycloak,
//! whose own CORS check would refuse origins it was not told about.

use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::error::{Detail, Reason, Refusal};
use crate::net::{Body, empty};
use crate::policy::anonymous::CorsPolicy;
use crate::route::RegRoute;

/// Response headers a browser script may read.
pub const EXPOSE: &str = "Location, Retry-After, WWW-Authenticate, X-Request-Id, DCR-Gateway-Dropped-Members";
/// Request headers a browser script may send.
pub const ALLOW_HEADERS: &str = "Authorization, Content-Type, Accept, X-Request-Id";
/// Methods of the registration endpoint.
pub const ALLOW_METHODS: &str = "GET, POST, PUT, DELETE, OPTIONS";

/// The request's `Origin`, when the policy allows it.
pub fn allowed_origin(cors: &CorsPolicy, headers: &HeaderMap) -> Option<String> {
    let origin = headers.get(ORIGIN)?.to_str().ok()?;
    cors.allows(origin).then(|| origin.to_owned())
}

/// Answers a preflight (`OPTIONS`) on a registration path.
pub fn preflight(cors: &CorsPolicy, route: &RegRoute, headers: &HeaderMap) -> Result<Response<Body>, Refusal> {
    let Some(origin) = allowed_origin(cors, headers) else {
        let sent = headers.get(ORIGIN).and_then(|v| v.to_str().ok()).unwrap_or("");
        let allowed: Vec<&str> = cors.origins.value.iter().map(String::as_str).collect();
        let shown: String = sent.chars().take(200).collect();
        return Err(Refusal::new(
            Reason::CorsOriginNotAllowed,
            format!(
                "Origin `{shown}` may not call the registration endpoint of realm {} from a browser; allowed origins: {}.",
                route.realm,
                allowed.join(", ")
            ),
        )
        .detail(Detail::Origin, shown)
        .detail(Detail::AllowedOrigins, allowed)
        .with_rule(cors.origins.origin.clone()));
    };
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    h.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOW_METHODS));
    h.insert(ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOW_HEADERS));
    h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from(cors.max_age.as_secs()));
    decorate(&mut resp, &origin);
    resp.headers_mut().append(
        VARY,
        HeaderValue::from_static("Access-Control-Request-Method, Access-Control-Request-Headers"),
    );
    Ok(resp)
}

/// Lets the browser read this answer from `origin` (replacing any CORS headers Keycloak set).
pub fn decorate(resp: &mut Response<Body>, origin: &str) {
    let h = resp.headers_mut();
    for name in [
        ACCESS_CONTROL_ALLOW_ORIGIN,
        ACCESS_CONTROL_EXPOSE_HEADERS,
        http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
    ] {
        h.remove(name);
    }
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE));
        h.append(VARY, HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::*;
    use crate::policy::snapshot::Rule;
    use crate::route::Operation;

    fn policy() -> CorsPolicy {
        CorsPolicy {
            origins: Rule::new(
                BTreeSet::from(["https://app.example.com".to_owned()]),
                "realms.demo.cors.origins",
            ),
            max_age: Duration::from_secs(600),
        }
    }

    fn route() -> RegRoute {
        RegRoute {
            realm: "demo".into(),
            provider: "openid-connect".into(),
            client_id: None,
            operation: Operation::Preflight,
        }
    }

    #[test]
    fn preflight_for_allowed_origins_only() {
        let mut h = HeaderMap::new();
        h.insert(ORIGIN, HeaderValue::from_static("https://App.Example.com"));
        let resp = preflight(&policy(), &route(), &h).unwrap();
        assert_eq!(resp.status(), 204);
        assert_eq!(resp.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "https://App.Example.com");
        assert_eq!(resp.headers()[ACCESS_CONTROL_MAX_AGE], "600");
        assert!(
            resp.headers()[ACCESS_CONTROL_ALLOW_HEADERS]
                .to_str()
                .unwrap()
                .contains("Authorization")
        );
        h.insert(ORIGIN, HeaderValue::from_static("https://evil.example"));
        let r = preflight(&policy(), &route(), &h).unwrap_err();
        assert_eq!(r.reason, Reason::CorsOriginNotAllowed);
        assert!(r.description.contains("https://app.example.com"), "{}", r.description);
        assert!(preflight(&policy(), &route(), &HeaderMap::new()).is_err());
    }

    #[test]
    fn decorate_replaces_upstream_cors() {
        let mut resp = Response::new(empty());
        resp.headers_mut()
            .insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        decorate(&mut resp, "https://app.example.com");
        let all: Vec<_> = resp.headers().get_all(ACCESS_CONTROL_ALLOW_ORIGIN).iter().collect();
        assert_eq!(all, ["https://app.example.com"]);
        assert!(
            resp.headers()[ACCESS_CONTROL_EXPOSE_HEADERS]
                .to_str()
                .unwrap()
                .contains("Location")
        );
    }
}
