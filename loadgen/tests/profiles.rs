//! Scenario 4's profiles: over its window every SUT service's CPU flamegraph and its heap (the
//! services' jemalloc sampling, turned on by the harness), written into `profiles/` and summed by
//! allocation site in the summary and the Tuning Guide.

mod support;

use std::time::Duration;

use loadgen::definition::options::RunArgs;
use loadgen::definition::plan::Plan;
use loadgen::definition::scenario::ProfileSpec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario4_takes_each_services_cpu_and_heap_profiles_over_its_window() {
    let out = tempfile::tempdir().unwrap();
    let mut scenario = loadgen::definition::builtin::named("scenario4").unwrap();
    scenario.duration = Duration::from_secs(12);
    scenario.profile = Some(ProfileSpec { duration: Duration::from_secs(4) });
    let args = RunArgs { rps: Some(40.0), eps: Some(300.0), ..support::provisioned_args(out.path(), 100) };
    let output = loadgen::run::execute(Plan::new(scenario, &args).unwrap(), &loadgen::live::Live::new())
        .await
        .expect("the run completes");

    let summary = &output.summary;
    for service in ["challenge-service", "event-handler", "reward-mock"] {
        for file in [".svg", ".heap-start.svg", ".heap.svg", ".heap-growth.svg", ".heap.pb.gz"] {
            let path = format!("profiles/{service}{file}");
            assert!(summary.profiles.contains(&path), "{path} listed: {:#?}", summary.profiles);
            assert!(output.folder.join(&path).metadata().unwrap().len() > 0, "{path} written");
        }
        let heap =
            summary.heap.iter().find(|h| h.service == service).unwrap_or_else(|| panic!("{service}: {summary:#?}"));
        assert!(heap.end_bytes > 0 && !heap.top_sites.is_empty(), "{heap:#?}");
        assert!(
            heap.top_sites.iter().any(|s| s.function.contains("::")),
            "the sites are named functions, not addresses: {heap:#?}"
        );
    }
    let svg = std::fs::read_to_string(output.folder.join("profiles/event-handler.heap.svg")).unwrap();
    assert!(svg.contains("bytes in use"), "titled: {}", &svg[..svg.len().min(400)]);
    let tuning = std::fs::read_to_string(output.folder.join("report/performance-tuning.md")).unwrap();
    assert!(tuning.contains("## Heap by allocation site") && tuning.contains("event-handler:"), "{tuning}");
}
