use super::*;
use http::HeaderMap;

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

fn settings(text: &str) -> Settings {
    let raw: crate::config::FileConfig = toml::from_str(text).unwrap();
    crate::config::load::build(raw, None, &crate::config::Overrides::default()).unwrap()
}

fn request(host: &str, extra: &[(&'static str, &'static str)]) -> Request<()> {
    let mut b = Request::post("/realms/demo/clients-registrations/openid-connect").header("host", host);
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap()
}

#[test]
fn the_default_accepts_the_issuer_keycloak_derives_from_the_request() {
    let s = settings("upstream = \"http://keycloak:8080\"\n");
    let peer: IpAddr = "203.0.113.9".parse().unwrap();
    let req = request("gw.example.com:8000", &[]);
    assert_eq!(
        accepted_issuers(&req, &s, peer, false, "demo"),
        [
            "http://keycloak:8080/realms/demo",       // public_url (= upstream)
            "http://gw.example.com:8000/realms/demo"  // proxy-headers or Host: the same here
        ]
    );
    // TLS towards the gateway: with proxy-headers Keycloak sees https, without it http.
    let iss = accepted_issuers(&request("sso.example.com:443", &[]), &s, peer, true, "demo");
    assert_eq!(
        iss[1..],
        [
            "https://sso.example.com/realms/demo",
            "http://sso.example.com:443/realms/demo"
        ]
    );
    // An untrusted peer's own X-Forwarded-* are replaced, so they do not count.
    let spoof = request(
        "gw:80",
        &[("x-forwarded-host", "evil.example"), ("x-forwarded-proto", "https")],
    );
    assert_eq!(
        accepted_issuers(&spoof, &s, peer, false, "demo")[1..],
        ["http://gw/realms/demo"]
    );
}

#[test]
fn trusted_proxies_pin_and_paths_shape_the_accepted_issuers() {
    let s = settings(
        "upstream = \"http://keycloak:8080/kc\"\npath_prefix = \"/auth\"\npreserve_host = false\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
    );
    let lb: IpAddr = "10.1.2.3".parse().unwrap();
    let req = request(
        "gw:8000",
        &[
            ("x-forwarded-host", "sso.example.com"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-port", "8443"),
        ],
    );
    assert_eq!(
        accepted_issuers(&req, &s, lb, false, "demo"),
        [
            "http://keycloak:8080/kc/realms/demo",
            "https://sso.example.com:8443/kc/auth/realms/demo",
            "http://keycloak:8080/kc/auth/realms/demo"
        ]
    );
    let pinned = settings("[realms.demo]\nissuer = [\"https://a/realms/demo\", \"https://b/realms/demo\"]\n");
    let req = request("gw:8000", &[]);
    assert_eq!(
        accepted_issuers(&req, &pinned, lb, false, "demo"),
        ["https://a/realms/demo", "https://b/realms/demo"]
    );
    assert!(pinned.issuer_pinned("demo") && !pinned.issuer_pinned("other"));
}

#[test]
fn ip_text_writes_what_display_writes() {
    let mut ips: Vec<IpAddr> = [
        "0.0.0.0",
        "255.255.255.255",
        "10.0.9.100",
        "127.0.0.1",
        "::1",
        "2001:db8::7",
        "::ffff:1.2.3.4",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    for o in 0..=255u8 {
        ips.push(IpAddr::from([o, 255 - o, o / 3, o.wrapping_mul(7)]));
    }
    for ip in ips {
        assert_eq!(ip_text(ip), ip.to_string());
    }
}

#[test]
fn stripping_keeps_the_order_the_old_removals_left() {
    // Removal moves the last header into the gap, so the order depends on what goes in which
    // order: Connection's names first, as listed, then the fixed list.
    let mut m = h(&[
        ("te", "trailers"),
        ("x-a", "1"),
        ("connection", " Keep-Alive ,,X-Custom-Hop\t"),
        ("x-custom-hop", "1"),
        ("x-b", "2"),
        ("connection", "close"),
        ("upgrade", "h2c"),
        ("x-c", "3"),
        ("keep-alive", "timeout=5"),
        ("x-d", "4"),
    ]);
    let mut old = m.clone();
    let named: Vec<String> = ["keep-alive", "x-custom-hop", "close"].map(String::from).to_vec();
    for n in &named {
        old.remove(n.as_str());
    }
    for n in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        old.remove(n);
    }
    strip_hop_by_hop(&mut m);
    let keys = |m: &HeaderMap| m.keys().map(|k| k.as_str().to_owned()).collect::<Vec<_>>();
    assert_eq!(keys(&m), keys(&old));
    let mut left = keys(&m);
    left.sort();
    assert_eq!(left, ["x-a", "x-b", "x-c", "x-d"]);
}

#[test]
fn a_trusted_chain_keeps_every_prior_value_in_order() {
    let mut m = HeaderMap::new();
    m.append("x-forwarded-for", HeaderValue::from_static("1.1.1.1"));
    m.append("x-forwarded-for", HeaderValue::from_static(""));
    m.append("x-forwarded-for", HeaderValue::from_bytes(b"\xff").unwrap()); // not text: dropped
    m.append("x-forwarded-for", HeaderValue::from_static("10.0.0.9"));
    m.append("x-real-ip", HeaderValue::from_static("1.1.1.1"));
    set_forwarded(&mut m, "10.0.0.5".parse().unwrap(), "https", Some("a\"b\\c:8443"), true);
    assert_eq!(m["x-forwarded-for"], "1.1.1.1, , 10.0.0.9, 10.0.0.5");
    assert_eq!(m.get_all("x-forwarded-for").iter().count(), 1);
    assert_eq!(m["forwarded"], "for=10.0.0.5;proto=https;host=\"abc:8443\"");
    assert_eq!(m["x-forwarded-proto"], "https");
    assert_eq!(m["x-forwarded-host"], "a\"b\\c:8443");
    assert_eq!(m["x-real-ip"], "1.1.1.1"); // a trusted proxy's are kept
    // From an untrusted peer, X-Real-IP goes and one value of each is set.
    set_forwarded(&mut m, "::1".parse().unwrap(), "http", None, false);
    assert_eq!(m["x-forwarded-for"], "::1");
    assert!(m.get("x-forwarded-host").is_none()); // removed, not set again: no host
    assert!(m.get("x-real-ip").is_none());
}

#[test]
fn upstream_uris_join_the_base_path() {
    let s = settings("upstream = \"https://kc.internal:8443/kc/\"\n");
    let u = upstream_uri(&s, &"/realms/demo/x?a=1&b=%20".parse().unwrap()).unwrap();
    assert_eq!(u.to_string(), "https://kc.internal:8443/kc/realms/demo/x?a=1&b=%20");
    assert_eq!(u.query(), Some("a=1&b=%20"));
    let s = settings("upstream = \"http://kc:8080\"\n");
    let u = upstream_uri(&s, &"/realms/demo?q".parse().unwrap()).unwrap();
    assert_eq!(
        (u.scheme_str(), u.authority().map(|a| a.as_str())),
        (Some("http"), Some("kc:8080"))
    );
    assert_eq!(u.path_and_query().map(|p| p.as_str()), Some("/realms/demo?q"));
    assert!(upstream_uri(&s, &"*".parse().unwrap()).is_err());
}
