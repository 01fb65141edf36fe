//! `loadgen k8s`: the manifests of a distributed run, read back as the Kubernetes API's own
//! types: the workers an Indexed Job whose completion index is the segment, the coordinator a
//! Job behind a Service the workers reach it through, requests and limits set, a scenario file
//! carried in a ConfigMap, and the coordinator's options ones loadgen accepts. Bad options are
//! refused before anything is written.

use std::path::Path;
use std::process::Command;

use clap::Parser;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use serde::Deserialize;

fn k8s(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen")).arg("k8s").args(args).output().unwrap();
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// The documents of `gauntlet.yaml`, by kind.
fn documents(dir: &Path) -> Vec<(String, serde_yaml::Value)> {
    let text = std::fs::read_to_string(dir.join("gauntlet.yaml")).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let value = serde_yaml::Value::deserialize(doc).unwrap();
            (value["kind"].as_str().unwrap().to_owned(), value)
        })
        .collect()
}

fn named<T: serde::de::DeserializeOwned>(docs: &[(String, serde_yaml::Value)], kind: &str, name: &str) -> T {
    let (_, value) = docs
        .iter()
        .find(|(k, v)| k == kind && v["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name}"));
    serde_yaml::from_value(value.clone()).unwrap()
}

const RUN: [&str; 10] = [
    "--",
    "--rps",
    "200",
    "--eps",
    "800",
    "--api-url",
    "http://127.0.0.1:8080",
    "--grpc-url",
    "http://127.0.0.1:6565",
    "--mock-auth",
];

#[test]
fn a_built_in_scenario_gives_an_indexed_job_of_workers_and_a_coordinator_behind_a_service() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let mut args = vec!["scenario3", "--workers", "4", "--worker-cpu", "500m", "--out", out];
    args.extend(RUN);
    let (code, stderr) = k8s(&args);
    assert_eq!(code, 0, "{stderr}");
    let docs = documents(dir.path());
    assert_eq!(docs.len(), 3, "no ConfigMap for a built-in scenario");

    let workers: Job = named(&docs, "Job", "gauntlet-workers");
    let spec = workers.spec.unwrap();
    assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
    assert_eq!((spec.completions, spec.parallelism, spec.backoff_limit), (Some(4), Some(4), Some(0)));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    let worker = &pod.containers[0];
    let resources = worker.resources.clone().unwrap();
    assert_eq!(resources.limits.unwrap()["cpu"].0, "500m");
    assert_eq!(resources.requests.unwrap()["memory"].0, "1Gi");
    let worker_args = worker.args.clone().unwrap();
    assert!(worker_args.windows(2).any(|w| w == ["--coordinator", "http://gauntlet-coordinator:5670"]));

    let service: Service = named(&docs, "Service", "gauntlet-coordinator");
    let coordinator: Job = named(&docs, "Job", "gauntlet-coordinator");
    let template = coordinator.spec.unwrap().template;
    assert_eq!(service.spec.clone().unwrap().selector, template.metadata.unwrap().labels, "the Service finds the pod");
    let ports: Vec<i32> = service.spec.unwrap().ports.unwrap().iter().map(|p| p.port).collect();
    assert_eq!(ports, [5670, 5665]);

    // The coordinator's and the workers' command lines are loadgen's own.
    let coordinator_args = template.spec.unwrap().containers[0].args.clone().unwrap();
    assert!(coordinator_args.windows(2).any(|w| w == ["--workers", "4"]));
    for args in [coordinator_args, worker_args] {
        let line = std::iter::once("loadgen".to_owned()).chain(args.iter().cloned());
        if let Err(e) = loadgen::cli::Cli::try_parse_from(line) {
            panic!("{args:?}: {e}");
        }
    }
}

#[test]
fn a_scenario_file_travels_in_a_config_map() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("mine.yaml");
    let text = "name: mine\nduration: 30s\nstreams:\n  api:\n    executor: constant-arrival-rate\n    rate: 100\n    \
                max_vus: 40\n    operations: {get_challenges: 1}\n";
    std::fs::write(&scenario, text).unwrap();
    let out = dir.path().join("k8s");
    let args = [
        "run",
        "--workers",
        "2",
        "--out",
        out.to_str().unwrap(),
        "--",
        "--api-url",
        "http://127.0.0.1:8080",
        "--mock-auth",
    ];
    let mut args = args.to_vec();
    args[0] = scenario.to_str().unwrap();
    let (code, stderr) = k8s(&args);
    assert_eq!(code, 0, "{stderr}");
    let docs = documents(&out);
    let map: ConfigMap = named(&docs, "ConfigMap", "gauntlet-scenario");
    assert_eq!(map.data.unwrap()["mine.yaml"], text);
    let coordinator: Job = named(&docs, "Job", "gauntlet-coordinator");
    let pod = coordinator.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.containers[0].args.as_ref().unwrap()[1], "/gauntlet/scenario/mine.yaml");
    assert_eq!(pod.volumes.unwrap()[0].config_map.as_ref().unwrap().name, "gauntlet-scenario");
}

#[test]
fn bad_options_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k8s");
    let out = out.to_str().unwrap();
    for (args, said) in [
        (vec!["scenario1", "--workers", "2", "--out", out, "--", "--rps", "0"], "--rps must be > 0"),
        (vec!["scenario1", "--workers", "0", "--out", out], "--workers must be at least 1"),
        (vec!["claim-stampede", "--workers", "2", "--out", out], "claim stampede"),
        (vec!["scenario1", "--workers", "2", "--out", out], "give the coordinator its URLs"),
        (
            vec!["scenario1", "--workers", "2", "--out", out, "--", "--api-url", "http://10.0.0.1:8080", "--mock-auth"],
            "loopback",
        ),
    ] {
        let (code, stderr) = k8s(&args);
        assert_eq!(code, 104, "{args:?}: {stderr}");
        assert!(stderr.contains(said), "{args:?}: {stderr}");
    }
    assert!(!Path::new(out).exists());
}
