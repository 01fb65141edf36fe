//! Growth over a run: for each SUT service (and PostgreSQL's connections), the least-squares
//! line through a resource's per-second samples over the run's steady part (after the warm-up),
//! its slope per hour and a 95% confidence interval, which the `leak` thresholds judge and the
//! reports print.
//!
//! Resources move in steps (an allocator takes memory in chunks, a pool opens connections in
//! bursts), so neighbouring residuals are correlated and an ordinary interval would be far too
//! narrow. The interval here is widened for the residuals' lag-1 autocorrelation (an effective
//! sample size `n (1 - r) / (1 + r)`), so a 3-minute run says "not sure" where it should.

use serde::{Deserialize, Serialize};

use super::ObservationLog;
use crate::definition::threshold::Growth;

/// The one component fitted besides the SUT services, for its connections only.
pub const DATABASE: &str = "postgres";

/// Fewer steady samples than this fit no line.
const MIN_SAMPLES: usize = 10;

/// One resource's fitted growth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    /// The service (or `postgres`).
    pub component: String,
    /// The resource.
    pub series: Growth,
    /// Samples in the steady part.
    pub samples: usize,
    /// The first and last second fitted.
    pub from_s: u64,
    /// The last second fitted.
    pub to_s: u64,
    /// The fitted value at the start of the steady part.
    pub start: f64,
    /// Growth per hour (bytes, or things).
    pub per_hour: f64,
    /// Low end of the 95% confidence interval, per hour.
    pub per_hour_low: f64,
    /// High end of the 95% confidence interval, per hour.
    pub per_hour_high: f64,
    /// Share of the variance the line explains (0–1; 0 for a constant series).
    pub r_squared: f64,
}

/// The observation a series reads for `component`, if that component has one.
pub fn metric_of(series: Growth, component: &str) -> Option<&'static str> {
    Some(match (series, component) {
        (Growth::Connections, DATABASE) => "connections_total",
        (_, DATABASE) => return None,
        (Growth::Memory, _) => "memory_bytes",
        (Growth::OpenFiles, _) => "open_files",
        (Growth::Heap, _) => "heap_allocated_bytes",
        (Growth::Tasks, _) => "tokio_alive_tasks",
        (Growth::Connections, _) => "db_pool_connections_active",
        (Growth::EventBuffer, _) => "event_buffer_size",
    })
}

/// Every series of `services` (and PostgreSQL's connections) that has samples after
/// `warmup_s`, fitted.
pub fn trends(log: &ObservationLog, services: &[String], warmup_s: u64) -> Vec<Trend> {
    let components = services.iter().map(String::as_str).chain([DATABASE]);
    let mut trends = Vec::new();
    for component in components {
        for series in Growth::ALL {
            let Some(metric) = metric_of(series, component) else { continue };
            let points: Vec<(u64, f64)> = log.series(component, metric).filter(|(t, _)| *t > warmup_s).collect();
            if let Some(fit) = fit(&points) {
                trends.push(Trend { component: component.to_owned(), series, ..fit });
            }
        }
    }
    trends
}

/// The least-squares line through `points` (seconds, value), with the slope's interval widened
/// for autocorrelated residuals; `None` for too few points or no spread in time.
fn fit(points: &[(u64, f64)]) -> Option<Trend> {
    let n = points.len();
    if n < MIN_SAMPLES {
        return None;
    }
    let count = n as f64;
    let mean_t = points.iter().map(|(t, _)| *t as f64).sum::<f64>() / count;
    let mean_y = points.iter().map(|(_, y)| *y).sum::<f64>() / count;
    let sxx: f64 = points.iter().map(|(t, _)| (*t as f64 - mean_t).powi(2)).sum();
    let sxy: f64 = points.iter().map(|(t, y)| (*t as f64 - mean_t) * (y - mean_y)).sum();
    let syy: f64 = points.iter().map(|(_, y)| (y - mean_y).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let intercept = mean_y - slope * mean_t;
    let residuals: Vec<f64> = points.iter().map(|(t, y)| y - (intercept + slope * *t as f64)).collect();
    let sse: f64 = residuals.iter().map(|e| e * e).sum();
    // Lag-1 autocorrelation of the residuals, and the sample size it leaves.
    let r1 = if sse > 0.0 { residuals.windows(2).map(|w| w[0] * w[1]).sum::<f64>() / sse } else { 0.0 };
    let r1 = r1.clamp(0.0, 0.99);
    let effective = (count * (1.0 - r1) / (1.0 + r1)).clamp(4.0, count);
    let degrees = effective - 2.0;
    let standard_error = (sse / (count - 2.0) / sxx).sqrt() * ((count - 2.0) / degrees).sqrt();
    let half = student_t_975(degrees) * standard_error;
    let (first, last) = (points[0].0, points[n - 1].0);
    Some(Trend {
        component: String::new(),
        series: Growth::Memory,
        samples: n,
        from_s: first,
        to_s: last,
        start: intercept + slope * first as f64,
        per_hour: slope * 3600.0,
        per_hour_low: (slope - half) * 3600.0,
        per_hour_high: (slope + half) * 3600.0,
        // A constant series: nothing to explain, and no trend.
        r_squared: if syy > 0.0 { (sxy * sxy / (sxx * syy)).clamp(0.0, 1.0) } else { 0.0 },
    })
}

/// The 97.5th percentile of Student's t with `degrees` of freedom (Cornish–Fisher expansion
/// around the normal's 1.96; within 1% from two degrees of freedom up, which the effective
/// sample size of at least 4 keeps to).
fn student_t_975(degrees: f64) -> f64 {
    let z: f64 = 1.959_964;
    let d = degrees.max(2.0);
    let g1 = (z.powi(3) + z) / 4.0;
    let g2 = (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / 96.0;
    let g3 = (3.0 * z.powi(7) + 19.0 * z.powi(5) + 17.0 * z.powi(3) - 15.0 * z) / 384.0;
    let g4 = (79.0 * z.powi(9) + 776.0 * z.powi(7) + 1482.0 * z.powi(5) - 1920.0 * z.powi(3) - 945.0 * z) / 92160.0;
    z + g1 / d + g2 / d.powi(2) + g3 / d.powi(3) + g4 / d.powi(4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::Observation;

    fn log(component: &str, metric: &str, values: impl IntoIterator<Item = (u64, f64)>) -> ObservationLog {
        ObservationLog { rows: values.into_iter().map(|(t, v)| Observation::new(t, component, metric, v)).collect() }
    }

    fn only(mut trends: Vec<Trend>) -> Trend {
        assert_eq!(trends.len(), 1, "{trends:?}");
        trends.remove(0)
    }

    #[test]
    fn a_steady_climb_is_measured_per_hour_after_the_warm_up() {
        // 1 MB a second after a 30-second warm-up that jumped by 500 MB.
        let values = (1..=180).map(|t| (t, if t <= 30 { 5e8 * t as f64 / 30.0 } else { 5e8 + 1e6 * (t - 30) as f64 }));
        let trends = trends(&log("event-handler", "memory_bytes", values), &["event-handler".into()], 30);
        let [trend] = trends.as_slice() else { panic!("{trends:?}") };
        assert_eq!((trend.component.as_str(), trend.series, trend.samples), ("event-handler", Growth::Memory, 150));
        assert!((trend.per_hour - 3.6e9).abs() < 1.0, "{trend:?}");
        assert!(trend.per_hour_low <= trend.per_hour && trend.per_hour <= trend.per_hour_high);
        assert!((trend.r_squared - 1.0).abs() < 1e-9);
    }

    #[test]
    fn flat_noise_has_an_interval_around_zero_and_steps_widen_it() {
        // A flat series with deterministic jitter: the interval holds 0.
        let jitter = (1..=300).map(|t| (t, 1e8 + if t % 2 == 0 { 3e5 } else { -3e5 }));
        let flat = only(trends(&log("challenge-service", "memory_bytes", jitter), &["challenge-service".into()], 0));
        assert!(flat.per_hour_low < 0.0 && flat.per_hour_high > 0.0, "{flat:?}");
        // Two plateaus: correlated residuals make the interval wider than the same points'
        // slope would get if they were independent.
        let steps = (1..=300).map(|t| (t, if t <= 150 { 1e8 } else { 1.01e8 }));
        let step = only(trends(&log("challenge-service", "memory_bytes", steps), &["challenge-service".into()], 0));
        let half = (step.per_hour_high - step.per_hour_low) / 2.0;
        assert!(half > 0.25 * step.per_hour, "a step is not read as a certain climb: {step:?}");
    }

    #[test]
    fn each_series_reads_its_own_observation_and_short_series_fit_nothing() {
        let mut rows = log("event-handler", "event_buffer_size", (1..=20).map(|t| (t, t as f64))).rows;
        rows.extend(log("postgres", "connections_total", (1..=20).map(|t| (t, 10.0))).rows);
        rows.extend(log("postgres", "memory_bytes", (1..=20).map(|t| (t, 10.0))).rows);
        rows.extend(log("event-handler", "open_files", (1..=5).map(|t| (t, 10.0))).rows);
        let found = trends(&ObservationLog { rows }, &["event-handler".into()], 0);
        let names: Vec<(&str, Growth)> = found.iter().map(|t| (t.component.as_str(), t.series)).collect();
        assert_eq!(names, vec![("event-handler", Growth::EventBuffer), ("postgres", Growth::Connections)]);
        assert!((found[0].per_hour - 3600.0).abs() < 1e-6);
    }

    #[test]
    fn the_t_quantile_matches_its_table() {
        for (degrees, table) in [(2.0, 4.303), (5.0, 2.571), (10.0, 2.228), (30.0, 2.042), (1000.0, 1.962)] {
            let ours = student_t_975(degrees);
            assert!((ours - table).abs() / table < 0.02, "{degrees}: {ours} vs {table}");
        }
    }
}
