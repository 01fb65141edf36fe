//! `run.json`: what ran (loadgen's version and commit, the plan), where (the machine, the
//! endpoints), when, and how it ended.

use serde::Serialize;

use crate::definition::plan::Plan;
use crate::deploy::Endpoints;

/// `run.json`: what ran, where, with what, and how it ended.
#[derive(Debug, Serialize)]
pub(super) struct RunInfo<'a> {
    loadgen_version: &'static str,
    git_commit: Option<String>,
    started_at: String,
    finished_at: Option<String>,
    machine: Machine,
    plan: &'a Plan,
    /// Where the load went, once the target is set up.
    pub endpoints: Option<Endpoints>,
    outcome: Option<Outcome>,
}

impl<'a> RunInfo<'a> {
    /// A run of `plan` starting now.
    pub fn start(plan: &'a Plan) -> Self {
        Self {
            loadgen_version: env!("CARGO_PKG_VERSION"),
            git_commit: git_commit(),
            started_at: now_utc(),
            finished_at: None,
            machine: Machine::read(),
            plan,
            endpoints: None,
            outcome: None,
        }
    }

    /// The run ended now: with `error` (a setup that failed), or stopped early by `interrupted`;
    /// `shutdown_notes` from the teardown.
    pub fn finish(&mut self, error: Option<String>, interrupted: Option<String>, shutdown_notes: Vec<String>) {
        self.outcome = Some(Outcome { error, interrupted, shutdown_notes });
        self.finished_at = Some(now_utc());
    }
}

#[derive(Debug, Serialize)]
struct Outcome {
    error: Option<String>,
    interrupted: Option<String>,
    shutdown_notes: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Machine {
    hostname: String,
    cpus: usize,
    memory_bytes: Option<u64>,
    os: String,
    kernel: String,
}

impl Machine {
    fn read() -> Self {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_bytes = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024);
        Self {
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_owned(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes,
            os: std::env::consts::OS.to_owned(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
        }
    }
}

fn git_commit() -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn now_utc() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
