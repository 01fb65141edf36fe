//! Thresholds in k6's syntax and with k6's meanings: a metric, optionally filtered by tags
//! (`http_req_duration{expected_response:true,operation:GET /v1/challenges}`), and expressions
//! like `p(95)<200`, `avg<50`, `rate<0.01`, `count==0`, written as text or as k6's object
//! `{threshold, abortOnFail, delayAbortEval}`. Beyond k6, a windowed expression
//! (`p(95)<500 over 10s`) fails when any window of that length breaks it, and the `leak` metric
//! judges how fast a service's resources grow over the run's steady part
//! (`leak{series:heap}: ['slope<1MB/h']`). Latencies are in milliseconds.
//! How they are judged is [`crate::verdict`]'s.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::target::operations::Operation;

/// A metric and its tag filters, as written in a threshold's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Metric {
    /// The base metric.
    pub base: MetricBase,
    /// Tag filters, all of which must match.
    pub tags: Vec<TagFilter>,
}

/// One tag filter, e.g. `status:503`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum TagFilter {
    /// `operation:GET /v1/challenges` — Gauntlet's operation names.
    Operation(Operation),
    /// `name:/v1/challenges` — k6's request name: the URL path, or the gRPC method.
    Name(String),
    /// `status:200` — HTTP status, or gRPC code number (0 = OK).
    Status(i32),
    /// `scenario:api` — the stream.
    Scenario(String),
    /// `expected_response:true` — whether the response was the expected one.
    ExpectedResponse(bool),
    /// `component:event-handler` — a SUT service, or `postgres` (`leak` only).
    Component(String),
    /// `series:heap` — which resource's growth (`leak` only).
    Series(Growth),
}

/// The resources whose growth `leak` judges, each from one per-second observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Growth {
    /// Resident memory (bytes).
    Memory,
    /// Heap in use, as the allocator counts it (bytes).
    Heap,
    /// The async runtime's alive tasks.
    Tasks,
    /// Open file descriptors.
    OpenFiles,
    /// Database connections: a service's pool connections in use, PostgreSQL's in total.
    Connections,
    /// Entries in the event handler's buffer.
    EventBuffer,
}

impl Growth {
    /// Every series, in the order reports list them.
    pub const ALL: [Growth; 6] =
        [Growth::Memory, Growth::Heap, Growth::Tasks, Growth::OpenFiles, Growth::Connections, Growth::EventBuffer];

    /// Its name in a `series:` filter.
    pub fn name(self) -> &'static str {
        match self {
            Growth::Memory => "memory",
            Growth::Heap => "heap",
            Growth::Tasks => "tasks",
            Growth::OpenFiles => "open_files",
            Growth::Connections => "connections",
            Growth::EventBuffer => "event_buffer",
        }
    }

    /// Whether it counts bytes (else things).
    pub fn in_bytes(self) -> bool {
        matches!(self, Growth::Memory | Growth::Heap)
    }
}

/// What kind of values a metric holds, which decides the aggregations it takes (as in k6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// Durations: `p(N)`, `avg`, `min`, `max`, `med`, `count`.
    Trend,
    /// Shares of true values: `rate` (and `count` of the true ones).
    Rate,
    /// Counts: `count`, and `rate` per second of load.
    Counter,
    /// One observed value: `value`, `max`.
    Gauge,
    /// A resource's growth over the run's steady part: `slope`, per hour.
    Growth,
}

/// Base metric names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricBase {
    /// REST requests' own duration, from the send to the response (k6's meaning), ms.
    HttpReqDuration,
    /// gRPC calls' own duration (k6's meaning), ms.
    GrpcReqDuration,
    /// Gauntlet's own: latency of any operation from its *intended* start (coordinated omission
    /// corrected), ms.
    Latency,
    /// Any request's own duration, ms (`http_req_duration` and `grpc_req_duration` together).
    ServiceTime,
    /// Failed REST requests (`rate` = share of requests).
    HttpReqFailed,
    /// Failed gRPC calls (`rate` = share of calls).
    GrpcReqFailed,
    /// REST requests (`count`; `rate` per second).
    HttpReqs,
    /// gRPC calls (`count`; `rate` per second).
    GrpcReqs,
    /// Iterations completed (`count`; `rate` per second).
    Iterations,
    /// Arrivals dropped for lack of a free virtual user (`count`; `rate` per second, as in k6).
    DroppedIterations,
    /// Gauntlet's own: dropped arrivals as a share of the arrivals that came due (`rate`).
    DroppedRatio,
    /// Checks passed (`rate` = share): the expected status and a body of the expected shape.
    Checks,
    /// Time from an event's send to its effect in the API (ms).
    E2eLatency,
    /// Busy share of the SUT's database pools (0–1), from their metrics.
    DbPoolBusy,
    /// The load generator's own CPU use (% of one core).
    LoadgenCpu,
    /// Accepted events whose effect the audit did not find (`count`).
    EventsLost,
    /// Effects beyond what was sent (`count`).
    EventsDoubleApplied,
    /// Goals granted more than once (`count`).
    ClaimsDoubleGranted,
    /// Goals claimed during the run without a grant (`count`).
    GoalsClaimedWithoutGrant,
    /// Growth per hour of a service's resource over the run's steady part (`slope`), judged by
    /// the low end of its 95% confidence interval: a leak is called only beyond doubt. Without
    /// filters: the resident memory of every service under test (not the platform's mock).
    Leak,
}

/// Every metric name thresholds know.
pub const METRIC_NAMES: [(&str, MetricBase); 20] = [
    ("http_req_duration", MetricBase::HttpReqDuration),
    ("grpc_req_duration", MetricBase::GrpcReqDuration),
    ("latency", MetricBase::Latency),
    ("service_time", MetricBase::ServiceTime),
    ("http_req_failed", MetricBase::HttpReqFailed),
    ("grpc_req_failed", MetricBase::GrpcReqFailed),
    ("http_reqs", MetricBase::HttpReqs),
    ("grpc_reqs", MetricBase::GrpcReqs),
    ("iterations", MetricBase::Iterations),
    ("dropped_iterations", MetricBase::DroppedIterations),
    ("dropped_ratio", MetricBase::DroppedRatio),
    ("checks", MetricBase::Checks),
    ("e2e_latency", MetricBase::E2eLatency),
    ("db_pool_busy", MetricBase::DbPoolBusy),
    ("loadgen_cpu", MetricBase::LoadgenCpu),
    ("events_lost", MetricBase::EventsLost),
    ("events_double_applied", MetricBase::EventsDoubleApplied),
    ("claims_double_granted", MetricBase::ClaimsDoubleGranted),
    ("goals_claimed_without_grant", MetricBase::GoalsClaimedWithoutGrant),
    ("leak", MetricBase::Leak),
];

impl MetricBase {
    /// Its type.
    pub fn kind(self) -> MetricType {
        match self {
            MetricBase::HttpReqDuration
            | MetricBase::GrpcReqDuration
            | MetricBase::Latency
            | MetricBase::ServiceTime
            | MetricBase::E2eLatency => MetricType::Trend,
            MetricBase::HttpReqFailed | MetricBase::GrpcReqFailed | MetricBase::DroppedRatio | MetricBase::Checks => {
                MetricType::Rate
            }
            MetricBase::HttpReqs
            | MetricBase::GrpcReqs
            | MetricBase::Iterations
            | MetricBase::DroppedIterations
            | MetricBase::EventsLost
            | MetricBase::EventsDoubleApplied
            | MetricBase::ClaimsDoubleGranted
            | MetricBase::GoalsClaimedWithoutGrant => MetricType::Counter,
            MetricBase::DbPoolBusy | MetricBase::LoadgenCpu => MetricType::Gauge,
            MetricBase::Leak => MetricType::Growth,
        }
    }

    fn takes(self, tag: &TagFilter) -> bool {
        if matches!(tag, TagFilter::Component(_) | TagFilter::Series(_)) {
            return self == MetricBase::Leak;
        }
        match self {
            MetricBase::Leak => false,
            MetricBase::DbPoolBusy
            | MetricBase::LoadgenCpu
            | MetricBase::EventsLost
            | MetricBase::EventsDoubleApplied
            | MetricBase::ClaimsDoubleGranted
            | MetricBase::GoalsClaimedWithoutGrant => false,
            MetricBase::DroppedIterations | MetricBase::DroppedRatio | MetricBase::Iterations => {
                matches!(tag, TagFilter::Operation(_) | TagFilter::Scenario(_))
            }
            _ => true,
        }
    }
}

impl Metric {
    /// Parses `name` or `name{tag:value,tag:value}`; an unknown metric, tag, operation or value
    /// is an error naming it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, filters) = match text.split_once('{') {
            Some((name, rest)) => {
                let filter = rest.strip_suffix('}').ok_or_else(|| format!("'{text}': missing closing '}}'"))?;
                (name.trim(), Some(filter))
            }
            None => (text.trim(), None),
        };
        let base = METRIC_NAMES.iter().find(|(n, _)| *n == name).map(|(_, b)| *b).ok_or_else(|| {
            let known: Vec<&str> = METRIC_NAMES.iter().map(|(n, _)| *n).collect();
            format!("unknown metric '{name}' (known: {})", known.join(", "))
        })?;
        let mut tags = Vec::new();
        for filter in filters.into_iter().flat_map(|f| f.split(',')) {
            let (key, value) = filter
                .split_once(':')
                .ok_or_else(|| format!("'{text}': a tag filter is tag:value, got '{}'", filter.trim()))?;
            let value = value.trim().trim_matches(['\'', '"']);
            let tag = TagFilter::parse(key.trim(), value)?;
            if !base.takes(&tag) {
                return Err(format!("'{text}': {name} has no '{}' tag", key.trim()));
            }
            tags.push(tag);
        }
        Ok(Self { base, tags })
    }

    /// The stream a `scenario:` filter names, if any.
    pub fn scenario(&self) -> Option<&str> {
        self.tags.iter().find_map(|t| match t {
            TagFilter::Scenario(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// The resource a `series:` filter names, if any (`leak`).
    pub fn series(&self) -> Option<Growth> {
        self.tags.iter().find_map(|t| match t {
            TagFilter::Series(s) => Some(*s),
            _ => None,
        })
    }

    /// The services the `component:` filters name (`leak`).
    pub fn components(&self) -> Vec<&str> {
        self.tags
            .iter()
            .filter_map(|t| match t {
                TagFilter::Component(c) => Some(c.as_str()),
                _ => None,
            })
            .collect()
    }
}

impl TagFilter {
    fn parse(key: &str, value: &str) -> Result<Self, String> {
        Ok(match key {
            "operation" => TagFilter::Operation(Operation::named(value).ok_or_else(|| {
                let known: Vec<&str> = Operation::ALL.iter().map(|o| o.name()).collect();
                format!("unknown operation '{value}' (known: {})", known.join(", "))
            })?),
            "name" => {
                if !Operation::ALL.iter().any(|o| o.name_tag() == value) {
                    let mut known: Vec<&str> = Operation::ALL.iter().map(|o| o.name_tag()).collect();
                    known.dedup();
                    return Err(format!("unknown name '{value}' (known: {})", known.join(", ")));
                }
                TagFilter::Name(value.to_owned())
            }
            "status" => TagFilter::Status(
                value.parse().map_err(|_| format!("status '{value}' is not a number (HTTP status or gRPC code)"))?,
            ),
            "scenario" => TagFilter::Scenario(value.to_owned()),
            "expected_response" => TagFilter::ExpectedResponse(match value {
                "true" => true,
                "false" => false,
                _ => return Err(format!("expected_response '{value}' is not true or false")),
            }),
            "component" => TagFilter::Component(value.to_owned()),
            "series" => TagFilter::Series(Growth::ALL.into_iter().find(|g| g.name() == value).ok_or_else(|| {
                let known: Vec<&str> = Growth::ALL.iter().map(|g| g.name()).collect();
                format!("unknown series '{value}' (known: {})", known.join(", "))
            })?),
            other => {
                return Err(format!(
                    "unknown tag '{other}' (known: operation, name, status, scenario, expected_response, \
                     component, series)"
                ));
            }
        })
    }
}

/// How a metric is summarised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Aggregation {
    /// A percentile, 0–100.
    Percentile(f64),
    /// Mean.
    Avg,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
    /// Median.
    Med,
    /// A share (rate metrics), or per second (counters).
    Rate,
    /// A count.
    Count,
    /// The value (gauges).
    Value,
    /// Growth per hour (`leak`), the limit written with its unit: `slope<1MB/h`, `slope<10/h`.
    Slope,
}

impl Aggregation {
    fn fits(self, kind: MetricType) -> bool {
        match kind {
            MetricType::Trend => !matches!(self, Aggregation::Rate | Aggregation::Value | Aggregation::Slope),
            MetricType::Rate | MetricType::Counter => matches!(self, Aggregation::Rate | Aggregation::Count),
            MetricType::Gauge => matches!(self, Aggregation::Value | Aggregation::Max),
            MetricType::Growth => self == Aggregation::Slope,
        }
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Comparison {
    fn holds(self, observed: f64, limit: f64) -> bool {
        match self {
            Comparison::Lt => observed < limit,
            Comparison::Le => observed <= limit,
            Comparison::Gt => observed > limit,
            Comparison::Ge => observed >= limit,
            Comparison::Eq => observed == limit,
            Comparison::Ne => observed != limit,
        }
    }
}

/// One threshold expression, e.g. `p(95)<200`, with k6's abort options.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdExpr {
    /// The expression as written (`p(95)<200`, `p(95)<500 over 10s`).
    pub text: String,
    /// The aggregation.
    pub aggregation: Aggregation,
    /// The comparison.
    pub comparison: Comparison,
    /// The limit.
    pub limit: f64,
    /// Judged over every window of this length instead of the whole run (Gauntlet's addition).
    pub window: Option<Duration>,
    /// Stop the run as soon as it fails (k6's `abortOnFail`).
    pub abort_on_fail: bool,
    /// Don't abort before this much of the load has run (k6's `delayAbortEval`).
    pub delay_abort_eval: Duration,
}

impl ThresholdExpr {
    /// Parses `p(95)<200`, `avg<=50`, `rate<0.01`, `count==0`, `max<2000`, `med<10`, `min>0`,
    /// `value<0.9`, optionally followed by `over 10s`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (expression, window) = match text.split_once(" over ") {
            Some((expression, window)) => {
                let length = sut::duration::parse(window.trim())
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| format!("'{text}': '{}' is not a window length like 10s", window.trim()))?;
                (expression, Some(length))
            }
            None => (text, None),
        };
        let compact: String = expression.chars().filter(|c| !c.is_whitespace()).collect();
        let split = compact.find(['<', '>', '=', '!']).ok_or_else(|| format!("'{text}': expected e.g. p(95)<200"))?;
        let (left, right) = compact.split_at(split);
        let (comparison, limit) = [
            ("<=", Comparison::Le),
            (">=", Comparison::Ge),
            ("==", Comparison::Eq),
            ("!=", Comparison::Ne),
            ("<", Comparison::Lt),
            (">", Comparison::Gt),
        ]
        .iter()
        .find_map(|(symbol, c)| right.strip_prefix(symbol).map(|rest| (*c, rest)))
        .ok_or_else(|| format!("'{text}': unknown comparison"))?;
        let slope = left == "slope";
        let limit: f64 = if slope {
            per_hour(limit).ok_or_else(|| format!("'{text}': '{limit}' is not a growth per hour like 1MB/h or 10/h"))?
        } else {
            limit.parse().map_err(|_| format!("'{text}': '{limit}' is not a number"))?
        };
        let aggregation = match left {
            "slope" => Aggregation::Slope,
            "avg" => Aggregation::Avg,
            "min" => Aggregation::Min,
            "max" => Aggregation::Max,
            "med" => Aggregation::Med,
            "rate" => Aggregation::Rate,
            "count" => Aggregation::Count,
            "value" => Aggregation::Value,
            _ => {
                let p = left
                    .strip_prefix("p(")
                    .and_then(|r| r.strip_suffix(')'))
                    .and_then(|n| n.parse::<f64>().ok())
                    .filter(|p| (0.0..=100.0).contains(p))
                    .ok_or_else(|| {
                        format!("'{text}': '{left}' is not avg, min, max, med, rate, count, value, slope or p(0..100)")
                    })?;
                Aggregation::Percentile(p)
            }
        };
        Ok(Self {
            text: text.to_owned(),
            aggregation,
            comparison,
            limit,
            window,
            abort_on_fail: false,
            delay_abort_eval: Duration::ZERO,
        })
    }

    /// Whether `observed` passes.
    pub fn passes(&self, observed: f64) -> bool {
        self.comparison.holds(observed, self.limit)
    }

    /// Checks that the aggregation fits the metric (`rate` of a duration is an error, as in k6).
    pub fn check_against(&self, metric: &Metric, name: &str) -> Result<(), String> {
        let kind = metric.base.kind();
        if self.aggregation.fits(kind) {
            return Ok(());
        }
        let takes = match kind {
            MetricType::Trend => "p(N), avg, min, max, med, count",
            MetricType::Rate => "rate (a share), count",
            MetricType::Counter => "count, rate (per second)",
            MetricType::Gauge => "value, max",
            MetricType::Growth => "slope (per hour, e.g. slope<1MB/h)",
        };
        Err(format!("'{}' does not apply to {name} (it takes {takes})", self.text))
    }
}

/// A growth limit per hour: `1MB/h` (bytes: B, KB, MB, GB in powers of 1000; KiB, MiB, GiB in
/// powers of 1024) or `10/h` (things).
fn per_hour(text: &str) -> Option<f64> {
    let amount = text.strip_suffix("/h")?;
    let units = [("GiB", 1024.0 * 1024.0 * 1024.0), ("MiB", 1024.0 * 1024.0), ("KiB", 1024.0), ("GB", 1e9)];
    let units = units.into_iter().chain([("MB", 1e6), ("KB", 1e3), ("kB", 1e3), ("B", 1.0)]);
    let (number, scale) = units
        .into_iter()
        .find_map(|(unit, scale)| amount.strip_suffix(unit).map(|n| (n, scale)))
        .unwrap_or((amount, 1.0));
    number.parse::<f64>().ok().filter(|n| n.is_finite()).map(|n| n * scale)
}

impl fmt::Display for ThresholdExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// k6's object form.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ObjectForm {
    threshold: String,
    #[serde(default)]
    abort_on_fail: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delay_abort_eval: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Written {
    Text(String),
    Object(ObjectForm),
}

impl<'de> Deserialize<'de> for ThresholdExpr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let written = Written::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "a threshold is text like 'p(95)<200' or {threshold: 'p(95)<200', abortOnFail: true, delayAbortEval: '10s'}",
            )
        })?;
        match written {
            Written::Text(text) => ThresholdExpr::parse(&text).map_err(serde::de::Error::custom),
            Written::Object(o) => {
                let mut expr = ThresholdExpr::parse(&o.threshold).map_err(serde::de::Error::custom)?;
                expr.abort_on_fail = o.abort_on_fail;
                if let Some(delay) = &o.delay_abort_eval {
                    expr.delay_abort_eval = sut::duration::parse(delay).ok_or_else(|| {
                        serde::de::Error::custom(format!("delayAbortEval: '{delay}' is not a duration like 10s"))
                    })?;
                }
                Ok(expr)
            }
        }
    }
}

impl Serialize for ThresholdExpr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !self.abort_on_fail && self.delay_abort_eval.is_zero() {
            return s.serialize_str(&self.text);
        }
        ObjectForm {
            threshold: self.text.clone(),
            abort_on_fail: self.abort_on_fail,
            delay_abort_eval: (!self.delay_abort_eval.is_zero())
                .then(|| format!("{}s", self.delay_abort_eval.as_secs_f64())),
        }
        .serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k6_expressions_parse() {
        let e = ThresholdExpr::parse("p(95)<200").unwrap();
        assert_eq!((e.aggregation, e.comparison, e.limit), (Aggregation::Percentile(95.0), Comparison::Lt, 200.0));
        let e = ThresholdExpr::parse("p(99.9) <= 1500").unwrap();
        assert_eq!(e.aggregation, Aggregation::Percentile(99.9));
        assert_eq!(e.comparison, Comparison::Le);
        assert_eq!(ThresholdExpr::parse("rate<0.01").unwrap().aggregation, Aggregation::Rate);
        assert_eq!(ThresholdExpr::parse("count==0").unwrap().comparison, Comparison::Eq);
        assert_eq!(ThresholdExpr::parse("p(95)<500 over 10s").unwrap().window, Some(Duration::from_secs(10)));
        assert!(ThresholdExpr::parse("p(95)<500 over soon").is_err());
        assert!(ThresholdExpr::parse("p(101)<5").is_err());
        assert!(ThresholdExpr::parse("p95<<300").is_err());
        assert!(ThresholdExpr::parse("avg<fast").is_err());
    }

    #[test]
    fn the_object_form_carries_k6s_abort_options() {
        let e: Vec<ThresholdExpr> =
            serde_yaml::from_str("['p(99)<300', {threshold: 'p(95)<200', abortOnFail: true, delayAbortEval: '10s'}]")
                .unwrap();
        assert!(!e[0].abort_on_fail);
        assert!(e[1].abort_on_fail);
        assert_eq!(e[1].delay_abort_eval, Duration::from_secs(10));
        let again: Vec<ThresholdExpr> = serde_yaml::from_str(&serde_yaml::to_string(&e).unwrap()).unwrap();
        assert_eq!(again, e, "written back as read");
        let bad = serde_yaml::from_str::<Vec<ThresholdExpr>>("[{threshold: 'p(95)<200', abortOnFial: true}]");
        assert!(bad.is_err());
    }

    #[test]
    fn metrics_parse_with_k6s_tag_filters() {
        let m = Metric::parse("http_req_duration{operation:GET /v1/challenges}").unwrap();
        assert_eq!(m.base, MetricBase::HttpReqDuration);
        assert_eq!(m.tags, vec![TagFilter::Operation(Operation::GetChallenges)]);
        let m = Metric::parse("http_req_duration{expected_response:true, status:200, scenario:api}").unwrap();
        assert_eq!(
            m.tags,
            vec![TagFilter::ExpectedResponse(true), TagFilter::Status(200), TagFilter::Scenario("api".into())]
        );
        assert!(
            Metric::parse(
                "grpc_req_duration{name:accelbyte.social.statistic.v1.StatisticStatItemUpdatedService/OnMessage}"
            )
            .is_ok()
        );
        let e = Metric::parse("http_req_duration{operation:GET /v1/challenge}").unwrap_err();
        assert!(e.contains("unknown operation 'GET /v1/challenge'"), "{e}");
        let e = Metric::parse("http_req_duration{method:GET}").unwrap_err();
        assert!(e.contains("unknown tag 'method'"), "{e}");
        let e = Metric::parse("dropped_iterations{status:200}").unwrap_err();
        assert!(e.contains("has no 'status' tag"), "{e}");
        let e = Metric::parse("http_req_durations").unwrap_err();
        assert!(e.contains("unknown metric 'http_req_durations'"), "{e}");
    }

    #[test]
    fn leak_takes_a_growth_per_hour_with_its_unit_and_its_own_tags() {
        let e = ThresholdExpr::parse("slope<1MB/h").unwrap();
        assert_eq!((e.aggregation, e.limit), (Aggregation::Slope, 1e6));
        assert_eq!(ThresholdExpr::parse("slope < 2MiB/h").unwrap().limit, 2.0 * 1024.0 * 1024.0);
        assert_eq!(ThresholdExpr::parse("slope<10/h").unwrap().limit, 10.0);
        let e = ThresholdExpr::parse("slope<1MB").unwrap_err();
        assert!(e.contains("not a growth per hour"), "{e}");
        assert!(ThresholdExpr::parse("p(95)<1MB/h").is_err(), "units only for slopes");
        let leak = Metric::parse("leak{component:event-handler,series:heap}").unwrap();
        assert_eq!(leak.tags, vec![TagFilter::Component("event-handler".into()), TagFilter::Series(Growth::Heap)]);
        let slope = ThresholdExpr::parse("slope<1MB/h").unwrap();
        assert!(slope.check_against(&leak, "leak").is_ok());
        let e = ThresholdExpr::parse("max<5").unwrap().check_against(&leak, "leak").unwrap_err();
        assert!(e.contains("slope"), "{e}");
        let duration = Metric::parse("http_req_duration").unwrap();
        assert!(slope.check_against(&duration, "http_req_duration").is_err());
        let e = Metric::parse("leak{series:threads}").unwrap_err();
        assert!(e.contains("unknown series 'threads'") && e.contains("open_files"), "{e}");
        let e = Metric::parse("http_req_duration{series:heap}").unwrap_err();
        assert!(e.contains("has no 'series' tag"), "{e}");
        let e = Metric::parse("leak{status:200}").unwrap_err();
        assert!(e.contains("has no 'status' tag"), "{e}");
    }

    #[test]
    fn an_aggregation_must_fit_its_metric() {
        let duration = Metric::parse("http_req_duration").unwrap();
        let e = ThresholdExpr::parse("rate<0.01").unwrap().check_against(&duration, "http_req_duration").unwrap_err();
        assert!(e.contains("does not apply to http_req_duration"), "{e}");
        let dropped = Metric::parse("dropped_iterations").unwrap();
        assert!(ThresholdExpr::parse("rate<5").unwrap().check_against(&dropped, "dropped_iterations").is_ok());
        assert!(ThresholdExpr::parse("p(95)<5").unwrap().check_against(&dropped, "dropped_iterations").is_err());
    }
}
