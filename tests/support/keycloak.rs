//! A small Keycloak admin REST client for the real-Keycloak suite (tests/keycloak.rs), driven by
//! the environment that scripts/keycloak-suite.sh sets: `GW_URL` (the gateway binary, fronting
//! Keycloak), `KC_URL` (Keycloak directly), `KC_VERSION`.

use std::time::Duration;

use dcr_gateway::net::{empty, full};
use http::{Request, StatusCode};
use serde_json::{Value, json};

use super::{Answer, send};

/// What the suite script provides.
#[derive(Clone, Debug)]
pub struct Env {
    /// The gateway binary's base URL (Prometheus scrapes its admin port).
    pub gw: String,
    /// The gateway's admin base URL.
    pub gw_admin: String,
    /// Keycloak's own base URL (behind the gateway).
    pub kc: String,
    /// Keycloak's version.
    pub version: String,
    /// Prometheus' base URL, when running.
    pub prom: Option<String>,
}

/// Reads the suite environment; panics with the command to run when it is missing.
pub fn env() -> Env {
    let get = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| {
            panic!(
                "{k} is not set: run scripts/keycloak-suite.sh (or scripts/test), which starts Keycloak and the gateway"
            )
        })
    };
    Env {
        gw: get("GW_URL"),
        gw_admin: get("GW_ADMIN_URL"),
        kc: get("KC_URL"),
        version: get("KC_VERSION"),
        prom: std::env::var("PROM_URL").ok(),
    }
}

/// Sends `method url` with an optional bearer token and JSON body.
pub async fn call(method: &str, url: &str, token: Option<&str>, body: Option<&Value>) -> Answer {
    let mut b = Request::builder().method(method).uri(url);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some(v) => b
            .header("content-type", "application/json")
            .body(full(v.to_string()))
            .unwrap(),
        None => b.body(empty()).unwrap(),
    };
    send(req).await
}

/// POSTs a form and returns the JSON answer.
pub async fn form(url: &str, fields: &[(&str, &str)]) -> Answer {
    let body: String = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let req = Request::post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(full(body))
        .unwrap();
    send(req).await
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A client-credentials token for `client` minted through `base` (its host becomes `iss`).
pub async fn client_token(base: &str, realm: &str, client: &str, secret: &str) -> String {
    let a = form(
        &format!("{base}/realms/{realm}/protocol/openid-connect/token"),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", client),
            ("client_secret", secret),
        ],
    )
    .await;
    assert_eq!(
        a.status,
        200,
        "token for {client}: {}",
        String::from_utf8_lossy(&a.body)
    );
    a.json()["access_token"].as_str().unwrap().to_owned()
}

/// Keycloak's admin API, called through `base`.
pub struct Admin {
    /// Base URL the admin calls go through.
    pub base: String,
    token: String,
}

impl Admin {
    /// Logs in as admin/admin on master.
    pub async fn login(base: &str) -> Admin {
        let a = form(
            &format!("{base}/realms/master/protocol/openid-connect/token"),
            &[
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", "admin"),
                ("password", "admin"),
            ],
        )
        .await;
        assert_eq!(a.status, 200, "admin login: {}", String::from_utf8_lossy(&a.body));
        Admin {
            base: base.to_owned(),
            token: a.json()["access_token"].as_str().unwrap().to_owned(),
        }
    }

    /// Calls `/admin/realms…`.
    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        call(
            method,
            &format!("{}/admin/realms{path}", self.base),
            Some(&self.token),
            body,
        )
        .await
    }

    async fn ok(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        let a = self.call(method, path, body).await;
        assert!(
            a.status.is_success(),
            "{method} /admin/realms{path}: {} {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        );
        a
    }

    /// Creates a realm (fresh name per test keeps tests apart).
    pub async fn create_realm(&self, realm: &str, extra: Value) -> String {
        let mut body = json!({"realm": realm, "enabled": true});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        self.ok("POST", "", Some(&body)).await;
        self.ok("GET", &format!("/{realm}"), None).await.json()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Creates a confidential client with a service account; returns its internal id.
    pub async fn create_service_client(&self, realm: &str, client_id: &str, secret: &str) -> String {
        let body = json!({"clientId": client_id, "enabled": true, "publicClient": false, "serviceAccountsEnabled": true, "standardFlowEnabled": false, "directAccessGrantsEnabled": false, "secret": secret});
        self.ok("POST", &format!("/{realm}/clients"), Some(&body)).await;
        self.client_uuid(realm, client_id).await.unwrap()
    }

    /// The internal id of a client, if it exists.
    pub async fn client_uuid(&self, realm: &str, client_id: &str) -> Option<String> {
        let a = self
            .ok(
                "GET",
                &format!("/{realm}/clients?clientId={}", urlencode(client_id)),
                None,
            )
            .await;
        a.json()
            .as_array()
            .and_then(|l| l.first())
            .and_then(|c| c["id"].as_str())
            .map(str::to_owned)
    }

    /// Clients whose `clientId` or `name` equals `name`.
    pub async fn clients_named(&self, realm: &str, name: &str) -> usize {
        let a = self.ok("GET", &format!("/{realm}/clients?max=1000"), None).await;
        a.json()
            .as_array()
            .map(|l| l.iter().filter(|c| c["clientId"] == name || c["name"] == name).count())
            .unwrap_or(0)
    }

    /// Grants a client role (e.g. realm-management/create-client) to a client's service account.
    pub async fn grant(&self, realm: &str, client_uuid: &str, role_client: &str, role: &str) {
        let sa = self
            .ok(
                "GET",
                &format!("/{realm}/clients/{client_uuid}/service-account-user"),
                None,
            )
            .await
            .json()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let rc = self.client_uuid(realm, role_client).await.unwrap();
        let r = self
            .ok("GET", &format!("/{realm}/clients/{rc}/roles/{role}"), None)
            .await
            .json();
        self.ok(
            "POST",
            &format!("/{realm}/users/{sa}/role-mappings/clients/{rc}"),
            Some(&json!([r])),
        )
        .await;
    }

    /// Creates an initial access token; returns (id, token).
    pub async fn create_iat(&self, realm: &str, expiration: u64, count: u64) -> (String, String) {
        let a = self
            .ok(
                "POST",
                &format!("/{realm}/clients-initial-access"),
                Some(&json!({"expiration": expiration, "count": count})),
            )
            .await;
        let v = a.json();
        (
            v["id"].as_str().unwrap().to_owned(),
            v["token"].as_str().unwrap().to_owned(),
        )
    }

    /// Deletes an initial access token.
    pub async fn delete_iat(&self, realm: &str, id: &str) {
        self.ok("DELETE", &format!("/{realm}/clients-initial-access/{id}"), None)
            .await;
    }

    /// Adds a component (key provider, registration policy, ...); returns its id.
    pub async fn add_component(&self, realm: &str, body: Value) -> String {
        let a = self.ok("POST", &format!("/{realm}/components"), Some(&body)).await;
        let loc = a
            .headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        loc.rsplit('/').next().unwrap_or_default().to_owned()
    }

    /// Components of a realm, filtered by provider type.
    pub async fn components(&self, realm: &str, provider_type: &str) -> Vec<Value> {
        let a = self
            .ok("GET", &format!("/{realm}/components?type={provider_type}"), None)
            .await;
        a.json().as_array().cloned().unwrap_or_default()
    }

    /// Deletes a component.
    pub async fn delete_component(&self, realm: &str, id: &str) {
        self.ok("DELETE", &format!("/{realm}/components/{id}"), None).await;
    }

    /// Adds an `rsa-generated` key provider with the given priority; returns its id.
    pub async fn add_rsa_key(&self, realm: &str, realm_id: &str, name: &str, priority: u32) -> String {
        self.add_component(
            realm,
            json!({"name": name, "providerId": "rsa-generated", "providerType": "org.keycloak.keys.KeyProvider", "parentId": realm_id,
                   "config": {"priority": [priority.to_string()], "keySize": ["2048"], "active": ["true"], "enabled": ["true"], "algorithm": ["RS256"]}}),
        )
        .await
    }

    /// Updates a realm's representation.
    pub async fn update_realm(&self, realm: &str, body: Value) {
        self.ok("PUT", &format!("/{realm}"), Some(&body)).await;
    }
}

/// The `kid` in a JWT's header.
pub fn kid_of(token: &str) -> String {
    use base64::Engine;
    let h = token.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(h)
        .unwrap_or_default();
    serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v["kid"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A realm name unique to this run.
pub fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    format!("{prefix}-{}", n % 100_000_000)
}

/// Asserts the gateway's error shape and returns the body.
pub fn refused(a: &Answer, status: u16, reason: &str) -> Value {
    let body = String::from_utf8_lossy(&a.body).into_owned();
    assert_eq!(
        a.status,
        StatusCode::from_u16(status).unwrap(),
        "expected {status} {reason}, got {}: {body}",
        a.status
    );
    let v = a.json();
    assert_eq!(v["reason"], reason, "{body}");
    let desc = v["error_description"].as_str().unwrap_or_default();
    assert!(
        dcr_gateway::hints::names_action(desc) && dcr_gateway::hints::sentences(desc) <= 2,
        "error_description must name the fix in one or two sentences: {desc}"
    );
    for k in ["error", "error_description", "hint", "reason", "details", "request_id"] {
        assert!(v.get(k).is_some(), "missing {k} in {body}");
    }
    let challenge = a.headers.get("www-authenticate");
    if reason == "anonymous_not_allowed" {
        assert!(challenge.is_none(), "answered as Keycloak does, without a challenge");
    } else if v["details"]["token_kind"] == "anonymous" && challenge.is_none() {
        // Anonymous registration refusals are answered as Keycloak does, without a challenge.
    } else if status == 401 || status == 403 {
        let www = a
            .headers
            .get("www-authenticate")
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let expected = if reason == "anonymous_not_allowed" {
            "Bearer realm="
        } else {
            "Bearer error="
        };
        assert!(www.starts_with(expected), "WWW-Authenticate missing or wrong: {www:?}");
    }
    v
}

/// Waits until `/readyz` of a gateway answers 200.
pub async fn wait_ready(admin: &str) {
    for _ in 0..150 {
        let a = call("GET", &format!("{admin}/readyz"), None, None).await;
        if a.status == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("gateway at {admin} never became ready");
}
