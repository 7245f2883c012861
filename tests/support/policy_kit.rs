//! Helpers for the policy and reload tests: a stand-in Keycloak that publishes a signing key,
//! tokens for it, raw-body requests, Prometheus text parsing and atomic policy writes.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::testkit::{self, TestKey};
use bytes::Bytes;
use dcr_gateway::Gateway;
use dcr_gateway::net::{Body, full};
use http::Request;
use serde_json::{Value, json};

use super::{JwksServer, Seen, admin, jwks_server};

/// A stand-in Keycloak: the JWKS server (answers 201 to registrations) and its signing key.
pub struct Kc {
    /// The server; its `upstream.seen` records every request, key fetches included.
    pub server: JwksServer,
    /// The published key (`kid` = `k1`, RS256).
    pub key: TestKey,
}

impl Kc {
    /// Starts a stand-in Keycloak with one published RSA key.
    pub async fn start() -> Kc {
        let key = TestKey::rsa("k1", "RS256").expect("rsa key");
        let server = jwks_server(testkit::jwks(&[&key])).await;
        Kc { server, key }
    }

    /// Its base URL (the gateway's upstream; also the default public URL).
    pub fn url(&self) -> String {
        self.server.upstream.url()
    }

    /// The issuer of `realm`'s tokens.
    pub fn issuer(&self, realm: &str) -> String {
        format!("{}/realms/{realm}", self.url())
    }

    /// A service-account bearer token of `realm` for client `azp` with realm-management roles.
    pub fn bearer(&self, realm: &str, azp: &str, roles: &[&str]) -> String {
        self.key
            .token(&testkit::service_account_claims(&self.issuer(realm), azp, roles, 300))
    }

    /// An initial access token of `realm` with the given `jti` (HMAC, as Keycloak signs them).
    pub fn initial_access(&self, realm: &str, jti: &str) -> String {
        let mut claims = testkit::internal_claims(&self.issuer(realm), "InitialAccessToken", testkit::now() + 600);
        claims["jti"] = json!(jti);
        testkit::hmac_token(
            b"keycloak-internal-secret",
            &json!({"alg": "HS256", "typ": "JWT", "kid": "hmac-1"}),
            &claims,
        )
    }

    /// Requests that reached the registration endpoint upstream (key fetches excluded).
    pub fn registrations(&self) -> Vec<Seen> {
        self.server
            .upstream
            .seen
            .lock()
            .iter()
            .filter(|s| s.uri.contains("/clients-registrations/"))
            .cloned()
            .collect()
    }

    /// How many requests reached the registration endpoint upstream.
    pub fn reg_hits(&self) -> usize {
        self.registrations().len()
    }
}

/// A request with a raw body (sent as `application/json` whatever it holds).
pub fn raw_req(
    method: &str,
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    body: impl Into<Bytes>,
) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(full(body.into())).unwrap()
}

/// Parses the labels of one Prometheus series (`{a="x",b="y"}` without braces).
fn labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(eq) = rest.find("=\"") {
        let key = rest[..eq].trim_start_matches(',').trim().to_owned();
        let after = &rest[eq + 2..];
        let mut value = String::new();
        let mut end = after.len();
        let mut chars = after.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(n);
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((key, value));
        rest = &after[end..];
    }
    out
}

/// The series of metric `name` in Prometheus text, as (labels, value).
pub fn series(text: &str, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (head, value) = l.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (n, lbl) = match head.split_once('{') {
                Some((n, rest)) => (n, labels(rest.trim_end_matches('}'))),
                None => (head, Vec::new()),
            };
            (n == name).then_some((lbl, value))
        })
        .collect()
}

/// The sum of metric `name` over series carrying all of `want`; `None` when no series matches.
pub fn metric(text: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = series(text, name)
        .into_iter()
        .filter(|(l, _)| want.iter().all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v)))
        .map(|(_, v)| v)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

/// The gateway's `/metrics` text.
pub async fn metrics_text(gw: &Gateway) -> String {
    admin(gw, "/metrics").await.1
}

/// The gateway's `/readyz` JSON (whatever its status).
pub async fn readyz(gw: &Gateway) -> Value {
    serde_json::from_str(&admin(gw, "/readyz").await.1).expect("readyz JSON")
}

/// Replaces `path`'s contents atomically (hidden temporary file in the same directory, then
/// rename), so a reload never reads half a file.
pub fn write_policy(path: &Path, text: &str) {
    let dir = path.parent().expect("policy file has a directory");
    let name = path.file_name().expect("file name").to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).expect("write temporary policy");
    std::fs::rename(&tmp, path).expect("rename policy into place");
}

/// Polls the async check `f` every 50 ms until it is true or `limit` passes.
pub async fn until<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + limit;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
