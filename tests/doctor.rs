//! `dcr-gateway doctor` exits 2, with a message and no report, on usage and connection errors
//! (the findings themselves are tested on recorded answers in src/doctor/ and against a real
//! Keycloak in tests/keycloak_doctor.rs).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn doctor(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dcr-gateway"));
    c.arg("doctor").args(args);
    for k in [
        "DCR_DOCTOR_USERNAME",
        "DCR_DOCTOR_PASSWORD",
        "DCR_DOCTOR_CLIENT_ID",
        "DCR_DOCTOR_CLIENT_SECRET",
        "DCR_DOCTOR_CREDENTIALS",
        "DCR_GATEWAY_CONFIG",
        "DCR_GATEWAY_POLICIES",
        "DCR_GATEWAY_UPSTREAM",
    ] {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn usage_and_connection_errors_exit_2() {
    let (code, out, err) = doctor(&["--realm", "demo"], &[]);
    assert_eq!(code, Some(2));
    assert!(out.is_empty());
    assert!(err.contains("no admin credentials: set DCR_DOCTOR_USERNAME"), "{err}");

    let creds = [("DCR_DOCTOR_USERNAME", "admin"), ("DCR_DOCTOR_PASSWORD", "admin")];
    let (code, _, err) = doctor(&["--realm", "demo", "--format", "yaml"], &creds);
    assert_eq!(code, Some(2));
    assert!(err.contains("--format must be human or json"), "{err}");

    // A port nothing listens on: the login fails before anything is checked.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = format!("http://127.0.0.1:{port}");
    let (code, out, err) = doctor(&["--realm", "demo", "--upstream", &url], &creds);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(out.is_empty());
    assert!(
        err.contains(&format!("{url}/realms/master/protocol/openid-connect/token")),
        "{err}"
    );
    assert!(!err.contains("admin\""), "{err}");
}
