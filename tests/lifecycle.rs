//! The real binary: configuration errors exit 2 before anything is bound, and SIGTERM drains
//! in-flight requests, refuses new connections and exits 0.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use dcr_gateway::net::full;
use http::Response;
use support::proxy_kit::free_port;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_dcr-gateway");

/// The binary with no `DCR_GATEWAY_*` variables inherited.
fn bin() -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("DCR_GATEWAY_") {
            c.env_remove(k);
        }
    }
    c.env("RUST_LOG", "info");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).stdin(Stdio::null()).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn repo_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// A port the test itself holds: had the binary got as far as binding it, it would have failed
/// with a bind error (exit 1), not the configuration error (exit 2) the tests expect.
fn held() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap().to_string();
    (l, a)
}

fn assert_config_exit(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "exit code; stderr: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks `{n}`: {err}");
    }
    assert!(!err.contains("serving"), "the gateway started serving: {err}");
}

#[test]
fn unknown_config_key_exits_2_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let (_hold, addr) = held();
    let file = dir.path().join("gateway.toml");
    std::fs::write(
        &file,
        format!("listen = \"{addr}\"\nadmin_listen = \"{addr}\"\nlisten_adress = \"127.0.0.1:1\"\n"),
    )
    .unwrap();
    let o = run(&["serve", "--config", file.to_str().unwrap()]);
    let at = format!("{}:3:", file.display());
    assert_config_exit(&o, &[at.as_str(), "listen_adress", "unknown field"]);
}

#[test]
fn bad_config_value_exits_2_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let (_hold, addr) = held();
    let file = dir.path().join("gateway.toml");
    std::fs::write(
        &file,
        format!("listen = \"{addr}\"\n\n[timeouts]\nconnect = \"5 parsecs\"\n"),
    )
    .unwrap();
    let o = run(&["serve", "--config", file.to_str().unwrap()]);
    let at = format!("{}:4:", file.display());
    assert_config_exit(&o, &[at.as_str(), "connect"]);

    std::fs::write(&file, "listen = \"localhost\"\n").unwrap();
    let o = run(&["serve", "--config", file.to_str().unwrap()]);
    let at = format!("{}:1:", file.display());
    assert_config_exit(&o, &[at.as_str(), "listen"]);
}

#[test]
fn bad_flag_exits_2_naming_the_flag() {
    let o = run(&["serve", "--listen", "nonsense"]);
    assert_config_exit(&o, &["--listen", "nonsense"]);
    let o = run(&["serve", "--upstream", "keycloak:8080"]);
    assert_config_exit(&o, &["--upstream"]);
    let o = run(&["serve", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--no-such-flag"), "{}", stderr(&o));
}

#[test]
fn help_and_version_exit_0() {
    for args in [&["--help"][..], &["serve", "--help"][..]] {
        let o = run(args);
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(out.contains("Usage"), "{args:?}: {out}");
    }
    let o = run(&["serve", "--help"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("--listen"));
    let o = run(&["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!(
            "dcr-gateway {} (commit {})",
            env!("CARGO_PKG_VERSION"),
            dcr_gateway::COMMIT
        )
    );
}

#[test]
fn broken_policy_exits_2_before_binding_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let (_hold, addr) = held();
    let policy = dir.path().join("broken.toml");
    std::fs::write(
        &policy,
        "version = 1\n\n[realms.demo]\nproviders = [\"openid-connect\"]\nprovidres = [\"default\"]\n",
    )
    .unwrap();
    let o = run(&[
        "serve",
        "--listen",
        &addr,
        "--admin-listen",
        &addr,
        "--upstream",
        "http://127.0.0.1:1",
        "--policies",
        policy.to_str().unwrap(),
    ]);
    let at = format!("{}:5:", policy.display());
    assert_config_exit(&o, &[at.as_str(), "policy error"]);
}

/// Connects to `port` every 20 ms; `true` once a connection is refused within `limit`.
async fn refused_within(port: u16, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    loop {
        if let Err(e) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await
            && e.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Requests for the test's path (the gateway also fetches the policy realms' keys upstream).
fn account_hits(up: &Upstream) -> usize {
    up.seen
        .lock()
        .iter()
        .filter(|s| s.uri == "/realms/demo/account")
        .count()
}

async fn get_status(url: &str) -> Option<(u16, String)> {
    let resp = tokio::time::timeout(
        Duration::from_secs(5),
        client().request(http::Request::get(url).body(dcr_gateway::net::empty()).unwrap()),
    )
    .await
    .ok()?
    .ok()?;
    let status = resp.status().as_u16();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .ok()?
        .to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// SIGTERM starts a drain: `/readyz` turns 503 at once while the proxy still accepts and serves
/// new connections for `drain_delay`; then it stops accepting, the request in flight finishes,
/// and the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_readyz_503_accepts_for_drain_delay_then_stops_and_exits_0() {
    let up = upstream(|s| async move {
        match s.uri.as_str() {
            "/realms/demo/account" => {
                tokio::time::sleep(Duration::from_millis(5000)).await;
                Response::new(full("slow but complete"))
            }
            "/realms/demo/fast" => Response::new(full("fast")),
            _ => json_response(404, &serde_json::json!({"error": "not here"})),
        }
    })
    .await;
    let (port, admin_port) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, "[timeouts]\ndrain_delay = \"3s\"\nshutdown_grace = \"30s\"\n").unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = tokio::process::Command::from({
        let mut c = bin();
        c.args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin_port}"),
            "--upstream",
            &up.url(),
            "--policies",
            repo_policies().to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap());
        c
    })
    .kill_on_drop(true)
    .spawn()
    .unwrap();
    let logs = || std::fs::read_to_string(log.path()).unwrap_or_default();
    let healthz = format!("http://127.0.0.1:{admin_port}/healthz");
    let readyz = format!("http://127.0.0.1:{admin_port}/readyz");

    let deadline = Instant::now() + Duration::from_secs(10);
    while get_status(&healthz).await.map(|(s, _)| s) != Some(200) {
        assert!(child.try_wait().unwrap().is_none(), "the gateway exited: {}", logs());
        assert!(Instant::now() < deadline, "never became healthy: {}", logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let in_flight = tokio::spawn(async move { send(req("GET", addr, "/realms/demo/account", None, None)).await });
    assert!(
        eventually(Duration::from_secs(3), || account_hits(&up) == 1).await,
        "the request never reached the upstream: {}",
        logs()
    );
    let pid = child.id().unwrap();
    let killed = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(killed.success());

    // Draining: not ready, but still serving new connections.
    // The signal is handled asynchronously: poll (the drain lasts 3 s).
    let end = Instant::now() + Duration::from_secs(2);
    let (status, text) = loop {
        let (status, text) = get_status(&readyz).await.expect("admin answers while draining");
        // (503 alone is not enough: the stand-in serves no keys, so it was not ready before.)
        if (status == 503 && text.contains("draining")) || Instant::now() > end {
            break (status, text);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, 503, "readyz during the drain: {text}");
    assert!(text.contains("draining"), "{text}");
    let fresh = send(req("GET", addr, "/realms/demo/fast", None, None)).await;
    assert_eq!(fresh.status, 200, "a new connection during drain_delay: {}", logs());
    assert_eq!(&fresh.body[..], b"fast");

    // After drain_delay: new connections are refused while the old request is still served.
    assert!(
        refused_within(port, Duration::from_secs(10)).await,
        "new connections still accepted: {}",
        logs()
    );
    let a = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the in-flight request completes")
        .unwrap();
    assert_eq!(a.status, 200, "{}", logs());
    assert_eq!(&a.body[..], b"slow but complete");

    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the gateway exits well within its 30 s grace period")
        .unwrap();
    assert_eq!(status.code(), Some(0), "{}", logs());
    let text = logs();
    assert!(text.contains("SIGTERM"), "{text}");
    assert!(text.contains("draining"), "{text}");
    assert!(
        !text.contains("drain deadline passed"),
        "the drain hit its deadline: {text}"
    );
    assert!(
        refused_within(admin_port, Duration::from_secs(2)).await,
        "admin port still open"
    );
    assert_eq!(account_hits(&up), 1);
}
