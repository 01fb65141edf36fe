//! How a run stops, seen from outside: the `loadgen` binary against an in-process REST target,
//! stopped by SIGTERM, by Ctrl-C twice (the second during the teardown), and by a threshold
//! with `abortOnFail`; each leaves a complete, renamed results folder and exits as k6 would.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::channel;
use std::time::Duration;

use support::process::Loadgen;
use support::{SlowEndpoint, Stall, rest_server};

/// Serves a REST target answering after `delay` on a runtime of its own; returns its URL.
fn target(delay: Duration) -> String {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        runtime.block_on(async move {
            tx.send(rest_server(SlowEndpoint::new(delay, Stall::none())).await).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

fn scenario(dir: &Path, thresholds: &str) -> PathBuf {
    let path = dir.join("scenario.yaml");
    let text = format!(
        "name: stopping\nduration: 30s\nstreams:\n  api:\n    executor: constant-arrival-rate\n    rate: 50\n    \
         max_vus: 20\n    operations: {{get_challenges: 1}}\nthresholds:\n{thresholds}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `loadgen run SCENARIO` against `url`, writing to `out`.
fn start(scenario: &Path, url: &str, out: &Path) -> Loadgen {
    let args = ["run", scenario.to_str().unwrap(), "--api-url", url, "--mock-auth", "--out", out.to_str().unwrap()];
    Loadgen::start(&args, &[])
}

fn summary(out: &Path) -> serde_json::Value {
    assert!(out.is_dir(), "the folder was renamed to {}", out.display());
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    assert!(!PathBuf::from(partial).exists(), "no .partial left");
    for file in ["run.json", "timeseries.csv", "report/performance-baseline.md"] {
        assert!(out.join(file).is_file(), "{file} is written");
    }
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

/// A 30-s run against a 5-ms target, once its load is running; and where its folder goes.
fn running(scratch: &Path) -> (Loadgen, PathBuf) {
    let url = target(Duration::from_millis(5));
    let out = scratch.join("run");
    let mut loadgen = start(&scenario(scratch, "  http_req_failed: ['rate<0.01']"), &url, &out);
    loadgen.wait_for("load begins");
    loadgen.wait_for("GET"); // a progress line: the load is running
    (loadgen, out)
}

#[test]
fn sigterm_mid_run_completes_the_folder_and_exits_105() {
    let scratch = tempfile::tempdir().unwrap();
    let (loadgen, out) = running(scratch.path());
    loadgen.signal("TERM");
    let (code, stderr) = loadgen.finish();
    assert_eq!(code, 105, "{stderr}");
    let summary = summary(&out);
    assert!(summary["interrupted"].as_str().unwrap().contains("signal"), "{summary}");
    assert!(summary["duration_s"].as_f64().unwrap() < 20.0);
    let get = &summary["operations"]["GET /v1/challenges"];
    let (scheduled, requests, dropped) =
        (get["scheduled"].as_u64().unwrap(), get["requests"].as_u64().unwrap(), get["dropped"].as_u64().unwrap());
    assert_eq!(requests + dropped, scheduled, "every arrival that came due is accounted for");
}

#[test]
fn a_second_ctrl_c_during_the_teardown_does_not_skip_it() {
    let scratch = tempfile::tempdir().unwrap();
    let (mut loadgen, out) = running(scratch.path());
    loadgen.signal("INT");
    loadgen.wait_for("signal received");
    loadgen.signal("INT");
    let (code, stderr) = loadgen.finish();
    assert_eq!(code, 105, "{stderr}");
    assert!(stderr.contains("still completing the results folder"), "{stderr}");
    summary(&out);
}

#[test]
fn an_abort_on_fail_threshold_stops_the_run_soon_after_its_breach() {
    let scratch = tempfile::tempdir().unwrap();
    // Every request takes 100 ms: `p(95)<50` is broken from the first response; it may abort
    // once 2 s of load have run.
    let url = target(Duration::from_millis(100));
    let out = scratch.path().join("run");
    let thresholds = "  http_req_duration: [{threshold: 'p(95)<50', abortOnFail: true, delayAbortEval: 2s}]";
    let loadgen = start(&scenario(scratch.path(), thresholds), &url, &out);
    let (code, stderr) = loadgen.finish();
    assert_eq!(code, 99, "{stderr}");
    let summary = summary(&out);
    let ran = summary["duration_s"].as_f64().unwrap();
    assert!((2.0..4.0).contains(&ran), "stopped within 2 s of the 2 s delay: {ran} s");
    assert_eq!(summary["aborted"], "http_req_duration p(95)<50", "{summary}");
    assert_eq!(summary["thresholds"][0]["aborted"], true);
    assert_eq!(summary["passed"], false);
}

#[test]
fn an_invalid_scenario_exits_104_naming_what_is_wrong() {
    let scratch = tempfile::tempdir().unwrap();
    let path = scenario(scratch.path(), "  'http_req_duration{operation:GET /v1/challenge}': ['p(95)<50']");
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["run", path.to_str().unwrap(), "--api-url", "http://127.0.0.1:9", "--mock-auth"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(104));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown operation 'GET /v1/challenge'"), "{stderr}");
}

#[test]
fn an_error_names_its_cause_once() {
    let scratch = tempfile::tempdir().unwrap();
    let loadgen = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_loadgen")).args(args).output().unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let missing = scratch.path().join("missing.yaml");
    let (code, stderr) = loadgen(&["run", missing.to_str().unwrap()]);
    assert_eq!(code, Some(104), "{stderr}");
    assert!(stderr.contains("missing.yaml: cannot read"), "{stderr}");
    assert_eq!(stderr.matches("No such file or directory").count(), 1, "{stderr}");

    let blocker = scratch.path().join("a-file");
    std::fs::write(&blocker, "not a folder").unwrap();
    let unwritable = blocker.join("run");
    let args = ["scenario1", "--api-url", "http://127.0.0.1:9", "--mock-auth", "--duration", "1s", "--out"];
    let (code, stderr) = loadgen(&[&args[..], &[unwritable.to_str().unwrap()]].concat());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("results folder: "), "{stderr}");
    assert_eq!(stderr.matches("Not a directory").count(), 1, "{stderr}");
}
