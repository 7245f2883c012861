//! Label values: bounded by construction (status classes, a fixed list of methods, outcomes).

/// The `method` label: the method's name when it is one of the fixed list, else `OTHER`.
pub fn method_label(method: &http::Method) -> &'static str {
    use http::Method as M;
    match *method {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::DELETE => "DELETE",
        M::OPTIONS => "OPTIONS",
        M::HEAD => "HEAD",
        M::PATCH => "PATCH",
        _ => "OTHER",
    }
}

/// The `outcome` label of `decisions_total`: what became of a registration request, apart from
/// the gateway's verdict. `refused`: the answer is a refusal; `forwarded`: the request was sent
/// to Keycloak; `upstream`: Keycloak's status, when it answered.
pub fn outcome(refused: bool, forwarded: bool, upstream: Option<u16>) -> &'static str {
    match (forwarded, upstream) {
        (false, _) if refused => "refused_by_gateway",
        (false, _) => "answered_by_gateway", // a CORS preflight
        (true, None) => "upstream_error",
        (true, Some(s)) if s < 400 => "succeeded",
        (true, Some(_)) => "refused_by_keycloak",
    }
}

/// `2xx`, `4xx`, ... for a status code.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_and_methods() {
        assert_eq!(outcome(true, false, None), "refused_by_gateway");
        assert_eq!(outcome(false, false, None), "answered_by_gateway");
        assert_eq!(outcome(true, true, None), "upstream_error");
        assert_eq!(outcome(false, true, Some(201)), "succeeded");
        assert_eq!(outcome(true, true, Some(400)), "refused_by_keycloak");
        assert_eq!(method_label(&http::Method::POST), "POST");
        let odd = http::Method::from_bytes(b"PROPFIND").unwrap();
        assert_eq!(method_label(&odd), "OTHER");
        assert_eq!(method_label(&http::Method::TRACE), "OTHER");
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(201), "2xx");
        assert_eq!(status_class(404), "4xx");
        assert_eq!(status_class(999), "5xx");
    }
}
