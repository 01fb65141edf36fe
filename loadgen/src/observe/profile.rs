//! CPU profiles of the SUT services over the middle of a run (scenario 4): each service's admin
//! port serves `GET /debug/pprof/profile?seconds=N` (a flamegraph SVG), which the harness calls
//! for every service at once and saves as `profiles/<service>.svg`.

use std::path::PathBuf;
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

/// Profiles every `(service, metrics URL)` over `window` and writes `<dir>/<service>.svg`.
/// Returns one note per service that could not be profiled; a stop before the window opens
/// skips the profiles.
pub async fn take_profiles(
    services: Vec<(String, String)>,
    load_started: Instant,
    window: ProfileWindow,
    dir: PathBuf,
    stop: CancellationToken,
) -> Vec<String> {
    tokio::select! {
        () = tokio::time::sleep_until(load_started + window.start_after) => {}
        () = stop.cancelled() => return vec!["the run ended before the profiling window".into()],
    }
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return vec![format!("cannot create {}: {e}", dir.display())];
    }
    let seconds = window.length.as_secs().max(1);
    let client = match reqwest::Client::builder().timeout(window.length + Duration::from_secs(30)).build() {
        Ok(client) => client,
        Err(e) => return vec![format!("profiling client: {e}")],
    };
    let jobs = services.into_iter().map(|(service, metrics_url)| {
        let client = client.clone();
        let dir = dir.clone();
        async move {
            let url = profile_url(&metrics_url, seconds);
            match fetch_svg(&client, &url).await {
                Ok(svg) => crate::atomic::write(&dir.join(format!("{service}.svg")), &svg)
                    .err()
                    .map(|e| format!("{service}: writing its profile: {e}")),
                Err(e) => Some(format!("{service}: profile from {url}: {e}")),
            }
        }
    });
    futures::future::join_all(jobs).await.into_iter().flatten().collect()
}

async fn fetch_svg(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let response = client.get(url).send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body).trim()));
    }
    if !body.starts_with(b"<?xml") && !body.starts_with(b"<svg") {
        return Err("the answer is not an SVG".into());
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
