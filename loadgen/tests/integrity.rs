//! The integrity audit on a real run: scenario 3 against the provisioned SUT (events, GETs,
//! claims granted by the real reward mock), its books read through the API before and after,
//! judged clean, in the summary and as thresholds.

mod support;

use std::time::Duration;

use loadgen::definition::options::RunArgs;
use loadgen::definition::plan::Plan;
use loadgen::definition::threshold::ThresholdExpr;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_combined_run_keeps_the_books_and_says_so_in_the_summary_and_thresholds() {
    let out = tempfile::tempdir().unwrap();
    let args = RunArgs {
        rps: Some(40.0),
        eps: Some(300.0),
        duration: Some(Duration::from_secs(4)),
        ..support::provisioned_args(out.path(), 2_000)
    };
    let mut scenario = loadgen::definition::builtin::named("scenario3").unwrap();
    // Every fifth user has completed goals to claim.
    scenario.seed.completed_fraction = 0.2;
    for name in ["events_lost", "events_double_applied", "claims_double_granted", "goals_claimed_without_grant"] {
        scenario.thresholds.insert(name.into(), vec![ThresholdExpr::parse("count==0").unwrap()]);
    }
    let plan = Plan::new(scenario, &args).unwrap();
    let output = loadgen::run::execute(plan, &loadgen::live::Live::new()).await.expect("the run completes");
    let integrity = output.summary.integrity.clone().expect("the run audited its books");
    assert!(integrity.clean(), "{integrity:#?}");
    assert_eq!(integrity.users_audited, 2_000);
    assert!(integrity.events_accepted > 50, "{integrity:#?}");
    assert!(integrity.claims_succeeded > 0, "{integrity:#?}");
    assert!(integrity.grants_counted, "the provisioned reward mock's ledger was read");
    for name in ["events_lost", "events_double_applied", "claims_double_granted", "goals_claimed_without_grant"] {
        let result = output.summary.thresholds.iter().find(|t| t.metric == name).unwrap();
        assert_eq!((result.value, result.passed), (Some(0.0), true), "{name}");
    }
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.folder.join("summary.json")).unwrap()).unwrap();
    assert_eq!(saved["integrity"]["events_lost"], 0);
    let report = std::fs::read_to_string(output.folder.join("report/performance-baseline.md")).unwrap();
    assert!(report.contains("## Integrity") && report.contains("clean"), "{report}");
}
