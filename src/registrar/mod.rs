//! The gateway's own registration credential, per realm, for the anonymous creates it forwards:
//! a service account's access token (client-credentials grant, cached, renewed before it
//! expires, one fetch at a time) or an initial access token read from a file. Keycloak then
//! sees an authenticated request and its Trusted Hosts policy can stay closed.
//!
//! A realm whose credential cannot be obtained makes `/readyz` answer 503 and its anonymous
//! creates `registrar_unavailable`; secrets and tokens are never logged.

mod iat_file;
mod secret;
pub(crate) mod service_account;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::Settings;
use crate::error::{Reason, Refusal};
use crate::metrics::Metrics;
use crate::net::HttpClient;
pub(crate) use iat_file::IatFile;
pub(crate) use secret::SecretSource;
pub(crate) use service_account::ServiceAccount;

/// One realm's credential.
#[derive(Debug)]
pub enum Registrar {
    /// A service account using the client-credentials grant.
    ServiceAccount(Arc<ServiceAccount>),
    /// An initial access token kept in a file.
    InitialAccess(IatFile),
}

/// Every configured realm's credential.
#[derive(Debug, Default)]
pub struct Registrars {
    by_realm: BTreeMap<String, Registrar>,
    renewers: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Registrars {
    fn drop(&mut self) {
        for r in &self.renewers {
            r.abort();
        }
    }
}

/// The refusal when the gateway cannot authenticate an anonymous create it would forward.
pub(crate) fn unavailable(realm: &str, why: &str) -> Refusal {
    Refusal::new(
        Reason::RegistrarUnavailable,
        format!(
            "Anonymous registration in realm {realm} is temporarily unavailable: the gateway cannot obtain its own registration credential ({why}). Try again later; operators: see /readyz."
        ),
    )
    .retry_after(5)
}

// === impl Registrar ===

impl Registrar {
    /// `service_account` or `initial_access` (audit and metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            Registrar::ServiceAccount(_) => "service_account",
            Registrar::InitialAccess(_) => "initial_access",
        }
    }

    /// The `Authorization` value to forward with (`Bearer …`).
    pub async fn authorization(&self, realm: &str) -> Result<String, Refusal> {
        let token = match self {
            Registrar::ServiceAccount(sa) => sa.token().await,
            Registrar::InitialAccess(f) => f.token(),
        };
        token
            .map(|t| format!("Bearer {t}"))
            .map_err(|why| unavailable(realm, &why))
    }

    /// Why the credential cannot be used now, if it cannot.
    pub fn problem(&self) -> Option<String> {
        match self {
            Registrar::ServiceAccount(sa) => sa.problem(),
            Registrar::InitialAccess(f) => f.token().err(),
        }
    }

    /// Forgets a cached token that Keycloak refused, so the next request fetches a new one.
    pub fn invalidate(&self) {
        if let Registrar::ServiceAccount(sa) = self {
            sa.invalidate();
        }
    }
}

// === impl Registrars ===

impl Registrars {
    /// Builds every `[realms.NAME.registrar]` and starts the service accounts' renewal (must
    /// run inside a Tokio runtime).
    pub fn new(settings: &Settings, client: &HttpClient, metrics: &Metrics) -> Registrars {
        let mut out = Registrars::default();
        for (realm, rs) in &settings.realms {
            let Some(g) = &rs.registrar else { continue };
            let registrar = match (&g.client_id, &g.initial_access_token_file) {
                (Some(id), _) => {
                    let sa = Arc::new(ServiceAccount::new(
                        realm,
                        id,
                        g,
                        settings,
                        client.clone(),
                        metrics.clone(),
                    ));
                    out.renewers
                        .push(tokio::spawn(service_account::renew_loop(Arc::downgrade(&sa))));
                    Registrar::ServiceAccount(sa)
                }
                (None, Some(path)) => Registrar::InitialAccess(IatFile::new(path.clone())),
                (None, None) => continue, // refused when the settings were loaded
            };
            out.by_realm.insert(realm.clone(), registrar);
        }
        out
    }

    /// The credential of `realm`, if one is configured.
    pub fn get(&self, realm: &str) -> Option<&Registrar> {
        self.by_realm.get(realm)
    }

    /// Readiness problems, one line per realm whose credential cannot be obtained.
    pub fn problems(&self) -> Vec<String> {
        self.by_realm
            .iter()
            .filter_map(|(realm, r)| {
                r.problem().map(|p| {
                    format!(
                        "registration credential of realm {realm} ({}) unavailable: {p}",
                        r.kind()
                    )
                })
            })
            .collect()
    }
}
