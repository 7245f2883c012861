//! Stage 4d, current: when the metadata rules refuse an update, the client is read from
//! Keycloak with the caller's own credential (GET on the same registration URL, which never
//! rotates a registration access token), so that the rules judge only what the update
//! changes. A read-back-and-write update (`kcreg.sh update -s description=x`) then passes with
//! the protocol mappers and attributes the client already has. When the read fails, the
//! update is judged whole, as before.

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, EXPECT, TRANSFER_ENCODING};
use http::request::Parts;
use http::{Method, Request};

use super::ctx::Ctx;
use super::route::{Operation, RegRoute};
use super::upstream;
use crate::app::App;
use crate::error::Reason;
use crate::net::{full, read_within};
use crate::policy::Decision;
use crate::policy::json::parse_object;
use crate::policy::metadata::{ClientMetadata, Dialect, normalise};

/// Largest client representation read back.
const LIMIT: usize = 1 << 20;

/// Whether the decision on an update could change once the current client is known: an
/// enforced refusal by a metadata rule (the built-in client-id check never changes).
pub fn worth_reading(route: &RegRoute, d: &Decision) -> bool {
    route.operation == Operation::Update
        && !d.conclusive
        && d.refusal
            .as_ref()
            .is_some_and(|r| r.reason != Reason::ClientIdMismatch && r.reason != Reason::QuotaExceeded)
}

/// Reads the client named by the update's path, as the caller may see it.
pub async fn read(app: &App, ctx: &Ctx, parts: &Parts, dialect: Dialect) -> Option<ClientMetadata> {
    let mut req = Request::new(full(bytes::Bytes::new()));
    *req.method_mut() = Method::GET;
    *req.uri_mut() = parts.uri.clone();
    *req.headers_mut() = parts.headers.clone();
    for h in [CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING, EXPECT] {
        req.headers_mut().remove(h);
    }
    let hop = upstream::Hop {
        peer: ctx.conn.peer.ip(),
        tls: ctx.conn.tls,
        request_id: &ctx.request_id,
    };
    let req = upstream::prepare(&app.settings, &hop, req).ok()?;
    let resp = match upstream::send(&app.upstream, &app.settings, req).await {
        Ok(r) => r,
        Err((r, _)) => {
            tracing::info!(request_id = %ctx.request_id, reason = r.reason.code(), "could not read the current client; judging the update whole");
            return None;
        }
    };
    let status = resp.status().as_u16();
    if status != 200 {
        tracing::info!(request_id = %ctx.request_id, status, "Keycloak did not return the current client; judging the update whole");
        return None;
    }
    let bytes = read_within(resp.into_body(), LIMIT, app.settings.timeouts.response)
        .await
        .ok()?;
    let obj = parse_object(&bytes).ok()?;
    normalise(dialect, &obj, false).ok()
}
