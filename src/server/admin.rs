//! The admin listener: `/metrics` (Prometheus text), `/healthz` (alive) and `/readyz` (policy
//! loaded and keys of every named realm fresh), on its own port.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use serde_json::json;
use tokio::net::TcpListener;

use crate::app::App;
use crate::net::{Body, full};

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Answers one admin request.
pub fn route(app: &App, req: &Request<Incoming>) -> Response<Body> {
    match req.uri().path() {
        "/metrics" => {
            app.verifier.jwks.observe();
            app.readiness();
            reply(StatusCode::OK, "text/plain; version=0.0.4", app.metrics.render())
        }
        "/healthz" => reply(
            StatusCode::OK,
            "application/json",
            json!({"status": "alive"}).to_string(),
        ),
        "/readyz" => {
            let (ready, problems) = app.readiness();
            let snap = app.policy.current();
            let body = json!({
                "ready": ready,
                "problems": problems,
                "policy": {
                    "generation": snap.generation,
                    "checksum": snap.checksum,
                    "source": app.policy.path().map(|p| p.display().to_string()).unwrap_or_else(|| "built-in".into()),
                },
            });
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(status, "application/json", body.to_string())
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "application/json",
            json!({"error": "not_found", "error_description": "admin paths: /metrics, /healthz, /readyz"}).to_string(),
        ),
    }
}

/// Serves the admin endpoint until `shutdown` resolves.
pub async fn serve(app: Arc<App>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let builder = Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let app = app.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let resp = route(&app, &req);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
