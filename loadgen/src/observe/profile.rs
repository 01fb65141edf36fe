//! Profiles of the SUT services over the middle of a run (scenario 4): each service's admin port
//! serves `GET /debug/pprof/profile?seconds=N` (a CPU flamegraph SVG) and `GET /debug/pprof/heap`
//! (its heap, see [`super::heap`]); the harness takes every service's at once, the heap as the
//! window opens and as it closes, and the run writes them into the results folder.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// When and how long to profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileWindow {
    /// After how long since the load started.
    pub start_after: Duration,
    /// How long.
    pub length: Duration,
}

impl ProfileWindow {
    /// A window of `length` centred on the middle of a load lasting `total` (and never longer
    /// than half of it, so it stays clear of the ramp-up and the end).
    pub fn middle_of(total: Duration, length: Duration) -> Self {
        let length = length.min(total / 2).max(Duration::from_secs(1));
        Self { start_after: total.saturating_sub(length) / 2, length }
    }
}

/// The profiling URL of a service whose metrics are at `metrics_url`.
pub fn profile_url(metrics_url: &str, seconds: u64) -> String {
    let base = metrics_url.strip_suffix("/metrics").unwrap_or(metrics_url);
    format!("{base}/debug/pprof/profile?seconds={seconds}")
}

/// The heap profile URL of a service whose metrics are at `metrics_url`.
pub fn heap_url(metrics_url: &str) -> String {
    let base = metrics_url.strip_suffix("/metrics").unwrap_or(metrics_url);
    format!("{base}/debug/pprof/heap")
}

/// What one service's profiling window gave: its CPU flamegraph, and its heap profile (pprof,
/// gzipped) as the window opened and as it closed; each part the answer or why there is none.
#[derive(Debug)]
pub struct Taken {
    /// The service.
    pub service: String,
    /// The CPU flamegraph SVG.
    pub cpu: Result<Vec<u8>, String>,
    /// The heap when the window opened.
    pub heap_start: Result<Vec<u8>, String>,
    /// The heap when it closed.
    pub heap_end: Result<Vec<u8>, String>,
}

/// Profiles every `(service, metrics URL)` over `window`: the heap as it opens, the CPU
/// throughout, the heap again as it closes. `Err` when a stop came before the window opened.
pub async fn take_profiles(
    services: Vec<(String, String)>,
    load_started: Instant,
    window: ProfileWindow,
    stop: CancellationToken,
) -> Result<Vec<Taken>, String> {
    tokio::select! {
        () = tokio::time::sleep_until(load_started + window.start_after) => {}
        () = stop.cancelled() => return Err("the run ended before the profiling window".into()),
    }
    let seconds = window.length.as_secs().max(1);
    let client = reqwest::Client::builder()
        .timeout(window.length + Duration::from_secs(30))
        .build()
        .map_err(|e| format!("profiling client: {e}"))?;
    let jobs = services.into_iter().map(|(service, metrics_url)| {
        let client = client.clone();
        async move {
            let heap = heap_url(&metrics_url);
            // A service's first profiles allocate for good: its symbol cache, and the CPU
            // sampler's buffers (about 85 MB). Taken inside the window they would read as growth,
            // so a heap profile and a one-second CPU profile are taken and dropped first.
            let _warm_up = fetch(&client, &heap, Expect::Pprof).await;
            let _warm_up = fetch(&client, &profile_url(&metrics_url, 1), Expect::Svg).await;
            let heap_start = fetch(&client, &heap, Expect::Pprof).await;
            let cpu = fetch(&client, &profile_url(&metrics_url, seconds), Expect::Svg).await;
            let heap_end = fetch(&client, &heap, Expect::Pprof).await;
            Taken { service, cpu, heap_start, heap_end }
        }
    });
    Ok(futures::future::join_all(jobs).await)
}

#[derive(Debug, Clone, Copy)]
enum Expect {
    Svg,
    Pprof,
}

async fn fetch(client: &reqwest::Client, url: &str, expect: Expect) -> Result<Vec<u8>, String> {
    let failed = |e: String| format!("{url}: {e}");
    let response = client.get(url).send().await.map_err(|e| failed(e.to_string()))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| failed(e.to_string()))?;
    if !status.is_success() {
        return Err(failed(format!("HTTP {status}: {}", String::from_utf8_lossy(&body).trim())));
    }
    let fits = match expect {
        Expect::Svg => body.starts_with(b"<?xml") || body.starts_with(b"<svg"),
        Expect::Pprof => !body.is_empty(),
    };
    if !fits {
        return Err(failed(format!(
            "the answer is not {}",
            if matches!(expect, Expect::Svg) { "an SVG" } else { "a profile" }
        )));
    }
    Ok(body.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_centred_and_at_most_half_the_run() {
        let w = ProfileWindow::middle_of(Duration::from_secs(60), Duration::from_secs(10));
        assert_eq!(w, ProfileWindow { start_after: Duration::from_secs(25), length: Duration::from_secs(10) });
        let short = ProfileWindow::middle_of(Duration::from_secs(8), Duration::from_secs(10));
        assert_eq!(short, ProfileWindow { start_after: Duration::from_secs(2), length: Duration::from_secs(4) });
        assert_eq!(profile_url("http://127.0.0.1:9/metrics", 7), "http://127.0.0.1:9/debug/pprof/profile?seconds=7");
    }
}
