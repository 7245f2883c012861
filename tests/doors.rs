//! Side doors (issue 17): request targets that are not plain paths, requests hyper cannot parse,
//! and the admin REST API. Each is sent in its variants straight onto the socket; each answer is
//! the gateway's JSON error naming the rule and the fix, and the stand-in upstream sees nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A raw HTTP/1 answer: status, lower-cased head, body.
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", self.head, self.body))
    }
}

/// Writes `bytes` onto a fresh connection and reads the first answer.
async fn raw(addr: SocketAddr, bytes: &[u8]) -> Raw {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The gateway may answer (and close) before it has read everything: ignore write errors.
    let _ = s.write_all(bytes).await;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("the gateway answered")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok());
            if len.is_some_and(|l| body.len() >= l) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    Raw {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

fn assert_json_refusal(r: &Raw, status: u16, reason: &str, what: &str) -> Value {
    assert_eq!(r.status, status, "{what}: {}\n{}", r.head, r.body);
    assert!(r.head.contains("content-type: application/json"), "{what}: {}", r.head);
    assert!(r.head.contains("x-request-id: "), "{what}: {}", r.head);
    let v = r.json();
    assert_eq!(v["reason"], reason, "{what}: {v}");
    for key in ["error", "error_description", "hint", "request_id"] {
        assert!(v[key].as_str().is_some_and(|s| !s.is_empty()), "{what}: `{key}` in {v}");
    }
    v
}

// --- item 5: request targets ------------------------------------------------------------------

#[tokio::test]
async fn non_origin_form_targets_are_refused_and_never_forwarded() {
    let up = upstream(|_| async move { json_response(201, &json!({"client_id": "x"})) }).await;
    let gw = gateway(settings(&up.url(), None)).await;
    let body = r#"{"redirect_uris":["https://evil.example/cb"]}"#;
    let cases = [
        (
            "asterisk-form",
            format!(
                "POST * HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        ),
        ("asterisk-form", "GET * HTTP/1.1\r\nHost: gw\r\n\r\n".to_owned()),
        ("asterisk-form", "DELETE * HTTP/1.1\r\nHost: gw\r\n\r\n".to_owned()),
        (
            "authority-form",
            "CONNECT keycloak:8080 HTTP/1.1\r\nHost: keycloak:8080\r\n\r\n".to_owned(),
        ),
        (
            "authority-form",
            format!("CONNECT {} HTTP/1.1\r\nHost: x\r\n\r\n", up.addr),
        ),
        (
            "absolute-form",
            format!(
                "POST http://evil.example/realms/demo/clients-registrations/openid-connect HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        ),
        (
            "absolute-form",
            format!("GET http://{}/realms/demo HTTP/1.1\r\nHost: gw\r\n\r\n", up.addr),
        ),
    ];
    for (form, request) in &cases {
        let r = raw(gw.addr, request.as_bytes()).await;
        let v = assert_json_refusal(&r, 400, "request_target_invalid", request);
        assert_eq!(v["details"]["form"], *form, "{request}");
        assert!(v["hint"].as_str().unwrap().contains("origin-form"), "{v}");
    }
    assert_eq!(up.hits(), 0, "a non-origin-form target reached the upstream");
    gw.shutdown().await;
}

#[tokio::test]
async fn options_asterisk_is_answered_by_the_gateway() {
    let up = upstream(|_| async move { json_response(200, &json!({})) }).await;
    let gw = gateway(settings(&up.url(), None)).await;
    let r = raw(gw.addr, b"OPTIONS * HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n").await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(
        r.head.contains("allow: get, head, post, put, delete, options"),
        "{}",
        r.head
    );
    assert_eq!(up.hits(), 0, "OPTIONS * was forwarded");
    // A plain path on the same gateway is still forwarded, to the path sent.
    let a = send(req(
        "GET",
        gw.addr,
        "/realms/demo/.well-known/openid-configuration",
        None,
        None,
    ))
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(up.seen.lock()[0].uri, "/realms/demo/.well-known/openid-configuration");
    gw.shutdown().await;
}

// --- item 9: what hyper cannot parse -----------------------------------------------------------

#[tokio::test]
async fn unparseable_requests_get_the_json_shape_and_are_never_forwarded() {
    let up = upstream(|_| async move { json_response(201, &json!({})) }).await;
    let gw = gateway(settings(&up.url(), None)).await;
    let reg = "/realms/demo/clients-registrations/openid-connect";
    let cases = [
        (
            "bad request line",
            format!("POST {reg} HTTP/1.1 extra\r\nHost: gw\r\n\r\n"),
        ),
        (
            "space in target",
            "POST /realms/demo/clients registrations/x HTTP/1.1\r\nHost: gw\r\n\r\n".to_owned(),
        ),
        ("bad method token", format!("PO(ST {reg} HTTP/1.1\r\nHost: gw\r\n\r\n")),
        (
            "duplicate Content-Length",
            format!("POST {reg} HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{{}}"),
        ),
        (
            "Content-Length not a number",
            format!("POST {reg} HTTP/1.1\r\nHost: gw\r\nContent-Length: 1x\r\n\r\n{{}}"),
        ),
        (
            "header without colon",
            format!("POST {reg} HTTP/1.1\r\nHost: gw\r\nBroken header\r\n\r\n"),
        ),
        ("bad version", format!("POST {reg} HTTP/9.9\r\nHost: gw\r\n\r\n")),
    ];
    for (what, request) in &cases {
        let r = raw(gw.addr, request.as_bytes()).await;
        let v = assert_json_refusal(&r, 400, "request_unparseable", what);
        assert_eq!(v["error"], "invalid_request", "{what}");
        assert_eq!(v["details"]["status"], 400, "{what}");
    }
    assert_eq!(up.hits(), 0, "an unparseable request reached the upstream");
    gw.shutdown().await;
}

#[tokio::test]
async fn oversized_heads_get_431_in_the_json_shape() {
    let up = upstream(|_| async move { json_response(201, &json!({})) }).await;
    let gw = gateway(settings(&up.url(), None)).await;
    let big = "a".repeat(500 * 1024);
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    for (what, request) in [
        (
            "one huge header",
            format!("GET /realms/demo HTTP/1.1\r\nHost: gw\r\nCookie: {big}\r\n\r\n"),
        ),
        (
            "too many headers",
            format!("GET /realms/demo HTTP/1.1\r\nHost: gw\r\n{many}\r\n"),
        ),
    ] {
        let r = raw(gw.addr, request.as_bytes()).await;
        let v = assert_json_refusal(&r, 431, "request_head_too_large", what);
        assert!(v["hint"].as_str().unwrap().contains("headers"), "{v}");
    }
    assert_eq!(up.hits(), 0);
    // Ordinary answers, including an upstream's own empty 400, pass through unchanged.
    let up2 = upstream(|_| async move {
        let mut r = http::Response::new(dcr_gateway::net::full(""));
        *r.status_mut() = http::StatusCode::BAD_REQUEST;
        r
    })
    .await;
    let gw2 = gateway(settings(&up2.url(), None)).await;
    let r = raw(
        gw2.addr,
        b"GET /realms/demo/account HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.body.is_empty(), "an upstream answer was rewritten: {}", r.body);
    assert_eq!(up2.hits(), 1);
    gw.shutdown().await;
    gw2.shutdown().await;
}

// --- item 6: a policy file caught empty or half-written never governs --------------------------

mod reload_doors {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use serde_json::json;

    use super::support::policy_kit::*;
    use super::support::*;

    const KC_DEFAULT: &str = "/realms/demo/clients-registrations/default";

    /// Realm demo: `default` allowed, redirect URIs only on app.example.
    const STRICT: &str = "version = 1\n[realms.demo]\nproviders = [\"default\"]\n[realms.demo.metadata.redirect_uris]\nhosts = [\"app.example\"]\n";

    /// An off-policy create: a redirect URI on evil.example. Returns the status.
    async fn off_policy(kc: &Kc, gw: &dcr_gateway::Gateway) -> (u16, serde_json::Value) {
        let token = kc.bearer("demo", "prober", &["create-client"]);
        let body = json!({"clientId": "probe", "redirectUris": ["https://evil.example/cb"]});
        let a = send(req("POST", gw.addr, KC_DEFAULT, Some(&token), Some(&body))).await;
        let v = if a.status.as_u16() >= 400 { a.json() } else { json!({}) };
        (a.status.as_u16(), v)
    }

    async fn state(gw: &dcr_gateway::Gateway) -> (f64, f64) {
        let m = metrics_text(gw).await;
        (
            metric(&m, "dcr_gateway_policy_generation", &[]).unwrap(),
            metric(&m, "dcr_gateway_policy_reloads_total", &[("result", "error")]).unwrap_or(0.0),
        )
    }

    fn assert_refused_by_rule(v: &serde_json::Value) {
        assert_eq!(v["reason"], "redirect_uri_not_allowed", "{v}");
        assert_eq!(v["details"]["rule"], "realms.demo.metadata.redirect_uris", "{v}");
        assert!(v["hint"].as_str().is_some_and(|h| !h.is_empty()), "{v}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn truncated_to_empty_keeps_the_last_good_policy() {
        let kc = Kc::start().await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("demo.toml");
        std::fs::write(&file, STRICT).unwrap();
        let gw = gateway(settings(&kc.url(), Some(dir.path()))).await;
        let (status, v) = off_policy(&kc, &gw).await;
        assert_eq!(status, 400);
        assert_refused_by_rule(&v);
        // `: > demo.toml`, then a file of comments only, then one without `version`.
        for (what, text) in [
            ("empty", ""),
            ("comments only", "# being edited\n"),
            ("no version", "[realms.demo]\nproviders = [\"default\"]\n"),
        ] {
            let (generation, errors) = state(&gw).await;
            std::fs::write(&file, text).unwrap();
            let failed = until(Duration::from_secs(5), || async { state(&gw).await.1 > errors }).await;
            assert!(failed, "{what}: the reload did not fail");
            let (status, v) = off_policy(&kc, &gw).await;
            assert_eq!(status, 400, "{what}: the off-policy create was not refused");
            assert_refused_by_rule(&v);
            assert_eq!(state(&gw).await.0, generation, "{what}: a new policy was applied");
        }
        assert_eq!(kc.reg_hits(), 0, "an off-policy create reached Keycloak");
        gw.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_prefix_written_with_a_pause_is_never_applied() {
        let kc = Kc::start().await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("demo.toml");
        std::fs::write(&file, STRICT).unwrap();
        let mut s = settings(&kc.url(), Some(dir.path()));
        s.timeouts.policy_settle = Duration::from_millis(1500);
        let gw = gateway(s).await;
        assert_eq!(state(&gw).await.0, 1.0);
        // The new file, written in place in two pieces: the first piece alone is a valid policy
        // without the redirect rule (it would let the off-policy create through).
        let full = format!("{STRICT}max = 3\n");
        let (prefix, rest) = full.split_at(full.find("[realms.demo.metadata").unwrap());
        let writer = {
            let file = file.clone();
            let (prefix, rest) = (prefix.to_owned(), rest.to_owned());
            tokio::task::spawn_blocking(move || {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&file)
                    .unwrap();
                f.write_all(prefix.as_bytes()).unwrap();
                f.flush().unwrap();
                std::thread::sleep(Duration::from_millis(600));
                f.write_all(rest.as_bytes()).unwrap();
            })
        };
        let mut statuses = Vec::new();
        while !writer.is_finished() {
            statuses.push(off_policy(&kc, &gw).await.0);
        }
        writer.await.unwrap();
        let applied = until(Duration::from_secs(10), || async { state(&gw).await.0 >= 2.0 }).await;
        assert!(applied, "the whole file was never applied");
        for _ in 0..5 {
            statuses.push(off_policy(&kc, &gw).await.0);
        }
        assert!(statuses.iter().all(|s| *s == 400), "{statuses:?}");
        assert_eq!(
            state(&gw).await.0,
            2.0,
            "the prefix was applied as a generation of its own"
        );
        assert_eq!(kc.reg_hits(), 0, "an off-policy create reached Keycloak");
        gw.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_storm_of_in_place_rewrites_never_lets_an_off_policy_create_pass() {
        let kc = Kc::start().await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("demo.toml");
        std::fs::write(&file, STRICT).unwrap();
        let gw = gateway(settings(&kc.url(), Some(dir.path()))).await;
        let done = Arc::new(AtomicBool::new(false));
        let storm = {
            let (done, file) = (done.clone(), file.clone());
            tokio::task::spawn_blocking(move || {
                // In place (truncate, then write), alternating two strict versions, for 4 s.
                let a = STRICT.to_owned();
                let b = format!("# b\n{STRICT}");
                let end = std::time::Instant::now() + Duration::from_secs(4);
                let mut i = 0u64;
                while std::time::Instant::now() < end {
                    std::fs::write(&file, if i.is_multiple_of(2) { &a } else { &b }).unwrap();
                    i += 1;
                    if i.is_multiple_of(7) {
                        std::thread::sleep(Duration::from_millis(3));
                    }
                }
                done.store(true, Ordering::SeqCst);
                i
            })
        };
        let mut refused = 0;
        while !done.load(Ordering::SeqCst) {
            let mut wave = tokio::task::JoinSet::new();
            for _ in 0..20 {
                let token = kc.bearer("demo", "prober", &["create-client"]);
                let addr = gw.addr;
                wave.spawn(async move {
                    let body = json!({"clientId": "probe", "redirectUris": ["https://evil.example/cb"]});
                    send(req("POST", addr, KC_DEFAULT, Some(&token), Some(&body)))
                        .await
                        .status
                        .as_u16()
                });
            }
            while let Some(s) = wave.join_next().await {
                assert_eq!(s.unwrap(), 400);
                refused += 1;
            }
        }
        let writes = storm.await.unwrap();
        eprintln!("{writes} in-place rewrites, {refused} off-policy creates refused");
        assert!(
            refused > 50 && writes > 100,
            "the storm was too small: {writes} / {refused}"
        );
        assert_eq!(
            kc.reg_hits(),
            0,
            "an off-policy create reached Keycloak during the storm"
        );
        gw.shutdown().await;
    }
}

// --- item 4: the admin REST API ----------------------------------------------------------------

mod admin_doors {
    use serde_json::{Value, json};

    use super::support::policy_kit::*;
    use super::support::*;
    use super::{assert_json_refusal, raw};

    /// Realm demo: redirect URIs only on app.example, no protocol mappers.
    const RULES: &str = "version = 1\n[realms.demo.metadata]\nforbidden_fields = [\"protocol_mappers\"]\n[realms.demo.metadata.redirect_uris]\nhosts = [\"app.example\"]\n";

    fn admin_hits(kc: &Kc) -> Vec<Seen> {
        kc.server
            .upstream
            .seen
            .lock()
            .iter()
            .filter(|s| s.uri.contains("/admin/"))
            .cloned()
            .collect()
    }

    /// A user session in the admin console of realm `realm` (no `client_id`, a person's name).
    fn console_token(kc: &Kc, realm: &str) -> String {
        let mut c = crate::support::testkit::service_account_claims(
            &kc.issuer(realm),
            "security-admin-console",
            &["manage-clients"],
            300,
        );
        let m = c.as_object_mut().unwrap();
        m.remove("client_id");
        m.insert("preferred_username".into(), json!("alice"));
        kc.key.token(&c)
    }

    async fn start(policy: &str) -> (Kc, dcr_gateway::Gateway, tempfile::TempDir) {
        let kc = Kc::start().await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("demo.toml"), policy).unwrap();
        let gw = gateway(settings(&kc.url(), Some(dir.path()))).await;
        (kc, gw, dir)
    }

    fn evil_client() -> Value {
        json!({"clientId": "evil", "redirectUris": ["https://evil.example/*"]})
    }

    fn hardcoded_mapper() -> Value {
        json!({"name": "admin", "protocol": "openid-connect", "protocolMapper": "oidc-hardcoded-claim-mapper",
               "config": {"claim.name": "roles", "claim.value": "admin", "access.token.claim": "true"}})
    }

    #[tokio::test]
    async fn service_account_admin_writes_are_held_to_the_realm_rules() {
        let (kc, gw, _dir) = start(RULES).await;
        let sa = kc.bearer("demo", "registrar", &["manage-clients"]);
        let cases: Vec<(&str, &str, Value, &str, &str)> = vec![
            (
                "POST",
                "/admin/realms/demo/clients",
                evil_client(),
                "redirect_uri_not_allowed",
                "realms.demo.metadata.redirect_uris",
            ),
            (
                "PUT",
                "/admin/realms/demo/clients/0b1c",
                json!({"redirectUris": ["https://evil.example/cb"]}),
                "redirect_uri_not_allowed",
                "realms.demo.metadata.redirect_uris",
            ),
            (
                "POST",
                "/admin/realms/demo/clients",
                json!({"clientId": "m", "redirectUris": ["https://app.example/cb"], "protocolMappers": [hardcoded_mapper()]}),
                "field_forbidden",
                "realms.demo.metadata.forbidden_fields",
            ),
            (
                "POST",
                "/admin/realms/demo/clients/0b1c/protocol-mappers/models",
                hardcoded_mapper(),
                "field_forbidden",
                "realms.demo.metadata.forbidden_fields",
            ),
            (
                "POST",
                "/admin/realms/demo/clients/0b1c/protocol-mappers/add-models",
                json!([hardcoded_mapper()]),
                "field_forbidden",
                "realms.demo.metadata.forbidden_fields",
            ),
            (
                "PUT",
                "/admin/realms/demo/clients/0b1c/protocol-mappers/models/77",
                hardcoded_mapper(),
                "field_forbidden",
                "realms.demo.metadata.forbidden_fields",
            ),
            (
                "POST",
                "/admin/realms/demo/clients/0b1c/scope-mappings/realm",
                json!([{"name": "admin"}]),
                "admin_write_refused",
                "built-in.admin_api.allow",
            ),
            (
                "PUT",
                "/admin/realms/demo/clients/0b1c/default-client-scopes/5e",
                json!({}),
                "admin_write_refused",
                "built-in.admin_api.allow",
            ),
            (
                "PUT",
                "/admin/realms/demo/clients/0b1c/optional-client-scopes/5e",
                json!({}),
                "admin_write_refused",
                "built-in.admin_api.allow",
            ),
            (
                "POST",
                "/admin/realms/demo/clients/0b1c/roles",
                json!({"name": "r"}),
                "admin_write_refused",
                "built-in.admin_api.allow",
            ),
            (
                "POST",
                "/admin/realms/demo/client-scopes",
                json!({"name": "s", "protocolMappers": [hardcoded_mapper()]}),
                "admin_write_refused",
                "built-in.admin_api.allow",
            ),
            (
                "POST",
                "/admin/realms/demo/partialImport",
                json!({"clients": [evil_client()]}),
                "admin_write_refused",
                "built-in.admin_api.allow",
            ),
            (
                "PATCH",
                "/admin/realms/demo/clients/0b1c",
                json!({}),
                "admin_write_refused",
                "built-in.admin_api.writes",
            ),
        ];
        for (method, path, body, reason, rule) in &cases {
            let a = send(req(method, gw.addr, path, Some(&sa), Some(body))).await;
            let status = if *reason == "admin_write_refused" { 403 } else { 400 };
            let v = super::support::proxy_kit::assert_refusal(&a, status, reason);
            assert_eq!(v["details"]["rule"], *rule, "{method} {path}: {v}");
            assert!(v["hint"].as_str().unwrap().len() > 20, "{v}");
        }
        assert!(admin_hits(&kc).is_empty(), "a refused admin write reached Keycloak");
        // Within the rules, and what the rules cannot widen, goes through — byte for byte.
        let ok = json!({"clientId": "fine", "redirectUris": ["https://app.example/cb"]});
        let a = send(req("POST", gw.addr, "/admin/realms/demo/clients", Some(&sa), Some(&ok))).await;
        assert!(a.status.as_u16() < 300, "{}", String::from_utf8_lossy(&a.body));
        let a = send(req(
            "DELETE",
            gw.addr,
            "/admin/realms/demo/clients/0b1c",
            Some(&sa),
            None,
        ))
        .await;
        assert!(a.status.as_u16() < 300);
        let seen = admin_hits(&kc);
        assert_eq!(seen.len(), 2, "{:?}", seen.iter().map(|s| &s.uri).collect::<Vec<_>>());
        assert_eq!(
            seen[0].body,
            ok.to_string().into_bytes(),
            "the forwarded body differs from the checked one"
        );
        gw.shutdown().await;
    }

    #[tokio::test]
    async fn every_spelling_of_an_admin_client_write_is_refused() {
        let (kc, gw, _dir) = start(RULES).await;
        let sa = kc.bearer("demo", "registrar", &["manage-clients"]);
        let body = evil_client().to_string();
        for path in [
            "/admin/realms/demo/clients/",
            "/admin/realms/demo//clients",
            "//admin/realms/demo/clients",
            "/admin/realms/demo/./clients",
            "/admin/realms/demo/x/../clients",
            "/admin/realms/demo/clients;jsessionid=1",
            "/admin;a=b/realms/demo/clients",
            "/admin/realms/demo/Clients",
            "/Admin/realms/demo/clients",
            "/admin/realms/demo/client%73",
            "/admin/realms/demo/%63lients",
            "/admin/realms%2Fdemo/clients",
            "/admin/realms/demo/clients%2F0b1c",
            "/admin/realms/demo/clients/0b1c/Protocol-Mappers/models",
            "/admin/realms/demo/clients/%2e%2e/clients",
        ] {
            let request = format!(
                "POST {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {sa}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let r = raw(gw.addr, request.as_bytes()).await;
            let v = assert_json_refusal(&r, 400, "path_malformed", path);
            assert_eq!(v["details"]["area"], "admin", "{path}");
            assert!(v["hint"].as_str().unwrap().contains("/admin/realms/demo/"), "{v}");
        }
        // Lower-case methods, method overrides and non-bearer credentials are not a way round.
        for (method, extra, reason) in [
            ("post", "", "admin_write_refused"),
            ("POST", "X-HTTP-Method-Override: PUT\r\n", "admin_write_refused"),
        ] {
            let request = format!(
                "{method} /admin/realms/demo/clients HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {sa}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let r = raw(gw.addr, request.as_bytes()).await;
            assert_json_refusal(&r, 403, reason, method);
        }
        let iat = kc.initial_access("demo", "iat-1");
        let a = send(req(
            "POST",
            gw.addr,
            "/admin/realms/demo/clients",
            Some(&iat),
            Some(&evil_client()),
        ))
        .await;
        super::support::proxy_kit::assert_refusal(&a, 403, "admin_write_refused");
        let a = send(req(
            "POST",
            gw.addr,
            "/admin/realms/demo/clients",
            None,
            Some(&evil_client()),
        ))
        .await;
        super::support::proxy_kit::assert_refusal(&a, 403, "admin_write_refused");
        assert!(admin_hits(&kc).is_empty(), "a spelling reached Keycloak");
        gw.shutdown().await;
    }

    #[tokio::test]
    async fn console_sessions_are_forwarded_and_the_settings_decide_for_everyone() {
        let (kc, gw, dir) = start(RULES).await;
        let console = console_token(&kc, "demo");
        let master_console = console_token(&kc, "master");
        for token in [&console, &master_console] {
            let a = send(req(
                "POST",
                gw.addr,
                "/admin/realms/demo/clients",
                Some(token),
                Some(&evil_client()),
            ))
            .await;
            assert!(a.status.as_u16() < 300, "{}", String::from_utf8_lossy(&a.body));
        }
        // kcadm.sh's admin-cli session, as Keycloak 26 mints it (a lightweight token).
        let t = crate::support::testkit::now();
        let kcadm = kc.key.token(
            &json!({"exp": t + 60, "iat": t, "jti": "onltro:1", "iss": kc.issuer("master"),
            "typ": "Bearer", "azp": "admin-cli", "sid": "s", "scope": "email profile"}),
        );
        let a = send(req(
            "POST",
            gw.addr,
            "/admin/realms/demo/clients",
            Some(&kcadm),
            Some(&evil_client()),
        ))
        .await;
        assert!(a.status.as_u16() < 300, "{}", String::from_utf8_lossy(&a.body));
        assert_eq!(admin_hits(&kc).len(), 3);
        // A service account of the console client's name is still a service account.
        let sa = kc.bearer("demo", "security-admin-console", &["manage-clients"]);
        let a = send(req(
            "POST",
            gw.addr,
            "/admin/realms/demo/clients",
            Some(&sa),
            Some(&evil_client()),
        ))
        .await;
        super::support::proxy_kit::assert_refusal(&a, 400, "redirect_uri_not_allowed");
        // `govern`: the console is held to the rules too; its own rule set applies.
        let governed = format!(
            "{RULES}[realms.demo.admin_api]\nwrites = \"govern\"\n[realms.demo.admin_api.metadata.redirect_uris]\nhosts = [\"admin.example\"]\n"
        );
        write_policy(&dir.path().join("demo.toml"), &governed);
        let applied = until(std::time::Duration::from_secs(5), || async {
            let body = json!({"clientId": "a", "redirectUris": ["https://app.example/cb"]});
            send(req(
                "POST",
                gw.addr,
                "/admin/realms/demo/clients",
                Some(&console),
                Some(&body),
            ))
            .await
            .status
                == 400
        })
        .await;
        assert!(applied, "writes = govern never applied");
        let a = send(req(
            "POST",
            gw.addr,
            "/admin/realms/demo/clients",
            Some(&console),
            Some(&evil_client()),
        ))
        .await;
        let v = super::support::proxy_kit::assert_refusal(&a, 400, "redirect_uri_not_allowed");
        assert_eq!(v["details"]["rule"], "realms.demo.admin_api.metadata.redirect_uris");
        // `refuse`: nobody; `forward`: everybody.
        write_policy(
            &dir.path().join("demo.toml"),
            &format!("{RULES}[realms.demo.admin_api]\nwrites = \"refuse\"\n"),
        );
        let refused = until(std::time::Duration::from_secs(5), || async {
            send(req(
                "DELETE",
                gw.addr,
                "/admin/realms/demo/clients/1",
                Some(&console),
                None,
            ))
            .await
            .status
                == 403
        })
        .await;
        assert!(refused, "writes = refuse never applied");
        let before = admin_hits(&kc).len();
        let a = send(req(
            "PUT",
            gw.addr,
            "/admin/realms/demo/clients/1",
            Some(&console),
            Some(&json!({})),
        ))
        .await;
        let v = super::support::proxy_kit::assert_refusal(&a, 403, "admin_write_refused");
        assert_eq!(v["details"]["rule"], "realms.demo.admin_api.writes");
        assert_eq!(admin_hits(&kc).len(), before);
        write_policy(
            &dir.path().join("demo.toml"),
            &format!("{RULES}[realms.demo.admin_api]\nwrites = \"forward\"\n"),
        );
        let forwarded = until(std::time::Duration::from_secs(5), || async {
            send(req(
                "POST",
                gw.addr,
                "/admin/realms/demo/clients",
                Some(&sa),
                Some(&evil_client()),
            ))
            .await
            .status
            .as_u16()
                < 300
        })
        .await;
        assert!(forwarded, "writes = forward never applied");
        gw.shutdown().await;
    }
}
