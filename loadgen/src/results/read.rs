//! A saved run, read back from its results folder alone: `summary.json`, `run.json`,
//! `timeseries.csv`, `observations.csv` and the HDR interval logs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;

use super::layout;
use super::summary::Summary;
use crate::engine::recorder::new_histogram;
use crate::observe::ObservationLog;
use crate::target::operations::Operation;

/// A results file that is missing or malformed, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}", path = .0.display(), message = .1)]
pub struct ReadError(pub PathBuf, pub String);

/// One row of `timeseries.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeRow {
    /// Second of the load (end of the interval).
    pub t_s: f64,
    /// Operation name.
    pub operation: String,
    /// Target rate, when open model.
    pub target_rate: Option<f64>,
    /// Requests completed in the second.
    pub requests: f64,
    /// Errors in the second.
    pub errors: f64,
    /// Arrivals dropped in the second.
    pub dropped: f64,
    /// Corrected latency p50/p95/p99, ms.
    pub latency: [f64; 3],
    /// The interval's true length, s (1 in files written before it was recorded).
    pub interval_s: f64,
}

impl TimeRow {
    /// Requests per second within the interval.
    pub fn request_rate(&self) -> f64 {
        self.requests / self.interval_s.max(1e-3)
    }

    /// Dropped arrivals per second within the interval.
    pub fn dropped_rate(&self) -> f64 {
        self.dropped / self.interval_s.max(1e-3)
    }
}

/// A saved run.
#[derive(Debug)]
pub struct RunData {
    /// The folder.
    pub dir: PathBuf,
    /// The run's name: its folder's, without the `.partial` of a folder still being written.
    pub name: String,
    /// `summary.json`.
    pub summary: Summary,
    /// `run.json`, as written.
    pub run: serde_json::Value,
    /// `timeseries.csv`.
    pub timeseries: Vec<TimeRow>,
    /// `observations.csv` (empty for runs without it).
    pub observations: ObservationLog,
    /// Whole-run corrected and service-time histograms per operation, from the HDR logs.
    pub histograms: BTreeMap<String, (Histogram<u64>, Histogram<u64>)>,
    /// Per operation, the corrected-latency interval histograms: `(start second, histogram)`.
    pub latency_intervals: BTreeMap<String, Vec<(f64, Histogram<u64>)>>,
}

impl RunData {
    /// Reads a results folder.
    pub fn load(dir: &Path) -> Result<Self, ReadError> {
        let read =
            |name: &str| std::fs::read_to_string(dir.join(name)).map_err(|e| ReadError(dir.join(name), e.to_string()));
        let summary: Summary = serde_json::from_str(&read(layout::SUMMARY)?)
            .map_err(|e| ReadError(dir.join(layout::SUMMARY), e.to_string()))?;
        let run =
            serde_json::from_str(&read(layout::RUN)?).map_err(|e| ReadError(dir.join(layout::RUN), e.to_string()))?;
        let timeseries =
            parse_timeseries(&read(layout::TIMESERIES)?).map_err(|e| ReadError(dir.join(layout::TIMESERIES), e))?;
        let observations_path = dir.join(layout::OBSERVATIONS);
        let observations = if observations_path.is_file() {
            ObservationLog::read(&observations_path).map_err(|e| ReadError(observations_path, e.to_string()))?
        } else {
            ObservationLog::default()
        };
        let mut histograms = BTreeMap::new();
        let mut latency_intervals = BTreeMap::new();
        for op in Operation::ALL {
            let latency = layout::hdr_log(dir, op, "latency");
            let service = layout::hdr_log(dir, op, "service");
            if latency.is_file() && service.is_file() {
                let intervals = read_intervals(&latency)?;
                let total = merged(&latency, intervals.iter().map(|(_, h)| h))?;
                histograms.insert(
                    op.name().to_owned(),
                    (total, merged(&service, read_intervals(&service)?.iter().map(|(_, h)| h))?),
                );
                latency_intervals.insert(op.name().to_owned(), intervals);
            }
        }
        let name = dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
        // A run's own reports are rendered before its folder gets its final name.
        let name = name.strip_suffix(super::PARTIAL_SUFFIX).map_or(name.clone(), str::to_owned);
        Ok(Self { dir: dir.to_path_buf(), name, summary, run, timeseries, observations, histograms, latency_intervals })
    }

    /// The corrected latency of `operation` over the intervals starting at `from_s` or later.
    pub fn latency_since(&self, operation: &str, from_s: f64) -> Histogram<u64> {
        let mut latency = new_histogram();
        for (start, h) in self.latency_intervals.get(operation).into_iter().flatten() {
            if *start >= from_s {
                let _ = latency.add(h);
            }
        }
        latency
    }

    /// Offered load: REST arrivals per second (API streams) and events per second.
    pub fn offered(&self) -> (f64, f64) {
        let rate = |wanted: fn(Operation) -> bool| {
            let ops = self.summary.operations.iter().filter(|(name, _)| Operation::named(name).is_some_and(wanted));
            ops.filter_map(|(_, o)| o.target_rate).sum::<f64>()
        };
        (rate(|o| o == Operation::GetChallenges), rate(Operation::is_grpc))
    }

    /// The replicas the run's provisioned SUT had (one of each for older runs and external targets).
    pub fn replicas(&self) -> crate::definition::options::Replicas {
        self.run.pointer("/plan/replicas").and_then(|r| serde_json::from_value(r.clone()).ok()).unwrap_or_default()
    }

    /// REST and event arrivals per second together: the order of levels within a kind.
    pub fn offered_total(&self) -> f64 {
        let (rps, eps) = self.offered();
        rps + eps
    }

    /// A short label of the load level: `200 rps + 1000 eps`.
    pub fn level_label(&self) -> String {
        let (rps, eps) = self.offered();
        match (rps > 0.0, eps > 0.0) {
            (true, true) => format!("{rps:.0} rps + {eps:.0} eps"),
            (true, false) => format!("{rps:.0} rps"),
            (false, true) => format!("{eps:.0} eps"),
            (false, false) => "closed model".into(),
        }
    }

    /// The rows of one operation.
    pub fn rows_of<'a>(&'a self, operation: &'a str) -> impl Iterator<Item = &'a TimeRow> + 'a {
        self.timeseries.iter().filter(move |r| r.operation == operation)
    }
}

/// The runs from the lightest offered load to the heaviest.
pub fn by_offered_load<'a>(runs: impl IntoIterator<Item = &'a RunData>) -> Vec<&'a RunData> {
    let mut ordered: Vec<&RunData> = runs.into_iter().collect();
    ordered.sort_by(|a, b| a.offered_total().total_cmp(&b.offered_total()));
    ordered
}

fn read_intervals(path: &Path) -> Result<Vec<(f64, Histogram<u64>)>, ReadError> {
    super::read_hdr_log(path).map_err(|e| ReadError(path.to_path_buf(), e.to_string()))
}

/// The intervals of the log at `path` added up.
fn merged<'a>(path: &Path, intervals: impl Iterator<Item = &'a Histogram<u64>>) -> Result<Histogram<u64>, ReadError> {
    let mut total = new_histogram();
    for h in intervals {
        total.add(h).map_err(|e| ReadError(path.to_path_buf(), format!("{e:?}")))?;
    }
    Ok(total)
}

fn parse_timeseries(text: &str) -> Result<Vec<TimeRow>, String> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().ok_or("empty")?.split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).ok_or(format!("no column {name}"));
    let (t, op, target, requests, errors, dropped) = (
        column("t_s")?,
        column("operation")?,
        column("target_rate")?,
        column("requests")?,
        column("errors")?,
        column("dropped")?,
    );
    let (p50, p95, p99) = (column("latency_p50_ms")?, column("latency_p95_ms")?, column("latency_p99_ms")?);
    let interval = column("interval_s").ok();
    lines
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, line)| {
            let fields: Vec<&str> = line.split(',').collect();
            let number = |c: usize| -> Result<f64, String> {
                fields.get(c).and_then(|f| f.parse().ok()).ok_or(format!(
                    "line {}: column {} is not a number",
                    i + 2,
                    c + 1
                ))
            };
            Ok(TimeRow {
                t_s: number(t)?,
                operation: fields.get(op).ok_or(format!("line {}: no operation", i + 2))?.to_string(),
                target_rate: fields.get(target).and_then(|f| f.parse().ok()),
                requests: number(requests)?,
                errors: number(errors)?,
                dropped: number(dropped)?,
                latency: [number(p50)?, number(p95)?, number(p99)?],
                interval_s: interval.map(number).transpose()?.unwrap_or(1.0),
            })
        })
        .collect()
}
