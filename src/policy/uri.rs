//! Redirect-URI rules: allowed schemes and hosts (with `*.example.com` wildcards on a dot
//! boundary), loopback with any port for native apps (RFC 8252), no fragments, no wildcards
//! unless allowed, and a maximum count.

/// A parsed redirect URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectUri {
    /// Lower-cased scheme.
    pub scheme: String,
    /// Lower-cased host without brackets or port (empty when there is no authority).
    pub host: String,
    /// Whether the URI has a fragment.
    pub fragment: bool,
    /// Whether the URI contains `*`.
    pub wildcard: bool,
}

/// Parses `scheme:[//authority]path[?query][#fragment]`; `Err` says what is wrong.
pub fn parse(uri: &str) -> Result<RedirectUri, String> {
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it contains whitespace or control characters".into());
    }
    let (scheme, rest) = uri.split_once(':').ok_or("it has no scheme")?;
    let valid_scheme = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid_scheme {
        return Err(format!("`{scheme}` is not a valid scheme"));
    }
    let scheme = scheme.to_ascii_lowercase();
    let host = match rest.strip_prefix("//") {
        Some(after) => {
            let authority = after.split(['/', '?', '#']).next().unwrap_or("");
            if authority.contains('@') {
                return Err("it contains user information (user@host)".into());
            }
            if authority.contains(['\\', '%']) {
                return Err(
                    "its host contains a backslash or a percent-escape, which browsers read differently".into(),
                );
            }
            host_of(authority)?
        }
        None => String::new(),
    };
    if (scheme == "http" || scheme == "https") && host.is_empty() {
        return Err("an http(s) URI needs a host".into());
    }
    Ok(RedirectUri {
        scheme,
        host,
        fragment: uri.contains('#'),
        wildcard: uri.contains('*'),
    })
}

fn host_of(authority: &str) -> Result<String, String> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6.split_once(']').ok_or("an IPv6 host is missing its closing ]")?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or("junk after the IPv6 host")?),
            };
            (h, port)
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    if let Some(p) = port.filter(|p| p.parse::<u16>().is_err() && !p.is_empty()) {
        return Err(format!("`{p}` is not a port (0-65535)"));
    }

    Ok(host.trim_end_matches('.').to_ascii_lowercase())
}

/// Schemes refused in every redirect URI, whatever the policy says (Keycloak refuses them too).
pub const DANGEROUS_SCHEMES: [&str; 4] = ["javascript", "data", "vbscript", "file"];

/// Whether `host` is a loopback host: `localhost`, `127.0.0.0/8` or `::1`.
pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        || host.parse::<std::net::Ipv6Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether `host` matches `pattern`: exact, or `*.example.com` for any subdomain of
/// `example.com` (on a dot boundary; `example.com` itself needs its own entry).
pub fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(domain) => {
            host.len() > domain.len() + 1 && host.ends_with(domain) && host[..host.len() - domain.len()].ends_with('.')
        }
        None => pattern == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kinds_of_uri() {
        let u = parse("https://App.Example.com:8443/cb?x=1").unwrap();
        assert_eq!(
            (u.scheme.as_str(), u.host.as_str(), u.fragment),
            ("https", "app.example.com", false)
        );
        assert_eq!(parse("http://[::1]:33418/callback").unwrap().host, "::1");
        assert_eq!(parse("http://127.0.0.1:50000/cb").unwrap().host, "127.0.0.1");
        let native = parse("com.example.app:/oauth2redirect").unwrap();
        assert_eq!((native.scheme.as_str(), native.host.as_str()), ("com.example.app", ""));
        assert!(parse("https://a.example.com/cb#frag").unwrap().fragment);
        assert!(parse("https://a.example.com/*").unwrap().wildcard);
    }

    #[test]
    fn refuses_bad_uris() {
        for bad in [
            "no-scheme",
            "https:///nohost",
            "https://user@evil.com/cb",
            "1http://x",
            "https://a b/cb",
            "https://x:port/cb",
            "https://x:99999/cb",
            "https://evil.com\\.app.example.com/cb",
            "https://evil%2ecom/cb",
            "http://[::1/cb",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wildcard_hosts_need_a_dot_boundary() {
        assert!(host_matches("*.example.com", "app.example.com"));
        assert!(host_matches("*.example.com", "a.b.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "evilexample.com"));
        assert!(!host_matches("*.example.com", "example.com.evil.org"));
        assert!(host_matches("example.com", "example.com"));
    }

    #[test]
    fn loopback() {
        assert!(is_loopback("127.0.0.1") && is_loopback("127.1.2.3") && is_loopback("::1") && is_loopback("localhost"));
        assert!(!is_loopback("127.example.com") && !is_loopback("10.0.0.1"));
    }
}
