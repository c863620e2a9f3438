//! A `redis-server` child process for the fleet benchmark: on a loopback
//! port of its own, without persistence, in an empty temporary directory;
//! killed (SIGKILL, as a crash) and started again on the same port to
//! measure an outage; killed when dropped.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::procs;

pub struct RedisProcess {
    binary: PathBuf,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisProcess {
    /// Starts `binary` on a free loopback port (another port if the one
    /// picked was taken meanwhile).
    pub fn start(binary: PathBuf) -> Result<Self, String> {
        let mut last = String::new();
        for _ in 0..5 {
            let port = procs::free_port()?;
            let dir = std::env::temp_dir()
                .join(format!("phantom-bench-redis-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let mut redis = RedisProcess {
                binary: binary.clone(),
                port,
                dir,
                child: None,
            };
            match redis.spawn() {
                Ok(()) => return Ok(redis),
                Err(e) => last = e,
            }
        }
        Err(format!("redis-server did not start: {last}"))
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server at once, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (empty: nothing was persisted).
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.spawn()
    }

    fn spawn(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let dir = self.dir.display().to_string();
        let child = Command::new(&self.binary)
            .args(["--port", &port, "--bind", "127.0.0.1", "--dir", &dir])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--logfile", "redis.log"])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        // Nothing to load: listening means ready.
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(3).collect();
                return Err(format!("exited with {status}: {}", tail.join(" | ")));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("not listening on {addr} after 20 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
