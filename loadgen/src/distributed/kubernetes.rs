//! The workers on Kubernetes: `loadgen k8s` writes the manifests of a distributed run, built
//! from the Kubernetes API's own types (k8s-openapi), so they are valid by construction: the
//! coordinator as a Job with a Service in front of it, the workers as an Indexed Job whose
//! completion index is each worker's segment, each with resource requests and limits, and the
//! scenario in a ConfigMap when it is a file.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, PodSpec, PodTemplateSpec, ResourceRequirements,
    Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The coordinator's Service and Job name.
pub const COORDINATOR: &str = "gauntlet-coordinator";
/// The workers' Job name.
pub const WORKERS: &str = "gauntlet-workers";
/// The scenario's ConfigMap name.
pub const SCENARIO_MAP: &str = "gauntlet-scenario";
/// Where workers reach the coordinator.
pub const COORDINATOR_PORT: i32 = 5670;
/// The coordinator's live dashboard (and the finished reports, for `--dashboard-hold`).
pub const DASHBOARD_PORT: i32 = 5665;
const SCENARIO_DIR: &str = "/gauntlet/scenario";

/// What the manifests run.
#[derive(Debug, Clone)]
pub struct Manifests {
    /// A built-in scenario's name, or a scenario file's name and text.
    pub scenario: ScenarioSource,
    /// Workers.
    pub workers: u32,
    /// The loadgen image.
    pub image: String,
    /// Each worker's CPU (request and limit), e.g. `1` or `500m`.
    pub worker_cpu: String,
    /// Each worker's memory (request and limit), e.g. `1Gi`.
    pub worker_memory: String,
    /// The coordinator's options for the run (`--rps 2000 --api-url …`), already checked.
    pub run_args: Vec<String>,
}

/// Where the coordinator finds the scenario.
#[derive(Debug, Clone)]
pub enum ScenarioSource {
    /// A built-in scenario, by name.
    Builtin(String),
    /// A file: its name and text (carried in a ConfigMap).
    File {
        /// The file's name.
        name: String,
        /// Its text.
        text: String,
    },
}

fn labels(role: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_owned(), "gauntlet".to_owned()), ("gauntlet/role".to_owned(), role.to_owned())])
}

fn resources(cpu: &str, memory: &str) -> ResourceRequirements {
    let amounts = BTreeMap::from([
        ("cpu".to_owned(), Quantity(cpu.to_owned())),
        ("memory".to_owned(), Quantity(memory.to_owned())),
    ]);
    ResourceRequirements { requests: Some(amounts.clone()), limits: Some(amounts), ..Default::default() }
}

fn meta(name: &str, role: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.to_owned()), labels: Some(labels(role)), ..Default::default() }
}

fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort { name: Some(name.to_owned()), container_port: number, ..Default::default() }
}

fn job(name: &str, role: &str, spec: JobSpec) -> Job {
    Job { metadata: meta(name, role), spec: Some(spec), ..Default::default() }
}

fn pod(role: &str, container: Container, volumes: Option<Vec<Volume>>) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta { labels: Some(labels(role)), ..Default::default() }),
        spec: Some(PodSpec {
            containers: vec![container],
            restart_policy: Some("Never".to_owned()),
            volumes,
            ..Default::default()
        }),
    }
}

impl Manifests {
    /// The coordinator's arguments.
    pub fn coordinator_args(&self) -> Vec<String> {
        let scenario = match &self.scenario {
            ScenarioSource::Builtin(name) => name.clone(),
            ScenarioSource::File { name, .. } => format!("{SCENARIO_DIR}/{name}"),
        };
        let mut args: Vec<String> = [
            "coordinate",
            &scenario,
            "--workers",
            &self.workers.to_string(),
            "--listen",
            &format!("0.0.0.0:{COORDINATOR_PORT}"),
            "--join-timeout",
            "10m",
            "--dashboard",
            &format!("0.0.0.0:{DASHBOARD_PORT}"),
            "--dashboard-hold",
            "30m",
            "--out",
            "/gauntlet/results/run",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(self.run_args.iter().cloned());
        args
    }

    /// A worker's arguments (its segment comes from the Job's completion index).
    pub fn worker_args(&self) -> Vec<String> {
        let coordinator = format!("http://{COORDINATOR}:{COORDINATOR_PORT}");
        ["worker", "--coordinator", &coordinator, "--connect-timeout", "10m", "--out", "/gauntlet/results/worker"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    }

    /// The ConfigMap holding a scenario file, when the scenario is one.
    pub fn scenario_map(&self) -> Option<ConfigMap> {
        let ScenarioSource::File { name, text } = &self.scenario else { return None };
        Some(ConfigMap {
            metadata: meta(SCENARIO_MAP, "scenario"),
            data: Some(BTreeMap::from([(name.clone(), text.clone())])),
            ..Default::default()
        })
    }

    /// The coordinator's Job.
    pub fn coordinator_job(&self) -> Job {
        let file = matches!(self.scenario, ScenarioSource::File { .. });
        let container = Container {
            name: "coordinator".to_owned(),
            image: Some(self.image.clone()),
            args: Some(self.coordinator_args()),
            ports: Some(vec![port("coordinator", COORDINATOR_PORT), port("dashboard", DASHBOARD_PORT)]),
            resources: Some(resources("1", "1Gi")),
            volume_mounts: file.then(|| {
                vec![VolumeMount {
                    name: "scenario".to_owned(),
                    mount_path: SCENARIO_DIR.to_owned(),
                    read_only: Some(true),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        };
        let volumes = file.then(|| {
            vec![Volume {
                name: "scenario".to_owned(),
                config_map: Some(ConfigMapVolumeSource { name: SCENARIO_MAP.to_owned(), ..Default::default() }),
                ..Default::default()
            }]
        });
        let spec =
            JobSpec { backoff_limit: Some(0), template: pod("coordinator", container, volumes), ..Default::default() };
        job(COORDINATOR, "coordinator", spec)
    }

    /// The Service the workers reach the coordinator (and people its dashboard) through.
    pub fn coordinator_service(&self) -> Service {
        let port = |name: &str, number: i32| ServicePort {
            name: Some(name.to_owned()),
            port: number,
            target_port: Some(IntOrString::Int(number)),
            ..Default::default()
        };
        Service {
            metadata: meta(COORDINATOR, "coordinator"),
            spec: Some(ServiceSpec {
                selector: Some(labels("coordinator")),
                ports: Some(vec![port("coordinator", COORDINATOR_PORT), port("dashboard", DASHBOARD_PORT)]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The workers' Indexed Job: one pod per segment, never retried (a lost worker is reported).
    pub fn workers_job(&self) -> Job {
        let workers = i32::try_from(self.workers).unwrap_or(i32::MAX);
        let container = Container {
            name: "worker".to_owned(),
            image: Some(self.image.clone()),
            args: Some(self.worker_args()),
            resources: Some(resources(&self.worker_cpu, &self.worker_memory)),
            ..Default::default()
        };
        let spec = JobSpec {
            completion_mode: Some("Indexed".to_owned()),
            completions: Some(workers),
            parallelism: Some(workers),
            backoff_limit: Some(0),
            template: pod("worker", container, None),
            ..Default::default()
        };
        job(WORKERS, "worker", spec)
    }

    /// Every manifest, as one YAML stream (`kubectl apply -f`).
    pub fn to_yaml(&self) -> Result<String, serde_yaml::Error> {
        let mut documents = Vec::new();
        if let Some(map) = self.scenario_map() {
            documents.push(serde_yaml::to_string(&map)?);
        }
        documents.push(serde_yaml::to_string(&self.coordinator_service())?);
        documents.push(serde_yaml::to_string(&self.coordinator_job())?);
        documents.push(serde_yaml::to_string(&self.workers_job())?);
        Ok(documents.join("---\n"))
    }
}
