//! The Docker deployment against the real engine: images built with no registry, the stack
//! started with the plan's limits, a short scenario 3 whose results hold container stats, and
//! nothing left behind; and `--docker-stats` on a container loadgen did not start.
//!
//! Run with: `cargo test -p loadgen --test docker` (needs a running Docker engine)

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{ListContainersOptions, RemoveContainerOptions};
use loadgen::definition::options::{Deploy, RunArgs};
use loadgen::definition::plan::Plan;
use loadgen::deploy::docker::{self, RUN_LABEL};
use loadgen::observe::ObservationLog;
use loadgen::observe::containers::ContainerSampler;
use loadgen::observe::resources::ResourceSource;

async fn containers_with_run_label(docker: &bollard::Docker) -> usize {
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([("label".to_owned(), vec![RUN_LABEL.to_owned()])])),
        ..Default::default()
    };
    docker.list_containers(Some(options)).await.expect("list containers").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_scenario_3_in_containers_records_their_stats_and_leaves_nothing_behind() {
    let engine = docker::connect().await.expect("a running Docker engine");
    let out = tempfile::tempdir().unwrap();
    let args = RunArgs {
        rps: Some(20.0),
        eps: Some(50.0),
        duration: Some(Duration::from_secs(4)),
        out: Some(out.path().join("run")),
        deploy: Deploy::Docker,
        namespace: "test".into(),
        base_path: "/challenge".into(),
        grpc_connections: 1,
        request_timeout: Duration::from_secs(5),
        max_duration: Duration::from_secs(60),
        quiet: true,
        ..RunArgs::default()
    };
    let plan = Plan::new(loadgen::definition::builtin::named("scenario3").unwrap(), &args).unwrap();
    let output = loadgen::run::execute(plan, &loadgen::live::Live::new()).await.expect("the run completes");
    assert_eq!(output.summary.interrupted, None);
    assert!(output.summary.operations["GET /v1/challenges"].requests >= 70);

    let resources = output.summary.resources.as_ref().unwrap();
    for service in ["reward-mock", "challenge-service", "event-handler"] {
        let c = &resources.components[service];
        assert_eq!(c.cpu_limit_percent, Some(100.0), "{service}: 1 CPU");
        assert_eq!(c.memory_limit_mb, Some(1024.0), "{service}: 1 GiB");
        assert!(c.memory_max_mb > 0.0);
    }
    let log = ObservationLog::read(&output.folder.join("observations.csv")).unwrap();
    assert!(log.series("event-handler", "cpu_percent").count() >= 3, "stats every second");
    let of_limit: Vec<f64> = log.series("event-handler", "cpu_percent_of_limit").map(|(_, v)| v).collect();
    let cpu: Vec<f64> = log.series("event-handler", "cpu_percent").map(|(_, v)| v).collect();
    assert_eq!(of_limit.len(), cpu.len());
    for (share, core) in of_limit.iter().zip(&cpu) {
        assert!((share - core).abs() < 1e-6, "with a 1-CPU limit, percent of one core is percent of the limit");
    }
    assert!(log.series("challenge-service", "memory_limit_bytes").all(|(_, v)| v == 1024.0 * 1024.0 * 1024.0));
    assert!(std::fs::read_to_string(output.folder.join("logs/event-handler.log")).unwrap().contains("READY"));

    assert_eq!(containers_with_run_label(&engine).await, 0, "every container was removed");
    for service in ["reward-mock", "challenge-service", "event-handler"] {
        engine.inspect_image(&format!("gauntlet/{service}:local")).await.expect("the image was built");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_stats_sample_a_container_loadgen_did_not_start() {
    let engine = docker::connect().await.expect("a running Docker engine");
    // Any image will do; build ours if the other test has not (the build needs no registry).
    if engine.inspect_image("gauntlet/reward-mock:local").await.is_err() {
        let status =
            std::process::Command::new(env!("CARGO")).args(["build", "-q", "-p", "sut", "--bins"]).status().unwrap();
        assert!(status.success());
        let bins = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
        docker::build_images(&engine, &bins, &["reward-mock"]).await.expect("image built");
    }
    let name = format!("gauntlet-test-user-stack-{}", std::process::id());
    let body = ContainerCreateBody {
        image: Some("gauntlet/reward-mock:local".into()),
        cmd: Some(vec!["--host".into(), "127.0.0.1".into(), "--port".into(), "0".into()]),
        host_config: Some(HostConfig { network_mode: Some("host".into()), ..Default::default() }),
        ..Default::default()
    };
    let created = engine
        .create_container(
            Some(bollard::query_parameters::CreateContainerOptions {
                name: Some(name.clone()),
                platform: String::new(),
            }),
            body,
        )
        .await
        .unwrap();
    engine.start_container(&created.id, None::<bollard::query_parameters::StartContainerOptions>).await.unwrap();

    let mut sampler = ContainerSampler::start(&engine, &[(name.clone(), name.clone())]).await.expect("sampler");
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    let mut sample = None;
    for _ in 0..40 {
        ticker.tick().await;
        sample = sampler.sample().await.into_iter().find(|s| s.component == name && s.cpu_percent.is_some());
        if sample.is_some() {
            break;
        }
    }
    let options = RemoveContainerOptions { force: true, v: true, link: false };
    engine.remove_container(&created.id, Some(options)).await.unwrap();
    let sample = sample.expect("a stats sample with CPU within 10 s");
    assert!(sample.memory_bytes.unwrap() > 0);
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    assert_eq!(sample.cpu_limit_percent, Some(cores * 100.0), "no limit set: all cores");

    let missing = ContainerSampler::start(&engine, &[("x".into(), "no-such-container-gauntlet".into())]).await;
    let message = missing.expect_err("an unknown container is an error").to_string();
    assert!(message.contains("no-such-container-gauntlet"), "{message}");
}
