//! Where the load goes: either an environment the harness provisions itself (a throwaway
//! PostgreSQL cluster and the three SUT services as separate processes, built by this same
//! command) or an existing deployment named by URLs, which the harness leaves alone.
//!
//! Self-provisioned services run in their own process groups, so a Ctrl-C in the terminal
//! reaches the harness only and the harness shuts them down in order: SIGTERM (the event
//! handler flushes its buffer), then a kill after a grace period.
//!
//! - [`processes`]: the services as child processes (built, started, ready, watched).
//! - [`docker`]: the services as containers through the Docker engine (images, health checks).
//! - [`commands`]: their command lines, the same for both, and the ports they bind.

pub mod commands;
pub mod docker;
pub mod processes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use self::commands::{Ports, ServiceCommands, free_ports};
use self::processes::{ServiceProcess, build_services, futures_select_all, stop_when_this_process_exits};
use crate::definition::options::{Replicas, replica_name};

use sut::pg_cluster::{ClusterOptions, PgCluster};

/// Why the environment could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// PostgreSQL could not be provisioned.
    #[error("provisioning PostgreSQL: {0}")]
    Postgres(#[from] sut::pg_cluster::PgError),
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
    Docker(#[from] docker::DockerError),
}

/// What the engine and the samplers need to know about the target.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Endpoints {
    /// `http://host:port` of the REST API, one per replica (none when there is no API).
    pub api_urls: Vec<String>,
    /// `http://host:port` of the event handler, one per replica.
    pub grpc_urls: Vec<String>,
    /// `/metrics` URLs of the SUT services, by component name (a replica's is `service#i`).
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

/// A provisioned environment: stopped by [`Provisioned::shutdown`] (and, as a last resort, by the
/// cluster's own clean-up on drop).
#[derive(Debug)]
pub struct Provisioned {
    cluster: Arc<PgCluster>,
    services: Vec<ServiceProcess>,
    stack: Option<docker::Stack>,
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
    pub deploy: crate::definition::options::Deploy,
    /// Replicas of the challenge service and the event handler.
    pub replicas: Replicas,
    /// Environment variables every service starts with, beside its log level (jemalloc's
    /// options when the run takes heap profiles).
    pub environment: Vec<(String, String)>,
}

const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The environment that has the services' allocator sample the heap from their start, for
/// heap profiles (`sut::profiling::heap`).
pub fn heap_sampling() -> Vec<(String, String)> {
    use sut::profiling::heap::{PROFILING_CONF, PROFILING_ENV};
    vec![(PROFILING_ENV.to_owned(), PROFILING_CONF.to_owned())]
}

impl Provisioned {
    /// Builds the services, starts PostgreSQL and the services, and waits until all are ready.
    pub async fn start(settings: &ProvisionSettings) -> Result<Self, DeployError> {
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
                api_urls: Vec::new(),
                grpc_urls: Vec::new(),
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
        if settings.deploy == crate::definition::options::Deploy::Docker {
            env.start_containers(&bin_dir, &database_url, settings).await?;
            return Ok(env);
        }
        // Port 0 everywhere: each service picks a free one and reports it on its READY line.
        let commands = ServiceCommands { settings, database_url: &database_url, jwt_secret: &env.jwt_secret.clone() };
        let any = Ports::default();
        let mock =
            processes::spawn(&bin_dir, "reward-mock", "reward-mock", commands.reward_mock(&any), settings).await?;
        let reward_url = format!("http://{}", mock.addrs["http"]);
        env.endpoints.metrics_urls.insert("reward-mock".into(), format!("{reward_url}/metrics"));
        env.endpoints.reward_mock_url = Some(reward_url.clone());
        env.services.push(mock);
        // Replicas one after the other: the first migrates the schema, the others find it done.
        for index in 1..=settings.replicas.challenge_service {
            let name = replica_name("challenge-service", index, settings.replicas.challenge_service);
            let args = commands.challenge_service(&any, &reward_url);
            let challenge = processes::spawn(&bin_dir, "challenge-service", &name, args, settings).await?;
            env.endpoints.api_urls.push(format!("http://{}", challenge.addrs["rest"]));
            env.endpoints.metrics_urls.insert(name, format!("http://{}/metrics", challenge.addrs["admin"]));
            env.services.push(challenge);
        }
        for index in 1..=settings.replicas.event_handler {
            let name = replica_name("event-handler", index, settings.replicas.event_handler);
            let handler =
                processes::spawn(&bin_dir, "event-handler", &name, commands.event_handler(&any), settings).await?;
            env.endpoints.grpc_urls.push(format!("http://{}", handler.addrs["grpc"]));
            env.endpoints.metrics_urls.insert(name, format!("http://{}/metrics", handler.addrs["admin"]));
            env.services.push(handler);
        }
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
    ) -> Result<(), DeployError> {
        const SERVICES: [&str; 3] = ["reward-mock", "challenge-service", "event-handler"];
        eprintln!("gauntlet: building the service images (FROM scratch, no registry needed)");
        let docker = docker::connect().await?;
        let images = docker::build_images(&docker, bin_dir, &SERVICES).await?;
        let run_id = format!("{:08x}", rand::random::<u32>());
        let mut stack = docker::Stack::new(docker, run_id, settings.environment.clone());
        stack.remove_when_this_process_exits()?;
        let commands = ServiceCommands { settings, database_url, jwt_secret: &self.jwt_secret };
        let replicas = settings.replicas;
        eprintln!(
            "gauntlet: starting the containers (1 CPU, 1 GiB each{}) and waiting until healthy",
            if replicas.any() { format!("; {replicas}") } else { String::new() }
        );
        // The services read the challenge configuration inside their containers: mounted read-only.
        let mounts = [settings.challenges_config.as_path()];
        let [mock] = free_ports::<1>()?;
        let reward_url = format!("http://127.0.0.1:{mock}");
        let endpoints = &mut self.endpoints;
        let started = async {
            let health = format!("{reward_url}/healthz");
            let ports = Ports { mock, ..Ports::default() };
            stack.start("reward-mock", &images["reward-mock"], commands.reward_mock(&ports), &[], &health).await?;
            endpoints.metrics_urls.insert("reward-mock".into(), format!("{reward_url}/metrics"));
            for index in 1..=replicas.challenge_service {
                let name = replica_name("challenge-service", index, replicas.challenge_service);
                let [rest, api_admin] = free_ports::<2>()?;
                let args = commands.challenge_service(&Ports { rest, api_admin, ..Ports::default() }, &reward_url);
                let health = format!("http://127.0.0.1:{rest}/challenge/healthz");
                stack.start(&name, &images["challenge-service"], args, &mounts, &health).await?;
                endpoints.api_urls.push(format!("http://127.0.0.1:{rest}"));
                endpoints.metrics_urls.insert(name, format!("http://127.0.0.1:{api_admin}/metrics"));
            }
            for index in 1..=replicas.event_handler {
                let name = replica_name("event-handler", index, replicas.event_handler);
                let [grpc, handler_admin] = free_ports::<2>()?;
                let args = commands.event_handler(&Ports { grpc, handler_admin, ..Ports::default() });
                let health = format!("http://127.0.0.1:{handler_admin}/metrics");
                stack.start(&name, &images["event-handler"], args, &mounts, &health).await?;
                endpoints.grpc_urls.push(format!("http://127.0.0.1:{grpc}"));
                endpoints.metrics_urls.insert(name, format!("http://127.0.0.1:{handler_admin}/metrics"));
            }
            Ok::<(), DeployError>(())
        };
        let outcome = started.await;
        endpoints.containers = stack.containers.iter().cloned().collect();
        self.stack = Some(stack);
        outcome?;
        endpoints.reward_mock_url = Some(reward_url);
        Ok(())
    }

    fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.cluster.data_dir().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
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

async fn create_database(admin_url: &str, name: &str) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&mut conn).await?;
    conn.close().await
}

/// A component's name as it appears in file and container names (`challenge-service#2` →
/// `challenge-service-2`).
pub fn file_stem(component: &str) -> String {
    component.replace('#', "-")
}
