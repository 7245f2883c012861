//! The real `dcr-gateway` binary for fault tests: started with a config file on free ports,
//! waited for, its logs kept, stopped with SIGTERM.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::proxy_kit::free_port;

/// A running gateway process.
pub struct Binary {
    /// The proxy address.
    pub addr: SocketAddr,
    /// The admin address.
    pub admin: SocketAddr,
    /// The process.
    pub child: Child,
    log: tempfile::NamedTempFile,
    _dir: tempfile::TempDir,
}

/// Starts the binary; `shell_prefix` is run before it by `sh -c` (e.g. `ulimit -n 256`).
/// Free ports are picked, released and bound again by the binary, so a parallel test may take
/// one in between: then it is started again on other ports.
pub async fn start(config: &str, policies: Option<&Path>, shell_prefix: Option<&str>) -> Binary {
    for _ in 0..4 {
        if let Some(b) = try_start(config, policies, shell_prefix).await {
            return b;
        }
    }
    panic!("the gateway could not bind free ports four times");
}

async fn try_start(config: &str, policies: Option<&Path>, shell_prefix: Option<&str>) -> Option<Binary> {
    let (port, admin_port) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    let head = format!("listen = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin_port}\"\n");
    std::fs::write(&file, format!("{head}{config}")).unwrap();
    let bin = env!("CARGO_BIN_EXE_dcr-gateway");
    let mut args = vec!["serve".to_owned(), "--config".into(), file.display().to_string()];
    if let Some(p) = policies {
        args.extend(["--policies".into(), p.display().to_string()]);
    } // else the built-in policy: the process runs in `dir`, which has no ./policies
    let mut cmd = match shell_prefix {
        Some(prefix) => {
            let mut c = Command::new("sh");
            let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
            c.args(["-c", &format!("{prefix} && exec '{bin}' {}", quoted.join(" "))]);
            c
        }
        None => {
            let mut c = Command::new(bin);
            c.args(&args);
            c
        }
    };
    for (k, _) in std::env::vars() {
        if k.starts_with("DCR_GATEWAY_") {
            cmd.env_remove(k);
        }
    }
    let log = tempfile::NamedTempFile::new().unwrap();
    cmd.current_dir(dir.path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .kill_on_drop(true);
    let child = cmd.spawn().unwrap();
    let mut b = Binary {
        addr: ([127, 0, 0, 1], port).into(),
        admin: ([127, 0, 0, 1], admin_port).into(),
        child,
        log,
        _dir: dir,
    };
    match b.wait_healthy(Duration::from_secs(15)).await {
        Ok(()) => Some(b),
        Err(logs) if logs.contains("Address already in use") => None,
        Err(logs) => panic!("the gateway exited: {logs}"),
    }
}

impl Binary {
    /// Everything the process logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// GETs an admin path: status and body, or `None` if no answer within 5 s.
    pub async fn admin(&self, path: &str) -> Option<(u16, String)> {
        let req = http::Request::get(format!("http://{}{path}", self.admin))
            .body(dcr_gateway::net::empty())
            .unwrap();
        let a = tokio::time::timeout(Duration::from_secs(5), async { super::client().request(req).await })
            .await
            .ok()?
            .ok()?;
        let status = a.status().as_u16();
        let body = http_body_util::BodyExt::collect(a.into_body()).await.ok()?.to_bytes();
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    }

    async fn wait_healthy(&mut self, limit: Duration) -> Result<(), String> {
        let end = Instant::now() + limit;
        loop {
            if self.admin("/healthz").await.is_some_and(|(s, _)| s == 200) {
                return Ok(());
            }
            if self.child.try_wait().unwrap().is_some() {
                return Err(self.logs());
            }
            assert!(Instant::now() < end, "never healthy: {}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `/readyz` answers `status`, or panics after `limit`.
    pub async fn wait_ready(&self, status: u16, limit: Duration) {
        let end = Instant::now() + limit;
        loop {
            let got = self.admin("/readyz").await;
            if got.as_ref().is_some_and(|(s, _)| *s == status) {
                return;
            }
            assert!(Instant::now() < end, "/readyz never {status}: {got:?}\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then waits for the exit code.
    pub async fn stop(mut self) -> Option<i32> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        tokio::time::timeout(Duration::from_secs(40), self.child.wait())
            .await
            .ok()?
            .ok()?
            .code()
    }
}
