//! `GET /debug/pprof/profile?seconds=N`: samples this process's CPU for N seconds (pprof-rs,
//! 99 Hz) and answers with a flamegraph SVG. One profile at a time per process (the sampler is
//! process-wide); a second request meanwhile gets 409.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Sampling frequency: prime, so it does not beat with periodic work (the 1 s flush).
const FREQUENCY_HZ: i32 = 99;
/// Longest profile a request may ask for.
const MAX_SECONDS: u64 = 120;

static PROFILING: AtomicBool = AtomicBool::new(false);

#[derive(Debug, serde::Deserialize)]
struct ProfileParams {
    seconds: Option<u64>,
}

/// The CPU profile's route.
pub(super) fn router() -> Router {
    Router::new().route("/debug/pprof/profile", get(profile))
}

async fn profile(Query(params): Query<ProfileParams>) -> Response {
    let seconds = params.seconds.unwrap_or(10);
    if seconds == 0 || seconds > MAX_SECONDS {
        return (StatusCode::BAD_REQUEST, format!("seconds must be between 1 and {MAX_SECONDS}\n")).into_response();
    }
    if PROFILING.swap(true, Ordering::AcqRel) {
        return (StatusCode::CONFLICT, "a profile is already being taken\n").into_response();
    }
    let result = tokio::task::spawn_blocking(move || flamegraph(Duration::from_secs(seconds))).await;
    PROFILING.store(false, Ordering::Release);
    match result {
        Ok(Ok(svg)) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "profiling failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "profiling failed; see the service log\n").into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "profiling task failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "profiling failed; see the service log\n").into_response()
        }
    }
}

/// Samples for `duration` on this blocking thread (the profile is the waiting) and renders it.
fn flamegraph(duration: Duration) -> Result<Vec<u8>, pprof::Error> {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY_HZ)
        // Unwinding through these from a signal handler can deadlock (pprof-rs's advice).
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()?;
    std::thread::sleep(duration);
    render(&guard.report().build()?)
}

/// The report as a flamegraph SVG; a process that never ran on a CPU while sampled (an idle
/// service) gets a small SVG saying so rather than an empty answer.
fn render(report: &pprof::Report) -> Result<Vec<u8>, pprof::Error> {
    if report.data.is_empty() {
        let seconds = report.timing.duration.as_secs_f64();
        return Ok(format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"40\">\
             <text x=\"10\" y=\"25\" font-family=\"sans-serif\" font-size=\"14\">\
             no samples in {seconds:.1} s at {FREQUENCY_HZ} Hz: the process was idle</text></svg>\n"
        )
        .into_bytes());
    }
    let mut svg = Vec::new();
    report.flamegraph(&mut svg)?;
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_without_samples_is_still_a_valid_svg_that_says_so() {
        let idle = pprof::Report { data: Default::default(), timing: Default::default() };
        let svg = String::from_utf8(render(&idle).unwrap()).unwrap();
        assert!(svg.contains("<svg") && svg.trim_end().ends_with("</svg>"), "{svg:?}");
        assert!(svg.contains("no samples"), "{svg}");
    }
}
