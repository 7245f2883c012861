use super::*;

fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.append(*k, HeaderValue::from_static(v));
    }
    m
}

#[test]
fn hop_by_hop_and_connection_named_headers_go() {
    let mut m = h(&[
        ("connection", "keep-alive, X-Secret-Hop"),
        ("keep-alive", "timeout=5"),
        ("x-secret-hop", "1"),
        ("te", "trailers"),
        ("trailer", "x"),
        ("upgrade", "websocket"),
        ("proxy-authorization", "Basic x"),
        ("x-keep", "yes"),
        ("authorization", "Bearer t"),
    ]);
    strip_hop_by_hop(&mut m);
    let left: Vec<&str> = m.keys().map(|k| k.as_str()).collect();
    assert_eq!(left, ["x-keep", "authorization"]);
}

#[test]
fn connection_may_not_name_checked_headers() {
    for bad in ["keep-alive, Authorization", "host", "X-Forwarded-For", "content-length"] {
        let mut m = HeaderMap::new();
        m.insert("connection", HeaderValue::from_str(bad).unwrap());
        assert_eq!(
            check_connection(&m).unwrap_err().reason,
            Reason::ConnectionHeaderInvalid,
            "{bad}"
        );
    }
    let m = h(&[("connection", "keep-alive, x-foo")]);
    assert!(check_connection(&m).is_ok());
}

#[test]
fn untrusted_peer_headers_are_overwritten() {
    let mut m = h(&[
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-port", "443"),
        ("forwarded", "for=6.6.6.6"),
    ]);
    set_forwarded(
        &mut m,
        "10.1.2.3".parse().unwrap(),
        "http",
        Some("gw.example:8000"),
        false,
    );
    assert_eq!(m["x-forwarded-for"], "10.1.2.3");
    assert_eq!(m["x-forwarded-proto"], "http");
    assert_eq!(m["x-forwarded-host"], "gw.example:8000");
    assert_eq!(m["forwarded"], "for=10.1.2.3;proto=http;host=\"gw.example:8000\"");
    assert!(m.get("x-forwarded-port").is_none());
    assert_eq!(m.get_all("x-forwarded-for").iter().count(), 1);
}

#[test]
fn trusted_peer_headers_are_appended() {
    let mut m = h(&[
        ("x-forwarded-for", "1.1.1.1"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "sso.example.com"),
        ("forwarded", "for=1.1.1.1;proto=https"),
    ]);
    set_forwarded(&mut m, "10.0.0.5".parse().unwrap(), "http", Some("internal:8000"), true);
    assert_eq!(m["x-forwarded-for"], "1.1.1.1, 10.0.0.5");
    assert_eq!(m["x-forwarded-proto"], "https");
    assert_eq!(m["x-forwarded-host"], "sso.example.com");
    assert_eq!(
        m["forwarded"],
        "for=1.1.1.1;proto=https, for=10.0.0.5;proto=http;host=\"internal:8000\""
    );
}

#[test]
fn client_ip_behind_trusted_proxies() {
    let trusted: Vec<crate::config::Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
    let peer: IpAddr = "10.0.0.5".parse().unwrap();
    let m = h(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.9")]);
    assert_eq!(client_ip(peer, &m, &trusted), "1.2.3.4".parse::<IpAddr>().unwrap());
    // An untrusted peer's header is ignored.
    assert_eq!(
        client_ip("8.8.8.8".parse().unwrap(), &m, &trusted),
        "8.8.8.8".parse::<IpAddr>().unwrap()
    );
    // No header: the proxy itself.
    assert_eq!(client_ip(peer, &HeaderMap::new(), &trusted), peer);
    // Junk stops the walk at the last good hop.
    let m = h(&[("x-forwarded-for", "1.2.3.4, junk, 10.0.0.9")]);
    assert_eq!(client_ip(peer, &m, &trusted), "10.0.0.9".parse::<IpAddr>().unwrap());
}

#[test]
fn ipv6_is_quoted_in_forwarded() {
    let mut m = HeaderMap::new();
    set_forwarded(&mut m, "::1".parse().unwrap(), "https", None, false);
    assert_eq!(m["forwarded"], "for=\"[::1]\";proto=https");
    assert_eq!(m["x-forwarded-for"], "::1");
}
