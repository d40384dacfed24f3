//! A `castellan serve` child process: started with its configuration in the
//! environment, watched through /proc/<pid> (RSS, CPU seconds), stopped
//! with SIGTERM.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// Clock ticks per second of /proc/<pid>/stat's CPU times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// How the bench starts the server.
#[derive(Debug, Clone)]
pub struct ServerCommand {
    pub binary: PathBuf,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub admin_email: String,
    pub admin_password: String,
    pub log_file: PathBuf,
}

pub struct ServerProcess {
    child: Child,
    pub grpc_addr: SocketAddr,
    /// From spawning the process to its first SERVING answer.
    pub start_to_serving: Duration,
}

fn free_port() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

impl ServerProcess {
    /// Starts the server and waits (at most `timeout`) until its health
    /// check answers SERVING.
    pub async fn start(command: &ServerCommand, timeout: Duration) -> Result<Self, String> {
        let grpc_addr = free_port().map_err(|e| format!("finding a free port: {e}"))?;
        let http_addr = free_port().map_err(|e| format!("finding a free port: {e}"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&command.log_file)
            .map_err(|e| format!("opening {}: {e}", command.log_file.display()))?;
        let mut process = Command::new(&command.binary);
        process
            .arg("serve")
            .env("CASTELLAN_DATA_DIR", &command.data_dir)
            .env("CASTELLAN_GRPC_ADDR", grpc_addr.to_string())
            .env("CASTELLAN_HTTP_ADDR", http_addr.to_string())
            .env("CASTELLAN_BOOTSTRAP_ADMIN_EMAIL", &command.admin_email)
            .env("CASTELLAN_BOOTSTRAP_ADMIN_PASSWORD", &command.admin_password)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(url) = &command.database_url {
            process.env("CASTELLAN_DATABASE_URL", url);
        }
        let spawned = Instant::now();
        let child = process
            .spawn()
            .map_err(|e| format!("starting {}: {e}", command.binary.display()))?;
        let mut server = Self {
            child,
            grpc_addr,
            start_to_serving: Duration::ZERO,
        };
        loop {
            if serving(grpc_addr).await {
                server.start_to_serving = spawned.elapsed();
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "the server exited ({status}) before serving; see {}",
                    command.log_file.display()
                ));
            }
            if spawned.elapsed() > timeout {
                server.stop();
                return Err(format!("the server did not serve within {timeout:?}"));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn proc_file(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(Path::new("/proc").join(self.pid().to_string()).join(name)).ok()
    }

    /// Resident set size now, in MB (10^6 bytes, as the targets are
    /// stated; `/proc`'s "kB" are KiB).
    pub fn rss_mb(&self) -> Option<f64> {
        let status = self.proc_file("status")?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024.0 / 1_000_000.0)
    }

    /// User + system CPU seconds used so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds_of(&self.proc_file("stat")?)
    }

    /// User + system CPU seconds used so far by the threads whose name
    /// starts with `prefix` (the hashing threads: `castellan-hash-`).
    pub fn threads_cpu_seconds(&self, prefix: &str) -> Option<f64> {
        let tasks = Path::new("/proc").join(self.pid().to_string()).join("task");
        let mut total = 0.0;
        for task in std::fs::read_dir(tasks).ok()?.flatten() {
            let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if name.starts_with(prefix)
                && let Some(seconds) = std::fs::read_to_string(task.path().join("stat"))
                    .ok()
                    .and_then(|stat| cpu_seconds_of(&stat))
            {
                total += seconds;
            }
        }
        Some(total)
    }

    /// SIGTERM, then a kill if it has not exited within 10 s.
    pub fn stop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// User + system CPU seconds in a `/proc/<pid>[/task/<tid>]/stat` line.
fn cpu_seconds_of(stat: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces: count from its closing ')'.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

async fn serving(addr: SocketAddr) -> bool {
    let Ok(endpoint) = Endpoint::from_shared(format!("http://{addr}")) else {
        return false;
    };
    let Ok(channel) = endpoint.connect_timeout(Duration::from_millis(100)).connect().await else {
        return false;
    };
    health_status(channel).await == Some(ServingStatus::Serving)
}

async fn health_status(channel: Channel) -> Option<ServingStatus> {
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest { service: String::new() })
        .await
        .ok()?;
    ServingStatus::try_from(response.into_inner().status).ok()
}
