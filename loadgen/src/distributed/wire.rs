//! What coordinator and workers say to each other, as JSON over HTTP: the join and its
//! assignment, the clock readings, readiness and the common start, each second's measurements
//! (HDR histograms in HdrHistogram's compressed V2 encoding, base64, so they merge losslessly),
//! and the end.

use std::collections::BTreeMap;

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

use crate::definition::executor::Executor;
use crate::definition::plan::Segment;
use crate::definition::scenario::Scenario;
use crate::engine::recorder::{Arrivals, IntervalSnapshot, Measured, Series, SeriesKey};
use crate::target::operations::Operation;

/// The coordinator's routes.
pub mod route {
    /// `POST` [`Join`](super::Join) → [`Assignment`](super::Assignment), held until the run starts
    /// handing out shares.
    pub const JOIN: &str = "/join";
    /// `GET` → [`Clock`](super::Clock).
    pub const CLOCK: &str = "/clock";
    /// `POST` [`Ready`](super::Ready) → [`Start`](super::Start), held until every worker is ready.
    pub const READY: &str = "/ready";
    /// `POST` [`SecondReport`](super::SecondReport) → [`Reply`](super::Reply).
    pub const SECOND: &str = "/second";
    /// `POST` [`Done`](super::Done) → [`Reply`](super::Reply).
    pub const DONE: &str = "/done";
    /// `PUT` a tar of the worker's results folder, at `/folder/<worker>`.
    pub const FOLDER: &str = "/folder";
}

/// A worker offering itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Join {
    /// Its host name.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// The segment it asks for (a Kubernetes Indexed Job's completion index), or any free one.
    #[serde(default)]
    pub index: Option<u32>,
}

/// A worker's share of the run: everything it needs to run it, so a worker needs no files.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Assignment {
    /// Its share.
    pub segment: Segment,
    /// The scenario, overrides applied.
    pub scenario: Scenario,
    /// Each stream's executor, its pools split.
    pub executors: BTreeMap<String, Executor>,
    /// The REST API, one URL per replica (each worker spreads its connections over them).
    pub api_urls: Vec<String>,
    /// The event handler, one URL per replica.
    pub grpc_urls: Vec<String>,
    /// The REST path prefix.
    pub base_path: String,
    /// The namespace.
    pub namespace: String,
    /// gRPC connections.
    pub grpc_connections: usize,
    /// How calls spread over the replicas.
    #[serde(default)]
    pub balance: crate::definition::options::Balance,
    /// Request timeout, ms.
    pub request_timeout_ms: u64,
    /// Its block of the users, which no other worker acts for.
    pub users: Vec<String>,
    /// Their tokens (same order), or none for the mock-user header.
    pub tokens: Option<Vec<String>>,
}

/// The coordinator's clock.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Clock {
    /// Microseconds since the Unix epoch.
    pub unix_us: i64,
}

/// A worker ready to start its users.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Ready {
    /// Its index.
    pub worker: u32,
    /// The coordinator's clock minus the worker's, µs (at the smallest round trip).
    pub clock_offset_us: i64,
    /// That round trip, µs.
    pub round_trip_us: i64,
}

/// When the load starts, on the coordinator's clock.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Start {
    /// Microseconds since the Unix epoch.
    pub unix_us: i64,
}

/// One second a worker measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecondReport {
    /// Its index.
    pub worker: u32,
    /// The second, from 1.
    pub second: u64,
    /// Each operation's interval.
    pub snapshots: Vec<WireSnapshot>,
}

/// The coordinator's answer to a report.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Reply {
    /// Stop the run.
    pub stop: bool,
}

/// A worker's end.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Done {
    /// Its index.
    pub worker: u32,
    /// How long its load ran, s.
    pub elapsed_s: f64,
    /// Why it ended early, if it did.
    pub stopped: Option<String>,
    /// Why it could not run, if it could not.
    pub error: Option<String>,
    /// Its own results folder, on its machine.
    pub folder: Option<String>,
}

/// One operation's interval on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireSnapshot {
    /// The operation's name.
    pub operation: String,
    /// Calls in flight at the end.
    pub in_flight: i64,
    /// Requests by tags.
    pub series: Vec<WireSeries>,
    /// Arrivals by stream.
    pub arrivals: Vec<WireArrivals>,
    /// Failures by kind.
    pub errors_by_kind: BTreeMap<String, u64>,
}

/// One [`Series`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireSeries {
    /// Stream index.
    pub stream: u16,
    /// Status.
    pub status: i32,
    /// Expected response.
    pub expected: bool,
    /// Latency histogram, encoded.
    pub latency: String,
    /// Service-time histogram, encoded.
    pub service: String,
    /// Requests.
    pub requests: u64,
    /// Checks failed.
    pub checks_failed: u64,
}

/// One stream's [`Arrivals`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireArrivals {
    /// Stream index.
    pub stream: u16,
    /// Came due.
    pub scheduled: u64,
    /// Dropped.
    pub dropped: u64,
    /// Dropped with the pool full.
    pub dropped_pool_full: u64,
    /// Lateness of the dropped, encoded.
    pub unserved: String,
}

/// Microseconds since the Unix epoch (the clock both sides speak in).
pub fn unix_us(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// A histogram as compressed V2, base64.
pub fn encode(histogram: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new().serialize(histogram, &mut bytes).expect("writing to memory");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A histogram from [`encode`]'s text.
pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text).map_err(|e| format!("histogram: {e}"))?;
    Deserializer::new().deserialize(&mut bytes.as_slice()).map_err(|e| format!("histogram: {e:?}"))
}

impl WireSnapshot {
    /// The snapshot, encoded.
    pub fn of(snapshot: &IntervalSnapshot) -> Self {
        let measured = &snapshot.measured;
        Self {
            operation: snapshot.operation.name().to_owned(),
            in_flight: snapshot.in_flight,
            series: measured
                .series
                .iter()
                .map(|(key, s)| WireSeries {
                    stream: key.stream,
                    status: key.status,
                    expected: key.expected,
                    latency: encode(&s.latency),
                    service: encode(&s.service),
                    requests: s.requests,
                    checks_failed: s.checks_failed,
                })
                .collect(),
            arrivals: measured
                .arrivals
                .iter()
                .map(|(stream, a)| WireArrivals {
                    stream: *stream,
                    scheduled: a.scheduled,
                    dropped: a.dropped,
                    dropped_pool_full: a.dropped_pool_full,
                    unserved: encode(&a.unserved),
                })
                .collect(),
            errors_by_kind: measured.errors_by_kind.clone(),
        }
    }

    /// The snapshot, decoded; an error names what is wrong with it.
    pub fn snapshot(&self) -> Result<IntervalSnapshot, String> {
        let operation =
            Operation::named(&self.operation).ok_or_else(|| format!("unknown operation '{}'", self.operation))?;
        let mut measured = Measured::default();
        for s in &self.series {
            let key = SeriesKey { stream: s.stream, status: s.status, expected: s.expected };
            let series = Series {
                latency: decode(&s.latency)?,
                service: decode(&s.service)?,
                requests: s.requests,
                checks_failed: s.checks_failed,
            };
            measured.series.insert(key, series);
        }
        for a in &self.arrivals {
            let arrivals = Arrivals {
                scheduled: a.scheduled,
                dropped: a.dropped,
                dropped_pool_full: a.dropped_pool_full,
                unserved: decode(&a.unserved)?,
            };
            measured.arrivals.insert(a.stream, arrivals);
        }
        measured.errors_by_kind = self.errors_by_kind.clone();
        Ok(IntervalSnapshot { operation, measured, in_flight: self.in_flight })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::definition::builtin;
    use crate::engine::recorder::{Outcome, Recorder};

    #[test]
    fn a_second_survives_the_wire_count_for_count() {
        let recorder = Recorder::new();
        let t = Instant::now();
        for i in 0..1000u64 {
            let done = t + Duration::from_micros(500 + i * 37);
            let outcome = if i % 10 == 0 { Outcome::failed(503, "HTTP 503") } else { Outcome::ok(200) };
            recorder.record(Operation::GetChallenges, 0, t, t + Duration::from_micros(i), done, outcome);
        }
        recorder.record_scheduled(Operation::GetChallenges, 0, 1003);
        for _ in 0..3 {
            recorder.record_dropped(Operation::GetChallenges, 0, Duration::from_millis(70), true);
        }
        let _guard = recorder.start(Operation::GetChallenges);
        let sent = recorder.take_intervals().swap_remove(Operation::GetChallenges.index());
        let json = serde_json::to_string(&WireSnapshot::of(&sent)).unwrap();
        let back = serde_json::from_str::<WireSnapshot>(&json).unwrap().snapshot().unwrap();
        assert_eq!(back.operation, sent.operation);
        assert_eq!(back.in_flight, 1);
        assert_eq!((back.requests(), back.errors(), back.scheduled(), back.dropped()), (1000, 100, 1003, 3));
        assert_eq!(back.errors_by_kind, sent.errors_by_kind);
        for (a, b) in
            [(back.latency(), sent.latency()), (back.service(), sent.service()), (back.unserved(), sent.unserved())]
        {
            let counts = |h: &Histogram<u64>| {
                h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect::<Vec<_>>()
            };
            assert_eq!(counts(&a), counts(&b), "every value's count is the same");
        }
    }

    #[test]
    fn every_built_in_scenario_survives_the_wire() {
        for (name, _) in builtin::BUILTIN {
            let scenario = builtin::named(name).unwrap();
            let json = serde_json::to_string(&scenario).unwrap();
            let back: Scenario = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{name}: {e}\n{json}"));
            assert_eq!(back, scenario, "{name}");
        }
    }

    #[test]
    fn a_bad_histogram_is_named_not_a_panic() {
        let mut wire = WireSnapshot::of(&Recorder::new().take_intervals().swap_remove(0));
        wire.series.push(WireSeries {
            stream: 0,
            status: 200,
            expected: true,
            latency: "not base64!".into(),
            service: String::new(),
            requests: 1,
            checks_failed: 0,
        });
        assert!(wire.snapshot().unwrap_err().starts_with("histogram:"));
        wire.operation = "teleport".into();
        assert_eq!(wire.snapshot().unwrap_err(), "unknown operation 'teleport'");
    }
}
