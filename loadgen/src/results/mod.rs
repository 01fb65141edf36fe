//! The results folder, written so that it is never half-written: everything goes into
//! `<name>.partial/` (time series and HDR interval logs as the run goes, JSON files by write-then-
//! rename), and the folder is renamed to `<name>/` when the run ends — normally, on Ctrl-C, or on
//! a failure. A crash leaves the `.partial` folder, readable up to its last second.
//!
//! Contents: `run.json` (plan, versions, machine, outcome), `summary.json`, `timeseries.csv` (one
//! row per operation and second), `hdr/<operation>.{latency,service,unserved}.hlog` (HdrHistogram
//! interval logs, microseconds, each interval with its true start and length; `unserved` holds
//! how late dropped arrivals were), `logs/` (the services' output, when the harness started
//! them); the names live in [`layout`], and nowhere else.
//!
//! - [`summary`]: `summary.json`'s types and how its operation figures are computed.
//! - [`read`]: a results folder read back (for the sweep, the verdicts and the reports).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use serde::Serialize;

pub mod read;
pub mod summary;

use crate::engine::recorder::IntervalSnapshot;
use crate::target::operations::Operation;

/// The names of a results folder's files: the one place that knows them (the run writes them,
/// the sweep and the reports read them).
pub mod layout {
    use std::path::{Path, PathBuf};

    use crate::target::operations::Operation;

    /// The validated plan, versions, machine, endpoints and outcome.
    pub const RUN: &str = "run.json";
    /// Per-operation figures, thresholds, resources, verdict.
    pub const SUMMARY: &str = "summary.json";
    /// One row per operation and second.
    pub const TIMESERIES: &str = "timeseries.csv";
    /// `t_s,component,metric,value`.
    pub const OBSERVATIONS: &str = "observations.csv";
    /// A sweep's levels and maxima.
    pub const CAPACITY: &str = "capacity.json";
    /// The HdrHistogram interval logs.
    pub const HDR: &str = "hdr";
    /// A distributed run's workers: share, clock, seconds, requests, end.
    pub const WORKERS: &str = "workers.json";

    /// A distributed run's worker's own results folder, relative to the coordinator's.
    pub fn worker_folder(index: u32) -> String {
        format!("workers/{index}")
    }
    /// The provisioned services' output.
    pub const LOGS: &str = "logs";
    /// CPU flamegraphs.
    pub const PROFILES: &str = "profiles";
    /// The rendered documents.
    pub const REPORT: &str = "report";

    /// A service's heap profile at the end of the profiling window (pprof, gzipped), relative
    /// to the folder.
    pub fn heap_pprof(service: &str) -> String {
        format!("{PROFILES}/{service}.heap.pb.gz")
    }

    /// A service's in-use bytes at the start of the profiling window, as a flamegraph.
    pub fn heap_start_svg(service: &str) -> String {
        format!("{PROFILES}/{service}.heap-start.svg")
    }

    /// A service's in-use bytes at the end of the profiling window, as a flamegraph.
    pub fn heap_svg(service: &str) -> String {
        format!("{PROFILES}/{service}.heap.svg")
    }

    /// What grew in a service's heap over the profiling window, as a flamegraph.
    pub fn heap_growth_svg(service: &str) -> String {
        format!("{PROFILES}/{service}.heap-growth.svg")
    }

    /// A service's CPU flamegraph, relative to the folder.
    pub fn profile_svg(service: &str) -> String {
        format!("{PROFILES}/{service}.svg")
    }

    /// The interval log of `op`'s `kind` (`latency`, `service` or `unserved`) in the folder `dir`.
    pub fn hdr_log(dir: &Path, op: Operation, kind: &str) -> PathBuf {
        dir.join(HDR).join(format!("{}.{kind}.hlog", op.slug()))
    }
}

/// The columns of `timeseries.csv`: `t_s` is the interval's number (its end, in whole seconds
/// of the schedule), `interval_s` its true length; latencies are the expected responses'.
pub const TIMESERIES_HEADER: &str = "t_s,operation,target_rate,requests,errors,dropped,in_flight,\
latency_p50_ms,latency_p95_ms,latency_p99_ms,latency_max_ms,service_p50_ms,service_p95_ms,service_p99_ms,\
scheduled,interval_s";

/// One sampled interval: its number (1 for the first second) and its true start (since the
/// schedules' start) and length, which a stalled ticker or the run's end make differ from 1 s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// 1-based number.
    pub second: u64,
    /// Start, since the schedules' start.
    pub start: Duration,
    /// Length.
    pub length: Duration,
}

/// A results folder being written.
pub struct ResultsDir {
    final_path: PathBuf,
    partial_path: PathBuf,
    timeseries: BufWriter<File>,
    hdr: BTreeMap<(Operation, &'static str), BufWriter<File>>,
    serializer: V2DeflateSerializer,
    base: SystemTime,
}

impl std::fmt::Debug for ResultsDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultsDir").field("final_path", &self.final_path).finish()
    }
}

/// What a results folder's name ends with while it is being written.
pub const PARTIAL_SUFFIX: &str = ".partial";

impl ResultsDir {
    /// Creates `<path>.partial/`; refuses if `path` already exists, or if `<path>.partial` does
    /// (what an interrupted run left is never mixed into a new one).
    pub fn create(path: &Path) -> std::io::Result<Self> {
        if path.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists already; choose another --out", path.display()),
            ));
        }
        let mut partial = path.as_os_str().to_owned();
        partial.push(PARTIAL_SUFFIX);
        let partial_path = PathBuf::from(partial);
        if partial_path.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists, left by an interrupted run: read, move or remove it, or choose another --out",
                    partial_path.display()
                ),
            ));
        }
        std::fs::create_dir_all(partial_path.join(layout::HDR))?;
        std::fs::create_dir_all(partial_path.join(layout::LOGS))?;
        let mut timeseries = BufWriter::new(File::create(partial_path.join(layout::TIMESERIES))?);
        writeln!(timeseries, "{TIMESERIES_HEADER}")?;
        timeseries.flush()?; // a run stopped before its first second still has a readable file
        Ok(Self {
            final_path: path.to_path_buf(),
            partial_path,
            timeseries,
            hdr: BTreeMap::new(),
            serializer: V2DeflateSerializer::new(),
            base: SystemTime::now(),
        })
    }

    /// Where the services' logs go.
    pub fn logs_dir(&self) -> PathBuf {
        self.partial_path.join(layout::LOGS)
    }

    /// The folder being written.
    pub fn partial_path(&self) -> &Path {
        &self.partial_path
    }

    /// The folder the results end up in.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Sets the wall-clock time the HDR logs count from (the schedules' start).
    pub fn set_base_time(&mut self, base: SystemTime) {
        self.base = base;
    }

    /// Writes `value` as pretty JSON to `name`, through a temporary file and a rename.
    pub fn write_json(&self, name: &str, value: &impl Serialize) -> std::io::Result<()> {
        crate::atomic::write_json(&self.partial_path.join(name), value)
    }

    /// Appends one interval of every active operation: a time-series row and an interval in each
    /// HDR log (`unserved` only for operations with dropped arrivals in it).
    pub fn write_interval(
        &mut self,
        interval: &Interval,
        snapshots: &[IntervalSnapshot],
        targets: &BTreeMap<Operation, f64>,
    ) -> std::io::Result<()> {
        let (start, length) = (interval.start.as_secs_f64(), interval.length.as_secs_f64());
        for s in snapshots {
            let target = targets.get(&s.operation).copied();
            let (requests, dropped) = (s.requests(), s.dropped());
            if requests == 0 && dropped == 0 && s.in_flight == 0 && target.is_none() && s.scheduled() == 0 {
                continue;
            }
            let (latency, service) = (s.latency(), s.service());
            let ms =
                |h: &Histogram<u64>, q: f64| if h.is_empty() { 0.0 } else { h.value_at_quantile(q) as f64 / 1000.0 };
            writeln!(
                self.timeseries,
                "{},{},{},{},{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{},{length:.3}",
                interval.second,
                s.operation.name(),
                target.map_or(String::new(), |r| format!("{r:.3}")),
                requests,
                s.errors(),
                dropped,
                s.in_flight,
                ms(&latency, 0.5),
                ms(&latency, 0.95),
                ms(&latency, 0.99),
                if latency.is_empty() { 0.0 } else { latency.max() as f64 / 1000.0 },
                ms(&service, 0.5),
                ms(&service, 0.95),
                ms(&service, 0.99),
                s.scheduled(),
            )?;
            self.write_hdr(s.operation, "latency", start, length, &latency)?;
            self.write_hdr(s.operation, "service", start, length, &service)?;
            if dropped > 0 {
                self.write_hdr(s.operation, "unserved", start, length, &s.unserved())?;
            }
        }
        self.timeseries.flush()?;
        for log in self.hdr.values_mut() {
            log.flush()?;
        }
        Ok(())
    }

    fn write_hdr(
        &mut self,
        op: Operation,
        kind: &'static str,
        start: f64,
        length: f64,
        h: &Histogram<u64>,
    ) -> std::io::Result<()> {
        if !self.hdr.contains_key(&(op, kind)) {
            let path = layout::hdr_log(&self.partial_path, op, kind);
            let mut log = BufWriter::new(File::create(path)?);
            let base = self.base.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
            writeln!(log, "#[Gauntlet {kind} of '{}', values in microseconds]", op.name())?;
            writeln!(log, "#[Histogram log format version 1.3]")?;
            writeln!(log, "#[StartTime: {base:.3} (seconds since epoch)]")?;
            writeln!(log, "#[BaseTime: {base:.3} (seconds since epoch)]")?;
            writeln!(log, "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"")?;
            self.hdr.insert((op, kind), log);
        }
        let mut bytes = Vec::new();
        self.serializer
            .serialize(h, &mut bytes)
            .map_err(|e| std::io::Error::other(format!("HDR serialisation: {e:?}")))?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let max_ms = if h.is_empty() { 0.0 } else { h.max() as f64 / 1000.0 };
        let log = self.hdr.get_mut(&(op, kind)).expect("inserted above");
        writeln!(log, "{:.3},{length:.3},{max_ms:.3},{encoded}", start.max(0.0))
    }

    /// Flushes everything and renames the folder to its final name.
    pub fn finish(mut self) -> std::io::Result<PathBuf> {
        self.timeseries.flush()?;
        for log in self.hdr.values_mut() {
            log.flush()?;
        }
        drop(self.hdr);
        std::fs::rename(&self.partial_path, &self.final_path)?;
        Ok(self.final_path)
    }
}

/// Reads every interval of an HDR log written by [`ResultsDir`] (for reports and tests).
pub fn read_hdr_log(path: &Path) -> std::io::Result<Vec<(f64, Histogram<u64>)>> {
    use hdrhistogram::serialization::Deserializer;
    let text = std::fs::read_to_string(path)?;
    let mut deserializer = Deserializer::new();
    let mut intervals = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.starts_with('"')) {
        let mut fields = line.splitn(4, ',');
        let start: f64 = fields.next().and_then(|f| f.parse().ok()).unwrap_or_default();
        let encoded = fields.nth(2).unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(std::io::Error::other)?;
        let h: Histogram<u64> =
            deserializer.deserialize(&mut &bytes[..]).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        intervals.push((start, h));
    }
    Ok(intervals)
}

/// Seconds as a `Duration`, for callers holding floats.
pub fn seconds(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::recorder::{Outcome, Recorder, new_histogram};

    #[test]
    fn a_stale_partial_folder_is_never_reused() {
        let scratch = tempfile::tempdir().unwrap();
        let out = scratch.path().join("run");
        let stale = scratch.path().join("run.partial");
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::write(stale.join("summary.json"), "{\"left\": \"by a crash\"}").unwrap();
        let Err(error) = ResultsDir::create(&out) else { panic!("the stale folder was reused") };
        assert_eq!(error.kind(), std::io::ErrorKind::AlreadyExists);
        let message = error.to_string();
        assert!(message.contains("run.partial") && message.contains("interrupted run"), "{message}");
        assert_eq!(std::fs::read_to_string(stale.join("summary.json")).unwrap(), "{\"left\": \"by a crash\"}");
    }

    #[test]
    fn a_run_stopped_before_its_first_second_has_a_readable_time_series() {
        let root = tempfile::tempdir().unwrap();
        let dir = ResultsDir::create(&root.path().join("run")).unwrap();
        let text = std::fs::read_to_string(dir.partial_path().join("timeseries.csv")).unwrap();
        assert_eq!(text.trim_end(), TIMESERIES_HEADER, "the header is on disk before any interval");
    }

    #[test]
    fn intervals_round_trip_through_the_hdr_log_and_the_folder_is_renamed() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("run");
        let mut dir = ResultsDir::create(&path).unwrap();
        let recorder = Recorder::new();
        let now = tokio::time::Instant::now();
        for ms in [1u64, 2, 3, 400] {
            recorder.record(Operation::Stat, 0, now, now, now + Duration::from_millis(ms), Outcome::ok(0));
        }
        let targets = BTreeMap::from([(Operation::Stat, 4.0)]);
        // A stalled ticker: the interval started at 0 s and lasted 1.25 s.
        let stretched = Interval { second: 1, start: Duration::ZERO, length: Duration::from_millis(1250) };
        dir.write_interval(&stretched, &recorder.take_intervals(), &targets).unwrap();
        dir.write_json("summary.json", &serde_json::json!({"ok": true})).unwrap();
        let final_path = dir.finish().unwrap();
        assert_eq!(final_path, path);
        let intervals = read_hdr_log(&path.join("hdr/onmessage-stat.latency.hlog")).unwrap();
        assert_eq!(intervals.len(), 1);
        assert_eq!(intervals[0].1.len(), 4);
        let mut expected = new_histogram();
        for ms in [1u64, 2, 3, 400] {
            expected.record(ms * 1000).unwrap();
        }
        assert_eq!(intervals[0].1.max(), expected.max());
        let csv = std::fs::read_to_string(path.join("timeseries.csv")).unwrap();
        let row = csv.lines().nth(1).unwrap();
        assert!(row.starts_with("1,OnMessage stat,4.000,4,0,0,0,") && row.ends_with(",0,1.250"), "{csv}");
        let log = std::fs::read_to_string(path.join("hdr/onmessage-stat.latency.hlog")).unwrap();
        let line = log.lines().find(|l| !l.starts_with('#') && !l.starts_with('"')).unwrap();
        assert!(line.starts_with("0.000,1.250,"), "the interval's true length: {line}");
        assert!(ResultsDir::create(&path).is_err(), "an existing folder is never overwritten");
    }
}
