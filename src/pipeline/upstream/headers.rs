//! The header rewrite of a forwarded request: hop-by-hop headers out (RFC 9110 §7.6.1),
//! `X-Forwarded-*` and `Forwarded` set by the gateway. Each function first looks once over the
//! request's header names and then touches only the names that are there, in the order the
//! rules name them (removing a header moves the last one into its place, so the order of the
//! forwarded headers depends on that order).

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{CONNECTION, HeaderName};
use http::{HeaderMap, HeaderValue};

use crate::error::{Detail, Reason, Refusal};

/// Headers that never cross a proxy (RFC 9110 §7.6.1), besides those named in `Connection`;
/// `upgrade` too: the gateway does not tunnel protocol upgrades. `CONNECTION` comes first.
const HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(super) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(super) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(super) const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// What an untrusted peer's request loses, in this order, before the gateway sets its own.
const CLIENT_FORWARDED: [HeaderName; 5] = [
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    X_FORWARDED_PORT,
    X_FORWARDED_PREFIX,
    X_REAL_IP,
];

/// End-to-end headers the gateway checks or sets; a `Connection` header may not name them,
/// or stripping them would forward something other than what was checked.
const PROTECTED: [&str; 10] = [
    "authorization",
    "host",
    "content-length",
    "content-type",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-request-id",
    "cookie",
];

/// Bit `i` set when `names[i]` is among the names of `h` (one pass over the names, no hashing).
fn present(h: &HeaderMap, names: &[HeaderName]) -> u32 {
    h.keys().fold(0, |mask, key| match names.iter().position(|n| n == key) {
        Some(i) => mask | (1 << i),
        None => mask,
    })
}

/// The names listed in `Connection` values, trimmed, as sent (names are case-insensitive).
fn listed<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> impl Iterator<Item = &'a str> {
    values
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Refuses a request whose `Connection` header names a header the gateway checks (e.g.
/// `Connection: authorization`, which would strip the credential after it was checked).
pub fn check_connection(h: &HeaderMap) -> Result<(), Refusal> {
    let Some(named) =
        listed(h.get_all(CONNECTION).iter()).find(|n| PROTECTED.iter().any(|p| p.eq_ignore_ascii_case(n)))
    else {
        return Ok(());
    };
    let name = named.to_ascii_lowercase();
    Err(Refusal::new(
        Reason::ConnectionHeaderInvalid,
        format!(
            "The Connection header names `{name}`, an end-to-end header the gateway checks; it cannot be hop-by-hop."
        ),
    )
    .detail(Detail::Header, name))
}

/// Removes hop-by-hop headers and every header named in `Connection`. `upgrade` goes too: the
/// gateway does not tunnel protocol upgrades.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let found = present(h, &HOP_BY_HOP);
    if found == 0 {
        return;
    }
    // Most `Connection` values name nothing present (`keep-alive`, `close`): then nothing is
    // copied or removed.
    if found & 1 != 0 && listed(h.get_all(CONNECTION).iter()).any(|n| h.contains_key(n)) {
        // The values are cheap handles on the request's bytes; the names are removed by text,
        // which `HeaderMap` matches case-insensitively.
        let values: Vec<HeaderValue> = h.get_all(CONNECTION).iter().cloned().collect();
        for name in listed(values.iter()) {
            h.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if found & (1 << i) != 0 {
            h.remove(name);
        }
    }
}

/// `ip` as text, as its `Display` writes it; IPv4 without the formatting machinery (the
/// gateway writes the peer into two headers and the log line of every request).
pub fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut out = String::with_capacity(15);
    for (i, o) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if o >= 100 {
            out.push(char::from(b'0' + o / 100));
        }
        if o >= 10 {
            out.push(char::from(b'0' + o / 10 % 10));
        }
        out.push(char::from(b'0' + o % 10));
    }
    out
}

/// These pieces, one after the other, in one allocation of their length.
fn join(pieces: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pieces.iter().map(|p| p.len()).sum());
    for p in pieces {
        out.extend_from_slice(p);
    }
    out
}

/// A header value of exactly these bytes.
fn value_of(bytes: Vec<u8>) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(Bytes::from(bytes)).ok()
}

/// `prior, tail`: the text values of `name` joined with `", "`, then `tail`; `tail` alone
/// when there is none.
fn appended(h: &HeaderMap, name: &HeaderName, tail: &[u8]) -> Option<HeaderValue> {
    let prior = || h.get_all(name).iter().filter_map(|v| v.to_str().ok());
    let mut out = Vec::with_capacity(prior().map(|p| p.len() + 2).sum::<usize>() + tail.len());
    for p in prior() {
        out.extend_from_slice(p.as_bytes());
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(tail);
    value_of(out)
}

/// The host the client addressed, as text, and (when at hand) as the header value it came in.
pub(super) struct ClientHost<'a> {
    /// The text.
    pub(super) text: &'a str,
    /// The same bytes as a header value, if already one.
    pub(super) value: Option<HeaderValue>,
}

impl ClientHost<'_> {
    /// The host as a header value.
    pub(super) fn header_value(&self) -> Option<HeaderValue> {
        self.value.clone().or_else(|| HeaderValue::from_str(self.text).ok())
    }
}

/// The `Forwarded` element for this hop: `for=NODE;proto=P[;host="H"]`, the host without `"`
/// and `\`.
fn element(peer: &str, v6: bool, proto: &str, host: Option<&ClientHost<'_>>) -> Vec<u8> {
    let (open, close): (&[u8], &[u8]) = if v6 { (b"\"[", b"]\"") } else { (b"", b"") };
    let host = host.map(|h| h.text);
    let cleaned = host.map(|h| {
        if h.contains(['"', '\\']) {
            std::borrow::Cow::Owned(h.replace(['"', '\\'], ""))
        } else {
            std::borrow::Cow::Borrowed(h)
        }
    });
    let (host_open, host_text, host_close): (&[u8], &[u8], &[u8]) = match &cleaned {
        Some(h) => (b";host=\"", h.as_bytes(), b"\""),
        None => (b"", b"", b""),
    };
    let pieces: [&[u8]; 9] = [
        b"for=",
        open,
        peer.as_bytes(),
        close,
        b";proto=",
        proto.as_bytes(),
        host_open,
        host_text,
        host_close,
    ];
    join(&pieces)
}

fn proto_value(proto: &str) -> Option<HeaderValue> {
    match proto {
        "http" => Some(HeaderValue::from_static("http")),
        "https" => Some(HeaderValue::from_static("https")),
        other => HeaderValue::from_str(other).ok(),
    }
}

/// Sets `X-Forwarded-For/-Proto/-Host` and `Forwarded`. From an untrusted peer, whatever the
/// client sent is replaced (and `X-Forwarded-Port`/`-Prefix` dropped); from a trusted proxy,
/// the peer is appended and the proxy's proto and host are kept.
pub fn set_forwarded(h: &mut HeaderMap, peer: IpAddr, proto: &str, host: Option<&str>, trusted: bool) {
    let host = host.map(|text| ClientHost { text, value: None });
    set_forwarded_for(h, peer, proto, host.as_ref(), trusted);
}

/// `set_forwarded`, with the host's header value when the caller has it.
pub(super) fn set_forwarded_for(
    h: &mut HeaderMap,
    peer: IpAddr,
    proto: &str,
    host: Option<&ClientHost<'_>>,
    trusted: bool,
) {
    let peer_text = ip_text(peer);
    let element = element(&peer_text, peer.is_ipv6(), proto, host);
    let (xff, fwd, keep) = if trusted {
        let kept = present(h, &[X_FORWARDED_PROTO, X_FORWARDED_HOST]);
        (
            appended(h, &X_FORWARDED_FOR, peer_text.as_bytes()),
            appended(h, &FORWARDED, &element),
            kept,
        )
    } else {
        let found = present(h, &CLIENT_FORWARDED);
        for (i, name) in CLIENT_FORWARDED.iter().enumerate() {
            if found & (1 << i) != 0 {
                h.remove(name);
            }
        }
        (value_of(peer_text.into_bytes()), value_of(element), 0)
    };
    for (name, value) in [(X_FORWARDED_FOR, xff), (FORWARDED, fwd)] {
        if let Some(v) = value {
            h.insert(name, v);
        }
    }
    if keep & 1 == 0
        && let Some(v) = proto_value(proto)
    {
        h.insert(X_FORWARDED_PROTO, v);
    }
    if keep & 2 == 0
        && let Some(v) = host.and_then(ClientHost::header_value)
    {
        h.insert(X_FORWARDED_HOST, v);
    }
}

/// The client's address: the peer, or — when the peer is a trusted proxy — the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn client_ip(peer: IpAddr, h: &HeaderMap, trusted: &[crate::config::Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = h
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}
