//! What the binary says when something is wrong with how it was started: a bad
//! `DCR_GATEWAY_*` value under the variable's name, semantic errors at `file:line:col`, types in
//! words, the listener whose port is taken, misspelt variables, the commit in `--version`, and
//! `--help` without doubled defaults.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_dcr-gateway");

/// The binary with no `DCR_GATEWAY_*` variables inherited, plus `env`.
fn run_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("DCR_GATEWAY_") {
            c.env_remove(k);
        }
    }
    c.env("RUST_LOG", "info").envs(env.iter().copied());
    c.args(args).stdin(Stdio::null()).output().unwrap()
}

fn run(args: &[&str]) -> Output {
    run_env(args, &[])
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// A port the test holds (binding it fails with "address in use").
fn held() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap().to_string();
    (l, a)
}

fn config_error(o: &Output) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "exit code; stderr: {err}");
    assert!(!err.contains("serving"), "{err}");
    err
}

#[test]
fn a_bad_environment_value_is_named_by_its_variable_and_flag() {
    let o = run_env(&["serve"], &[("DCR_GATEWAY_LISTEN", "localhost")]);
    let err = config_error(&o);
    assert!(
        err.contains("DCR_GATEWAY_LISTEN (--listen): `localhost` is not an address"),
        "{err}"
    );
    let o = run_env(&["serve"], &[("DCR_GATEWAY_MODE", "loud")]);
    assert!(config_error(&o).contains("DCR_GATEWAY_MODE (--mode): `loud` is not one of enforce, shadow"));
    let o = run_env(&["serve"], &[("DCR_GATEWAY_UPSTREAM", "keycloak:8080")]);
    assert!(config_error(&o).contains("DCR_GATEWAY_UPSTREAM (--upstream): "));
    // The same value given as a flag is named by the flag alone (the flag wins over the variable).
    let o = run_env(
        &["serve", "--listen", "localhost"],
        &[("DCR_GATEWAY_LISTEN", "127.0.0.1:1")],
    );
    let err = config_error(&o);
    assert!(err.contains("configuration error: --listen: `localhost`"), "{err}");
    assert!(!err.contains("DCR_GATEWAY_LISTEN"), "{err}");
}

#[test]
fn semantic_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    let path = file.display().to_string();
    std::fs::write(&file, "listen = \"127.0.0.1:1\"\n\nmax_in_flight = 0\n").unwrap();
    let err = config_error(&run(&["serve", "--config", &path]));
    assert!(
        err.contains(&format!("{path}:3:1: max_in_flight: must be at least 1")),
        "{err}"
    );

    std::fs::write(&file, "[timeouts]\nconnect = \"1s\"\n  policy_poll = \"0s\"\n").unwrap();
    let err = config_error(&run(&["serve", "--config", &path]));
    assert!(
        err.contains(&format!("{path}:3:3: timeouts.policy_poll: must be longer than 0s")),
        "{err}"
    );

    std::fs::write(&file, "[realms.demo.registrar]\nclient_id = \"r\"\n").unwrap();
    let err = config_error(&run(&["serve", "--config", &path]));
    assert!(
        err.contains(&format!("{path}:1:14: realms.demo.registrar: a service account needs")),
        "{err}"
    );
}

#[test]
fn type_errors_say_what_to_write() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    let path = file.display().to_string();
    std::fs::write(&file, "max_in_flight = \"many\"\n").unwrap();
    let err = config_error(&run(&["serve", "--config", &path]));
    assert!(err.contains(&format!("{path}:1:")), "{err}");
    assert!(err.contains("expected a whole number ≥ 1"), "{err}");
    assert!(!err.contains("usize"), "{err}");
    std::fs::write(&file, "preserve_host = \"yes\"\n").unwrap();
    let err = config_error(&run(&["serve", "--config", &path]));
    assert!(err.contains("expected true or false"), "{err}");
}

#[test]
fn a_taken_port_names_the_listener() {
    let (_hold, addr) = held();
    let policies = policies();
    let p = policies.to_str().unwrap();
    let o = run(&[
        "serve",
        "--listen",
        &addr,
        "--admin-listen",
        "127.0.0.1:0",
        "--policies",
        p,
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot open the proxy listener (listen) on {addr}")),
        "{err}"
    );
    assert!(err.contains("--listen, DCR_GATEWAY_LISTEN"), "{err}");
    let o = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        &addr,
        "--policies",
        p,
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot open the admin listener (admin_listen) on {addr}")),
        "{err}"
    );
    assert!(err.contains("--admin-listen, DCR_GATEWAY_ADMIN_LISTEN"), "{err}");
}

#[test]
fn misspelt_variables_are_warned_about_at_start() {
    let (_hold, addr) = held(); // the start fails at bind, after the warning
    let policies = policies();
    let o = run_env(
        &["serve", "--listen", &addr, "--policies", policies.to_str().unwrap()],
        &[("DCR_GATEWAY_LISTN", "127.0.0.1:9"), ("DCR_GATEWAY_FROBNICATE", "1")],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("unknown environment variable ignored: DCR_GATEWAY_LISTN (did you mean DCR_GATEWAY_LISTEN?)"),
        "{err}"
    );
    assert!(
        err.contains("unknown environment variable ignored: DCR_GATEWAY_FROBNICATE"),
        "{err}"
    );
    // Known variables are not warned about.
    let o = run_env(
        &["serve", "--listen", &addr, "--policies", policies.to_str().unwrap()],
        &[("DCR_GATEWAY_MODE", "shadow")],
    );
    assert!(!stderr(&o).contains("unknown environment variable"), "{}", stderr(&o));
}

#[test]
fn version_shows_the_commit_and_help_no_doubled_default() {
    let o = run(&["--version"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0));
    assert!(out.contains(&format!("(commit {})", dcr_gateway::COMMIT)), "{out}");
    assert_ne!(
        dcr_gateway::COMMIT,
        "unknown",
        "built from a git checkout, the commit is known"
    );
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    if head.status.success() {
        assert_eq!(String::from_utf8_lossy(&head.stdout).trim(), dcr_gateway::COMMIT);
    }
    for sub in ["explain", "doctor", "serve", "check"] {
        let o = run(&[sub, "--help"]);
        let help = String::from_utf8_lossy(&o.stdout).into_owned();
        for line in help.lines() {
            assert!(line.matches("[default:").count() <= 1, "{sub} --help: {line}");
        }
    }
    let help = String::from_utf8_lossy(&run(&["explain", "--help"]).stdout).into_owned();
    assert_eq!(help.matches("[default: openid-connect]").count(), 1, "{help}");
}
