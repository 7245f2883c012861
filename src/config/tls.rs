//! TLS material: the listener's certificate (optionally requiring client certificates) and the
//! upstream client's CA bundle and client certificate, loaded from PEM files into rustls configs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::Deserialize;

/// `[tls]` in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsFile {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by one of these CAs.
    pub client_ca: Option<PathBuf>,
}

/// `[upstream_tls]` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsFile {
    /// PEM CA bundle trusted for the upstream (default: the system's roots).
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain for mTLS to the upstream.
    pub client_cert: Option<PathBuf>,
    /// PEM key of the client certificate.
    pub client_key: Option<PathBuf>,
}

/// A ready rustls server config for the proxy listener.
#[derive(Clone)]
pub struct ServerTls(pub Arc<ServerConfig>);

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

/// A ready rustls client config for upstream and JWKS connections.
#[derive(Clone)]
pub struct UpstreamTls(pub Arc<ClientConfig>);

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpstreamTls")
    }
}

/// A TLS problem, naming the config key and file.
#[derive(Debug)]
pub struct TlsError {
    /// The config key, e.g. `tls.cert`.
    pub key: &'static str,
    /// What went wrong.
    pub message: String,
}

fn err(key: &'static str, message: impl Into<String>) -> TlsError {
    TlsError {
        key,
        message: message.into(),
    }
}

fn certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let list = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(key, format!("cannot read {}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(key, format!("bad PEM in {}: {e}", path.display())))?;
    if list.is_empty() {
        return Err(err(key, format!("no certificate in {}", path.display())));
    }
    Ok(list)
}

fn private_key(key: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| err(key, format!("no usable private key in {}: {e}", path.display())))
}

fn roots(key: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certs(key, path)? {
        store
            .add(cert)
            .map_err(|e| err(key, format!("bad CA certificate in {}: {e}", path.display())))?;
    }
    Ok(store)
}

/// Builds the listener's TLS config (ALPN h2 and http/1.1).
pub fn server_config(file: &ServerTlsFile) -> Result<ServerTls, TlsError> {
    let chain = certs("tls.cert", &file.cert)?;
    let key = private_key("tls.key", &file.key)?;
    let builder = ServerConfig::builder();
    let builder = match &file.client_ca {
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots("tls.client_ca", ca)?))
                .build()
                .map_err(|e| err("tls.client_ca", e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(chain, key)
        .map_err(|e| err("tls.key", format!("certificate and key do not match: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(ServerTls(Arc::new(cfg)))
}

/// Builds the upstream client's TLS config (HTTP/1.1 only).
pub fn client_config(file: &UpstreamTlsFile) -> Result<UpstreamTls, TlsError> {
    let store = match &file.ca {
        Some(ca) => roots("upstream_tls.ca", ca)?,
        None => {
            let mut store = RootCertStore::empty();
            let found = rustls_native_roots();
            store.add_parsable_certificates(found);
            store
        }
    };
    let builder = ClientConfig::builder().with_root_certificates(store);
    let cfg = match (&file.client_cert, &file.client_key) {
        (Some(c), Some(k)) => {
            let chain = certs("upstream_tls.client_cert", c)?;
            let key = private_key("upstream_tls.client_key", k)?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                err(
                    "upstream_tls.client_key",
                    format!("certificate and key do not match: {e}"),
                )
            })?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => {
            return Err(err("upstream_tls.client_key", "client_cert needs client_key"));
        }
        (None, Some(_)) => {
            return Err(err("upstream_tls.client_cert", "client_key needs client_cert"));
        }
    };
    Ok(UpstreamTls(Arc::new(cfg)))
}

/// The system's trusted roots (empty when none can be read).
fn rustls_native_roots() -> Vec<CertificateDer<'static>> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "could not read a system CA certificate");
    }
    found.certs
}
