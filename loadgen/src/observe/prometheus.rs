//! The SUT services' `/metrics` (Prometheus text format), scraped every second and turned into
//! values a reader can use per second: gauges as they are, counters as rates
//! (`events_received_total` → `events_received_per_s`), histograms as rate, mean and
//! p50/p95/p99 of the observations made during that second (from the bucket deltas).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::Observation;

/// A metric family's type, from its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    Other,
}

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name (for histograms, with its `_bucket`/`_sum`/`_count` suffix).
    pub name: String,
    /// Labels in the order written.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// Parses the Prometheus text format; lines it does not understand are skipped.
pub fn parse(text: &str) -> (HashMap<String, String>, Vec<Sample>) {
    let mut types = HashMap::new();
    let mut samples = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                types.insert(name.to_owned(), kind.trim().to_owned());
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(sample) = parse_sample(line) {
            samples.push(sample);
        }
    }
    (types, samples)
}

fn parse_sample(line: &str) -> Option<Sample> {
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            (&line[..open], parse_labels(&line[open + 1..close])?, &line[close + 1..])
        }
        None => {
            let (name, rest) = line.split_once(char::is_whitespace)?;
            (name, Vec::new(), rest)
        }
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample { name: name.to_owned(), labels, value })
}

fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.push((key.trim().to_owned(), value));
        rest = after[end + 1..].trim_start().trim_start_matches(',').trim_start();
    }
    Some(labels)
}

fn label_text(labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", parts.join(","))
}

/// Scrapes one service's `/metrics`.
#[derive(Debug)]
pub struct MetricsScraper {
    component: String,
    url: String,
    client: reqwest::Client,
    previous: Option<(Instant, HashMap<String, f64>)>,
}

impl MetricsScraper {
    /// A scraper of `url` whose observations are `component`'s.
    pub fn new(component: impl Into<String>, url: impl Into<String>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(900))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { component: component.into(), url: url.into(), client, previous: None }
    }

    /// Scrapes once: `scrape_up` 1 or 0, and the values.
    pub async fn scrape(&mut self, t_s: u64) -> Vec<Observation> {
        let text = match self.client.get(&self.url).send().await {
            Ok(response) if response.status().is_success() => response.text().await.ok(),
            _ => None,
        };
        let Some(text) = text else {
            return vec![Observation::new(t_s, &self.component, "scrape_up", 0.0)];
        };
        let now = Instant::now();
        let (types, samples) = parse(&text);
        let mut rows = vec![Observation::new(t_s, &self.component, "scrape_up", 1.0)];
        rows.extend(self.derive(t_s, now, &types, &samples));
        rows
    }

    /// Per-second values from a scrape and the one before it.
    fn derive(
        &mut self,
        t_s: u64,
        now: Instant,
        types: &HashMap<String, String>,
        samples: &[Sample],
    ) -> Vec<Observation> {
        let current: HashMap<String, f64> =
            samples.iter().map(|s| (format!("{}{}", s.name, label_text(&s.labels)), s.value)).collect();
        let mut rows = Vec::new();
        let previous = self.previous.as_ref().map(|(at, values)| (now.duration_since(*at).as_secs_f64(), values));
        let rate = |key: &str, value: f64| -> Option<f64> {
            let (seconds, values) = previous?;
            let before = *values.get(key)?;
            // A counter that went down was reset: everything it holds is new.
            let delta = if value >= before { value - before } else { value };
            (seconds > 0.0).then_some(delta / seconds)
        };
        let mut histograms: BTreeMap<(String, String), Histo> = BTreeMap::new();
        for sample in samples {
            let key = format!("{}{}", sample.name, label_text(&sample.labels));
            match family_kind(types, &sample.name) {
                (Kind::Gauge | Kind::Other, _) => {
                    rows.push(Observation::new(t_s, &self.component, key, sample.value));
                }
                (Kind::Counter, _) => {
                    if let Some(per_s) = rate(&key, sample.value) {
                        let base = sample.name.strip_suffix("_total").unwrap_or(&sample.name);
                        rows.push(Observation::new(
                            t_s,
                            &self.component,
                            format!("{base}_per_s{}", label_text(&sample.labels)),
                            per_s,
                        ));
                    }
                }
                (Kind::Histogram, family) => {
                    let before = previous.and_then(|(_, values)| values.get(&key).copied());
                    let Some(before) = before else { continue };
                    let delta = (sample.value - before).max(0.0);
                    let other: Vec<(String, String)> =
                        sample.labels.iter().filter(|(k, _)| k != "le").cloned().collect();
                    let entry = histograms.entry((family.to_owned(), label_text(&other))).or_default();
                    if sample.name.ends_with("_bucket") {
                        let le = sample.labels.iter().find(|(k, _)| k == "le").map(|(_, v)| v.as_str());
                        let bound = match le {
                            Some("+Inf") => f64::INFINITY,
                            Some(v) => v.parse().unwrap_or(f64::INFINITY),
                            None => continue,
                        };
                        entry.buckets.push((bound, delta));
                    } else if sample.name.ends_with("_sum") {
                        entry.sum = delta;
                    } else if sample.name.ends_with("_count") {
                        entry.count = delta;
                    }
                }
            }
        }
        let seconds = previous.map_or(0.0, |(s, _)| s);
        for ((family, labels), histo) in histograms {
            if seconds > 0.0 {
                rows.push(Observation::new(
                    t_s,
                    &self.component,
                    format!("{family}_per_s{labels}"),
                    histo.count / seconds,
                ));
            }
            if histo.count > 0.0 {
                rows.push(Observation::new(
                    t_s,
                    &self.component,
                    format!("{family}_mean{labels}"),
                    histo.sum / histo.count,
                ));
                for (q, name) in [(0.5, "p50"), (0.95, "p95"), (0.99, "p99")] {
                    if let Some(v) = histo.quantile(q) {
                        rows.push(Observation::new(t_s, &self.component, format!("{family}_{name}{labels}"), v));
                    }
                }
            }
        }
        self.previous = Some((now, current));
        rows
    }
}

/// The kind of the family a sample belongs to, and the family's name.
fn family_kind<'a>(types: &HashMap<String, String>, name: &'a str) -> (Kind, &'a str) {
    let kind_of = |family: &str| match types.get(family).map(String::as_str) {
        Some("counter") => Kind::Counter,
        Some("gauge") => Kind::Gauge,
        Some("histogram") => Kind::Histogram,
        _ => Kind::Other,
    };
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(family) = name.strip_suffix(suffix)
            && kind_of(family) == Kind::Histogram
        {
            return (Kind::Histogram, family);
        }
    }
    (kind_of(name), name)
}

/// One second's worth of a histogram: cumulative bucket deltas, sum and count deltas.
#[derive(Debug, Default)]
struct Histo {
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

impl Histo {
    /// The `q` quantile, interpolated linearly within its bucket (as Prometheus does).
    fn quantile(&self, q: f64) -> Option<f64> {
        let mut buckets = self.buckets.clone();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let (mut lower, mut below) = (0.0, 0.0);
        for (bound, cumulative) in buckets {
            if cumulative >= rank {
                if bound.is_infinite() {
                    return Some(lower);
                }
                let inside = cumulative - below;
                let fraction = if inside > 0.0 { (rank - below) / inside } else { 1.0 };
                return Some(lower + (bound - lower) * fraction);
            }
            (lower, below) = (bound, cumulative);
        }
        Some(lower)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: &str = "# HELP events_received_total Events received\n\
        # TYPE events_received_total counter\n\
        events_received_total{event_type=\"stat\"} 100\n\
        # TYPE event_buffer_size gauge\n\
        event_buffer_size 42\n\
        # TYPE flush_seconds histogram\n\
        flush_seconds_bucket{le=\"0.01\"} 0\n\
        flush_seconds_bucket{le=\"0.1\"} 0\n\
        flush_seconds_bucket{le=\"+Inf\"} 0\n\
        flush_seconds_sum 0\n\
        flush_seconds_count 0\n";

    #[test]
    fn counters_become_rates_and_histograms_interval_percentiles() {
        let mut scraper = MetricsScraper::new("event-handler", "http://127.0.0.1:1/metrics");
        let start = Instant::now();
        let (types, samples) = parse(FIRST);
        let first = scraper.derive(1, start, &types, &samples);
        assert_eq!(first, vec![Observation::new(1, "event-handler", "event_buffer_size", 42.0)]);

        let second = FIRST
            .replace("} 100", "} 350")
            .replace("le=\"0.01\"} 0", "le=\"0.01\"} 50")
            .replace("le=\"0.1\"} 0", "le=\"0.1\"} 100")
            .replace("le=\"+Inf\"} 0", "le=\"+Inf\"} 100")
            .replace("sum 0", "sum 2.5")
            .replace("count 0", "count 100");
        let (types, samples) = parse(&second);
        let rows = scraper.derive(2, start + Duration::from_millis(500), &types, &samples);
        let value = |metric: &str| rows.iter().find(|o| o.metric == metric).map(|o| o.value);
        assert_eq!(value("events_received_per_s{event_type=stat}"), Some(500.0));
        assert_eq!(value("flush_seconds_per_s"), Some(200.0));
        assert_eq!(value("flush_seconds_mean"), Some(0.025));
        // 95 of 100 observations: the 45th of the 50 in (0.01, 0.1].
        let p95 = value("flush_seconds_p95").unwrap();
        assert!((p95 - (0.01 + 0.09 * 0.9)).abs() < 1e-9, "p95 {p95}");
        assert_eq!(value("flush_seconds_p50"), Some(0.01));
    }

    #[test]
    fn labels_with_escapes_and_commas_parse() {
        let (_, samples) = parse("m{a=\"x,y\",b=\"q\\\"z\"} 3 1700000000\n");
        assert_eq!(samples[0].labels, vec![("a".into(), "x,y".into()), ("b".into(), "q\"z".into())]);
        assert_eq!(samples[0].value, 3.0);
    }
}
