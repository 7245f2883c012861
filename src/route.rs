//! Routing, the bottom layer: is this registration traffic, and for which realm, provider and operation?
//!
//! Runs first, on the raw path. A path that Keycloak could read as a registration path (after
//! percent-decoding, matrix parameters, empty or dot segments) but that is not written in the
//! one canonical form is refused with `path_malformed`, so no spelling slips past policy.

pub mod admin;

use std::borrow::Cow;

use http::Method;

use crate::error::{Detail, Reason, Refusal};

/// A registration operation, from the method and the path shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// POST on the collection.
    Create,
    /// GET on a client.
    Read,
    /// PUT on a client.
    Update,
    /// DELETE on a client.
    Delete,
    /// OPTIONS (CORS preflight) on either.
    Preflight,
}

impl Operation {
    /// Every operation that policy governs.
    pub const GOVERNED: [Operation; 4] = [Operation::Create, Operation::Read, Operation::Update, Operation::Delete];

    /// Lower-case name used in policy, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Read => "read",
            Operation::Update => "update",
            Operation::Delete => "delete",
            Operation::Preflight => "preflight",
        }
    }

    /// Parses a lower-case name.
    pub fn parse(s: &str) -> Option<Operation> {
        [
            Operation::Create,
            Operation::Read,
            Operation::Update,
            Operation::Delete,
            Operation::Preflight,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// A classified registration request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegRoute {
    /// Realm name (decoded).
    pub realm: String,
    /// Provider id, e.g. `openid-connect` or `default`.
    pub provider: String,
    /// Client id from the path, for read, update and delete.
    pub client_id: Option<String>,
    /// The operation.
    pub operation: Operation,
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The registration endpoint.
    Registration(RegRoute),
    /// A write to the admin REST API that creates or changes a client.
    Admin(admin::AdminRoute),
    /// Anything else in Keycloak.
    Other,
}

const REGISTRATIONS: &str = "clients-registrations";

/// Percent-decodes one segment; `None` when the encoding is bad, hides a `/` or `\`, or yields
/// a control character (which could forge log lines). A segment without escapes is borrowed.
fn decode_segment(seg: &str) -> Option<Cow<'_, str>> {
    if !seg.contains('%') {
        return Some(Cow::Borrowed(seg));
    }
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = seg.get(i + 1..i + 3)?;
            let b = u8::from_str_radix(hex, 16).ok()?;
            if b == b'/' || b == b'\\' || b.is_ascii_control() {
                return None;
            }
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

fn malformed(path: &str, why: &str) -> Refusal {
    Refusal::new(
        Reason::PathMalformed,
        format!("The registration path is malformed: {why}."),
    )
    .detail(Detail::Path, path)
}

/// Decodes every valid `%XX` escape and keeps anything else as written (never fails).
pub fn decode_lossy(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether Keycloak could read any part of the path as `clients-registrations` (any case,
/// percent-encoded once or more, with matrix parameters or encoded separators).
fn mentions_registrations(path: &str) -> bool {
    let needle = REGISTRATIONS.as_bytes();
    decode_generously(path)
        .as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Decodes until nothing changes (at most four rounds): a generous reading, so that a path
/// some layer might decode twice (`%252D`) is still recognised, and then refused as unplain.
pub fn decode_repeatedly(s: &str) -> String {
    decode_generously(s).into_owned()
}

/// [`decode_repeatedly`], borrowing `s` when it has no escape (decoding would not change it).
pub(crate) fn decode_generously(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let mut cur = s.to_owned();
    for _ in 0..4 {
        let next = decode_lossy(&cur);
        if next == cur {
            break;
        }
        cur = next;
    }
    Cow::Owned(cur)
}

/// Classifies a request. `prefix` is the configured path prefix (`""` or e.g. `/auth`).
pub fn classify(method: &Method, path: &str, prefix: &str) -> Result<Route, Refusal> {
    if let Some(admin) = admin::classify(method, path, prefix)? {
        return Ok(Route::Admin(admin));
    }
    if !mentions_registrations(path) {
        return Ok(Route::Other);
    }
    let raw: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split(['/', '\\']).collect();
    // From here on Keycloak could read the path as registration traffic: it must be clean.
    if path.contains('\\') || path.contains(';') {
        return Err(malformed(path, "it contains a backslash or a matrix parameter (;)"));
    }
    let decoded = raw
        .iter()
        .map(|s| decode_segment(s))
        .collect::<Option<Vec<Cow<'_, str>>>>()
        .ok_or_else(|| malformed(path, "it has an encoded slash or invalid percent-encoding"))?;
    if decoded.iter().any(|s| s == "." || s == "..") {
        return Err(malformed(path, "it contains a dot segment"));
    }
    let prefix_segs: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
    let n = prefix_segs.len();
    let shaped = raw.len() >= n + 3 && raw[..n] == prefix_segs[..] && raw[n] == "realms" && raw[n + 2] == REGISTRATIONS;
    if !shaped {
        let expected = format!("{prefix}/realms/{{realm}}/clients-registrations/{{provider}}[/{{clientId}}]");
        let why = format!("it does not have the form {expected}");
        return Err(malformed(path, &why).detail(Detail::Expected, expected));
    }
    let realm = decoded[n + 1].clone().into_owned();
    if realm.is_empty() {
        return Err(malformed(path, "the realm is empty"));
    }
    let rest = &decoded[n + 3..];
    let provider = match rest.first() {
        Some(p) if !p.is_empty() => p.clone().into_owned(),
        _ => return Err(malformed(path, "the provider is missing")),
    };
    let client_id = match rest.len() {
        1 => None,
        2 if !rest[1].is_empty() => Some(rest[1].clone().into_owned()),
        2 => return Err(malformed(path, "the client id is empty")),
        _ => return Err(malformed(path, "it has segments after the client id")),
    };
    let operation =
        operation(method, client_id.is_some()).ok_or_else(|| method_not_allowed(method, client_id.is_some()))?;
    Ok(Route::Registration(RegRoute {
        realm,
        provider,
        client_id,
        operation,
    }))
}

fn operation(method: &Method, on_client: bool) -> Option<Operation> {
    match (method.as_str(), on_client) {
        ("POST", false) => Some(Operation::Create),
        ("GET", true) => Some(Operation::Read),
        ("PUT", true) => Some(Operation::Update),
        ("DELETE", true) => Some(Operation::Delete),
        ("OPTIONS", _) => Some(Operation::Preflight),
        _ => None,
    }
}

fn method_not_allowed(method: &Method, on_client: bool) -> Refusal {
    let allowed = if on_client {
        "GET, PUT, DELETE, OPTIONS"
    } else {
        "POST, OPTIONS"
    };
    let target = if on_client {
        "a registered client"
    } else {
        "the registration collection"
    };
    Refusal::new(
        Reason::MethodNotAllowed,
        format!("{method} is not a registration operation on {target}."),
    )
    .detail(Detail::Method, method.as_str())
    .detail(Detail::Allowed, allowed)
}

#[cfg(test)]
mod tests;
