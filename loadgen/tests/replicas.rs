//! SUT replicas (`--replicas challenge-service=N,event-handler=M`): started as processes and as
//! containers, the generator's connections spread over them in turn, every replica sampled on
//! its own and the service as their sum, and the books kept across them.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use loadgen::definition::options::{Deploy, Replicas, RunArgs};
use loadgen::definition::plan::Plan;
use loadgen::observe::ObservationLog;

const TWO_EACH: Replicas = Replicas { challenge_service: 2, event_handler: 2 };

/// Each replica's share of what the service counted over the run (`metric` is a per-second rate
/// of the services' `/metrics`, summed over its labels and seconds).
fn shares(log: &ObservationLog, service: &str, metric: &str) -> BTreeMap<String, f64> {
    let mut totals = BTreeMap::new();
    for row in &log.rows {
        if row.component.starts_with(&format!("{service}#")) && row.metric.starts_with(metric) {
            *totals.entry(row.component.clone()).or_insert(0.0) += row.value;
        }
    }
    let all: f64 = totals.values().sum();
    totals.values_mut().for_each(|v| *v /= all.max(f64::MIN_POSITIVE));
    totals
}

/// Every second's service row equals the sum of its replicas' rows.
fn assert_summed(log: &ObservationLog, service: &str, metric: &str) {
    let whole: BTreeMap<u64, f64> = log.series(service, metric).collect();
    assert!(whole.len() >= 3, "{service} {metric}: a value every second, got {whole:?}");
    for (t, total) in whole {
        let parts: f64 = (1..=2)
            .filter_map(|i| log.series(&format!("{service}#{i}"), metric).find(|(s, _)| *s == t))
            .map(|(_, v)| v)
            .sum();
        assert!((total - parts).abs() <= 1e-6 * total.abs().max(1.0), "{service} {metric} at {t}s: {total} vs {parts}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_of_each_service_share_the_load_and_keep_the_books() {
    let out = tempfile::tempdir().unwrap();
    let args = RunArgs {
        rps: Some(60.0),
        eps: Some(300.0),
        duration: Some(Duration::from_secs(6)),
        replicas: Some(TWO_EACH),
        ..support::provisioned_args(out.path(), 2_000)
    };
    let mut scenario = loadgen::definition::builtin::named("scenario3").unwrap();
    // Every fifth user has completed goals to claim: claims race across the two APIs.
    scenario.seed.completed_fraction = 0.2;
    let plan = Plan::new(scenario, &args).unwrap();
    let output = loadgen::run::execute(plan, &loadgen::live::Live::new()).await.expect("the run completes");
    assert_eq!(output.summary.interrupted, None);

    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.folder.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["plan"]["replicas"], serde_json::json!({"challenge_service": 2, "event_handler": 2}));
    assert_eq!(run["endpoints"]["api_urls"].as_array().map(Vec::len), Some(2), "{}", run["endpoints"]);
    assert_eq!(run["endpoints"]["grpc_urls"].as_array().map(Vec::len), Some(2), "{}", run["endpoints"]);

    // The generator spread the load: each replica took a fair part of it.
    let log = ObservationLog::read(&output.folder.join("observations.csv")).unwrap();
    for (service, metric) in [("challenge-service", "http_requests_per_s"), ("event-handler", "events_received_per_s")]
    {
        let shares = shares(&log, service, metric);
        assert_eq!(shares.len(), 2, "{service}: {shares:?}");
        assert!(shares.values().all(|s| (0.3..=0.7).contains(s)), "{service} {metric}: {shares:?}");
    }
    // Each replica sampled on its own, the service as their sum.
    for service in ["challenge-service", "event-handler"] {
        assert_summed(&log, service, "memory_bytes");
        assert_summed(&log, service, "cpu_percent");
    }
    let resources = output.summary.resources.as_ref().unwrap();
    for component in [
        "challenge-service#1",
        "challenge-service#2",
        "challenge-service",
        "event-handler#1",
        "event-handler#2",
        "event-handler",
    ] {
        assert!(resources.components.get(component).is_some_and(|c| c.memory_max_mb > 0.0), "{component}");
    }
    for log_file in ["challenge-service-1.log", "challenge-service-2.log", "event-handler-1.log", "event-handler-2.log"]
    {
        let text = std::fs::read_to_string(output.folder.join("logs").join(log_file)).unwrap();
        assert!(text.contains("READY"), "{log_file}");
    }

    // No event lost or applied twice, no goal granted twice, across replicas.
    let integrity = output.summary.integrity.clone().expect("the run audited its books");
    assert!(integrity.clean(), "{integrity:#?}");
    assert!(integrity.events_accepted > 300, "{integrity:#?}");
    assert!(integrity.claims_succeeded > 0, "{integrity:#?}");
    let report = std::fs::read_to_string(output.folder.join("report/performance-baseline.md")).unwrap();
    assert!(report.contains("challenge-service#2"), "the report lists each replica");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_in_containers_each_have_their_own_limit_and_add_up() {
    let engine = loadgen::deploy::docker::connect().await.expect("a running Docker engine");
    let out = tempfile::tempdir().unwrap();
    let args = RunArgs {
        rps: Some(40.0),
        eps: Some(100.0),
        duration: Some(Duration::from_secs(4)),
        deploy: Deploy::Docker,
        replicas: Some(TWO_EACH),
        ..support::provisioned_args(out.path(), 0)
    };
    let plan = Plan::new(loadgen::definition::builtin::named("scenario3").unwrap(), &args).unwrap();
    let output = loadgen::run::execute(plan, &loadgen::live::Live::new()).await.expect("the run completes");
    assert_eq!(output.summary.interrupted, None);
    let resources = output.summary.resources.as_ref().unwrap();
    for service in ["challenge-service", "event-handler"] {
        for replica in [format!("{service}#1"), format!("{service}#2")] {
            assert_eq!(resources.components[&replica].cpu_limit_percent, Some(100.0), "{replica}: 1 CPU each");
        }
        assert_eq!(resources.components[service].cpu_limit_percent, Some(200.0), "{service}: the sum of its limits");
    }
    let log = ObservationLog::read(&output.folder.join("observations.csv")).unwrap();
    for (service, metric) in [("challenge-service", "http_requests_per_s"), ("event-handler", "events_received_per_s")]
    {
        let shares = shares(&log, service, metric);
        assert!(shares.len() == 2 && shares.values().all(|s| *s > 0.2), "{service} {metric}: {shares:?}");
    }
    let options = bollard::query_parameters::ListContainersOptions {
        all: true,
        filters: Some(std::collections::HashMap::from([(
            "label".to_owned(),
            vec![loadgen::deploy::docker::RUN_LABEL.to_owned()],
        )])),
        ..Default::default()
    };
    assert!(engine.list_containers(Some(options)).await.unwrap().is_empty(), "every replica's container was removed");
}

#[test]
fn replicas_of_an_unknown_service_or_for_an_external_target_are_refused_with_the_reason() {
    use clap::Parser as _;
    let Err(refused) = loadgen::cli::Cli::try_parse_from(["loadgen", "scenario3", "--replicas", "reward-mock=2"])
    else {
        panic!("--replicas reward-mock=2 was accepted");
    };
    let message = refused.to_string();
    assert!(message.contains("challenge-service and event-handler"), "{message}");
    let out = tempfile::tempdir().unwrap();
    let external = RunArgs {
        api_url: Some("http://127.0.0.1:8080".into()),
        mock_auth: true,
        replicas: Some(TWO_EACH),
        ..support::provisioned_args(out.path(), 0)
    };
    let error = Plan::new(loadgen::definition::builtin::named("scenario1").unwrap(), &external).unwrap_err();
    assert!(error.to_string().contains("--replicas"), "{error}");
}
