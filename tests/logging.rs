//! The log output of the real binary: one line per request carrying the access and audit
//! fields (peer, user agent, bytes in and out, azp, the trace id of a valid `traceparent`), the
//! `traceparent` propagated to Keycloak or, when malformed, dropped and never logged, and no
//! ANSI colours in the human format when standard error is a pipe.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dcr_gateway::net::Body;
use http::Request;
use parking_lot::Mutex;
use serde_json::{Value, json};
use support::policy_kit::*;
use support::*;

const OIDC: &str = "/realms/demo/clients-registrations/openid-connect";
const CREATE: &[&str] = &["create-client"];
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
/// Malformed (upper-case hex): must be neither forwarded nor logged.
const BAD_TRACEPARENT: &str = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01";

fn demo_policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/demo.toml")
}

fn with(mut r: Request<Body>, headers: &[(&str, &str)]) -> Request<Body> {
    for (k, v) in headers {
        r.headers_mut()
            .append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    r
}

/// The real binary, its stderr (a pipe) collected line by line.
struct Served {
    child: std::process::Child,
    stderr: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    addr: std::net::SocketAddr,
}

impl Served {
    async fn start(upstream: &str, policies: &Path, format: &str) -> Served {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dcr-gateway"));
        for (k, _) in std::env::vars() {
            if k.starts_with("DCR_GATEWAY_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd
            .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--upstream", upstream, "--log-format", format, "--policies"])
            .arg(policies)
            .env("RUST_LOG", "info")
            .env_remove("NO_COLOR")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn dcr-gateway serve");
        let pipe = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                sink.lock().push(line);
            }
        });
        let listen = |l: &String| -> Option<std::net::SocketAddr> {
            if !l.contains("dcr-gateway serving") {
                return None;
            }
            if let Ok(v) = serde_json::from_str::<Value>(l) {
                return v["listen"].as_str()?.parse().ok();
            }
            // human: `… dcr-gateway serving listen=127.0.0.1:PORT admin=…`
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("listen="))?
                .parse()
                .ok()
        };
        let mut addr = None;
        for _ in 0..400 {
            addr = stderr.lock().iter().find_map(listen);
            if addr.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        let Some(addr) = addr else {
            let _ = child.kill();
            panic!("the gateway did not start: {:?}", stderr.lock());
        };
        Served {
            child,
            stderr,
            reader: Some(reader),
            addr,
        }
    }

    /// Stops the process with SIGTERM (graceful: buffered lines are written) and returns its log.
    fn stop(mut self) -> String {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.stderr.lock().join("\n")
    }
}

/// What one request produced: its status, request id and the sizes of its bodies.
struct Sent {
    status: u16,
    id: String,
    sent: usize,
    received: usize,
}

async fn sent(r: Request<Body>, body: Option<&Value>) -> Sent {
    let a = send(r).await;
    Sent {
        status: a.status.as_u16(),
        id: a.headers["x-request-id"].to_str().unwrap().to_owned(),
        sent: body.map_or(0, |b| b.to_string().len()),
        received: a.body.len(),
    }
}

#[tokio::test]
async fn one_json_line_per_request_with_the_access_and_audit_fields() {
    let kc = Kc::start().await;
    let served = Served::start(&kc.url(), &demo_policy(), "json").await;
    let good = kc.bearer("demo", "app-a", CREATE);
    let weak = kc.bearer("demo", "app-b", &["view-clients"]);
    let ok_body = json!({"client_name": "audited", "redirect_uris": ["https://app.example.com/cb"]});
    let evil_body = json!({"redirect_uris": ["https://evil.com/cb"]});
    let traced = [
        ("user-agent", "logging-test/1.0"),
        ("traceparent", TRACEPARENT),
        ("tracestate", "vendor=opaque"),
    ];
    let a = sent(
        with(req("POST", served.addr, OIDC, Some(&good), Some(&ok_body)), &traced),
        Some(&ok_body),
    )
    .await;
    let b = sent(
        req("POST", served.addr, OIDC, Some(&weak), Some(&ok_body)),
        Some(&ok_body),
    )
    .await;
    let c = sent(
        req("POST", served.addr, OIDC, Some(&good), Some(&evil_body)),
        Some(&evil_body),
    )
    .await;
    let untraced = [("traceparent", BAD_TRACEPARENT), ("tracestate", "vendor=dropped")];
    let path = "/realms/demo/.well-known/openid-configuration";
    let d = sent(with(req("GET", served.addr, path, None, None), &untraced), None).await;
    assert_eq!([a.status, b.status, c.status, d.status], [201, 403, 400, 201]);
    let text = served.stop();

    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON log line: {l}")))
        .collect();
    let line_of = |s: &Sent| -> &Value {
        let mine: Vec<&Value> = lines.iter().filter(|l| l["request_id"] == s.id.as_str()).collect();
        assert_eq!(mine.len(), 1, "one line per request, for {}:\n{text}", s.id);
        mine[0]
    };
    // The registration requests: the audit line, carrying the access fields too.
    let expect = [
        (
            &a,
            "allow",
            "",
            "ok",
            201,
            "app-a",
            a.sent,
            "logging-test/1.0",
            TRACE_ID,
        ),
        (
            &b,
            "deny",
            "realms.demo.create.roles_any",
            "missing_role",
            0,
            "app-b",
            0,
            "",
            "",
        ),
        (
            &c,
            "deny",
            "realms.demo.metadata.redirect_uris",
            "redirect_uri_not_allowed",
            0,
            "app-a",
            c.sent,
            "",
            "",
        ),
    ];
    for (s, decision, rule, reason, upstream, azp, bytes_in, ua, trace) in expect {
        let line = line_of(s);
        assert_eq!(line["target"], "audit", "{line}");
        assert_eq!(line["message"], "registration decision", "{line}");
        for (field, want) in [
            ("method", json!("POST")),
            ("route", json!("registration")),
            ("realm", json!("demo")),
            ("provider", json!("openid-connect")),
            ("operation", json!("create")),
            ("token_kind", json!("bearer")),
            ("azp", json!(azp)),
            ("sub", json!("00000000-0000-0000-0000-000000000001")),
            ("source", json!("127.0.0.1")),
            ("decision", json!(decision)),
            ("anonymous", json!(false)),
            ("credential", json!("")),
            ("dropped", json!("")),
            ("rule", json!(rule)),
            ("reason", json!(reason)),
            ("upstream_status", json!(upstream)),
            ("status", json!(s.status)),
            ("user_agent", json!(ua)),
            ("bytes_in", json!(bytes_in)),
            ("bytes_out", json!(s.received)),
            ("trace_id", json!(trace)),
        ] {
            assert_eq!(line[field], want, "{field} in {line}");
        }
        for field in ["token_cached", "client_id", "client_name", "latency_ms", "timestamp"] {
            assert!(!line[field].is_null(), "{field} missing in {line}");
        }
        assert!(line["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{line}");
    }
    assert_eq!(line_of(&a)["client_name"], "audited");
    // Other traffic: the access line; the malformed traceparent is dropped, not logged.
    let line = line_of(&d);
    assert_eq!(line["target"], "dcr_gateway::access", "{line}");
    for (field, want) in [
        ("method", json!("GET")),
        ("route", json!("other")),
        ("status", json!(201)),
        ("reason", json!("ok")),
        ("bytes_in", json!(0)),
        ("bytes_out", json!(d.received)),
        ("trace_id", json!("")),
        ("azp", json!("")),
        ("source", json!("127.0.0.1")),
    ] {
        assert_eq!(line[field], want, "{field} in {line}");
    }
    assert!(d.received > 0, "the stand-in answers with a body");
    assert!(!text.contains("4BF92F"), "a malformed traceparent was logged:\n{text}");

    // Keycloak sees a valid traceparent (and tracestate) unchanged, a malformed one not at all.
    let seen = kc.server.upstream.seen.lock().clone();
    let by_id = |id: &str| {
        let mine = |s: &&Seen| s.headers.get("x-request-id").is_some_and(|v| v == id);
        seen.iter()
            .find(mine)
            .unwrap_or_else(|| panic!("{id} never reached the stand-in"))
    };
    let up = by_id(&a.id);
    assert_eq!(up.headers["traceparent"], TRACEPARENT);
    assert_eq!(up.headers["tracestate"], "vendor=opaque");
    let up = by_id(&d.id);
    assert!(up.headers.get("traceparent").is_none(), "{:?}", up.headers);
    assert!(up.headers.get("tracestate").is_none(), "{:?}", up.headers);

    for token in [&good, &weak] {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!text.contains(token.as_str()), "a token was logged:\n{text}");
        assert!(!text.contains(signature), "a token signature was logged:\n{text}");
    }
    assert!(
        !text.to_ascii_lowercase().contains("bearer ey"),
        "an Authorization header was logged:\n{text}"
    );
}

#[tokio::test]
async fn the_human_format_has_no_colours_in_a_pipe() {
    let kc = Kc::start().await;
    let served = Served::start(&kc.url(), &demo_policy(), "human").await;
    let good = kc.bearer("demo", "app-a", CREATE);
    let body = json!({"client_name": "piped", "redirect_uris": ["https://app.example.com/cb"]});
    let traced = [("traceparent", TRACEPARENT), ("user-agent", "pipe-test")];
    let a = sent(
        with(req("POST", served.addr, OIDC, Some(&good), Some(&body)), &traced),
        Some(&body),
    )
    .await;
    assert_eq!(a.status, 201);
    let text = served.stop();
    assert!(!text.contains('\u{1b}'), "ANSI escapes in a pipe:\n{text}");
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(&a.id)).collect();
    assert_eq!(lines.len(), 1, "one line per request:\n{text}");
    let line = lines[0];
    for want in [
        " INFO audit: registration decision ".to_owned(),
        format!("trace_id=\"{TRACE_ID}\""),
        "user_agent=\"pipe-test\"".to_owned(),
        "peer=127.0.0.1:".to_owned(),
        format!("bytes_in={}", a.sent),
        format!("bytes_out={}", a.received),
        "azp=\"app-a\"".to_owned(),
        "status=201".to_owned(),
    ] {
        assert!(line.contains(&want), "`{want}` missing in: {line}");
    }
}
