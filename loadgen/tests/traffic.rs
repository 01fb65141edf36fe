//! Realistic traffic against the provisioned SUT: player sessions that complete goals and claim
//! them after the SUT's flush, arriving as a Poisson process; every arrival accounted for under
//! `session`, every step under its own operation, the books clean.

mod support;

use loadgen::definition::plan::Plan;
use loadgen::definition::scenario::Scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_that_complete_goals_claim_them_and_every_arrival_is_accounted_for() {
    let scenario = Scenario::parse(
        "short-waves.yaml",
        "name: short-waves\nduration: 5s\nstreams:\n  finishers:\n    executor: constant-arrival-rate\n    \
         arrivals: poisson\n    rate: 20\n    max_vus: 200\n    operations: {complete_then_claim: 1}\n",
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let args = support::provisioned_args(out.path(), 2_000);
    let output = loadgen::run::execute(Plan::new(scenario, &args).unwrap(), &loadgen::live::Live::new())
        .await
        .expect("the run completes");
    let ops = &output.summary.operations;
    let sessions = &ops["session"];
    assert!(sessions.requests > 40, "about 100 Poisson arrivals: {sessions:#?}");
    assert_eq!(sessions.scheduled, Some(sessions.requests + sessions.dropped));
    assert_eq!(sessions.errors, 0, "{sessions:#?}");
    assert_eq!(ops["OnMessage stat"].requests, 3 * sessions.requests, "three stat updates per session");
    assert_eq!(ops["OnMessage login"].requests, sessions.requests);
    assert!(ops["POST claim"].requests > 0 && ops["POST claim"].errors == 0, "{:#?}", ops["POST claim"]);
    assert!(output.summary.warnings.is_empty(), "{:?}", output.summary.warnings);
    let integrity = output.summary.integrity.clone().expect("audited");
    assert!(integrity.clean() && integrity.claims_succeeded > 0, "{integrity:#?}");
}
