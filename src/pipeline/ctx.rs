//! The per-request context: what every stage learned, read once at the end by `observe`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use http::HeaderValue;

use http::{Method, Request};
use tokio::time::Instant;

use super::upstream::REQUEST_ID;
use crate::error::Reason;
use crate::hints::HintCtx;
use crate::policy::Verdict;
use crate::policy::metadata::ClientMetadata;
use crate::route::RegRoute;
use crate::token::Identity;

/// The client connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// Peer address.
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// What the pipeline knows about one request.
#[derive(Debug)]
pub struct Ctx {
    /// Request id (from the client when well formed, else generated).
    pub request_id: String,
    /// Method.
    pub method: Method,
    /// Connection.
    pub conn: ConnInfo,
    /// When the request arrived.
    pub started: Instant,
    /// Set for registration traffic.
    pub reg: Option<RegRoute>,
    /// The caller, once known.
    pub identity: Option<Identity>,
    /// Client metadata from the body, once read.
    pub metadata: Option<ClientMetadata>,
    /// `allow`, `deny` or `shadow_deny` (registration traffic); set once, at the end.
    pub decision: Verdict,
    /// What became of the request (`outcome` label: succeeded, refused_by_gateway, …); set at the end.
    pub outcome: &'static str,
    /// Whether a shadowed rule would have refused the request.
    pub shadowed: bool,
    /// The rule that decided.
    pub rule: Option<crate::error::RuleId>,
    /// Why the request was refused, or what Keycloak's refusal was rewritten as, or shadowed.
    pub reason: Option<Reason>,
    /// Keycloak's status, when it answered.
    pub upstream_status: Option<u16>,
    /// Metric label of the realm (bounded).
    pub realm_label: String,
    /// `scheme://host` this request reached Keycloak as (from the forwarded headers sent); set
    /// for registration requests only, whose answers stage 6 rewrites.
    pub seen_origin: String,
    /// The request's `Origin` and `Content-Type`, for explaining Keycloak's CORS and 415 answers.
    pub sent: Sent,
    /// The client's address (the peer, or the forwarded client behind a trusted proxy).
    pub client_ip: std::net::IpAddr,
    /// Whether the request was sent upstream (a refusal after that is not a policy denial).
    pub forwarded: bool,
    /// A create counted against quotas, refunded unless Keycloak accepts it.
    pub quota_slot: Option<crate::policy::quota::Slot>,
    /// Anonymous creates counted in the realm's anonymous window (for the metric).
    pub anonymous_realm_used: Option<u32>,
    /// Anonymous registration: the credential kind the gateway forwarded with, once it did.
    pub lent: Option<&'static str>,
    /// Whether anonymous-registration rules governed this request.
    pub anonymous: bool,
    /// Body members dropped before forwarding, as one header-safe line.
    pub dropped: String,
    /// The request's `Origin`, when the realm's CORS policy allows it.
    pub cors_origin: Option<String>,
    /// The policy snapshot of an anonymous create (for the face of its refusals).
    pub snapshot: Option<std::sync::Arc<crate::policy::Snapshot>>,
    /// The request's `User-Agent`.
    pub user_agent: Option<HeaderValue>,
    /// The trace id of a valid incoming `traceparent` (forwarded to Keycloak unchanged).
    pub trace_id: Option<String>,
    /// Request body bytes received so far (`None`: the request has no body).
    pub bytes_in: Option<Arc<AtomicU64>>,
}

/// What a stage learned about the caller and the request, returned for `run` to record
/// ([`Ctx::learn`]): stages read the context, only the orchestrator writes it.
#[derive(Debug, Default)]
pub struct Found {
    /// The caller, once known.
    pub identity: Option<Identity>,
    /// Client metadata from the body, once read.
    pub metadata: Option<ClientMetadata>,
    /// The rule that decided.
    pub rule: Option<crate::error::RuleId>,
    /// A shadowed refusal's reason.
    pub reason: Option<Reason>,
    /// Whether a shadowed rule would have refused the request.
    pub shadowed: bool,
    /// Metric label of the realm.
    pub realm_label: Option<String>,
}

/// Whether a client-supplied request id is acceptable: 1–128 visible, URL-safe characters.
pub fn valid_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:@+=/".contains(&b))
}

/// Headers of the request kept for explaining Keycloak's answers.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    /// `Origin`, when sent.
    pub origin: Option<String>,
    /// `Content-Type`, when sent.
    pub content_type: Option<String>,
}

fn header<B>(req: &Request<B>, name: http::header::HeaderName) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(200).collect())
}

// === impl Ctx ===

impl Ctx {
    /// A context for a new request.
    pub fn new<B>(req: &Request<B>, conn: ConnInfo) -> Self {
        let request_id = req
            .headers()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|id| valid_request_id(id))
            .map(str::to_owned)
            .unwrap_or_else(crate::net::ids::request_id);
        Ctx {
            request_id,
            method: req.method().clone(),
            conn,
            started: Instant::now(),
            reg: None,
            identity: None,
            metadata: None,
            decision: Verdict::Allow,
            outcome: "answered_by_gateway",
            shadowed: false,
            rule: None,
            reason: None,
            upstream_status: None,
            realm_label: String::new(),
            seen_origin: String::new(),
            sent: Sent {
                origin: header(req, http::header::ORIGIN),
                content_type: header(req, http::header::CONTENT_TYPE),
            },
            client_ip: conn.peer.ip(),
            forwarded: false,
            quota_slot: None,
            anonymous_realm_used: None,
            lent: None,
            anonymous: false,
            dropped: String::new(),
            cors_origin: None,
            snapshot: None,
            user_agent: req.headers().get(http::header::USER_AGENT).cloned(),
            trace_id: None,
            bytes_in: None,
        }
    }

    /// Records what a stage found (only what it found: `None` keeps what is known).
    pub fn learn(&mut self, found: Found) {
        let Found {
            identity,
            metadata,
            rule,
            reason,
            shadowed,
            realm_label,
        } = found;
        self.identity = identity.or(self.identity.take());
        self.metadata = metadata.or(self.metadata.take());
        self.rule = rule.or(self.rule.take());
        self.reason = reason.or(self.reason);
        self.shadowed |= shadowed;
        if let Some(label) = realm_label {
            self.realm_label = label;
        }
    }

    /// The context hints are written from.
    pub fn hint_ctx<'a>(&'a self, public_url: &'a str, upstream: &'a str) -> HintCtx<'a> {
        let claims = self.identity.as_ref().map(|i| &i.claims);
        HintCtx {
            realm: self.reg.as_ref().map(|r| r.realm.as_str()),
            operation: self.reg.as_ref().map(|r| r.operation),
            provider: self.reg.as_ref().map(|r| r.provider.as_str()),
            kind: self.identity.as_ref().map(|i| i.kind),
            azp: claims.and_then(|c| c.client()),
            username: claims.and_then(|c| c.preferred_username.as_deref()),
            public_url,
            upstream,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        assert!(valid_request_id("abc-123_x.y:z"));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id("has space"));
        assert!(!valid_request_id("new\nline"));
        assert!(!valid_request_id(&"a".repeat(129)));
        let id = crate::net::ids::request_id();
        assert_eq!(id.len(), 32);
        assert_ne!(id, crate::net::ids::request_id());
    }
}
