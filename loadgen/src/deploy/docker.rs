//! The SUT as Docker containers, through the engine's API (bollard): images built with no
//! registry, containers started with the plan's limits (1 CPU, 1 GiB each) and health checks
//! (their stats are sampled by [`crate::observe::containers`]).
//!
//! No image can be pulled here, so each image is built `FROM scratch` from the binaries cargo just
//! built and the shared libraries they link (as `ldd` lists them), plus a tiny `healthcheck`
//! binary for the health check. The containers use the host's network: PostgreSQL runs on the
//! host (no PostgreSQL image can be pulled either) and the load stays on loopback. Network
//! counters are therefore the host's, not the containers', and are not reported.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HealthConfig, HealthStatusEnum, HostConfig};
use bollard::query_parameters::{
    BuildImageOptions, CreateContainerOptions, InspectContainerOptions, RemoveContainerOptions, StopContainerOptions,
};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// The plan's per-service limits.
pub const SERVICE_CPUS: f64 = 1.0;
/// Memory limit per service.
pub const SERVICE_MEMORY_BYTES: i64 = 1 << 30;
/// The label every container loadgen starts carries (value: the run's id).
pub const RUN_LABEL: &str = "gauntlet.run";

/// Why the Docker deployment failed.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The engine is not reachable.
    #[error("the Docker engine is not reachable ({0}); is the daemon running and its socket readable?")]
    Unreachable(String),
    /// An engine call failed.
    #[error("Docker: {0}")]
    Engine(#[from] bollard::errors::Error),
    /// Building an image failed.
    #[error("building image {image}: {message}")]
    Build {
        /// The image.
        image: String,
        /// What the engine said.
        message: String,
    },
    /// A container did not become healthy.
    #[error("{0}")]
    Unhealthy(String),
    /// Preparing the build context failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Connects to the local engine and agrees an API version with it.
pub async fn connect() -> Result<Docker, DockerError> {
    let docker = Docker::connect_with_local_defaults().map_err(|e| DockerError::Unreachable(e.to_string()))?;
    let docker = docker.negotiate_version().await.map_err(|e| DockerError::Unreachable(e.to_string()))?;
    docker.ping().await.map_err(|e| DockerError::Unreachable(e.to_string()))?;
    Ok(docker)
}

/// The shared libraries `binary` links, as `ldd` resolves them (absolute paths).
fn linked_libraries(binary: &Path) -> Result<Vec<PathBuf>, DockerError> {
    let output = std::process::Command::new("ldd").arg(binary).output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .lines()
        .filter_map(|line| {
            let path = line.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// A tar build context: a `FROM scratch` Dockerfile and a root file system holding `binaries`
/// (the first is the entry point), their libraries, and `files` (this machine's path, and the
/// same path inside) where this machine has them.
fn build_context(binaries: &[PathBuf], files: &[&Path]) -> Result<Vec<u8>, DockerError> {
    let name = |path: &Path| path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let entry = binaries.first().map(|b| name(b)).unwrap_or_default();
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(true);
    // The engine does not take GNU sparse entries.
    tar.sparse(false);
    let dockerfile = format!(
        "FROM scratch\nCOPY rootfs/ /\nENTRYPOINT [\"/usr/local/bin/{entry}\"]\nLABEL org.opencontainers.image.title=\"gauntlet {entry}\"\n"
    );
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "Dockerfile", dockerfile.as_bytes())?;
    let mut libraries = Vec::new();
    for path in binaries {
        tar.append_path_with_name(path, format!("rootfs/usr/local/bin/{}", name(path)))?;
        libraries.extend(linked_libraries(path)?);
    }
    libraries.sort();
    libraries.dedup();
    libraries.extend(files.iter().filter(|f| f.is_file()).map(|f| f.to_path_buf()));
    for library in libraries {
        let inside = format!("rootfs{}", library.display());
        tar.append_path_with_name(&library, inside)?;
    }
    Ok(tar.into_inner()?)
}

/// Builds `image` `FROM scratch` holding `binaries` (the first is its entry point), the shared
/// libraries they link, and `files` (at the same paths, where this machine has them).
pub async fn build_image(
    docker: &Docker,
    image: &str,
    binaries: &[PathBuf],
    files: &[&Path],
) -> Result<(), DockerError> {
    let context = build_context(binaries, files)?;
    let options = BuildImageOptions {
        dockerfile: "Dockerfile".into(),
        t: Some(image.to_owned()),
        rm: true,
        forcerm: true,
        ..Default::default()
    };
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(step) = stream.next().await {
        let info = step.map_err(|e| DockerError::Build { image: image.to_owned(), message: e.to_string() })?;
        if let Some(error) = info.error_detail.and_then(|d| d.message) {
            return Err(DockerError::Build { image: image.to_owned(), message: error });
        }
    }
    Ok(())
}

/// Builds `gauntlet/<service>:local` for each service from the binaries in `bin_dir` (each with
/// the health check).
pub async fn build_images(
    docker: &Docker,
    bin_dir: &Path,
    services: &[&str],
) -> Result<BTreeMap<String, String>, DockerError> {
    let mut images = BTreeMap::new();
    for service in services {
        let image = format!("gauntlet/{service}:local");
        build_image(docker, &image, &[bin_dir.join(service), bin_dir.join("healthcheck")], &[]).await?;
        images.insert((*service).to_owned(), image);
    }
    Ok(images)
}

/// The containers of one run.
#[derive(Debug)]
pub struct Stack {
    docker: Docker,
    run_id: String,
    /// `(service, container id)` in start order.
    pub containers: Vec<(String, String)>,
    /// Environment variables every container starts with, beside its log level.
    environment: Vec<(String, String)>,
}

impl Stack {
    /// An empty stack labelled with `run_id`, its containers started with `environment`.
    pub fn new(docker: Docker, run_id: String, environment: Vec<(String, String)>) -> Self {
        Self { docker, run_id, containers: Vec::new(), environment }
    }

    /// The engine.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Starts `service` from `image` with `args` and the host files `read_only` mounted at the
    /// same paths; it is ready when `health_url` answers 200.
    pub async fn start(
        &mut self,
        service: &str,
        image: &str,
        args: Vec<String>,
        read_only: &[&Path],
        health_url: &str,
    ) -> Result<(), DockerError> {
        let name = format!("gauntlet-{}-{}", self.run_id, super::file_stem(service));
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            cmd: Some(args),
            env: Some(
                [format!("RUST_LOG={}", std::env::var("GAUNTLET_SUT_LOG").unwrap_or_else(|_| "info".into()))]
                    .into_iter()
                    .chain(self.environment.iter().map(|(k, v)| format!("{k}={v}")))
                    .collect(),
            ),
            labels: Some(HashMap::from([(RUN_LABEL.to_owned(), self.run_id.clone())])),
            healthcheck: Some(HealthConfig {
                test: Some(vec!["CMD".into(), "/usr/local/bin/healthcheck".into(), health_url.to_owned()]),
                interval: Some(1_000_000_000),
                timeout: Some(2_000_000_000),
                retries: Some(3),
                start_period: Some(0),
                start_interval: None,
            }),
            host_config: Some(HostConfig {
                network_mode: Some("host".into()),
                nano_cpus: Some((SERVICE_CPUS * 1e9) as i64),
                memory: Some(SERVICE_MEMORY_BYTES),
                memory_swap: Some(SERVICE_MEMORY_BYTES),
                binds: Some(read_only.iter().map(|p| format!("{0}:{0}:ro", p.display())).collect()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(Some(CreateContainerOptions { name: Some(name), platform: String::new() }), body)
            .await?;
        self.containers.push((service.to_owned(), created.id.clone()));
        self.docker.start_container(&created.id, None::<bollard::query_parameters::StartContainerOptions>).await?;
        self.wait_healthy(service, &created.id, Duration::from_secs(60)).await
    }

    async fn wait_healthy(&self, service: &str, id: &str, timeout: Duration) -> Result<(), DockerError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut ticker = tokio::time::interval(Duration::from_millis(250));
        loop {
            ticker.tick().await;
            let state =
                self.docker.inspect_container(id, None::<InspectContainerOptions>).await?.state.unwrap_or_default();
            if state.running != Some(true) {
                return Err(DockerError::Unhealthy(format!(
                    "container {service} stopped while starting (exit code {:?}): {}",
                    state.exit_code,
                    self.log_tail(id).await
                )));
            }
            if state.health.and_then(|h| h.status) == Some(HealthStatusEnum::HEALTHY) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(DockerError::Unhealthy(format!(
                    "container {service} not healthy within {}s: {}",
                    timeout.as_secs(),
                    self.log_tail(id).await
                )));
            }
        }
    }

    async fn log_tail(&self, id: &str) -> String {
        self.output(id, "20").await
    }

    /// The container's output (its last `tail` lines, or `all`).
    async fn output(&self, id: &str, tail: &str) -> String {
        let options = bollard::query_parameters::LogsOptions {
            stdout: true,
            stderr: true,
            tail: tail.into(),
            ..Default::default()
        };
        let lines: Vec<String> = self
            .docker
            .logs(id, Some(options))
            .filter_map(|l| async move { l.ok().map(|l| l.to_string()) })
            .collect()
            .await;
        lines.concat()
    }

    /// Resolves with a message when a container stops by itself.
    pub async fn watch_for_deaths(&self, stop: CancellationToken) -> Option<String> {
        let mut ticker = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = stop.cancelled() => return None,
            }
            for (service, id) in &self.containers {
                let state = self.docker.inspect_container(id, None::<InspectContainerOptions>).await.ok()?.state;
                if state.as_ref().and_then(|s| s.running) != Some(true) {
                    let code = state.and_then(|s| s.exit_code);
                    return Some(format!("container {service} exited during the run (exit code {code:?})"));
                }
            }
        }
    }

    /// Saves each container's output to `<logs_dir>/<service>.log`, stops the containers in
    /// reverse order (SIGTERM, 30 s grace) and removes them.
    pub async fn remove_all(self, logs_dir: &Path) -> Vec<String> {
        let mut notes = Vec::new();
        for (service, id) in self.containers.iter().rev() {
            let options = StopContainerOptions { t: Some(30), signal: None };
            if let Err(e) = self.docker.stop_container(id, Some(options)).await {
                notes.push(format!("stopping container {service}: {e}"));
            }
            let output = self.output(id, "all").await;
            let _ = std::fs::write(logs_dir.join(format!("{}.log", super::file_stem(service))), output);
            let options = RemoveContainerOptions { force: true, v: true, link: false };
            if let Err(e) = self.docker.remove_container(id, Some(options)).await {
                notes.push(format!("removing container {service}: {e}"));
            }
        }
        notes
    }

    /// A shell watchdog that removes this run's containers once loadgen is gone, however it ended.
    pub fn remove_when_this_process_exits(&self) -> std::io::Result<()> {
        use std::os::unix::process::CommandExt as _;
        let script = format!(
            "while kill -0 {} 2>/dev/null; do sleep 1; done; \
             docker ps -aq --filter label={RUN_LABEL}={} | xargs -r docker rm -f >/dev/null 2>&1",
            std::process::id(),
            self.run_id
        );
        std::process::Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .map(drop)
    }
}
