//! Failure scenarios against the provisioned SUT: the fault injected through real means at its
//! scheduled time, the SUT's answers meanwhile, its recovery, and its books afterwards.

mod support;

use std::time::Duration;

use loadgen::definition::fault::{Fault, FaultKind};
use loadgen::definition::options::RunArgs;
use loadgen::definition::plan::Plan;

fn args(out: &std::path::Path) -> RunArgs {
    RunArgs { rps: Some(40.0), eps: Some(300.0), ..support::provisioned_args(out, 1_000) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_recovers_and_loses_nothing() {
    let out = tempfile::tempdir().unwrap();
    let mut scenario = loadgen::definition::builtin::named("db-outage").unwrap();
    scenario.duration = Duration::from_secs(14);
    scenario.faults =
        vec![Fault { at: Duration::from_secs(3), lasts: Duration::from_secs(4), kind: FaultKind::DbStop }];
    let plan = Plan::new(scenario, &args(out.path())).unwrap();
    let output = loadgen::run::execute(plan, &loadgen::live::Live::new()).await.expect("the run completes");

    let [verdict] = output.summary.faults.as_slice() else { panic!("one fault: {:#?}", output.summary.faults) };
    assert_eq!(verdict.injected.error, None);
    assert!(verdict.injected.began_s >= 3.0 && verdict.injected.ended_s >= 7.0, "{verdict:#?}");
    let unavailable = verdict.during.errors_by_kind.get("HTTP 503").copied().unwrap_or_default();
    assert!(unavailable > 0, "the API answers 503 while the database is down: {verdict:#?}");
    assert!(verdict.recovered_after_s.is_some(), "recovered before the end: {verdict:#?}");

    let integrity = output.summary.integrity.clone().expect("audited");
    assert!(integrity.clean(), "{integrity:#?}");
    assert!(integrity.events_accepted > 0, "{integrity:#?}");
    let report = std::fs::read_to_string(output.folder.join("report/performance-baseline.md")).unwrap();
    assert!(report.contains("## Faults") && report.contains("db-stop at 3s for 4s"), "{report}");
}

#[test]
fn a_database_fault_needs_a_provisioned_target_and_a_mock_fault_the_mock() {
    let scenario = loadgen::definition::builtin::named("db-outage").unwrap();
    let external = RunArgs {
        api_url: Some("http://127.0.0.1:1".into()),
        grpc_url: Some("http://127.0.0.1:2".into()),
        mock_auth: true,
        ..args(std::path::Path::new("/tmp"))
    };
    let error = Plan::new(scenario, &external).unwrap_err().to_string();
    assert!(error.contains("db-stop") && error.contains("provisioned"), "{error}");
    let scenario = loadgen::definition::builtin::named("reward-slow").unwrap();
    let error = Plan::new(scenario, &external).unwrap_err().to_string();
    assert!(error.contains("--reward-mock-url"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_stampede_gives_exactly_one_200_and_one_grant() {
    let out = tempfile::tempdir().unwrap();
    let scenario = loadgen::definition::builtin::named("claim-stampede").unwrap();
    let args = RunArgs { rps: None, eps: None, ..args(out.path()) };
    let plan = Plan::new(scenario, &args).unwrap();
    let output = loadgen::run::execute(plan, &loadgen::live::Live::new()).await.expect("the run completes");
    let claims = &output.summary.operations["POST claim"];
    assert_eq!((claims.requests, claims.dropped), (1_000, 0), "{claims:#?}");
    for threshold in &output.summary.thresholds {
        assert!(threshold.passed, "{threshold:?}");
    }
    let integrity = output.summary.integrity.clone().expect("audited");
    assert!(integrity.clean() && integrity.grants_counted, "{integrity:#?}");
    assert_eq!(integrity.claims_succeeded, 1, "{integrity:#?}");
}
