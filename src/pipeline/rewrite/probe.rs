//! Whether a client still exists, asked of Keycloak when it refuses a registration access token:
//! Keycloak answers a deleted client's token exactly as a rotated one (401 `Not authorized to
//! view/update client`, measured on 26.5.6 and 26.7.3), so the gateway asks the realm's token
//! endpoint for a client-credentials grant without a secret. An unknown (or disabled) client
//! gets 401 `invalid_client` ("Invalid client or Invalid client credentials"); an existing one
//! another answer (`unauthorized_client`: "Client secret not provided in request", or "Public
//! client not allowed to retrieve service account"). Nothing is granted either way; Keycloak
//! records a `CLIENT_LOGIN_ERROR` event.

use std::time::Duration;

use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderValue, Request};
use serde_json::Value;

use crate::config::Settings;
use crate::net::{HttpClient, full, read_limited};

/// `Some(false)` when Keycloak does not know (or has disabled) client `client_id` of `realm`,
/// `Some(true)` when it does, `None` when the probe failed.
pub async fn client_exists(client: &HttpClient, settings: &Settings, realm: &str, client_id: &str) -> Option<bool> {
    let url = format!(
        "{}{}/realms/{}/protocol/openid-connect/token",
        settings.upstream.as_string(),
        settings.path_prefix,
        crate::registrar::service_account::form_encode(realm)
    );
    let form = format!(
        "grant_type=client_credentials&client_id={}",
        crate::registrar::service_account::form_encode(client_id)
    );
    let mut req = Request::post(&url)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(ACCEPT, "application/json")
        .body(full(form))
        .ok()?;
    if let Ok(v) = HeaderValue::from_str(&settings.upstream.authority) {
        req.headers_mut().insert(http::header::HOST, v);
    }
    let call = async {
        let resp = client.request(req).await.ok()?;
        let status = resp.status().as_u16();
        let body = read_limited(resp.into_body(), 16 * 1024).await.ok()?;
        Some(judge(status, &body))
    };
    let limit = settings.timeouts.response.min(Duration::from_secs(5));
    tokio::time::timeout(limit, call).await.ok().flatten()
}

/// Reads the token endpoint's answer: only 401 `invalid_client` means "no such client".
pub fn judge(status: u16, body: &[u8]) -> bool {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    !(status == 401 && v["error"] == "invalid_client")
}

#[cfg(test)]
mod tests {
    use super::judge;

    #[test]
    fn only_invalid_client_means_gone() {
        let gone = br#"{"error":"invalid_client","error_description":"Invalid client or Invalid client credentials"}"#;
        assert!(!judge(401, gone));
        let secret = br#"{"error":"unauthorized_client","error_description":"Client secret not provided in request"}"#;
        assert!(judge(400, secret));
        let public = br#"{"error":"unauthorized_client","error_description":"Public client not allowed to retrieve service account"}"#;
        assert!(judge(401, public));
        assert!(judge(500, b"oops"));
    }
}
