//! A real `redis-server` for tests: started on a free loopback port in a temporary directory,
//! without persistence, stopped (and restartable on the same port) by the test, killed on drop.
//!
//! When `redis-server` is not installed the tests that need it are skipped, except under
//! `CI=true`, where they fail: CI installs it (`.ci/run`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dcr_gateway::config::store::{FileQuotaStore, QuotaStore, build};

/// A running (or stopped) redis-server.
pub struct RedisServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its working directory.
    pub dir: tempfile::TempDir,
    bin: PathBuf,
    child: Option<Child>,
    /// Listens with TLS only (`--tls-port`).
    tls: bool,
    extra: Vec<String>,
}

fn find_bin() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

impl RedisServer {
    /// Starts redis-server; `None` (test skipped) when it is missing outside CI.
    pub async fn start() -> Option<RedisServer> {
        Self::start_with(false, &[]).await
    }

    /// Starts redis-server with more arguments; with `tls`, on a TLS port only (the arguments
    /// name the certificates).
    pub async fn start_with(tls: bool, extra: &[String]) -> Option<RedisServer> {
        let Some(bin) = find_bin() else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("redis-server is not installed; .ci/run must install the redis-server package");
            }
            eprintln!("SKIPPED: redis-server is not installed (apt-get install redis-server)");
            return None;
        };
        for _ in 0..5 {
            let mut r = RedisServer {
                port: free_port(),
                dir: tempfile::tempdir().expect("temp dir"),
                bin: bin.clone(),
                child: None,
                tls,
                extra: extra.to_vec(),
            };
            if r.spawn().await {
                return Some(r);
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    async fn spawn(&mut self) -> bool {
        let log = self.dir.path().join("redis.log");
        let port = self.port.to_string();
        let ports: Vec<&str> = match self.tls {
            true => vec!["--port", "0", "--tls-port", &port],
            false => vec!["--port", &port],
        };
        let child = Command::new(&self.bin)
            .args(ports)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&self.extra)
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        for _ in 0..100 {
            if self.ping() {
                return true;
            }
            if let Some(c) = self.child.as_mut()
                && c.try_wait().ok().flatten().is_some()
            {
                self.child = None;
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill();
        false
    }

    fn ping(&self) -> bool {
        if self.tls || self.extra.iter().any(|a| a == "--requirepass") {
            return std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok();
        }
        self.connection()
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c).ok())
            .is_some()
    }

    fn connection(&self) -> Option<redis::Connection> {
        let client = redis::Client::open(self.url()).ok()?;
        client.get_connection_with_timeout(Duration::from_millis(500)).ok()
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A `[quota_store]` for this server with `extra` TOML lines (e.g. `on_error = "open"`).
    pub fn store(&self, extra: &str) -> QuotaStore {
        let text = format!("backend = \"redis\"\nurl = \"{}\"\n{extra}\n", self.url());
        let file: FileQuotaStore = toml::from_str(&text).expect("quota_store TOML");
        build(&file).expect("quota_store settings")
    }

    /// Runs one command and returns its answer.
    pub fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        let mut c = self.connection().expect("connect to the test redis-server");
        cmd.query(&mut c).expect("redis command")
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the server (its data is gone: no persistence).
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) {
        assert!(self.spawn().await, "redis-server did not restart on port {}", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of three masters on free ports, slots assigned by `redis-cli --cluster create`.
pub struct RedisCluster {
    /// The nodes.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the cluster; `None` (test skipped) when redis-server is missing outside CI.
    pub async fn start() -> Option<RedisCluster> {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let args = ["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"].map(String::from);
            nodes.push(RedisServer::start_with(false, &args).await?);
        }
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli (package redis-tools) runs");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        for _ in 0..200 {
            let ok = nodes.iter().all(|n| {
                n.query::<String>(redis::cmd("CLUSTER").arg("INFO"))
                    .contains("cluster_state:ok")
            });
            if ok {
                return Some(RedisCluster { nodes });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the Redis Cluster did not become ready");
    }

    /// A `[quota_store]` with `topology = "cluster"`: the first node as `url`, the second as
    /// another seed.
    pub fn store(&self, extra: &str) -> QuotaStore {
        let text = format!(
            "backend = \"redis\"\ntopology = \"cluster\"\nurl = \"{}\"\ncluster_nodes = [\"{}\"]\n{extra}\n",
            self.nodes[0].url(),
            self.nodes[1].url()
        );
        build(&toml::from_str::<FileQuotaStore>(&text).expect("quota_store TOML")).expect("quota_store settings")
    }
}
