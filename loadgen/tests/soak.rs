//! The soak verdict: three minutes of steady load through `loadgen soak`, once against the SUT
//! as built and once against an event handler that keeps every event it receives (its hidden
//! test flag); the leak thresholds must flag the second and only the second.

use std::path::Path;
use std::process::Command;

use loadgen::definition::threshold::Growth;
use loadgen::results::summary::Summary;

/// Runs `loadgen soak` for three minutes into `out`, the event handler leaking when `leak`.
fn soak(out: &Path, leak: bool) -> Summary {
    let mut command = Command::new(env!("CARGO_BIN_EXE_loadgen"));
    command.args(["soak", "--duration", "3m", "--rps", "50", "--eps", "400", "--audit-users", "200", "--quiet"]);
    command.arg("--out").arg(out);
    if leak {
        command.env("GAUNTLET_TEST_LEAK_EVENTS", "true");
    } else {
        command.env_remove("GAUNTLET_TEST_LEAK_EVENTS");
    }
    let output = command.output().expect("loadgen runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let text = std::fs::read_to_string(out.join("summary.json")).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let summary: Summary = serde_json::from_str(&text).unwrap();
    assert_eq!(summary.interrupted, None, "{stderr}");
    summary
}

/// The `leak` thresholds that failed, as `metric expression`.
fn leaks(summary: &Summary) -> Vec<String> {
    let judged: Vec<_> = summary.thresholds.iter().filter(|t| t.metric.starts_with("leak")).collect();
    assert!(judged.len() >= 6, "every leak threshold is judged: {judged:#?}");
    judged.iter().filter(|t| !t.passed).map(|t| format!("{} {} ({:?})", t.metric, t.expression, t.value)).collect()
}

#[test]
fn a_three_minute_soak_flags_a_leaking_event_handler_and_not_the_sut_as_built() {
    let scratch = tempfile::tempdir().unwrap();
    let (normal_out, leaking_out) = (scratch.path().join("normal"), scratch.path().join("leaking"));
    // Both at once: three minutes each, side by side.
    let leaking = std::thread::spawn(move || soak(&leaking_out, true));
    let normal = soak(&normal_out, false);
    let leaking = leaking.join().unwrap();

    let handler = |s: &Summary, series: Growth| {
        s.trends
            .iter()
            .find(|t| t.component == "event-handler" && t.series == series)
            .cloned()
            .expect("the event handler's series are fitted")
    };
    let (kept, clean) = (handler(&leaking, Growth::Heap), handler(&normal, Growth::Heap));
    let seen = format!("heap growth with the leak: {kept:#?}\nwithout: {clean:#?}");
    assert_eq!(leaks(&normal), Vec::<String>::new(), "the SUT as built does not leak: {seen}\n{:#?}", normal.trends);
    let flagged = leaks(&leaking);
    for called in ["leak slope", "leak{series:heap} slope"] {
        assert!(flagged.iter().any(|t| t.starts_with(called)), "{called}…: the leak is called: {flagged:#?}\n{seen}");
    }
    assert!(kept.per_hour_low > clean.per_hour_high, "kept events grow the heap beyond doubt: {seen}");
    assert!(kept.from_s >= 30, "the first sixth of the run is warm-up: {kept:#?}");
    let memory = handler(&leaking, Growth::Memory);
    assert!(memory.per_hour_low > 0.0, "and resident memory with it: {memory:#?}");

    let report = std::fs::read_to_string(scratch.path().join("leaking/report/performance-baseline.md")).unwrap();
    assert!(report.contains("## Growth over the steady part") && report.contains("event_buffer"), "{report}");
}

#[test]
fn a_soak_from_a_capacity_file_names_what_is_wrong_with_it() {
    let scratch = tempfile::tempdir().unwrap();
    let loadgen = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_loadgen")).arg("soak").args(args).output().unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let missing = scratch.path().join("capacity.json");
    let (code, stderr) = loadgen(&["--capacity", missing.to_str().unwrap()]);
    assert_eq!(code, Some(104), "{stderr}");
    assert!(stderr.contains("capacity.json: cannot read"), "{stderr}");
    std::fs::write(&missing, "{\"searches\": []}").unwrap();
    let (code, stderr) = loadgen(&["--capacity", missing.to_str().unwrap()]);
    assert_eq!(code, Some(104), "{stderr}");
    assert!(stderr.contains("not a capacity.json"), "{stderr}");
    let (code, stderr) = loadgen(&["--fraction", "2"]);
    assert_eq!(code, Some(104), "{stderr}");
    assert!(stderr.contains("--fraction must be above 0 and at most 1"), "{stderr}");
}
