//! Which hosts of server-called URLs point inside: loopback, private, link-local, shared,
//! unspecified and cloud-metadata addresses, in every spelling a resolver accepts (IPv4 in one
//! to four parts of decimal, octal or hex as `inet_aton` reads them; IPv6 with embedded IPv4:
//! mapped, compatible, NAT64, 6to4), trailing dots, and names that resolve locally
//! (`localhost`, single-label names, `.local`, `.internal` and the like).

use std::net::{Ipv4Addr, Ipv6Addr};

/// Why a host counts as internal, or `None` when it is a public address or a public name.
pub fn internal(host: &str) -> Option<&'static str> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if let Some(v4) = inet_aton(&host) {
        return v4_kind(v4);
    }
    if let Ok(v6) = host.parse::<Ipv6Addr>() {
        return v6_kind(v6);
    }
    name_kind(&host)
}

/// IPv4 as glibc's `inet_aton` (and so most resolvers) reads it: `a`, `a.b`, `a.b.c` or
/// `a.b.c.d`, each part decimal, octal (leading `0`) or hex (`0x`).
pub fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let nums: Vec<u64> = parts.iter().map(|p| number(p)).collect::<Option<_>>()?;
    let (last, head) = nums.split_last()?;
    if head.iter().any(|n| *n > 255) {
        return None;
    }
    let room = 8 * (4 - head.len() as u32);
    if room < 64 && *last >= 1u64 << room {
        return None;
    }
    let mut v: u64 = 0;
    for (i, n) in head.iter().enumerate() {
        v |= n << (24 - 8 * i as u32);
    }
    u32::try_from(v | last).ok().map(Ipv4Addr::from)
}

fn number(p: &str) -> Option<u64> {
    if p.is_empty() {
        return None;
    }
    let (digits, radix) = match p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None if p.len() > 1 && p.starts_with('0') => (&p[1..], 8),
        None => (p, 10),
    };
    if digits.is_empty() {
        return (radix == 16).then_some(0);
    }
    u64::from_str_radix(digits, radix)
        .ok()
        .filter(|n| *n <= u32::MAX as u64)
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("an unspecified (this-host) address")
    } else if ip == Ipv4Addr::new(169, 254, 169, 254)
        || ip == Ipv4Addr::new(100, 100, 100, 200)
        || ip == Ipv4Addr::new(192, 0, 0, 192)
    {
        Some("a cloud metadata address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if ip.is_private() {
        Some("a private address")
    } else if o[0] == 100 && (64..128).contains(&o[1]) {
        Some("a shared (carrier-grade NAT) address")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("an IETF protocol assignment address")
    } else if o[0] == 198 && (o[1] == 18 || o[1] == 19) {
        Some("a benchmarking address")
    } else if ip.is_broadcast() || ip.is_multicast() || o[0] >= 240 {
        Some("a broadcast, multicast or reserved address")
    } else {
        None
    }
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    if ip.is_unspecified() {
        return Some("an unspecified (this-host) address");
    }
    // Embedded IPv4: mapped ::ffff:a.b.c.d, compatible ::a.b.c.d, NAT64 64:ff9b::/96, 6to4.
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let embedded = match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0, 0, _, _] => Some(tail),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] | [0x64, 0xff9b, 1, ..] => Some(tail),
        [0x2002, a, b, ..] => Some(Ipv4Addr::new((a >> 8) as u8, a as u8, (b >> 8) as u8, b as u8)),
        _ => None,
    };
    if let Some(v4) = embedded {
        return v4_kind(v4).or(Some("an IPv6 address embedding IPv4"));
    }
    if s[0] == 0xfd00 && s[1] == 0x0ec2 {
        return Some("a cloud metadata address");
    }
    match s[0] {
        x if x & 0xfe00 == 0xfc00 => Some("a unique local (private) address"),
        x if x & 0xffc0 == 0xfe80 => Some("a link-local address"),
        x if x & 0xffc0 == 0xfec0 => Some("a site-local address"),
        x if x & 0xff00 == 0xff00 => Some("a multicast address"),
        0x0100 if s[1..4] == [0, 0, 0] => Some("a discard-only address"),
        _ => None,
    }
}

/// Names that resolve to the host itself or to the local network, and public wildcard-DNS
/// services whose names resolve to any address they spell (`10.0.0.1.nip.io`).
const INTERNAL_SUFFIXES: [&str; 15] = [
    "localhost",
    "local",
    "internal",
    "localdomain",
    "home.arpa",
    "lan",
    "intranet",
    "corp",
    "svc",
    "nip.io",
    "sslip.io",
    "xip.io",
    "localtest.me",
    "lvh.me",
    "vcap.me",
];

fn name_kind(host: &str) -> Option<&'static str> {
    if host.is_empty() {
        return Some("an empty host");
    }
    if !host.is_ascii() {
        // IDNA maps look-alikes to ASCII (`①②⑦.0.0.1`, `127。0。0。1`): ask for the A-label.
        return Some("a name with non-ASCII characters (write it in its xn-- form)");
    }
    if !host.contains('.') {
        return Some("a single-label name, resolved through the local search domains");
    }
    let internal = INTERNAL_SUFFIXES
        .iter()
        .any(|s| host == *s || host.strip_suffix(s).is_some_and(|rest| rest.ends_with('.')));
    internal.then_some(
        "a name of the local network or of a wildcard-DNS service (localhost, .local, .internal, nip.io, ...)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_loopback_and_metadata() {
        for h in [
            "127.0.0.1",
            "127.1",
            "2130706433",
            "0x7f000001",
            "0x7f.1",
            "017700000001",
            "0177.0.0.01",
            "127.0.0.1.",
            "[::1]",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:7f00:1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "169.254.169.254",
            "0xa9fea9fe",
            "2852039166",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "0.0.0.0",
            "0",
            "::",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "100.64.0.1",
            "fe80::1",
            "fc00::1",
            "localhost",
            "LOCALHOST.",
            "api.localhost",
            "metadata.google.internal",
            "printer.local",
            "keycloak",
            "redis.",
            "10.0.0.1.nip.io",
            "app.localtest.me",
            "①②⑦.0.0.1",
            "127。0。0。1",
        ] {
            let h = h.trim_start_matches('[').trim_end_matches(']');
            assert!(internal(h).is_some(), "{h} passed as public");
        }
    }

    #[test]
    fn public_hosts_pass() {
        for h in [
            "8.8.8.8",
            "1.1.1.1",
            "2001:4860:4860::8888",
            "example.com",
            "keys.example.com.",
            "93.184.216.34",
        ] {
            assert_eq!(internal(h), None, "{h}");
        }
    }

    #[test]
    fn inet_aton_forms() {
        assert_eq!(inet_aton("1.2.3"), Some(Ipv4Addr::new(1, 2, 0, 3)));
        assert_eq!(inet_aton("1.65535"), Some(Ipv4Addr::new(1, 0, 255, 255)));
        assert_eq!(inet_aton("0x0a.0.0.010"), Some(Ipv4Addr::new(10, 0, 0, 8)));
        assert_eq!(inet_aton("4294967295"), Some(Ipv4Addr::new(255, 255, 255, 255)));
        for bad in [
            "4294967296",
            "1.2.3.256",
            "1.2.3.4.5",
            "08",
            "a.b.c.d",
            "",
            "1..2",
            "256.1",
        ] {
            assert_eq!(inet_aton(bad), None, "{bad}");
        }
    }
}
