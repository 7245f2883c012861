//! Small value types used in configuration: durations, CIDR blocks, base URLs, byte sizes.
//!
//! Each parses from a string and rejects bad input inside deserialisation, so the TOML error
//! carries the position of the offending value.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

/// Implements `Deserialize` through `FromStr`, so that parse errors carry the TOML position.
macro_rules! deserialize_from_str {
    ($t:ty) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(de::Error::custom)
            }
        }
    };
}

/// A duration written as `250ms`, `10s`, `5m`, `1h` or `2d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a duration (write e.g. 250ms, 10s, 5m, 1h)"))?;
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86400)),
            _ => return Err(format!("`{s}` has no valid unit (ms, s, m, h or d)")),
        };
        Ok(Dur(d))
    }
}
deserialize_from_str!(Dur);

/// An IPv4 or IPv6 network in CIDR notation; a bare address means a single host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside this network (IPv4-mapped IPv6 addresses match IPv4 networks).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}` has a bad prefix length (0..={max})"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}
deserialize_from_str!(Cidr);

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An absolute `http` or `https` base URL, kept without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]`.
    pub authority: String,
    /// Path prefix without a trailing slash (often empty).
    pub path: String,
    /// `scheme` and `authority` parsed once, for the URI of every upstream request. Set with
    /// them by the constructors; replace a `BaseUrl` whole rather than edit its text fields.
    origin: (http::uri::Scheme, http::uri::Authority),
}

impl BaseUrl {
    /// The full base URL, without a trailing slash.
    pub fn as_string(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.path)
    }

    /// The default upstream, `http://127.0.0.1:8080`.
    pub fn local_default() -> BaseUrl {
        let authority = http::uri::Authority::from_static("127.0.0.1:8080");
        BaseUrl {
            scheme: "http".into(),
            authority: authority.as_str().to_owned(),
            path: String::new(),
            origin: (http::uri::Scheme::HTTP, authority),
        }
    }

    /// `scheme`, parsed.
    pub fn uri_scheme(&self) -> &http::uri::Scheme {
        &self.origin.0
    }

    /// `authority`, parsed.
    pub fn uri_authority(&self) -> &http::uri::Authority {
        &self.origin.1
    }
}

impl FromStr for BaseUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let uri: http::Uri = s.parse().map_err(|e| format!("`{s}` is not a URL: {e}"))?;
        let parsed_scheme = uri
            .scheme()
            .filter(|sc| sc.as_str() == "http" || sc.as_str() == "https")
            .cloned()
            .ok_or_else(|| format!("`{s}` must start with http:// or https://"))?;
        let scheme = parsed_scheme.as_str();
        let authority = uri
            .authority()
            .filter(|a| !a.host().is_empty())
            .ok_or_else(|| format!("`{s}` has no host"))?;
        if uri.query().is_some() {
            return Err(format!("`{s}` must not have a query"));
        }
        Ok(BaseUrl {
            scheme: scheme.to_owned(),
            authority: authority.as_str().to_owned(),
            path: uri.path().trim_end_matches('/').to_owned(),
            origin: (parsed_scheme, authority.clone()),
        })
    }
}
deserialize_from_str!(BaseUrl);

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_string())
    }
}

/// A socket address, with a message that names the expected form. `:PORT` (no host) means
/// every IPv4 interface, `0.0.0.0:PORT`, as in a container where the pod IP is not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr(pub std::net::SocketAddr);

impl FromStr for Addr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let full = match s.strip_prefix(':') {
            Some(port) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => format!("0.0.0.0:{port}"),
            _ => s.to_owned(),
        };
        full.parse()
            .map(Addr)
            .map_err(|_| format!("`{s}` is not an address (write IP:PORT or :PORT, e.g. 127.0.0.1:8000 or :8000)"))
    }
}
deserialize_from_str!(Addr);

/// `"x"` or `["x", "y"]`, read as a list (for `[realms.NAME] issuer`). Each entry must be an
/// absolute `http(s)` URL without a trailing slash.
pub fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let list = match Option::<OneOrMany>::deserialize(d)? {
        None => return Ok(None),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    };
    if list.is_empty() {
        return Err(de::Error::custom("issuer: give at least one issuer URL"));
    }
    for iss in &list {
        let ok = (iss.starts_with("https://") || iss.starts_with("http://")) && !iss.ends_with('/');
        if !ok {
            return Err(de::Error::custom(format!(
                "issuer `{iss}` must be an http(s) URL without a trailing slash, e.g. https://sso.example.com/realms/demo"
            )));
        }
    }
    Ok(Some(list))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!("250ms".parse::<Dur>().unwrap().0, Duration::from_millis(250));
        assert_eq!("5m".parse::<Dur>().unwrap().0, Duration::from_secs(300));
        assert!("5".parse::<Dur>().is_err());
        assert!("ten s".parse::<Dur>().is_err());
        assert!("5y".parse::<Dur>().is_err());
    }

    #[test]
    fn cidrs() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.0.0.1".parse().unwrap()));
        let host: Cidr = "127.0.0.1".parse().unwrap();
        assert!(host.contains("127.0.0.1".parse().unwrap()));
        assert!(!host.contains("127.0.0.2".parse().unwrap()));
        let all: Cidr = "::/0".parse().unwrap();
        assert!(all.contains("2001:db8::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nope".parse::<Cidr>().is_err());
    }

    #[test]
    fn addresses() {
        let any: std::net::SocketAddr = "0.0.0.0:8000".parse().unwrap();
        assert_eq!(":8000".parse::<Addr>().unwrap().0, any);
        assert_eq!("0.0.0.0:8000".parse::<Addr>().unwrap().0, any);
        assert_eq!(":0".parse::<Addr>().unwrap().0.port(), 0);
        let v6 = "[::]:8443".parse::<Addr>().unwrap().0;
        assert!(v6.is_ipv6() && v6.ip().is_unspecified() && v6.port() == 8443);
        assert_eq!("10.1.2.3:9100".parse::<Addr>().unwrap().0.to_string(), "10.1.2.3:9100");
        for bad in [
            ":",
            "::8000",
            ":80a",
            ": 8000",
            ":65536",
            "8000",
            "localhost:8000",
            ":-1",
        ] {
            let err = bad.parse::<Addr>().unwrap_err();
            assert!(err.contains(":PORT"), "{bad}: {err}");
        }
    }

    #[test]
    fn base_urls() {
        let u: BaseUrl = "https://sso.example.com/auth/".parse().unwrap();
        assert_eq!(u.as_string(), "https://sso.example.com/auth");
        assert!("ftp://x".parse::<BaseUrl>().is_err());
        assert!("/relative".parse::<BaseUrl>().is_err());
        assert!("http://x/?q=1".parse::<BaseUrl>().is_err());
    }

    #[test]
    fn base_urls_keep_what_their_text_parses_to() {
        let mut urls: Vec<BaseUrl> = [
            "http://kc:8080",
            "HTTPS://User@SSO.example.com/auth/",
            "http://[::1]:80/x",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        urls.push(BaseUrl::local_default());
        for u in urls {
            let scheme: http::uri::Scheme = u.scheme.parse().unwrap();
            let authority: http::uri::Authority = u.authority.parse().unwrap();
            assert_eq!((u.uri_scheme(), u.uri_authority()), (&scheme, &authority), "{u}");
            assert_eq!(u.uri_authority().as_str(), u.authority, "{u}");
            assert_eq!(u.uri_scheme().as_str(), u.scheme, "{u}");
        }
        assert_eq!(BaseUrl::local_default(), "http://127.0.0.1:8080".parse().unwrap());
    }
}
