//! Child processes (the plugin and the echo server), their readiness, and what
//! the OS accounts for them: CPU time and resident memory.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A child process killed (and reaped) when dropped, panics included.
pub struct Guard {
    pub name: &'static str,
    child: Child,
    /// Held open: the echo server exits when it reads end-of-file.
    _stdin: Option<ChildStdin>,
    /// Removed on drop: the child's empty working directory.
    dir: Option<PathBuf>,
}

impl Guard {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the child has already exited.
    pub fn alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{} exited: {status}", self.name)),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }
}

impl Drop for Guard {
    /// SIGTERM first (the plugin's own shutdown path; profilers write their
    /// output), SIGKILL after 5 s.
    fn drop(&mut self) {
        let term = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        if term.is_ok_and(|s| s.success()) {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A running target: its process and gRPC address.
pub struct Target {
    pub guard: Guard,
    pub addr: SocketAddr,
}

impl Target {
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }
}

/// A loopback port free at the time of asking.
pub fn free_port() -> Result<u16, String> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(probe.local_addr().map_err(|e| e.to_string())?.port())
}

/// Starts the plugin on a loopback port, with its configuration in the
/// environment only (an empty working directory: no `.env` is read), and waits
/// until its health service reports SERVING.
pub async fn start_plugin(
    binary: &Path,
    introspection: SocketAddr,
    cache_max_bytes: &str,
    extra_env: &[(String, String)],
) -> Result<Target, String> {
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let dir = std::env::temp_dir().join(format!("phantom-bench-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // A relative path would be taken from the child's working directory.
    let binary = binary
        .canonicalize()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let mut command = Command::new(&binary);
    command
        .current_dir(&dir)
        .env_clear()
        .env(
            "INTROSPECTION_URL",
            format!("http://{introspection}/oauth/v2/oauth-introspect"),
        )
        .env("INTROSPECTION_ALLOW_HTTP", "true")
        .env("CLIENT_ID", "bench-gateway")
        .env("CLIENT_SECRET", "bench-secret")
        .env("LISTEN_ADDR", addr.to_string())
        .env("CACHE_MAX_BYTES", cache_max_bytes)
        .env("LOG_LEVEL", "warn")
        // Its one introspection would be counted with the workloads' calls.
        .env("STARTUP_PROBE", "false")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (name, value) in extra_env {
        command.env(name, value);
    }
    let child = command.spawn().map_err(|e| {
        let _ = std::fs::remove_dir_all(&dir);
        format!("cannot start {}: {e}", binary.display())
    })?;
    let mut guard = Guard {
        name: "plugin",
        child,
        _stdin: None,
        dir: Some(dir),
    };
    wait_serving(&mut guard, addr).await?;
    Ok(Target { guard, addr })
}

/// Starts `phantom-bench echo-server` on a loopback port and reads the address
/// it prints.
pub async fn start_echo(binary: &Path) -> Result<Target, String> {
    let mut child = Command::new(binary)
        .args(["echo-server", "--listen", "127.0.0.1:0", "--watch-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let mut guard = Guard {
        name: "echo server",
        child,
        _stdin: stdin,
        dir: None,
    };
    let mut line = String::new();
    if let Some(stdout) = stdout {
        let _ = BufReader::new(stdout).read_line(&mut line);
    }
    let addr: SocketAddr = line
        .trim()
        .parse()
        .map_err(|_| format!("echo server printed {line:?}, not an address"))?;
    wait_serving(&mut guard, addr).await?;
    Ok(Target { guard, addr })
}

/// Polls the gRPC health service for at most 20 s.
async fn wait_serving(guard: &mut Guard, addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        guard.alive()?;
        match health(addr).await {
            Ok(true) => return Ok(()),
            Ok(false) => last = "NOT_SERVING".into(),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!(
        "{} at {addr} not serving after 20 s: {last}",
        guard.name
    ))
}

async fn health(addr: SocketAddr) -> Result<bool, String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "coprocess.Dispatcher".into(),
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(reply.into_inner().status == ServingStatus::Serving as i32)
}

/// Clock ticks per second of `/proc/<pid>/stat` times.
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// User plus system CPU time of `pid` so far, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory of `pid`: (VmRSS, VmHWM) in bytes.
pub fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Processor count and model, for the report.
pub fn machine() -> (usize, String) {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    (cpus, model)
}
