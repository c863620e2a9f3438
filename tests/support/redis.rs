//! Real Redis for tests: `redis-server` (Debian's package) started by the
//! test itself on ephemeral loopback ports, each in its own temporary
//! directory, and stopped when dropped. A Redis already running on the
//! machine (the packaged service on 6379) is never used.
//!
//! - [`RedisServer`]: one server; can be killed and restarted on the same
//!   port to test outages.
//! - [`RedisCluster`]: three masters in cluster mode, slots assigned with
//!   `redis-cli --cluster create`.
//! - [`RedisSentinel`]: one Sentinel watching a [`RedisServer`].
//! - [`TlsSetup`]: a CA, a server certificate and a client certificate
//!   (rcgen), for a server that requires mutual TLS.
#![allow(dead_code)]

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const READY_WITHIN: Duration = Duration::from_secs(20);

/// A port that was free a moment ago (bound to port 0, then released).
/// `redis-server` cannot report a port it chose itself, so a rare clash is
/// handled by [`RedisServer`] retrying with another port.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

fn redis_server_binary() -> &'static str {
    assert!(
        Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
        "redis-server is not installed (Debian: apt-get install redis-server)"
    );
    "redis-server"
}

#[derive(Clone)]
enum Role {
    /// A data node, with extra command-line settings.
    Data(Vec<String>),
    /// A Sentinel monitoring `master` at 127.0.0.1:`port`.
    Sentinel { master: String, port: u16 },
}

/// One `redis-server` process on 127.0.0.1.
pub struct RedisServer {
    port: u16,
    dir: TempDir,
    role: Role,
    child: Option<Child>,
    /// TLS-only servers are checked for readiness by a TCP connect alone.
    tls: bool,
}

impl RedisServer {
    /// A plain server: no persistence unless asked (`SAVE`), RDB strings
    /// uncompressed so a dump shows plaintext if there were any.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// A server with extra settings (`["--cluster-enabled", "yes"]`, …).
    pub async fn start_with(extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        Self::launch(Role::Data(extra), false).await
    }

    /// A server that only speaks TLS and requires client certificates.
    pub async fn start_tls(tls: &TlsSetup) -> Self {
        let extra = vec![
            "--tls-cert-file".into(),
            tls.server_cert.display().to_string(),
            "--tls-key-file".into(),
            tls.server_key.display().to_string(),
            "--tls-ca-cert-file".into(),
            tls.ca_cert.display().to_string(),
            "--tls-auth-clients".into(),
            "yes".into(),
        ];
        Self::launch(Role::Data(extra), true).await
    }

    async fn launch(role: Role, tls: bool) -> Self {
        let mut last = String::new();
        for _ in 0..5 {
            let mut server = RedisServer {
                port: free_port(),
                dir: tempfile::tempdir().expect("temp dir"),
                role: role.clone(),
                child: None,
                tls,
            };
            match server.spawn_and_wait().await {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    fn command_line(&self) -> Vec<String> {
        let port = self.port.to_string();
        let dir = self.dir.path().display().to_string();
        match &self.role {
            Role::Data(extra) => {
                let (plain_port, tls_port) = if self.tls {
                    ("0".to_owned(), Some(port))
                } else {
                    (port, None)
                };
                let mut args: Vec<String> = [
                    "--port",
                    &plain_port,
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    &dir,
                    "--logfile",
                    "redis.log",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--rdbcompression",
                    "no",
                    "--daemonize",
                    "no",
                ]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
                if let Some(tls_port) = tls_port {
                    args.extend(["--tls-port".to_owned(), tls_port]);
                }
                args.extend(extra.iter().cloned());
                args
            }
            Role::Sentinel { .. } => vec![
                self.dir.path().join("sentinel.conf").display().to_string(),
                "--sentinel".to_owned(),
            ],
        }
    }

    async fn spawn_and_wait(&mut self) -> Result<(), String> {
        if let Role::Sentinel { master, port } = &self.role {
            // Sentinel rewrites its file, so it lives in the temp dir.
            let conf = format!(
                "port {}\nbind 127.0.0.1\ndir {}\nlogfile sentinel.log\n\
                 sentinel monitor {master} 127.0.0.1 {port} 1\n\
                 sentinel down-after-milliseconds {master} 1000\n",
                self.port,
                self.dir.path().display(),
            );
            std::fs::write(self.dir.path().join("sentinel.conf"), conf)
                .map_err(|e| e.to_string())?;
        }
        let child = Command::new(redis_server_binary())
            .args(self.command_line())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("exited with {status}: {}", self.log_tail()));
            }
            if self.answers().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("not ready: {}", self.log_tail()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the server answers (PING, or a TCP connect for TLS).
    async fn answers(&self) -> bool {
        if self.tls {
            return tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))
                .await
                .is_ok();
        }
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let ping = async {
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await
        };
        matches!(
            tokio::time::timeout(Duration::from_millis(500), ping).await,
            Ok(Ok(_))
        )
    }

    fn log_tail(&self) -> String {
        let name = match self.role {
            Role::Data(_) => "redis.log",
            Role::Sentinel { .. } => "sentinel.log",
        };
        let log = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().rev().take(5).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's working directory (its RDB file lands here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `redis://127.0.0.1:<port>` (`rediss://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// A plain connection for inspecting and altering what is stored.
    pub async fn raw(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test redis")
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers,
    /// as with a Redis that hangs.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a [`RedisServer::pause`]d server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let pid = self.child.as_ref().expect("server running").id();
        let status = Command::new("kill")
            .args([which, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {which} {pid}");
    }

    /// Starts it again on the same port and directory.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn_and_wait()
            .await
            .unwrap_or_else(|e| panic!("redis-server did not restart: {e}"));
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL: stops a paused server too.
        self.kill();
    }
}

/// Three masters in cluster mode, all 16384 slots assigned.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub async fn start() -> Self {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            // The cluster bus port is set explicitly: the default (port +
            // 10000) could be taken or out of range.
            let bus = free_port().to_string();
            nodes.push(
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-port",
                    &bus,
                ])
                .await,
            );
        }
        let mut create = tokio::process::Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port()));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run redis-cli (Debian: redis-tools)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_ok().await;
        cluster
    }

    /// Waits until every node reports `cluster_state:ok`.
    async fn wait_ok(&self) {
        let deadline = Instant::now() + READY_WITHIN;
        for node in &self.nodes {
            loop {
                let mut conn = node.raw().await;
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_default();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "cluster not ok: {info}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// `redis+cluster://` with every node as a seed.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The node serving `key`'s slot (asked of the cluster itself).
    pub async fn node_for(&self, key: &str) -> &RedisServer {
        let mut conn = self.nodes[0].raw().await;
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("CLUSTER KEYSLOT");
        let shards: redis::Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn)
            .await
            .expect("CLUSTER SLOTS");
        let redis::Value::Array(ranges) = shards else {
            panic!("CLUSTER SLOTS: {shards:?}");
        };
        for range in ranges {
            let redis::Value::Array(range) = range else {
                continue;
            };
            let (Some(redis::Value::Int(lo)), Some(redis::Value::Int(hi))) =
                (range.first(), range.get(1))
            else {
                continue;
            };
            if (*lo..=*hi).contains(&i64::from(slot))
                && let Some(redis::Value::Array(master)) = range.get(2)
                && let Some(redis::Value::Int(port)) = master.get(1)
            {
                return self
                    .nodes
                    .iter()
                    .find(|n| i64::from(n.port()) == *port)
                    .expect("slot owner is one of ours");
            }
        }
        panic!("no node serves slot {slot}");
    }
}

/// One Sentinel watching a master.
pub struct RedisSentinel {
    pub server: RedisServer,
}

impl RedisSentinel {
    pub async fn start(master: &RedisServer, name: &str) -> Self {
        let role = Role::Sentinel {
            master: name.to_owned(),
            port: master.port(),
        };
        let sentinel = RedisSentinel {
            server: RedisServer::launch(role, false).await,
        };
        // Ready once it names the master.
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let mut conn = sentinel.server.raw().await;
            let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(name)
                .query_async(&mut conn)
                .await
                .unwrap_or(None);
            if addr.is_some_and(|(_, port)| port == master.port()) {
                return sentinel;
            }
            assert!(Instant::now() < deadline, "sentinel does not know {name}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }
}

/// PEM files for a TLS server requiring client certificates.
pub struct TlsSetup {
    _dir: TempDir,
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TlsSetup {
    pub fn new() -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair,
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, pem: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).expect("write pem");
            path
        };
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // OpenSSL (the server's side) finds the issuer by name: it needs one.
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "shared-cache test CA");
        let ca = ca_params.self_signed(&ca_key).expect("ca cert");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(names).expect("params");
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &issuer).expect("sign");
            (cert.pem(), key.serialize_pem())
        };
        let (server_pem, server_key_pem) = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_pem, client_key_pem) = leaf(
            vec!["phantom-client".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        TlsSetup {
            ca_cert: write("ca.pem", ca.pem()),
            server_cert: write("server.pem", server_pem),
            server_key: write("server-key.pem", server_key_pem),
            client_cert: write("client.pem", client_pem),
            client_key: write("client-key.pem", client_key_pem),
            _dir: dir,
        }
    }
}
