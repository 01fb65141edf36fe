//! The SUT services as child processes: built by the same cargo profile as loadgen, each in its
//! own process group (so a Ctrl-C in the terminal reaches loadgen only), ready when it prints
//! its `READY` line, and stopped by a watchdog should loadgen die without cleaning up.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use super::{DeployError, ProvisionSettings};

const SERVICE_START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running SUT service process.
#[derive(Debug)]
pub struct ServiceProcess {
    /// The service's name.
    pub name: String,
    /// The child process.
    pub child: Child,
    /// Its process id.
    pub pid: u32,
    /// The addresses its READY line reported, by kind (`rest`, `grpc`, `admin`, `http`).
    pub addrs: BTreeMap<String, SocketAddr>,
}

/// Starts service `service` from `bin_dir` as component `name` (the service's name, or a
/// replica's) with `args` and the settings' environment, its stderr (and stdout) logged in the
/// settings' logs folder, and waits for its READY line.
pub async fn spawn(
    bin_dir: &Path,
    service: &str,
    name: &str,
    args: Vec<String>,
    settings: &ProvisionSettings,
) -> Result<ServiceProcess, DeployError> {
    let logs_dir = &settings.logs_dir;
    let binary = bin_dir.join(service);
    if !binary.is_file() {
        return Err(DeployError::MissingBinary(service.into(), bin_dir.display().to_string()));
    }
    let log_path = logs_dir.join(format!("{}.log", super::file_stem(name)));
    let log = std::fs::File::create(&log_path)?;
    let mut child = Command::new(&binary)
        .args(&args)
        .env("RUST_LOG", std::env::var("GAUNTLET_SUT_LOG").unwrap_or_else(|_| "info".into()))
        .envs(settings.environment.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log.try_clone()?)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().unwrap_or_default();
    let stdout = child.stdout.take().expect("piped");
    let ready = tokio::time::timeout(SERVICE_START_TIMEOUT, read_ready_line(stdout, service, log)).await;
    let fail = |reason: String| DeployError::ServiceStart {
        service: name.into(),
        reason,
        log: log_path.display().to_string(),
        tail: tail(&log_path, 20),
    };
    match ready {
        Ok(Ok(addrs)) => Ok(ServiceProcess { name: name.into(), child, pid, addrs }),
        Ok(Err(reason)) => {
            let status = child.wait().await.map(|s| s.to_string()).unwrap_or_default();
            Err(fail(format!("{reason} ({status})")))
        }
        Err(_) => {
            let _ = child.kill().await;
            Err(fail(format!("not ready within {}s", SERVICE_START_TIMEOUT.as_secs())))
        }
    }
}

/// A watchdog that sends SIGTERM to `pids` once this process is gone, however it ended.
pub fn stop_when_this_process_exits(pids: &[u32]) -> std::io::Result<()> {
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    let script = format!(
        "while kill -0 {} 2>/dev/null; do sleep 1; done; kill -TERM {} 2>/dev/null",
        std::process::id(),
        pids.join(" ")
    );
    std::process::Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map(drop)
}

/// The first of `futures` to finish (never, for none).
pub async fn futures_select_all<F: std::future::Future<Output = String> + Unpin>(
    futures: impl Iterator<Item = F>,
) -> (String, usize, ()) {
    let futures: Vec<F> = futures.collect();
    if futures.is_empty() {
        std::future::pending::<()>().await;
    }
    let (message, index, _) = futures::future::select_all(futures).await;
    (message, index, ())
}

/// Reads the service's stdout until its `READY name key=addr …` line, copying everything to the
/// log; keeps copying in the background afterwards.
async fn read_ready_line(
    stdout: tokio::process::ChildStdout,
    name: &str,
    log: std::fs::File,
) -> Result<BTreeMap<String, SocketAddr>, String> {
    let mut lines = BufReader::new(stdout).lines();
    let mut log = tokio::fs::File::from_std(log);
    while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
        let _ = log.write_all(format!("{line}\n").as_bytes()).await;
        if let Some(rest) = line.strip_prefix(&format!("READY {name} ")) {
            let addrs = rest
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
                .collect();
            tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    let _ = log.write_all(format!("{line}\n").as_bytes()).await;
                }
            });
            return Ok(addrs);
        }
    }
    Err("exited before it was ready".into())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Builds the SUT binaries with the same profile as this loadgen when run from the workspace
/// (`cargo run`), and returns the folder holding them (the one loadgen itself is in).
pub async fn build_services() -> Result<PathBuf, DeployError> {
    let exe = std::env::current_exe()?;
    let mut bin_dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    // A test binary lives in `target/<profile>/deps`; the services are built one folder up.
    if bin_dir.ends_with("deps") {
        bin_dir.pop();
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    if manifest.is_file() && std::env::var_os("GAUNTLET_SKIP_BUILD").is_none() {
        eprintln!("gauntlet: building the SUT services (cargo build -p sut --bins)");
        let mut command = Command::new(&cargo);
        command.args(["build", "--quiet", "-p", "sut", "--bins", "--manifest-path"]).arg(&manifest);
        if !cfg!(debug_assertions) {
            command.arg("--release");
        }
        let status = command.status().await.map_err(|e| DeployError::Build(format!("cannot run {cargo}: {e}")))?;
        if !status.success() {
            return Err(DeployError::Build(status.to_string()));
        }
    }
    Ok(bin_dir)
}
