//! Faults a scenario schedules ([`Fault`]) injected through real means while the load runs, and
//! the verdict on each: what was injected and when, how the SUT answered meanwhile, and how long
//! it took to recover once the fault was lifted.
//!
//! Kinds:
//! - `db-stop`: the harness's own PostgreSQL stopped (`pg_ctl stop -m fast`) and started again;
//! - `reward-latency` (`latency: fixed:4.5s`): the reward mock slowed through its admin endpoint;
//! - `reward-failure` (`rate: 0.5`, `after_grant: 0.5`): the mock failing that share of grants,
//!   that share of the failures after granting (the reply lost);
//! - `load-spike` (`note: 10× the event rate`): nothing is injected, the load itself is the fault
//!   (a stream's stages climb); the entry marks the window the verdict judges.
//!
//! The mock's settings are read before the first fault and put back as each fault ends.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sut::pg_cluster::PgCluster;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::definition::fault::{Fault, FaultKind};

/// What the injector can act on.
#[derive(Debug, Clone, Default)]
pub struct Controls {
    /// The provisioned PostgreSQL cluster.
    pub database: Option<Arc<PgCluster>>,
    /// The reward mock (`http://host:port`).
    pub reward_mock_url: Option<String>,
}

/// A fault as it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Injected {
    /// `db-stop at 20s for 10s`.
    pub fault: String,
    /// When it took effect, seconds from the start of the load.
    pub began_s: f64,
    /// When it was lifted.
    pub ended_s: f64,
    /// Why injecting or lifting it failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Injects `faults` at their times from `start`, each lifted after its duration; a fault still
/// on when `stop` fires is lifted then.
pub async fn inject(faults: Vec<Fault>, controls: Controls, start: Instant, stop: CancellationToken) -> Vec<Injected> {
    let http = reqwest::Client::new();
    let mock_before = match &controls.reward_mock_url {
        Some(url) if faults.iter().any(Fault::needs_mock) => read_mock(&http, url).await.ok(),
        _ => None,
    };
    let mut order: Vec<Fault> = faults;
    order.sort_by_key(|f| f.at);
    let tasks = order.into_iter().map(|fault| {
        let (controls, http, stop, mock_before) = (controls.clone(), http.clone(), stop.clone(), mock_before.clone());
        async move {
            tokio::select! {
                () = tokio::time::sleep_until(start + fault.at) => {}
                () = stop.cancelled() => return None,
            }
            let began = start.elapsed().as_secs_f64();
            eprintln!("gauntlet: fault: {} begins", fault.label());
            let mut error = apply(&fault.kind, &controls, &http).await.err();
            tokio::select! {
                () = tokio::time::sleep_until(start + fault.at + fault.lasts) => {}
                () = stop.cancelled() => {}
            }
            if let Err(e) = lift(&fault.kind, &controls, &http, mock_before.as_ref()).await {
                error.get_or_insert(format!("lifting it: {e}"));
            }
            let ended = start.elapsed().as_secs_f64();
            eprintln!("gauntlet: fault: {} lifted", fault.label());
            Some(Injected { fault: fault.label(), began_s: began, ended_s: ended, error })
        }
    });
    futures::future::join_all(tasks).await.into_iter().flatten().collect()
}

async fn apply(kind: &FaultKind, controls: &Controls, http: &reqwest::Client) -> Result<(), String> {
    match kind {
        FaultKind::DbStop => on_database(controls, PgCluster::stop_server).await,
        FaultKind::RewardLatency { latency } => set_mock(controls, http, json!({"latency": latency})).await,
        FaultKind::RewardFailure { rate, after_grant } => {
            set_mock(controls, http, json!({"failureRate": rate, "failureAfterGrant": after_grant})).await
        }
        FaultKind::LoadSpike { .. } => Ok(()),
    }
}

async fn lift(
    kind: &FaultKind,
    controls: &Controls,
    http: &reqwest::Client,
    mock_before: Option<&serde_json::Value>,
) -> Result<(), String> {
    match kind {
        FaultKind::DbStop => on_database(controls, PgCluster::start_server).await,
        FaultKind::RewardLatency { .. } | FaultKind::RewardFailure { .. } => {
            let before = mock_before.ok_or("the mock's settings before the fault are unknown")?;
            set_mock(controls, http, before.clone()).await
        }
        FaultKind::LoadSpike { .. } => Ok(()),
    }
}

/// Runs `action` (stop or start) on the harness's own PostgreSQL, off the async threads.
async fn on_database(
    controls: &Controls,
    action: fn(&PgCluster) -> Result<(), sut::pg_cluster::PgError>,
) -> Result<(), String> {
    let cluster = controls.database.clone().ok_or("no database of the harness's own to stop or start")?;
    tokio::task::spawn_blocking(move || action(&cluster)).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())
}

async fn read_mock(http: &reqwest::Client, url: &str) -> Result<serde_json::Value, String> {
    let response = http.get(format!("{url}/admin/settings")).send().await.map_err(|e| e.to_string())?;
    response.json().await.map_err(|e| e.to_string())
}

async fn set_mock(controls: &Controls, http: &reqwest::Client, settings: serde_json::Value) -> Result<(), String> {
    let url = controls.reward_mock_url.as_deref().ok_or("no reward mock to change (--reward-mock-url)")?;
    let response =
        http.put(format!("{url}/admin/settings")).json(&settings).send().await.map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!(
            "{url}/admin/settings: HTTP {}: {}",
            response.status(),
            response.text().await.unwrap_or_default()
        ));
    }
    Ok(())
}

/// One second of the load, summed over operations (what the verdicts read).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Second {
    /// Requests answered.
    pub requests: u64,
    /// Of them, failed.
    pub errors: u64,
    /// Arrivals dropped.
    pub dropped: u64,
    /// Failures by kind (`HTTP 503`, `gRPC ResourceExhausted`, …).
    pub errors_by_kind: std::collections::BTreeMap<String, u64>,
}

/// The verdict on one fault, in `summary.json` and the Baseline report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultVerdict {
    /// What was injected, and when it took effect and was lifted.
    pub injected: Injected,
    /// Requests, failures and drops from its start to its end.
    pub during: Second,
    /// Seconds from its end until three seconds in a row had < 1% errors and < 1% dropped;
    /// `None`: not before the load ended.
    pub recovered_after_s: Option<f64>,
}

/// The verdicts on `injected` faults from the load's `seconds` (second n covers n-1..n s).
pub fn verdicts(injected: &[Injected], seconds: &[Second]) -> Vec<FaultVerdict> {
    injected
        .iter()
        .map(|fault| {
            let first = fault.began_s.floor() as usize;
            let last = (fault.ended_s.ceil() as usize).min(seconds.len());
            let mut during = Second::default();
            for s in seconds.iter().take(last).skip(first) {
                during.requests += s.requests;
                during.errors += s.errors;
                during.dropped += s.dropped;
                for (kind, n) in &s.errors_by_kind {
                    *during.errors_by_kind.entry(kind.clone()).or_default() += n;
                }
            }
            let healthy = |s: &Second| {
                let total = (s.requests + s.dropped).max(1) as f64;
                (s.errors as f64) / total < 0.01 && (s.dropped as f64) / total < 0.01
            };
            let end = fault.ended_s.ceil() as usize;
            let recovered_after_s = (end..seconds.len().saturating_sub(2))
                .find(|&i| seconds[i..i + 3].iter().all(healthy))
                .map(|i| (i as f64 - fault.ended_s).max(0.0));
            FaultVerdict { injected: fault.clone(), during, recovered_after_s }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(requests: u64, errors: u64) -> Second {
        Second { requests, errors, ..Second::default() }
    }

    #[test]
    fn a_verdict_sums_the_fault_and_times_the_recovery() {
        // Fault from 2.0 s to 4.0 s: seconds 3 and 4 (indices 2, 3) fail; index 4 still does;
        // from index 5 on, three healthy seconds in a row.
        let seconds: Vec<Second> = [(10, 0), (10, 0), (10, 8), (10, 10), (10, 5), (10, 0), (10, 0), (10, 0), (10, 0)]
            .into_iter()
            .map(|(r, e)| second(r, e))
            .collect();
        let fault = Injected { fault: "db-stop".into(), began_s: 2.0, ended_s: 4.0, error: None };
        let verdict = &verdicts(std::slice::from_ref(&fault), &seconds)[0];
        assert_eq!((verdict.during.requests, verdict.during.errors), (20, 18));
        assert_eq!(verdict.recovered_after_s, Some(1.0));
        let never = verdicts(&[fault], &seconds[..6]);
        assert_eq!(never[0].recovered_after_s, None, "no three healthy seconds before the end");
    }
}
