//! Stage 0, request target (RFC 9112 §3.2): the gateway serves origin-form targets
//! (`/path?query`) only. `OPTIONS *` is answered here and never forwarded; every other
//! asterisk-form target, authority-form (`CONNECT host:port`) and an HTTP/1 absolute-form
//! target that names another host than `Host` is refused. The upstream URI is then built from
//! the parsed origin-form path and query alone (`upstream::prepare`).

use http::header::{ALLOW, CONTENT_LENGTH, HOST};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};

use crate::error::{Detail, Reason, Refusal};
use crate::net::{Body, full};

/// The methods the gateway (and Keycloak behind it) serves, for `OPTIONS *`.
pub const ALLOWED: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS";

fn invalid(form: &str, target: &str, why: &str) -> Refusal {
    let shown: String = target.chars().take(200).collect();
    Refusal::new(
        Reason::RequestTargetInvalid,
        format!("The request target `{shown}` is in {form}, which the gateway does not forward: {why}."),
    )
    .detail(Detail::Target, shown)
    .detail(Detail::Form, form)
}

/// Checks the request target. `Ok(Some(_))` is the gateway's own answer to `OPTIONS *`;
/// `Ok(None)` means the target is an origin-form path the later stages may route.
pub fn check<B>(req: &Request<B>) -> Result<Option<Response<Body>>, Refusal> {
    let uri = req.uri();
    let target = uri.to_string();
    let path = uri.path();
    if req.method() == Method::CONNECT {
        return Err(invalid(
            "authority-form",
            &target,
            "CONNECT opens a tunnel, and the gateway forwards HTTP requests only",
        ));
    }
    if path == "*" || uri.path_and_query().is_some_and(|pq| pq.as_str().starts_with('*')) {
        if req.method() == Method::OPTIONS && uri.query().is_none() && path == "*" {
            return Ok(Some(options_star()));
        }
        return Err(invalid(
            "asterisk-form",
            &target,
            "`*` is a target only for OPTIONS (asking about the server as a whole)",
        ));
    }
    if !path.starts_with('/') {
        return Err(invalid("an unknown form", &target, "the path must start with `/`"));
    }
    match (uri.scheme(), uri.authority()) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) if req.version() == Version::HTTP_2 || req.version() == Version::HTTP_3 => Ok(None),
        (Some(scheme), Some(authority)) => {
            let host = req.headers().get(HOST).and_then(|v| v.to_str().ok());
            let same_host = host.is_some_and(|h| h.eq_ignore_ascii_case(authority.as_str()));
            let web = matches!(scheme.as_str(), "http" | "https");
            if same_host && web {
                Ok(None)
            } else {
                Err(invalid(
                    "absolute-form",
                    &target,
                    "an absolute target must name the same host as the Host header (or send the path alone)",
                ))
            }
        }
        _ => Err(invalid(
            "authority-form",
            &target,
            "send the path alone, e.g. `/realms/…`",
        )),
    }
}

/// The answer to `OPTIONS *`: what the gateway serves, with no body.
fn options_star() -> Response<Body> {
    let mut resp = Response::new(full(""));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(ALLOW, HeaderValue::from_static(ALLOWED));
    resp.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, target: &str, host: Option<&str>) -> Request<()> {
        let mut b = Request::builder().method(method).uri(target);
        if let Some(h) = host {
            b = b.header(HOST, h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn origin_form_passes() {
        assert!(
            check(&req("POST", "/realms/demo/clients-registrations/default", None))
                .unwrap()
                .is_none()
        );
        assert!(check(&req("GET", "/?x=1", None)).unwrap().is_none());
    }

    #[test]
    fn options_star_is_answered() {
        let resp = check(&req("OPTIONS", "*", None)).unwrap().unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()[ALLOW], ALLOWED);
    }

    #[test]
    fn other_forms_are_refused() {
        for (m, t, host) in [
            ("POST", "*", None),
            ("GET", "*", Some("gw")),
            ("CONNECT", "keycloak:8080", None),
            ("CONNECT", "127.0.0.1:80", Some("127.0.0.1:80")),
            ("GET", "http://evil.example/realms/demo", Some("gw")),
            (
                "POST",
                "http://evil.example/realms/demo/clients-registrations/default",
                None,
            ),
            ("GET", "ftp://gw/x", Some("gw")),
        ] {
            let e = check(&req(m, t, host)).unwrap_err();
            assert_eq!(e.reason, Reason::RequestTargetInvalid, "{m} {t}");
            assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn absolute_form_naming_the_host_passes() {
        assert!(
            check(&req("GET", "http://gw:8000/realms/demo", Some("GW:8000")))
                .unwrap()
                .is_none()
        );
    }
}
