//! What the system under test, its database and the generator itself were doing while the load
//! ran, sampled every second beside the latencies, so a run can say *why* and not only *how
//! fast*.
//!
//! Every sampler produces [`Observation`]s — `(second, component, metric, value)` — written as
//! they come to `observations.csv` and kept for the summary:
//!
//! - [`resources`]: CPU, memory, threads and open files per component, behind the
//!   [`resources::ResourceSource`] interface: processes on this machine, and [`containers`]
//!   through the Docker engine's stats streams.
//! - [`postgres`]: connections, commits, cache hits, lock waits, the table; `pg_stat_statements`
//!   deltas over the run and `EXPLAIN (ANALYZE, BUFFERS)` of the key queries at the end.
//! - [`prometheus`]: the SUT services' `/metrics`, turned into per-second values.
//! - [`profile`]: CPU flamegraphs and heap profiles of the SUT services over the middle of a
//!   run (scenario 4); [`heap`]: a heap profile read, diffed, drawn and summed by site.
//! - [`digest`]: the summary's `resources`, `database` and `services` sections, and the
//!   generator-saturation warnings, computed from the observations.
//! - [`replicas`]: a replicated service's rows summed into the service's own each second.
//! - [`trend`]: how fast each service's memory, heap, tasks, files and connections grew over
//!   the run's steady part, with a confidence interval (what `leak` thresholds judge).

pub mod containers;
pub mod digest;
pub mod heap;
pub mod postgres;
pub mod profile;
pub mod prometheus;
pub mod replicas;
pub mod resources;
pub mod trend;

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::postgres::PgSampler;
use self::prometheus::MetricsScraper;
use self::resources::ResourceSource;

/// The header of `observations.csv`.
pub const OBSERVATIONS_HEADER: &str = "t_s,component,metric,value";

/// One observed value: at second `t_s` of the load, `component`'s `metric` was `value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Seconds since the load started (the end of the sampled second).
    pub t_s: u64,
    /// `loadgen`, `machine`, `postgres`, or a SUT service's name.
    pub component: String,
    /// What was measured, e.g. `cpu_percent`, `connections{state=active}`.
    pub metric: String,
    /// The value, in the unit the metric's name gives.
    pub value: f64,
}

impl Observation {
    /// A new observation.
    pub fn new(t_s: u64, component: impl Into<String>, metric: impl Into<String>, value: f64) -> Self {
        Self { t_s, component: component.into(), metric: metric.into(), value }
    }

    fn csv_line(&self) -> String {
        format!("{},{},{},{}", self.t_s, csv_field(&self.component), csv_field(&self.metric), self.value)
    }
}

/// Quotes a CSV field when it needs it.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_owned() }
}

/// Splits one CSV line of `observations.csv` into its four fields.
fn parse_csv_line(line: &str) -> Option<Observation> {
    let mut fields = Vec::with_capacity(4);
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    let [t, component, metric, value] = <[String; 4]>::try_from(fields).ok()?;
    Some(Observation { t_s: t.parse().ok()?, component, metric, value: value.parse().ok()? })
}

/// Every observation of a run, in time order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObservationLog {
    /// The rows.
    pub rows: Vec<Observation>,
}

impl ObservationLog {
    /// The `(t_s, value)` series of one component's metric.
    pub fn series<'a>(&'a self, component: &'a str, metric: &'a str) -> impl Iterator<Item = (u64, f64)> + 'a {
        self.rows.iter().filter(move |o| o.component == component && o.metric == metric).map(|o| (o.t_s, o.value))
    }

    /// Components in the order they first appear.
    pub fn components(&self) -> Vec<&str> {
        let mut seen: Vec<&str> = Vec::new();
        for o in &self.rows {
            if !seen.contains(&o.component.as_str()) {
                seen.push(&o.component);
            }
        }
        seen
    }

    /// Metrics of one component in the order they first appear.
    pub fn metrics<'a>(&'a self, component: &str) -> Vec<&'a str> {
        let mut seen: Vec<&str> = Vec::new();
        for o in self.rows.iter().filter(|o| o.component == component) {
            if !seen.contains(&o.metric.as_str()) {
                seen.push(&o.metric);
            }
        }
        seen
    }

    /// Reads `observations.csv`.
    pub fn read(path: &Path) -> std::io::Result<Self> {
        let reader = BufReader::new(File::open(path)?);
        let mut rows = Vec::new();
        for (number, line) in reader.lines().enumerate() {
            let line = line?;
            if number == 0 || line.is_empty() {
                continue;
            }
            rows.push(parse_csv_line(&line).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}:{}: not a `{OBSERVATIONS_HEADER}` row", path.display(), number + 1),
                )
            })?);
        }
        Ok(Self { rows })
    }
}

/// Writes observations to `observations.csv` as they come and keeps them.
#[derive(Debug)]
pub struct ObservationWriter {
    file: BufWriter<File>,
    log: ObservationLog,
}

impl ObservationWriter {
    /// Creates the file with its header.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let mut file = BufWriter::new(File::create(path)?);
        writeln!(file, "{OBSERVATIONS_HEADER}")?;
        file.flush()?;
        Ok(Self { file, log: ObservationLog::default() })
    }

    /// Appends and flushes one second's observations.
    pub fn write(&mut self, rows: Vec<Observation>) -> std::io::Result<()> {
        for row in &rows {
            writeln!(self.file, "{}", row.csv_line())?;
        }
        self.file.flush()?;
        self.log.rows.extend(rows);
        Ok(())
    }

    /// The observations so far.
    pub fn into_log(self) -> ObservationLog {
        self.log
    }
}

/// Called with each round's observations (and the database's top statement so far), e.g. by the
/// live dashboard.
pub type Tap = Box<dyn FnMut(u64, &[Observation], Option<&postgres::StatementDelta>) + Send>;

/// The samplers of one run.
pub struct Observer {
    /// Resource sources (processes or containers).
    pub resources: Vec<Box<dyn ResourceSource>>,
    /// The database, when it can be reached.
    pub postgres: Option<PgSampler>,
    /// The services' `/metrics`.
    pub scrapers: Vec<MetricsScraper>,
    /// Where observations go.
    pub writer: ObservationWriter,
    /// Who else sees each round.
    pub tap: Option<Tap>,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer").field("resources", &self.resources.len()).finish_non_exhaustive()
    }
}

impl Observer {
    /// Samples every second from `started` until `done`, then returns itself for the end-of-run
    /// steps. The first round (at `started`) is a baseline for the rates.
    pub async fn run(mut self, started: Instant, done: CancellationToken) -> std::io::Result<Self> {
        let mut ticker = tokio::time::interval_at(started, Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let finished = tokio::select! {
                at = ticker.tick() => { self.sample_once(at.saturating_duration_since(started)).await?; false }
                () = done.cancelled() => true,
            };
            if finished {
                // One last round for the partial second, so the time series reaches the end.
                self.sample_once(started.elapsed()).await?;
                return Ok(self);
            }
        }
    }

    async fn sample_once(&mut self, since_start: Duration) -> std::io::Result<()> {
        let t_s = since_start.as_secs_f64().round() as u64;
        let mut rows = Vec::new();
        for source in &mut self.resources {
            for sample in source.sample().await {
                rows.extend(sample.observations(t_s));
            }
        }
        if let Some(pg) = &mut self.postgres {
            rows.extend(pg.sample(t_s).await);
        }
        let scrapes = self.scrapers.iter_mut().map(|s| s.scrape(t_s));
        for scraped in futures::future::join_all(scrapes).await {
            rows.extend(scraped);
        }
        let services = replicas::service_totals(&rows);
        rows.extend(services);
        if let Some(tap) = &mut self.tap {
            tap(t_s, &rows, self.postgres.as_ref().and_then(PgSampler::top_statement));
        }
        self.writer.write(rows)
    }
}
