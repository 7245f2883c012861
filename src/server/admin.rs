//! The admin listener: `/metrics` (Prometheus text), `/healthz` (alive) and `/readyz` (policy
//! loaded and keys of every named realm fresh), on its own port.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::conn::{self, Bounds, ConnState};
use crate::app::App;
use crate::net::{Body, Guarded, full};

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Answers one admin request.
pub(crate) fn route(app: &App, req: &Request<Incoming>) -> Response<Body> {
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

/// Admin connections open at once; more are closed at accept.
pub(crate) const MAX_ADMIN_CONNECTIONS: usize = 64;

/// Serves the admin endpoint until `stop` turns true. Connections have their own cap and the
/// same time bounds as the proxy's, so whatever the proxy listener suffers, probes get in.
pub(crate) async fn serve(app: Arc<App>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let t = &app.settings.timeouts;
    let bounds = Bounds {
        header_read: t.header_read,
        idle: t.idle,
        response_write: t.response_write,
    };
    let builder = super::builder();
    let slots = Arc::new(Semaphore::new(MAX_ADMIN_CONNECTIONS));
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = conn::stopped(&mut stop) => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue; // dropped: closed at once
        };
        let (app, builder, stop) = (app.clone(), builder.clone(), stop.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let state = ConnState::new(bounds);
            let marks = state.clone();
            let svc = service_fn(move |req| {
                let mut mark = marks.begin(req.version());
                let resp = route(&app, &req);
                mark.writing();
                async move { Ok::<_, Infallible>(resp.map(|b| Guarded::new(b, mark).boxed())) }
            });
            let _ = conn::drive(&builder, TokioIo::new(stream), svc, state, stop).await;
        });
    }
}

/// Runs [`serve`] on a runtime of its own, on its own thread, so that a proxy runtime busy with
/// hostile traffic cannot starve health probes. The returned receiver resolves when it stopped.
pub(crate) fn spawn(
    app: Arc<App>,
    listener: TcpListener,
    stop: watch::Receiver<bool>,
) -> std::io::Result<tokio::sync::oneshot::Receiver<()>> {
    let listener = listener.into_std()?;
    let (done, finished) = tokio::sync::oneshot::channel();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new()
        .name("dcr-gateway-admin".into())
        .spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(l) => serve(app, l, stop).await,
                    Err(e) => tracing::error!(error = %e, "admin listener cannot start"),
                }
            });
            let _ = done.send(());
        })?;
    Ok(finished)
}
