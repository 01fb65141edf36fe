//! Where the load goes: either an environment the harness provisions itself (a throwaway
//! PostgreSQL cluster and the three SUT services as separate processes, built by this same
//! command) or an existing deployment named by URLs, which the harness leaves alone.
//!
//! Self-provisioned services run in their own process groups, so a Ctrl-C in the terminal
//! reaches the harness only and the harness shuts them down in order: SIGTERM (the event
//! handler flushes its buffer), then a kill after a grace period.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use sut::pg::{ClusterOptions, PgCluster};

/// Why the environment could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EnvironmentError {
    /// PostgreSQL could not be provisioned.
    #[error("provisioning PostgreSQL: {0}")]
    Postgres(#[from] sut::pg::PgError),
    /// Building the SUT services failed.
    #[error("building the SUT services failed ({0}); see the cargo output above")]
    Build(String),
    /// A service binary is missing.
    #[error("{0} not found next to loadgen ({1}); build it with `cargo build --release -p sut --bins`")]
    MissingBinary(String, String),
    /// A service did not come up.
    #[error("{service} did not start: {reason}\n--- last lines of {log} ---\n{tail}")]
    ServiceStart {
        /// The service.
        service: String,
        /// Why.
        reason: String,
        /// Its log file.
        log: String,
        /// The log's last lines.
        tail: String,
    },
    /// A database step failed.
    #[error("database setup: {0}")]
    Database(#[from] sqlx::Error),
    /// An I/O step failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The Docker deployment failed.
    #[error(transparent)]
    Docker(#[from] crate::docker::DockerError),
}

/// The ports the services bind (0: any free one, reported on the READY line).
#[derive(Debug, Clone, Copy, Default)]
struct Ports {
    mock: u16,
    rest: u16,
    api_admin: u16,
    grpc: u16,
    handler_admin: u16,
}

/// The services' command lines, the same for processes and containers, each followed by the
/// user's extra arguments for that service. Every service binds loopback only.
struct ServiceCommands<'a> {
    settings: &'a ProvisionSettings,
    database_url: &'a str,
    jwt_secret: &'a str,
}

impl ServiceCommands<'_> {
    fn with_extra(&self, service: &str, args: &[&str]) -> Vec<String> {
        let extra = self.settings.extra_args.get(service).cloned().unwrap_or_default();
        args.iter().map(|a| (*a).to_owned()).chain(extra).collect()
    }

    fn database_and_config(&self) -> [String; 6] {
        let config = self.settings.challenges_config.display().to_string();
        let (url, namespace) = (self.database_url.to_owned(), self.settings.namespace.clone());
        ["--database-url".into(), url, "--challenges-config".into(), config, "--namespace".into(), namespace]
    }

    fn reward_mock(&self, ports: &Ports) -> Vec<String> {
        self.with_extra("reward-mock", &["--host", "127.0.0.1", "--port", &ports.mock.to_string()])
    }

    fn challenge_service(&self, ports: &Ports, reward_url: &str) -> Vec<String> {
        let common = self.database_and_config();
        let (rest, admin) = (ports.rest.to_string(), ports.api_admin.to_string());
        let own = ["--auth-mode", "jwt", "--jwt-secret", self.jwt_secret, "--reward-platform-url", reward_url];
        let bind = ["--host", "127.0.0.1", "--port", &rest, "--admin-port", &admin];
        let args: Vec<&str> = common.iter().map(String::as_str).chain(own).chain(bind).collect();
        self.with_extra("challenge-service", &args)
    }

    fn event_handler(&self, ports: &Ports) -> Vec<String> {
        let common = self.database_and_config();
        let (grpc, admin) = (ports.grpc.to_string(), ports.handler_admin.to_string());
        let bind = ["--host", "127.0.0.1", "--grpc-port", &grpc, "--admin-port", &admin];
        let args: Vec<&str> = common.iter().map(String::as_str).chain(bind).collect();
        self.with_extra("event-handler", &args)
    }
}

/// `N` free loopback ports (bound, read and released; the services bind them next).
fn free_ports<const N: usize>() -> std::io::Result<[u16; N]> {
    let listeners: Vec<std::net::TcpListener> =
        (0..N).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

/// What the engine and the samplers need to know about the target.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Endpoints {
    /// `http://host:port` of the REST API.
    pub api_url: Option<String>,
    /// `http://host:port` of the event handler.
    pub grpc_url: Option<String>,
    /// `/metrics` URLs of the SUT services, by service name.
    pub metrics_urls: BTreeMap<String, String>,
    /// The database, when the harness can reach it.
    pub database_url: Option<String>,
    /// Process ids of the SUT services and the database server, by name.
    pub pids: BTreeMap<String, u32>,
    /// Container ids of the SUT services, by name, when they run in Docker.
    #[serde(default)]
    pub containers: BTreeMap<String, String>,
    /// `http://host:port` of the reward mock, when the harness runs it (its grant ledger is
    /// read by the integrity audit).
    #[serde(default)]
    pub reward_mock_url: Option<String>,
}

/// A running SUT service process.
#[derive(Debug)]
struct ServiceProcess {
    name: String,
    child: Child,
    pid: u32,
    addrs: BTreeMap<String, SocketAddr>,
}

/// A provisioned environment: stopped by [`Provisioned::shutdown`] (and, as a last resort, by the
/// cluster's own clean-up on drop).
#[derive(Debug)]
pub struct Provisioned {
    cluster: Arc<PgCluster>,
    services: Vec<ServiceProcess>,
    stack: Option<crate::docker::Stack>,
    logs_dir: PathBuf,
    /// Where to reach everything.
    pub endpoints: Endpoints,
    /// The HS256 secret the challenge service was started with.
    pub jwt_secret: String,
}

/// Settings for a self-provisioned environment.
#[derive(Debug, Clone)]
pub struct ProvisionSettings {
    /// The challenge configuration file the services load.
    pub challenges_config: PathBuf,
    /// Namespace of the deployment.
    pub namespace: String,
    /// Where service logs go.
    pub logs_dir: PathBuf,
    /// Extra arguments per service name (e.g. reward-mock latency).
    pub extra_args: BTreeMap<String, Vec<String>>,
    /// Processes or containers.
    pub deploy: crate::plan::Deploy,
}

const SERVICE_START_TIMEOUT: Duration = Duration::from_secs(60);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

impl Provisioned {
    /// Builds the services, starts PostgreSQL and the services, and waits until all are ready.
    pub async fn start(settings: &ProvisionSettings) -> Result<Self, EnvironmentError> {
        let bin_dir = build_services().await?;
        eprintln!("gauntlet: starting a throwaway PostgreSQL cluster");
        let cluster = tokio::task::spawn_blocking(|| {
            PgCluster::start(&ClusterOptions {
                preload: vec!["pg_stat_statements".into()],
                settings: vec![("pg_stat_statements.track".into(), "all".into())],
                ..ClusterOptions::default()
            })
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
        // Should loadgen die without cleaning up (a second Ctrl-C, a crash), the cluster still goes.
        cluster.stop_when_this_process_exits()?;
        let database_url = cluster.url("gauntlet");
        create_database(&cluster.url("postgres"), "gauntlet").await?;

        let jwt_secret = format!("{:032x}", rand::random::<u128>());
        let mut env = Self {
            cluster: Arc::new(cluster),
            services: Vec::new(),
            stack: None,
            logs_dir: settings.logs_dir.clone(),
            endpoints: Endpoints {
                api_url: None,
                grpc_url: None,
                metrics_urls: BTreeMap::new(),
                database_url: Some(database_url.clone()),
                pids: BTreeMap::new(),
                containers: BTreeMap::new(),
                reward_mock_url: None,
            },
            jwt_secret,
        };
        if let Some(pid) = env.postmaster_pid() {
            env.endpoints.pids.insert("postgres".into(), pid);
        }
        if settings.deploy == crate::plan::Deploy::Docker {
            env.start_containers(&bin_dir, &database_url, settings).await?;
            return Ok(env);
        }
        // Port 0 everywhere: each service picks a free one and reports it on its READY line.
        let commands = ServiceCommands { settings, database_url: &database_url, jwt_secret: &env.jwt_secret.clone() };
        let any = Ports::default();
        let mock = env.spawn(&bin_dir, "reward-mock", commands.reward_mock(&any), settings).await?;
        let reward_url = format!("http://{}", mock.addrs["http"]);
        env.endpoints.metrics_urls.insert("reward-mock".into(), format!("{reward_url}/metrics"));
        env.endpoints.reward_mock_url = Some(reward_url.clone());
        env.services.push(mock);
        let challenge =
            env.spawn(&bin_dir, "challenge-service", commands.challenge_service(&any, &reward_url), settings).await?;
        env.endpoints.api_url = Some(format!("http://{}", challenge.addrs["rest"]));
        env.endpoints
            .metrics_urls
            .insert("challenge-service".into(), format!("http://{}/metrics", challenge.addrs["admin"]));
        env.services.push(challenge);
        let handler = env.spawn(&bin_dir, "event-handler", commands.event_handler(&any), settings).await?;
        env.endpoints.grpc_url = Some(format!("http://{}", handler.addrs["grpc"]));
        env.endpoints.metrics_urls.insert("event-handler".into(), format!("http://{}/metrics", handler.addrs["admin"]));
        env.services.push(handler);
        for service in &env.services {
            env.endpoints.pids.insert(service.name.clone(), service.pid);
        }
        stop_when_this_process_exits(&env.services.iter().map(|s| s.pid).collect::<Vec<_>>())?;
        Ok(env)
    }

    /// The three services as containers with the plan's limits, on the host's network.
    async fn start_containers(
        &mut self,
        bin_dir: &Path,
        database_url: &str,
        settings: &ProvisionSettings,
    ) -> Result<(), EnvironmentError> {
        const SERVICES: [&str; 3] = ["reward-mock", "challenge-service", "event-handler"];
        eprintln!("gauntlet: building the service images (FROM scratch, no registry needed)");
        let docker = crate::docker::connect().await?;
        let images = crate::docker::build_images(&docker, bin_dir, &SERVICES).await?;
        let run_id = format!("{:08x}", rand::random::<u32>());
        let mut stack = crate::docker::Stack::new(docker, run_id);
        stack.remove_when_this_process_exits()?;
        let [mock, rest, api_admin, grpc, handler_admin] = free_ports::<5>()?;
        let ports = Ports { mock, rest, api_admin, grpc, handler_admin };
        let commands = ServiceCommands { settings, database_url, jwt_secret: &self.jwt_secret };
        eprintln!("gauntlet: starting the containers (1 CPU, 1 GiB each) and waiting until healthy");
        // The services read the challenge configuration inside their containers: mounted read-only.
        let mounts = [settings.challenges_config.as_path()];
        let reward_url = format!("http://127.0.0.1:{mock}");
        let started = async {
            let health = format!("{reward_url}/healthz");
            stack.start("reward-mock", &images["reward-mock"], commands.reward_mock(&ports), &[], &health).await?;
            let args = commands.challenge_service(&ports, &reward_url);
            let health = format!("http://127.0.0.1:{rest}/challenge/healthz");
            stack.start("challenge-service", &images["challenge-service"], args, &mounts, &health).await?;
            let health = format!("http://127.0.0.1:{handler_admin}/metrics");
            stack
                .start("event-handler", &images["event-handler"], commands.event_handler(&ports), &mounts, &health)
                .await
        };
        let outcome = started.await;
        let endpoints = &mut self.endpoints;
        endpoints.containers = stack.containers.iter().cloned().collect();
        self.stack = Some(stack);
        outcome?;
        endpoints.api_url = Some(format!("http://127.0.0.1:{rest}"));
        endpoints.grpc_url = Some(format!("http://127.0.0.1:{grpc}"));
        endpoints.reward_mock_url = Some(reward_url);
        for (name, port) in [("reward-mock", mock), ("challenge-service", api_admin), ("event-handler", handler_admin)]
        {
            endpoints.metrics_urls.insert(name.into(), format!("http://127.0.0.1:{port}/metrics"));
        }
        Ok(())
    }

    fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.cluster.data_dir().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    async fn spawn(
        &mut self,
        bin_dir: &Path,
        name: &str,
        args: Vec<String>,
        settings: &ProvisionSettings,
    ) -> Result<ServiceProcess, EnvironmentError> {
        let binary = bin_dir.join(name);
        if !binary.is_file() {
            return Err(EnvironmentError::MissingBinary(name.into(), bin_dir.display().to_string()));
        }
        let log_path = settings.logs_dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path)?;
        let mut child = Command::new(&binary)
            .args(&args)
            .env("RUST_LOG", std::env::var("GAUNTLET_SUT_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.try_clone()?)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().unwrap_or_default();
        let stdout = child.stdout.take().expect("piped");
        let ready = tokio::time::timeout(SERVICE_START_TIMEOUT, read_ready_line(stdout, name, log)).await;
        let fail = |reason: String| EnvironmentError::ServiceStart {
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

    /// The PostgreSQL cluster, for faults that stop and start it.
    pub fn database(&self) -> Arc<PgCluster> {
        self.cluster.clone()
    }

    /// Resolves with a message when any service exits by itself.
    pub async fn watch_for_deaths(&mut self, stop: CancellationToken) -> Option<String> {
        if let Some(stack) = &self.stack {
            return stack.watch_for_deaths(stop).await;
        }
        let waits = self.services.iter_mut().map(|s| {
            let name = s.name.clone();
            Box::pin(async move {
                let status = s.child.wait().await;
                format!(
                    "{name} exited during the run ({})",
                    status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())
                )
            })
        });
        tokio::select! {
            (message, _, _) = futures_select_all(waits) => Some(message),
            () = stop.cancelled() => None,
        }
    }

    /// Stops the services (SIGTERM, then kill after a grace period) and the database.
    pub async fn shutdown(mut self) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(stack) = self.stack.take() {
            notes.extend(stack.remove_all(&self.logs_dir).await);
        }
        // In reverse start order: the event handler (which flushes), the API, then the mock.
        for service in self.services.iter_mut().rev() {
            if let Ok(Some(status)) = service.child.try_wait() {
                notes.push(format!("{} had already exited ({status})", service.name));
                continue;
            }
            let _ = std::process::Command::new("kill").args(["-TERM", &service.pid.to_string()]).status();
            match tokio::time::timeout(SHUTDOWN_GRACE, service.child.wait()).await {
                Ok(Ok(status)) if status.success() => {}
                Ok(Ok(status)) => notes.push(format!("{} stopped with {status}", service.name)),
                Ok(Err(e)) => notes.push(format!("{}: {e}", service.name)),
                Err(_) => {
                    let _ = service.child.kill().await;
                    notes.push(format!(
                        "{} did not stop within {}s and was killed",
                        service.name,
                        SHUTDOWN_GRACE.as_secs()
                    ));
                }
            }
        }
        let cluster = self.cluster;
        let _ = tokio::task::spawn_blocking(move || drop(cluster)).await;
        notes
    }
}

/// A watchdog that sends SIGTERM to `pids` once this process is gone, however it ended.
fn stop_when_this_process_exits(pids: &[u32]) -> std::io::Result<()> {
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

async fn futures_select_all<F: std::future::Future<Output = String> + Unpin>(
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

async fn create_database(admin_url: &str, name: &str) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&mut conn).await?;
    conn.close().await
}

/// Builds the SUT binaries with the same profile as this loadgen when run from the workspace
/// (`cargo run`), and returns the folder holding them (the one loadgen itself is in).
async fn build_services() -> Result<PathBuf, EnvironmentError> {
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
        let status = command.status().await.map_err(|e| EnvironmentError::Build(format!("cannot run {cargo}: {e}")))?;
        if !status.success() {
            return Err(EnvironmentError::Build(status.to_string()));
        }
    }
    Ok(bin_dir)
}
