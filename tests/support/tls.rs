//! TLS helpers: development certificates generated once per test binary by `certs/gen.sh`, a
//! raw TLS client that reports the negotiated ALPN protocol, and a stand-in HTTPS upstream.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use dcr_gateway::net::{Body, empty};
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::Seen;

struct Generated {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

static CERTS: OnceLock<Generated> = OnceLock::new();

/// The directory holding freshly generated certificates (`certs/gen.sh` into a temp dir, once
/// per test binary).
pub fn certs() -> &'static Path {
    &CERTS
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/gen.sh");
            let out = std::process::Command::new(script)
                .arg(dir.path())
                .output()
                .expect("run certs/gen.sh");
            assert!(
                out.status.success(),
                "certs/gen.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let path = dir.path().to_owned();
            for f in ["ca.pem", "server.pem", "server.key", "client.pem", "client.key"] {
                assert!(path.join(f).is_file(), "gen.sh did not write {f}");
            }
            Generated { _dir: dir, path }
        })
        .path
}

/// A file in the generated certificate directory.
pub fn cert_file(name: &str) -> PathBuf {
    certs().join(name)
}

/// Every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// The private key in a PEM file.
pub fn load_key(path: &Path) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_file(path).unwrap()
}

/// A root store holding the CA(s) in `ca`.
pub fn roots(ca: &Path) -> RootCertStore {
    let mut store = RootCertStore::empty();
    for c in load_certs(ca) {
        store.add(c).unwrap();
    }
    store
}

/// A client config trusting the generated `ca.pem`, offering `alpn`, presenting the
/// certificate `identity` (`"client"` or `"other-client"`) when given.
pub fn client_tls(alpn: &[&str], identity: Option<&str>) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder().with_root_certificates(roots(&cert_file("ca.pem")));
    let mut cfg = match identity {
        Some(name) => builder
            .with_client_auth_cert(
                load_certs(&cert_file(&format!("{name}.pem"))),
                load_key(&cert_file(&format!("{name}.key"))),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(cfg)
}

/// One answer over TLS, with what the handshake negotiated.
#[derive(Debug)]
pub struct TlsAnswer {
    /// The ALPN protocol the server chose.
    pub alpn: Option<String>,
    /// The HTTP version of the response.
    pub version: Version,
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// Connects to `addr` as `localhost` over TLS, sends `GET path` over the protocol ALPN chose
/// (HTTP/2 for `h2`, else HTTP/1.1) and reads the whole answer. Any failure, in the handshake
/// or after it (TLS 1.3 reports a rejected client certificate only on the first read), is
/// `Err` with the error text.
pub async fn tls_get(addr: SocketAddr, config: Arc<ClientConfig>, path: &str) -> Result<TlsAnswer, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    let tls = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let alpn = tls
        .get_ref()
        .1
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let io = TokioIo::new(tls);
    let resp = if alpn.as_deref() == Some("h2") {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::spawn(conn);
        let req = Request::get(format!("https://localhost:{}{path}", addr.port()))
            .body(empty())
            .unwrap();
        send.send_request(req).await
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("http1 handshake: {e}"))?;
        tokio::spawn(conn);
        let req = Request::get(path)
            .header("host", format!("localhost:{}", addr.port()))
            .body(empty())
            .unwrap();
        send.send_request(req).await
    };
    let resp = resp.map_err(|e| {
        let mut text = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            text.push_str(&format!(": {s}"));
            src = s.source();
        }
        text
    })?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(TlsAnswer {
        alpn,
        version: parts.version,
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// A server config with the generated `server.pem` (SAN localhost, 127.0.0.1), HTTP/1.1 only,
/// requiring a client certificate signed by `ca.pem` when `require_client_cert`.
pub fn upstream_server_tls(require_client_cert: bool) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder();
    let builder = if require_client_cert {
        let verifier = WebPkiClientVerifier::builder(Arc::new(roots(&cert_file("ca.pem"))))
            .build()
            .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut cfg = builder
        .with_single_cert(load_certs(&cert_file("server.pem")), load_key(&cert_file("server.key")))
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// A stand-in HTTPS upstream.
pub struct TlsUpstream {
    /// Its address.
    pub addr: SocketAddr,
    /// Requests seen, in order.
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Handshakes that failed (e.g. no client certificate).
    pub failed_handshakes: Arc<AtomicUsize>,
    /// The leaf certificate (DER) each accepted connection presented, if any.
    pub client_certs: Arc<Mutex<Vec<Option<Vec<u8>>>>>,
}

impl TlsUpstream {
    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// How many requests reached it.
    pub fn hits(&self) -> usize {
        self.seen.lock().len()
    }
}

/// Serves `handler` over TLS (`config`) and HTTP/1.1 on 127.0.0.1:0, recording every request.
pub async fn https_upstream<F, Fut>(config: Arc<ServerConfig>, handler: F) -> TlsUpstream
where
    F: Fn(Seen) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(AtomicUsize::new(0));
    let client_certs = Arc::new(Mutex::new(Vec::new()));
    let handler = Arc::new(handler);
    let acceptor = TlsAcceptor::from(config);
    let (log, fails, certs_log) = (seen.clone(), failed.clone(), client_certs.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (handler, log, fails, certs_log) = (handler.clone(), log.clone(), fails.clone(), certs_log.clone());
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let tls = match acceptor.accept(stream).await {
                    Ok(tls) => tls,
                    Err(_) => {
                        fails.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                };
                let presented = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.as_ref().to_vec());
                certs_log.lock().push(presented);
                super::serve_recorded(TokioIo::new(tls), handler, log).await;
            });
        }
    });
    TlsUpstream {
        addr,
        seen,
        failed_handshakes: failed,
        client_certs,
    }
}
