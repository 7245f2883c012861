//! The issuers a realm accepts for a request, and the origin Keycloak sees. Built from borrowed
//! pieces: a candidate issuer is compared with those already accepted before it is written, so
//! each accepted issuer costs one allocation of its own length.

use std::borrow::Cow;
use std::net::IpAddr;

use http::header::{HOST, HeaderName};
use http::{HeaderMap, Request};

use super::client_host_str;
use super::headers::{X_FORWARDED_HOST, X_FORWARDED_PORT, X_FORWARDED_PROTO};
use crate::config::Settings;

/// The issuers realm `realm` accepts for this request: the configured ones (`[realms.R]
/// issuer`, else `{public_url}/realms/R`) and, unless `issuer` pins them, the ones Keycloak
/// itself derives from this request when its hostname is not pinned.
pub fn accepted_issuers<B>(req: &Request<B>, settings: &Settings, peer: IpAddr, tls: bool, realm: &str) -> Vec<String> {
    if let Some(pinned) = settings.pinned_issuers(realm) {
        return pinned.to_vec();
    }
    let public = &settings.public_url;
    let mut out = Vec::with_capacity(3);
    out.push(concat(&[
        &public.scheme,
        "://",
        &public.authority,
        &public.path,
        "/realms/",
        realm,
    ]));
    push_arrival(&mut out, req, settings, peer, tls, realm);
    out
}

/// What Keycloak's hostname provider (v2) makes of this request, as the gateway forwards it,
/// when neither `hostname` nor the realm's frontend URL is set: the request's own base URI,
/// `{scheme}://{host[:port]}{context path}`, with the default port dropped. With
/// `proxy-headers=xforwarded` (or `forwarded`) scheme and host come from the forwarded headers
/// the gateway sets; without it, from the connection (the upstream scheme) and `Host`.
pub fn arrival_issuers<B>(req: &Request<B>, settings: &Settings, peer: IpAddr, tls: bool, realm: &str) -> Vec<String> {
    let mut out = Vec::new();
    push_arrival(&mut out, req, settings, peer, tls, realm);
    out
}

/// Appends to `out` the issuers of `arrival_issuers` it does not hold yet, in that order.
fn push_arrival<B>(out: &mut Vec<String>, req: &Request<B>, settings: &Settings, peer: IpAddr, tls: bool, realm: &str) {
    let trusted = settings.trusted_proxies.iter().any(|c| c.contains(peer));
    let first = |name: &HeaderName| {
        trusted
            .then(|| first_value(req.headers(), name).filter(|v| !v.is_empty()))
            .flatten()
    };
    let client = client_host_str(req);
    let path = [settings.upstream.path.as_str(), settings.path_prefix.as_str()];
    // proxy-headers: the X-Forwarded-* the gateway sends (a trusted proxy's are kept).
    let proto = first(&X_FORWARDED_PROTO).unwrap_or(if tls { "https" } else { "http" });
    let host = first(&X_FORWARDED_HOST).or(client).map(Cow::Borrowed);
    let host = match (host, first(&X_FORWARDED_PORT)) {
        (Some(h), Some(port)) => Some(Cow::Owned(concat(&[strip_port(&h), ":", port]))),
        (host, _) => host,
    };
    if let Some(h) = host {
        push_issuer(out, proto, &h, path, realm);
    }
    // No proxy headers: the connection's scheme and the Host Keycloak receives.
    let host = if settings.preserve_host {
        client
    } else {
        Some(settings.upstream.authority.as_str())
    };
    if let Some(h) = host {
        push_issuer(out, &settings.upstream.scheme, h, path, realm);
    }
}

/// Appends `Urls.realmIssuer`, `{base}/realms/{realm}`, unless `out` holds it: the base drops
/// port 80 of http and 443 of https as Keycloak's `HostnameV2Provider` does.
fn push_issuer(out: &mut Vec<String>, scheme: &str, host: &str, path: [&str; 2], realm: &str) {
    let scheme = if scheme.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(scheme.to_ascii_lowercase())
    } else {
        Cow::Borrowed(scheme)
    };
    let default = match &*scheme {
        "http" => ":80",
        "https" => ":443",
        _ => "",
    };
    let host = match host.strip_suffix(default) {
        Some(h) if !default.is_empty() => h,
        _ => host,
    };
    let pieces = [&*scheme, "://", host, path[0], path[1], "/realms/", realm];
    if !out.iter().any(|s| is_concat(s, &pieces)) {
        out.push(concat(&pieces));
    }
}

/// The pieces, joined, in one allocation of their length.
fn concat(pieces: &[&str]) -> String {
    let mut out = String::with_capacity(pieces.iter().map(|p| p.len()).sum());
    for p in pieces {
        out.push_str(p);
    }
    out
}

/// Whether `s` is the pieces joined.
fn is_concat(s: &str, pieces: &[&str]) -> bool {
    let mut rest = s;
    for p in pieces {
        match rest.strip_prefix(p) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    }
}

/// The first comma-separated element of header `name`, trimmed.
fn first_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
}

/// `scheme://host` as Keycloak will see this prepared request (forwarded proto and host).
pub fn seen_origin<B>(req: &Request<B>, settings: &Settings) -> String {
    let first = |name: &HeaderName| first_value(req.headers(), name);
    let proto = first(&X_FORWARDED_PROTO).unwrap_or(&settings.upstream.scheme);
    let host = first(&X_FORWARDED_HOST)
        .or_else(|| first(&HOST))
        .unwrap_or(&settings.upstream.authority);
    concat(&[proto, "://", host])
}
