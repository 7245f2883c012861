//! Prometheus metrics over an owned `Registry` (no globals), served on the admin listener.
//!
//! Labels are bounded: route kind, operation, status class and code, methods from a fixed list
//! (others are `OTHER`), reason codes, outcomes, and realm names that the configuration or policy
//! knows (others are counted as `other`). Every series is listed in docs/metrics.md.

mod labels;
mod process;

pub use labels::{method_label, outcome, status_class};
pub use process::Process;

mod hot;

pub(crate) use hot::Decision;

use std::sync::Arc;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::route::Operation;

/// Every metric the gateway exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests by route kind, operation and status class.
    pub requests: IntCounterVec,
    /// Requests by HTTP method (bounded, see [`method_label`]) and status code.
    pub http_requests: IntCounterVec,
    /// Time from sending a request to Keycloak to its response head, by route and operation.
    pub upstream_latency: HistogramVec,
    /// JWKS fetch duration by realm and result.
    pub jwks_fetch_duration: HistogramVec,
    /// Request latency by route kind and operation.
    pub latency: HistogramVec,
    /// Requests being served now.
    pub in_flight: IntGauge,
    /// Upstream failures by kind.
    pub upstream_errors: IntCounterVec,
    /// JWKS fetches by realm and result.
    pub jwks_fetches: IntCounterVec,
    /// Keys held per realm.
    pub jwks_keys: IntGaugeVec,
    /// Age of the key set per realm, in seconds.
    pub jwks_age: GaugeVec,
    /// Bearer-token verifications by result and reason code.
    pub verifications: IntCounterVec,
    /// Registration decisions by realm, operation, decision (the gateway's verdict), outcome
    /// (what became of the request, see [`outcome`]) and reason code.
    pub decisions: IntCounterVec,
    /// Keycloak answers rewritten, by reason code.
    pub rewrites: IntCounterVec,
    /// Policy reloads by result.
    pub reloads: IntCounterVec,
    /// Unix time of the last successful policy load.
    pub reload_last_success: Gauge,
    /// 1 when the last policy load succeeded, 0 when it failed.
    pub reload_ok: IntGauge,
    /// Generation of the active policy (1 = first load).
    pub policy_generation: IntGauge,
    /// Active policy checksum, as a label on a constant 1.
    pub policy_info: IntGaugeVec,
    /// 1 when the gateway is ready to serve.
    pub ready: IntGauge,
    /// Quota store operation latency by operation (`take`, `refund`, `ping`).
    pub quota_store_latency: HistogramVec,
    /// Quota store failures by operation and kind.
    pub quota_store_errors: IntCounterVec,
    /// Creates counted in memory because Redis failed (fail open).
    pub quota_store_fallbacks: IntCounter,
    /// 1 when the Redis quota store answered its last operation.
    pub quota_store_up: IntGauge,
    /// Proxy connections open now.
    pub open_connections: IntGauge,
    /// Proxy connections closed at accept, by the cap that refused them.
    pub connections_refused: IntCounterVec,
    /// Proxy connections closed by a time bound (`header_read`, `idle`, `response_write`).
    pub connections_timed_out: IntCounterVec,
    /// Renewals of the gateway's own registration credential, by realm and result.
    pub registrar_renewals: IntCounterVec,
    /// Anonymous registration requests by realm, operation and outcome.
    pub anonymous: IntCounterVec,
    /// Anonymous registration refusals by realm and reason code.
    pub anonymous_refusals: IntCounterVec,
    /// Creates counted in the realm-wide anonymous quota's current window, by realm.
    pub anonymous_quota_used: IntGaugeVec,
    /// Members dropped from anonymous registration bodies, by realm.
    pub anonymous_dropped: IntCounterVec,
    hot: Arc<hot::Hot>,
    /// Process metrics (`process_*`), sampled at each render.
    process: Process,
}

fn counter(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    reg.register(Box::new(c.clone()))?;
    Ok(c)
}

fn hist(
    reg: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> prometheus::Result<HistogramVec> {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)?;
    reg.register(Box::new(h.clone()))?;
    Ok(h)
}

/// Buckets for calls that take milliseconds to seconds (Keycloak, JWKS fetches).
fn call_buckets() -> Vec<f64> {
    vec![
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ]
}

fn gauge_vec(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    reg.register(Box::new(g.clone()))?;
    Ok(g)
}

// === impl Metrics ===

impl Metrics {
    /// Creates every metric in a fresh registry.
    pub fn new() -> prometheus::Result<Self> {
        let reg = Registry::new_custom(Some("dcr_gateway".into()), None)?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "request_duration_seconds",
                "Request latency, first byte in to response head out.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["route", "operation"],
        )?;
        reg.register(Box::new(latency.clone()))?;
        let in_flight = IntGauge::new("in_flight_requests", "Requests being served now.")?;
        reg.register(Box::new(in_flight.clone()))?;
        let jwks_age = GaugeVec::new(
            Opts::new("jwks_age_seconds", "Seconds since the realm's key set was fetched."),
            &["realm"],
        )?;
        reg.register(Box::new(jwks_age.clone()))?;
        let reload_last_success = Gauge::new(
            "policy_last_reload_success_timestamp_seconds",
            "Unix time of the last successful policy load.",
        )?;
        reg.register(Box::new(reload_last_success.clone()))?;
        let policy_generation = IntGauge::new(
            "policy_generation",
            "Generation of the active policy; 1 is the first load.",
        )?;
        reg.register(Box::new(policy_generation.clone()))?;
        let ready = IntGauge::new("ready", "1 when the gateway is ready to serve.")?;
        reg.register(Box::new(ready.clone()))?;
        let quota_store_latency = HistogramVec::new(
            HistogramOpts::new("quota_store_duration_seconds", "Quota store (Redis) operation latency.").buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
            &["op"],
        )?;
        reg.register(Box::new(quota_store_latency.clone()))?;
        let quota_store_fallbacks = IntCounter::new(
            "quota_store_fallbacks_total",
            "Creates counted in this process's memory because Redis failed (fail open).",
        )?;
        reg.register(Box::new(quota_store_fallbacks.clone()))?;
        let quota_store_up = IntGauge::new(
            "quota_store_up",
            "1 when the Redis quota store answered its last operation.",
        )?;
        reg.register(Box::new(quota_store_up.clone()))?;
        let open_connections = IntGauge::new("open_connections", "Proxy connections open now.")?;
        reg.register(Box::new(open_connections.clone()))?;
        let reload_ok = IntGauge::new(
            "policy_last_reload_success",
            "1 when the last policy load succeeded, 0 when it failed (the previous policy is still enforced).",
        )?;
        reg.register(Box::new(reload_ok.clone()))?;
        let build_info = gauge_vec(
            &reg,
            "build_info",
            "The gateway's version and the commit it was built from (constant 1).",
            &["version", "commit"],
        )?;
        build_info.with_label_values(&[crate::VERSION, crate::COMMIT]).set(1);
        Ok(Metrics {
            process: Process::new()?,
            reload_ok,
            http_requests: counter(
                &reg,
                "http_requests_total",
                "Requests by HTTP method (GET, POST, PUT, DELETE, OPTIONS, HEAD, PATCH, else OTHER) and status code.",
                &["method", "code"],
            )?,
            upstream_latency: hist(
                &reg,
                "upstream_duration_seconds",
                "Time from sending a request to Keycloak to its response head, by route and operation.",
                &["route", "operation"],
                call_buckets(),
            )?,
            jwks_fetch_duration: hist(
                &reg,
                "jwks_fetch_duration_seconds",
                "JWKS fetch duration (discovery included), by realm and result.",
                &["realm", "result"],
                call_buckets(),
            )?,
            open_connections,
            connections_refused: counter(
                &reg,
                "connections_refused_total",
                "Proxy connections closed at accept, by the cap that refused them.",
                &["reason"],
            )?,
            connections_timed_out: counter(
                &reg,
                "connections_timed_out_total",
                "Proxy connections closed by a time bound (header_read, idle, response_write).",
                &["bound"],
            )?,
            requests: counter(
                &reg,
                "requests_total",
                "Requests by route kind, operation and status class.",
                &["route", "operation", "status_class"],
            )?,
            latency,
            in_flight,
            upstream_errors: counter(&reg, "upstream_errors_total", "Upstream failures by kind.", &["kind"])?,
            jwks_fetches: counter(
                &reg,
                "jwks_fetches_total",
                "JWKS fetches by realm and result.",
                &["realm", "result"],
            )?,
            jwks_keys: gauge_vec(&reg, "jwks_keys", "Usable keys held per realm.", &["realm"])?,
            jwks_age,
            verifications: counter(
                &reg,
                "token_verifications_total",
                "Bearer-token verifications by result (valid, cached, invalid) and reason code.",
                &["result", "reason"],
            )?,
            decisions: counter(
                &reg,
                "decisions_total",
                "Registration requests by realm, operation, the gateway's decision (allow, deny, shadow_deny), outcome (succeeded, refused_by_gateway, refused_by_keycloak, upstream_error, answered_by_gateway) and reason code.",
                &["realm", "operation", "decision", "outcome", "reason"],
            )?,
            rewrites: counter(
                &reg,
                "upstream_rewrites_total",
                "Keycloak error answers rewritten, by reason code.",
                &["reason"],
            )?,
            reloads: counter(
                &reg,
                "policy_reloads_total",
                "Policy loads by result (success, error).",
                &["result"],
            )?,
            reload_last_success,
            policy_generation,
            policy_info: gauge_vec(
                &reg,
                "policy_info",
                "The active policy's checksum (constant 1).",
                &["checksum"],
            )?,
            ready,
            quota_store_latency,
            quota_store_errors: counter(
                &reg,
                "quota_store_errors_total",
                "Quota store (Redis) failures by operation and kind (timeout, connection, not_connected, server).",
                &["op", "kind"],
            )?,
            quota_store_fallbacks,
            quota_store_up,
            registrar_renewals: counter(
                &reg,
                "registrar_renewals_total",
                "Fetches of the gateway's own registration credential by realm and result (success, failure).",
                &["realm", "result"],
            )?,
            anonymous: counter(
                &reg,
                "anonymous_registrations_total",
                "Anonymous registration requests by realm, operation and outcome (forwarded, refused, keycloak_refused).",
                &["realm", "operation", "outcome"],
            )?,
            anonymous_refusals: counter(
                &reg,
                "anonymous_refusals_total",
                "Anonymous registration requests refused, by realm and reason code.",
                &["realm", "reason"],
            )?,
            anonymous_quota_used: gauge_vec(
                &reg,
                "anonymous_realm_quota_used",
                "Anonymous creates counted in the realm-wide quota's current window.",
                &["realm"],
            )?,
            anonymous_dropped: counter(
                &reg,
                "anonymous_dropped_members_total",
                "Body members dropped before forwarding anonymous registrations (unknown to Keycloak, or scope), by realm.",
                &["realm"],
            )?,
            registry: reg,
            hot: Arc::new(hot::Hot::new()),
        })
    }

    /// `requests_total` for a request (`None`: not a registration request) answered `status`;
    /// the child is resolved once.
    pub fn request(&self, op: Option<Operation>, status: u16) -> &IntCounter {
        self.hot.request(&self.requests, op, status)
    }

    /// `request_duration_seconds` for a request (`None`: not a registration request).
    pub fn latency_of(&self, op: Option<Operation>) -> &Histogram {
        self.hot.latency(&self.latency, op)
    }

    /// `upstream_duration_seconds` for a request (`None`: not a registration request).
    pub fn upstream_latency_of(&self, op: Option<Operation>) -> &Histogram {
        self.hot.upstream(&self.upstream_latency, op)
    }

    /// Counts a request in `http_requests_total`: `method` as [`method_label`] gives it.
    pub fn count_http(&self, method: &http::Method, status: u16) {
        self.hot.count_http(&self.http_requests, method_label(method), status)
    }

    /// Counts a registration decision in `decisions_total`: the realm label, then operation,
    /// decision, outcome and reason.
    pub fn count_decision(&self, realm: &str, rest: Decision) {
        self.hot.count_decision(&self.decisions, realm, rest)
    }

    /// `token_verifications_total` for a valid bearer token: `cached` or `valid`, reason `ok`.
    pub fn verified(&self, cached: bool) -> &IntCounter {
        self.hot.verified(&self.verifications, cached)
    }

    /// Renders the registry and the process metrics in Prometheus text format.
    pub fn render(&self) -> String {
        self.process.sample();
        let mut families = self.registry.gather();
        families.extend(self.process.registry().gather());
        let mut buf = Vec::new();
        let enc = TextEncoder::new();
        if let Err(e) = enc.encode(&families, &mut buf) {
            tracing::error!(error = %e, "could not encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_owned_registry() {
        let m = Metrics::new().unwrap();
        m.requests.with_label_values(&["registration", "create", "2xx"]).inc();
        let text = m.render();
        assert!(
            text.contains(
                "dcr_gateway_requests_total{operation=\"create\",route=\"registration\",status_class=\"2xx\"} 1"
            ),
            "{text}"
        );
        // A second registry is independent (no globals).
        let other = Metrics::new().unwrap();
        assert!(!other.render().contains("status_class=\"2xx\""));
        let build = format!(
            "dcr_gateway_build_info{{commit=\"{}\",version=\"{}\"}} 1",
            crate::COMMIT,
            crate::VERSION
        );
        assert!(text.contains(&build), "{text}");
        #[cfg(target_os = "linux")]
        for name in [
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.lines().any(|l| l.starts_with(name)), "{name}: {text}");
        }
    }

    /// The resolved-once children count into the same series `with_label_values` makes, and
    /// make no series before they are used.
    #[test]
    fn cached_children_count_the_series_with_label_values_counts() {
        let cached = Metrics::new().unwrap();
        let direct = Metrics::new().unwrap();
        let http = [
            (http::Method::POST, 201),
            (http::Method::GET, 200),
            (http::Method::PUT, 999),
        ];
        for (method, status) in &http {
            for _ in 0..3 {
                cached.count_http(method, *status);
                direct
                    .http_requests
                    .with_label_values(&[method_label(method), &status.to_string()])
                    .inc();
            }
        }
        let decisions = [
            ("demo", ["create", "allow", "succeeded", "ok"]),
            ("other", ["update", "deny", "refused_by_gateway", "role_missing"]),
        ];
        for (realm, rest) in decisions {
            for _ in 0..2 {
                cached.count_decision(realm, rest);
                let [op, d, o, r] = rest;
                direct.decisions.with_label_values(&[realm, op, d, o, r]).inc();
            }
        }
        for op in [Some(Operation::Create), None] {
            cached.upstream_latency_of(op).observe(0.25);
            let (route, name) = op.map_or(("other", "none"), |o| ("registration", o.as_str()));
            direct.upstream_latency.with_label_values(&[route, name]).observe(0.25);
        }
        let series = |m: &Metrics| {
            m.render()
                .lines()
                .filter(|l| {
                    l.contains("http_requests_total{")
                        || l.contains("decisions_total{")
                        || l.contains("upstream_duration_seconds_count{")
                })
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let want = series(&direct);
        assert_eq!(want.len(), 3 + 2 + 2, "{want:?}");
        assert!(
            want.iter().any(|l| l.ends_with("code=\"999\",method=\"PUT\"} 3")),
            "{want:?}"
        );
        assert_eq!(series(&cached), want);
        assert!(series(&Metrics::new().unwrap()).is_empty());
    }
}
