//! Keycloak's admin REST API as `doctor` reads it: log in (a user through the password grant on
//! `admin-cli`, or a service account through client credentials), then GET JSON. Every call goes
//! through the gateway's upstream HTTP client, with its `[upstream_tls]` settings and timeouts.

use std::time::Duration;

use http::{HeaderMap, Request, StatusCode};
use serde_json::Value;

use crate::net::{HttpClient, ReadError, describe_client_error, empty, full, read_limited};

/// Largest admin answer read (the client list of a big realm).
const LIMIT: usize = 32 << 20;

/// How `doctor` logs in to the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user, through the password grant on `admin-cli`.
    User {
        /// Username.
        username: String,
        /// Password.
        password: String,
    },
    /// A service account, through client credentials.
    Client {
        /// Client id.
        client_id: String,
        /// Client secret.
        secret: String,
    },
}

/// An answer that is not the JSON asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// 401/403: the admin credentials may not read this.
    Forbidden(u16),
    /// 404.
    NotFound,
    /// Any other status, unreadable JSON, or no connection.
    Failed(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Forbidden(s) => write!(f, "HTTP {s}: the admin credentials may not read this"),
            CallError::NotFound => f.write_str("HTTP 404: not found"),
            CallError::Failed(m) => f.write_str(m),
        }
    }
}

/// A raw answer: status and body.
#[derive(Debug)]
pub struct Raw {
    /// Status.
    pub status: StatusCode,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Sends one request and reads the whole answer within `timeout`.
pub async fn send(http: &HttpClient, req: Request<crate::net::Body>, timeout: Duration) -> Result<Raw, String> {
    let uri = req.uri().to_string();
    let fetch = async {
        let resp = http.request(req).await.map_err(|e| describe_client_error(&e))?;
        let status = resp.status();
        let body = read_limited(resp.into_body(), LIMIT).await.map_err(|e| match e {
            ReadError::TooLarge => format!("the answer is larger than {LIMIT} bytes"),
            ReadError::Failed(m) => m,
        })?;
        Ok(Raw {
            status,
            body: body.to_vec(),
        })
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| format!("{uri}: no answer within {}ms", timeout.as_millis()))?
        .map_err(|e: String| format!("{uri}: {e}"))
}

/// GETs `url` with extra headers; returns the raw answer.
pub async fn get(http: &HttpClient, url: &str, headers: &HeaderMap, timeout: Duration) -> Result<Raw, String> {
    let mut b = Request::get(url).header(http::header::ACCEPT, "application/json");
    for (k, v) in headers {
        b = b.header(k, v);
    }
    let req = b.body(empty()).map_err(|e| format!("bad URL {url}: {e}"))?;
    send(http, req, timeout).await
}

fn form_encode(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A logged-in admin API session.
#[derive(Debug)]
pub struct Admin {
    http: HttpClient,
    base: String,
    token: String,
    timeout: Duration,
}

impl Admin {
    /// Logs in at `{base}/realms/{realm}/protocol/openid-connect/token`.
    pub async fn login(
        http: HttpClient,
        base: &str,
        realm: &str,
        creds: &Credentials,
        timeout: Duration,
    ) -> Result<Admin, String> {
        let fields: Vec<(&str, &str)> = match creds {
            Credentials::User { username, password } => vec![
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", username),
                ("password", password),
            ],
            Credentials::Client { client_id, secret } => vec![
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
            ],
        };
        let url = format!("{base}/realms/{realm}/protocol/openid-connect/token");
        let req = Request::post(&url)
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json")
            .body(full(form_encode(&fields)))
            .map_err(|e| format!("bad admin URL {url}: {e}"))?;
        let raw = send(&http, req, timeout).await?;
        let v: Value = serde_json::from_slice(&raw.body).unwrap_or(Value::Null);
        if raw.status != StatusCode::OK {
            // Keycloak's own error text; never the credentials.
            let why = v
                .get("error_description")
                .or_else(|| v.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("no error text");
            return Err(format!(
                "admin login at {url} failed: HTTP {} ({why})",
                raw.status.as_u16()
            ));
        }
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("admin login at {url}: no access_token in the answer"))?
            .to_owned();
        Ok(Admin {
            http,
            base: base.to_owned(),
            token,
            timeout,
        })
    }

    /// GETs `/admin/realms{path}` as JSON.
    pub async fn json(&self, path: &str) -> Result<Value, CallError> {
        let url = format!("{}/admin/realms{path}", self.base);
        let mut h = HeaderMap::new();
        let auth = format!("Bearer {}", self.token)
            .parse()
            .map_err(|_| CallError::Failed("the admin token is not a valid header value".into()))?;
        h.insert(http::header::AUTHORIZATION, auth);
        let raw = get(&self.http, &url, &h, self.timeout)
            .await
            .map_err(CallError::Failed)?;
        match raw.status.as_u16() {
            200 => serde_json::from_slice(&raw.body)
                .map_err(|e| CallError::Failed(format!("GET {url}: the answer is not JSON: {e}"))),
            s @ (401 | 403) => Err(CallError::Forbidden(s)),
            404 => Err(CallError::NotFound),
            s => Err(CallError::Failed(format!(
                "GET {url}: HTTP {s}: {}",
                String::from_utf8_lossy(&raw.body[..raw.body.len().min(200)])
            ))),
        }
    }

    /// Every item of a paged list (`first`/`max`).
    pub async fn all(&self, path: &str) -> Result<Vec<Value>, CallError> {
        const PAGE: usize = 500;
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut out = Vec::new();
        loop {
            let page = self.json(&format!("{path}{sep}first={}&max={PAGE}", out.len())).await?;
            let items = page.as_array().cloned().unwrap_or_default();
            let n = items.len();
            out.extend(items);
            if n < PAGE {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_percent_encoded() {
        assert_eq!(
            form_encode(&[("username", "a b&c"), ("password", "p=1%")]),
            "username=a%20b%26c&password=p%3D1%25"
        );
    }
}
