//! Thresholds in k6's syntax: a metric (`http_req_duration`, optionally filtered as
//! `http_req_duration{operation:GET /v1/challenges}`) and expressions like `p(95)<200`,
//! `avg<50`, `max<=2000`, `rate<0.01`, `count==0`. Latencies are in milliseconds.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The metrics thresholds can name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Metric {
    /// The base metric.
    pub base: MetricBase,
    /// Only this operation (e.g. `GET /v1/challenges`), if given.
    pub operation: Option<String>,
}

/// Base metric names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricBase {
    /// Latency of REST requests from their intended start (ms).
    HttpReqDuration,
    /// Latency of gRPC calls from their intended start (ms).
    GrpcReqDuration,
    /// Service time of all requests, from the actual send (ms).
    ServiceTime,
    /// Latency of any operation from its intended start (ms).
    Latency,
    /// Failed REST requests (`rate` = share of requests).
    HttpReqFailed,
    /// Failed gRPC calls (`rate` = share of calls).
    GrpcReqFailed,
    /// Arrivals dropped for lack of a free virtual user (`rate` = share of arrivals).
    DroppedIterations,
    /// Time from an event's send to its effect in the API (ms).
    E2eLatency,
    /// Busy share of the SUT's database pools (0–1), from their metrics.
    DbPoolBusy,
    /// The load generator's own CPU use (% of one core).
    LoadgenCpu,
}

impl Metric {
    /// Parses `name` or `name{operation:OP}`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, operation) = match text.split_once('{') {
            Some((name, rest)) => {
                let filter = rest.strip_suffix('}').ok_or_else(|| format!("'{text}': missing closing '}}'"))?;
                let (key, value) =
                    filter.split_once(':').ok_or_else(|| format!("'{text}': filter must be {{operation:NAME}}"))?;
                if key.trim() != "operation" {
                    return Err(format!("'{text}': only the 'operation' filter is supported"));
                }
                (name, Some(value.trim().to_owned()))
            }
            None => (text, None),
        };
        let base = match name.trim() {
            "http_req_duration" => MetricBase::HttpReqDuration,
            "grpc_req_duration" => MetricBase::GrpcReqDuration,
            "service_time" => MetricBase::ServiceTime,
            "latency" => MetricBase::Latency,
            "http_req_failed" => MetricBase::HttpReqFailed,
            "grpc_req_failed" => MetricBase::GrpcReqFailed,
            "dropped_iterations" => MetricBase::DroppedIterations,
            "e2e_latency" => MetricBase::E2eLatency,
            "db_pool_busy" => MetricBase::DbPoolBusy,
            "loadgen_cpu" => MetricBase::LoadgenCpu,
            other => {
                return Err(format!(
                    "unknown metric '{other}' (known: http_req_duration, grpc_req_duration, latency, service_time, \
                     http_req_failed, grpc_req_failed, dropped_iterations, e2e_latency, db_pool_busy, loadgen_cpu)"
                ));
            }
        };
        Ok(Self { base, operation })
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
    /// A share, 0–1.
    Rate,
    /// A count.
    Count,
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

/// One parsed expression, e.g. `p(95)<200`.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdExpr {
    /// The text as written.
    pub text: String,
    /// The aggregation.
    pub aggregation: Aggregation,
    /// The comparison.
    pub comparison: Comparison,
    /// The limit.
    pub limit: f64,
}

impl ThresholdExpr {
    /// Parses `p(95)<200`, `avg<=50`, `rate<0.01`, `count==0`, `max<2000`, `med<10`, `min>0`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
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
        let limit: f64 = limit.parse().map_err(|_| format!("'{text}': '{limit}' is not a number"))?;
        let aggregation = match left {
            "avg" => Aggregation::Avg,
            "min" => Aggregation::Min,
            "max" => Aggregation::Max,
            "med" => Aggregation::Med,
            "rate" => Aggregation::Rate,
            "count" => Aggregation::Count,
            _ => {
                let p = left
                    .strip_prefix("p(")
                    .and_then(|r| r.strip_suffix(')'))
                    .and_then(|n| n.parse::<f64>().ok())
                    .filter(|p| (0.0..=100.0).contains(p))
                    .ok_or_else(|| format!("'{text}': '{left}' is not avg, min, max, med, rate, count or p(0..100)"))?;
                Aggregation::Percentile(p)
            }
        };
        Ok(Self { text: text.to_owned(), aggregation, comparison, limit })
    }

    /// Whether `observed` passes.
    pub fn passes(&self, observed: f64) -> bool {
        self.comparison.holds(observed, self.limit)
    }
}

impl fmt::Display for ThresholdExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for ThresholdExpr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        ThresholdExpr::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for ThresholdExpr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// Where thresholds read their observed values from.
pub trait MetricSource {
    /// The observed value of `aggregation` over `metric`, if the run has it.
    fn observe(&self, metric: &Metric, aggregation: Aggregation) -> Option<f64>;
}

/// The outcome of one threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdResult {
    /// The metric as written.
    pub metric: String,
    /// The expression as written.
    pub expression: String,
    /// What was observed (None: the run has no data for it, which fails the threshold).
    pub value: Option<f64>,
    /// Whether it passed.
    pub passed: bool,
}

/// Evaluates every threshold against `source`.
pub fn evaluate<'a>(
    thresholds: impl IntoIterator<Item = (&'a String, &'a Vec<ThresholdExpr>)>,
    source: &dyn MetricSource,
) -> Vec<ThresholdResult> {
    let mut results = Vec::new();
    for (name, expressions) in thresholds {
        let metric = Metric::parse(name);
        for expr in expressions {
            let value = metric.as_ref().ok().and_then(|m| source.observe(m, expr.aggregation));
            results.push(ThresholdResult {
                metric: name.clone(),
                expression: expr.text.clone(),
                value,
                passed: value.is_some_and(|v| expr.passes(v)),
            });
        }
    }
    results
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
        assert!(ThresholdExpr::parse("p(101)<5").is_err());
        assert!(ThresholdExpr::parse("p95<<300").is_err());
        assert!(ThresholdExpr::parse("avg<fast").is_err());
    }

    #[test]
    fn metrics_parse_with_an_operation_filter() {
        let m = Metric::parse("http_req_duration{operation:GET /v1/challenges}").unwrap();
        assert_eq!(m.base, MetricBase::HttpReqDuration);
        assert_eq!(m.operation.as_deref(), Some("GET /v1/challenges"));
        assert!(Metric::parse("http_req_duration{name:x}").is_err());
        assert!(Metric::parse("http_req_durations").is_err());
    }

    struct Fixed(f64);
    impl MetricSource for Fixed {
        fn observe(&self, _: &Metric, _: Aggregation) -> Option<f64> {
            Some(self.0)
        }
    }

    #[test]
    fn evaluation_passes_and_fails_on_the_limit() {
        let thresholds = [("http_req_duration".to_owned(), vec![ThresholdExpr::parse("p(95)<200").unwrap()])];
        let pass = evaluate(thresholds.iter().map(|(k, v)| (k, v)), &Fixed(199.9));
        assert!(pass[0].passed);
        let fail = evaluate(thresholds.iter().map(|(k, v)| (k, v)), &Fixed(200.0));
        assert!(!fail[0].passed);
        assert_eq!(fail[0].value, Some(200.0));
    }
}
