//! A service account's access token from Keycloak's token endpoint (client-credentials grant):
//! cached, renewed `renew_before` its expiry (by the renewal task, or by the first request
//! that finds it due), fetched by one task at a time while the others wait for its result.

use std::sync::Weak;
use std::time::Duration;

use http::header::{ACCEPT, CONTENT_TYPE, HOST};
use http::{HeaderValue, Request};
use parking_lot::Mutex;
use serde::Deserialize;
use tokio::time::Instant;

use super::SecretSource;
use crate::config::{RegistrarSettings, Settings};
use crate::metrics::Metrics;
use crate::net::{HttpClient, ReadError, describe_client_error, full, read_limited};

/// A token and when to renew it.
#[derive(Clone)]
struct Cached {
    token: String,
    renew_at: Instant,
    expires_at: Instant,
}

/// Never the token itself.
impl std::fmt::Debug for Cached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cached")
            .field("token", &"<redacted>")
            .field("renew_at", &self.renew_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Debug, Default)]
struct State {
    cached: Option<Cached>,
    last_error: Option<String>,
}

/// A service account of one realm.
#[derive(Debug)]
pub struct ServiceAccount {
    realm: String,
    client_id: String,
    secret: SecretSource,
    token_url: String,
    /// `Host` / `X-Forwarded-*` as the public URL, so the token's `iss` is the issuer Keycloak
    /// expects on the registration requests the gateway forwards.
    public_authority: String,
    public_scheme: String,
    renew_before: Duration,
    timeout: Duration,
    client: HttpClient,
    metrics: Metrics,
    state: Mutex<State>,
    flight: tokio::sync::Mutex<()>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

#[derive(Deserialize, Default)]
struct ErrorAnswer {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

/// Percent-encodes a form value (`application/x-www-form-urlencoded`).
pub(crate) fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => (b as char).to_string(),
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// When to renew a token that lives `lifetime`: `renew_before` ahead, but never in its first half.
fn renew_after(lifetime: Duration, renew_before: Duration) -> Duration {
    lifetime.saturating_sub(renew_before).max(lifetime / 2)
}

// === impl ServiceAccount ===

impl ServiceAccount {
    /// A service account from `[realms.NAME.registrar]`.
    pub fn new(
        realm: &str,
        client_id: &str,
        g: &RegistrarSettings,
        settings: &Settings,
        client: HttpClient,
        metrics: Metrics,
    ) -> Self {
        let secret = match (&g.secret_file, &g.secret_env) {
            (Some(p), _) => SecretSource::File(p.clone()),
            (None, Some(e)) => SecretSource::Env(e.clone()),
            (None, None) => SecretSource::Env(String::new()), // refused when the settings were loaded
        };
        ServiceAccount {
            realm: realm.to_owned(),
            client_id: client_id.to_owned(),
            secret,
            token_url: g
                .token_url
                .clone()
                .unwrap_or_else(|| format!("{}/realms/{realm}/protocol/openid-connect/token", settings.upstream)),
            public_authority: settings.public_url.authority.clone(),
            public_scheme: settings.public_url.scheme.clone(),
            renew_before: g.renew_before.map(|d| d.0).unwrap_or(Duration::from_secs(60)),
            timeout: settings.timeouts.response,
            client,
            metrics,
            state: Mutex::new(State::default()),
            flight: tokio::sync::Mutex::new(()),
        }
    }

    fn fresh(&self, now: Instant) -> Option<String> {
        let st = self.state.lock();
        st.cached.as_ref().filter(|c| now < c.renew_at).map(|c| c.token.clone())
    }

    /// A valid token: the cached one, or a new one when it is due (one fetch at a time). When a
    /// renewal fails, a token that has not expired yet is still used.
    pub async fn token(&self) -> Result<String, String> {
        if let Some(t) = self.fresh(Instant::now()) {
            return Ok(t);
        }
        let _flight = self.flight.lock().await;
        let now = Instant::now();
        if let Some(t) = self.fresh(now) {
            return Ok(t); // another request renewed it while this one waited
        }
        match self.fetch().await {
            Ok((token, lifetime)) => {
                let now = Instant::now();
                let mut st = self.state.lock();
                st.cached = Some(Cached {
                    token: token.clone(),
                    renew_at: now + renew_after(lifetime, self.renew_before),
                    expires_at: now + lifetime,
                });
                st.last_error = None;
                drop(st);
                self.count("success");
                tracing::info!(realm = %self.realm, client_id = %self.client_id, lifetime_s = lifetime.as_secs(), "registration credential renewed");
                Ok(token)
            }
            Err(why) => {
                self.count("failure");
                tracing::warn!(realm = %self.realm, client_id = %self.client_id, error = %why, "registration credential renewal failed");
                let mut st = self.state.lock();
                st.last_error = Some(why.clone());
                match st.cached.as_ref().filter(|c| Instant::now() < c.expires_at) {
                    Some(c) => Ok(c.token.clone()),
                    None => Err(why),
                }
            }
        }
    }

    fn count(&self, result: &str) {
        self.metrics
            .registrar_renewals
            .with_label_values(&[&self.realm, result])
            .inc();
    }

    /// Why no usable token is held, if none is.
    pub fn problem(&self) -> Option<String> {
        let st = self.state.lock();
        let valid = st.cached.as_ref().is_some_and(|c| Instant::now() < c.expires_at);
        match (valid, &st.last_error) {
            (true, _) => None,
            (false, Some(e)) => Some(e.clone()),
            (false, None) => Some("no token fetched yet".into()),
        }
    }

    /// Drops the cached token (Keycloak refused it).
    pub fn invalidate(&self) {
        self.state.lock().cached = None;
    }

    /// When the renewal task should next wake up.
    fn next_renewal(&self) -> Option<Instant> {
        self.state.lock().cached.as_ref().map(|c| c.renew_at)
    }

    async fn fetch(&self) -> Result<(String, Duration), String> {
        let secret = self.secret.read()?;
        let form = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}",
            form_encode(&self.client_id),
            form_encode(&secret)
        );
        let mut req = Request::post(&self.token_url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(full(form))
            .map_err(|e| format!("bad token_url {}: {e}", self.token_url))?;
        let h = req.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.public_authority) {
            h.insert(HOST, v.clone());
            h.insert("x-forwarded-host", v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.public_scheme) {
            h.insert("x-forwarded-proto", v);
        }
        let call = async {
            let resp = self.client.request(req).await.map_err(|e| {
                format!(
                    "the token endpoint {} cannot be reached: {}",
                    self.token_url,
                    describe_client_error(&e)
                )
            })?;
            let status = resp.status();
            let body = read_limited(resp.into_body(), 256 * 1024).await.map_err(|e| match e {
                ReadError::TooLarge => "the token endpoint's answer is too large".to_owned(),
                ReadError::Failed(m) => format!("the token endpoint's answer broke off: {m}"),
            })?;
            if !status.is_success() {
                let e: ErrorAnswer = serde_json::from_slice(&body).unwrap_or_default();
                return Err(format!(
                    "Keycloak's token endpoint refused client {} with {status} {} {}",
                    self.client_id, e.error, e.error_description
                )
                .trim_end()
                .to_owned());
            }
            let t: TokenAnswer = serde_json::from_slice(&body)
                .map_err(|e| format!("the token endpoint's answer has no access_token: {e}"))?;
            Ok((t.access_token, Duration::from_secs(t.expires_in.unwrap_or(60).max(2))))
        };
        tokio::time::timeout(self.timeout, call).await.map_err(|_| {
            format!(
                "the token endpoint {} did not answer within {}ms",
                self.token_url,
                self.timeout.as_millis()
            )
        })?
    }
}

/// Keeps the token renewed ahead of its expiry, so readiness reflects whether it can be had
/// and requests rarely wait; retries failures with backoff (1 s doubling to 30 s). Ends when
/// the gateway is dropped.
pub(crate) async fn renew_loop(sa: Weak<ServiceAccount>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let Some(account) = sa.upgrade() else { return };
        let wait = match account.token().await {
            Ok(_) if account.problem().is_none() && account.state.lock().last_error.is_none() => {
                backoff = Duration::from_secs(1);
                account
                    .next_renewal()
                    .map(|at| at.saturating_duration_since(Instant::now()))
                    .unwrap_or(backoff)
                    .max(Duration::from_millis(200))
            }
            _ => {
                let w = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                w
            }
        };
        drop(account);
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_time() {
        let s = Duration::from_secs;
        assert_eq!(renew_after(s(300), s(60)), s(240));
        assert_eq!(renew_after(s(60), s(60)), s(30), "never in the first half of its life");
        assert_eq!(renew_after(s(10), s(60)), s(5));
    }

    #[test]
    fn form_values_are_encoded() {
        assert_eq!(form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }
}
