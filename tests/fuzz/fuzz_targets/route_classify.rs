//! The path classifier against an independent, deliberately generous model of how Keycloak
//! (Quarkus, RESTEasy Reactive) could read a path: percent-decoded (once or twice), `;`
//! parameters dropped, `\` as `/`, empty and `.` segments dropped, `..` resolved, any letter
//! case. Whenever that model sees the registration endpoint, or a write to a client through the
//! admin REST API, the classifier must not call the request "other traffic" (which would be
//! forwarded without policy): it must classify it or refuse it. The classifier never panics.
#![no_main]

use dcr_gateway::route::{Route, classify};
use http::Method;
use libfuzzer_sys::fuzz_target;

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The segments Keycloak might route on, lower-cased.
fn keycloak_view(path: &str, decodes: usize) -> Vec<String> {
    let mut p = path.to_owned();
    for _ in 0..decodes {
        p = decode(&p);
    }
    let mut segs: Vec<String> = Vec::new();
    for seg in p.split(['/', '\\']) {
        let seg = seg.split(';').next().unwrap_or("").to_ascii_lowercase();
        match seg.as_str() {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            _ => segs.push(seg),
        }
    }
    segs
}

fn is_registration(segs: &[String], prefix: &[&str]) -> bool {
    let n = prefix.len();
    segs.len() > n + 2
        && segs[..n].iter().zip(prefix).all(|(a, b)| a == b)
        && segs[n] == "realms"
        && segs[n + 2] == "clients-registrations"
}

/// A write under `/admin/realms/{realm}/clients…`, `…/client-scopes…`, `…/partialImport`, or a
/// realm import, in the model's reading.
fn is_admin_client_write(segs: &[String], prefix: &[&str], method: &Method) -> bool {
    let n = prefix.len();
    if matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS") {
        return false;
    }
    let admin = segs.len() >= n + 2
        && segs[..n].iter().zip(prefix).all(|(a, b)| a == b)
        && segs[n] == "admin"
        && segs[n + 1] == "realms";
    admin
        && (segs.len() == n + 2
            || segs.get(n + 3).is_some_and(|s| {
                [
                    "clients",
                    "client-scopes",
                    "partialimport",
                    "default-default-client-scopes",
                    "default-optional-client-scopes",
                ]
                .contains(&s.as_str())
            }))
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let Ok(path) = std::str::from_utf8(rest) else { return };
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
        Method::PATCH,
        Method::from_bytes(b"post").expect("token"),
    ];
    let method = methods[usize::from(sel & 0x7f) % methods.len()].clone();
    let (prefix, segs): (&str, &[&str]) = if sel & 0x80 != 0 {
        ("/auth", &["auth"])
    } else {
        ("", &[])
    };
    let route = classify(&method, path, prefix);
    let seen = (0..=2).any(|d| {
        let view = keycloak_view(path, d);
        is_registration(&view, segs) || is_admin_client_write(&view, segs, &method)
    });
    if seen {
        assert!(
            !matches!(route, Ok(Route::Other)),
            "{method} {path:?} reads as governed traffic but was classified as other"
        );
    }
});
