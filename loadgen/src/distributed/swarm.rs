//! The workers as a Docker Swarm service: the loadgen image built `FROM scratch` from the
//! running loadgen binary (as the SUT's images are built, with no registry), and a replicated
//! service of it, one replica per worker, each with its own CPU limit, on the host's network
//! (the load stays on loopback), never restarted (a worker that dies is reported, not
//! replaced). The service is removed when the run ends.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{
    Limit, LocalNodeState, NetworkAttachmentConfig, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec,
    TaskSpecContainerSpec, TaskSpecResources, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};

use crate::deploy::docker::{self, DockerError};

/// The loadgen image the workers run.
pub const IMAGE: &str = "gauntlet/loadgen:local";
/// The certificate roots the image carries.
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The label on the service (value: the coordinator's URL).
pub const LABEL: &str = "gauntlet.coordinator";

/// Why the Swarm service could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    /// The engine, an image build or a call failed.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// The engine is not a Swarm manager.
    #[error("the Docker engine is not in Swarm mode (its node is {0}); run `docker swarm init` first")]
    NotSwarm(String),
}

/// A running Swarm service of workers.
#[derive(Debug)]
pub struct SwarmWorkers {
    docker: Docker,
    /// The service's name.
    pub name: String,
}

/// Builds the loadgen image from this binary and starts `workers` replicas joining
/// `coordinator`, each limited to `cpus` CPUs.
pub async fn start(workers: u32, coordinator: &str, cpus: f64) -> Result<SwarmWorkers, SwarmError> {
    let docker = docker::connect().await?;
    let info = docker.info().await.map_err(DockerError::from)?;
    let state = info.swarm.and_then(|s| s.local_node_state).unwrap_or(LocalNodeState::EMPTY);
    if state != LocalNodeState::ACTIVE {
        return Err(SwarmError::NotSwarm(state.to_string()));
    }
    let binary = std::env::current_exe().map_err(DockerError::from)?;
    // The HTTP client loads the system's certificate roots even for plain HTTP: the image
    // carries this machine's.
    docker::build_image(&docker, IMAGE, &[binary], &[std::path::Path::new(CA_BUNDLE)]).await?;
    let name = format!("gauntlet-workers-{}", std::process::id());
    let spec = service_spec(&name, workers, coordinator, cpus);
    docker.create_service(spec, None).await.map_err(DockerError::from)?;
    eprintln!("gauntlet: Swarm service {name}: {workers} workers of {IMAGE}, {cpus} CPU each");
    Ok(SwarmWorkers { docker, name })
}

/// The service: `workers` replicas of `loadgen worker --coordinator URL`.
pub fn service_spec(name: &str, workers: u32, coordinator: &str, cpus: f64) -> ServiceSpec {
    let args = ["worker", "--coordinator", coordinator, "--out", "/gauntlet/worker"];
    ServiceSpec {
        name: Some(name.to_owned()),
        labels: Some(HashMap::from([(LABEL.to_owned(), coordinator.to_owned())])),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(i64::from(workers)) }),
            ..Default::default()
        }),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(IMAGE.to_owned()),
                args: Some(args.iter().map(|a| (*a).to_owned()).collect()),
                ..Default::default()
            }),
            resources: Some(TaskSpecResources {
                limits: Some(Limit { nano_cpus: Some((cpus * 1e9) as i64), ..Default::default() }),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                ..Default::default()
            }),
            networks: Some(vec![NetworkAttachmentConfig { target: Some("host".to_owned()), ..Default::default() }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl SwarmWorkers {
    /// Removes the service (its containers go with it).
    pub async fn remove(self) {
        if let Err(e) = self.docker.delete_service(&self.name).await {
            eprintln!("gauntlet: could not remove Swarm service {}: {e}", self.name);
        }
    }
}
