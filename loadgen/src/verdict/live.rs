//! Thresholds judged during the run, every second: those with `abortOnFail` over the run so
//! far (once `delayAbortEval` has passed), and windowed ones (`p(95)<500 over 10s`) over each
//! window of the last seconds. The first aborting threshold that fails stops the run.
//!
//! Gauges (`db_pool_busy`, `loadgen_cpu`) are observed by the samplers and judged at the end only.

use std::collections::{BTreeMap, VecDeque};

use super::source::{Measurements, MetricSource};
use super::thresholds::label;
use crate::definition::threshold::{Metric, ThresholdExpr};
use crate::engine::recorder::{IntervalSnapshot, Measured};
use crate::results::summary::ThresholdResult;
use crate::target::operations::Operation;

struct Entry {
    name: String,
    metric: Metric,
    expr: ThresholdExpr,
    /// Windowed: the first failing window's value, else the worst seen.
    value: Option<f64>,
    failed: bool,
    judged: bool,
}

/// Judges thresholds as the seconds come in.
pub struct LiveJudge {
    entries: Vec<Entry>,
    /// Every threshold, for its standing over the run so far.
    all: Vec<(String, Metric, ThresholdExpr)>,
    streams: Vec<String>,
    cumulative: BTreeMap<Operation, Measured>,
    seconds: VecDeque<(f64, BTreeMap<Operation, Measured>)>,
    keep: f64,
    elapsed: f64,
}

impl std::fmt::Debug for LiveJudge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveJudge").field("thresholds", &self.entries.len()).field("elapsed", &self.elapsed).finish()
    }
}

fn merge_into<'a>(
    into: &mut BTreeMap<Operation, Measured>,
    parts: impl IntoIterator<Item = (Operation, &'a Measured)>,
) {
    for (op, measured) in parts {
        if !measured.is_empty() {
            into.entry(op).or_default().add(measured);
        }
    }
}

impl LiveJudge {
    /// A judge for the thresholds that need judging during the run; `streams` names the plan's
    /// streams by index.
    pub fn new<'a>(
        thresholds: impl IntoIterator<Item = (&'a String, &'a Vec<ThresholdExpr>)>,
        streams: Vec<String>,
    ) -> Self {
        let mut entries = Vec::new();
        let mut all = Vec::new();
        for (name, expressions) in thresholds {
            let Ok(metric) = Metric::parse(name) else { continue };
            all.extend(expressions.iter().map(|e| (name.clone(), metric.clone(), e.clone())));
            for expr in expressions.iter().filter(|e| e.abort_on_fail || e.window.is_some()) {
                entries.push(Entry {
                    name: name.clone(),
                    metric: metric.clone(),
                    expr: expr.clone(),
                    value: None,
                    failed: false,
                    judged: false,
                });
            }
        }
        let keep = entries.iter().filter_map(|e| e.expr.window).map(|w| w.as_secs_f64()).fold(0.0, f64::max);
        Self { entries, all, streams, cumulative: BTreeMap::new(), seconds: VecDeque::new(), keep, elapsed: 0.0 }
    }

    /// True when no threshold needs judging during the run.
    pub fn is_idle(&self) -> bool {
        self.entries.is_empty()
    }

    /// Takes one interval of `length` seconds; returns the first aborting threshold that failed
    /// (`metric expression`), if one did.
    pub fn second(&mut self, snapshots: &[IntervalSnapshot], length: f64) -> Option<String> {
        if self.all.is_empty() {
            return None;
        }
        self.elapsed += length;
        let second = || snapshots.iter().map(|s| (s.operation, &s.measured));
        merge_into(&mut self.cumulative, second());
        let mut this_second = BTreeMap::new();
        merge_into(&mut this_second, second());
        self.seconds.push_back((length, this_second));
        while self.seconds.len() > 1 && self.seconds.iter().skip(1).map(|(l, _)| l).sum::<f64>() >= self.keep {
            self.seconds.pop_front();
        }
        let mut abort = None;
        for index in 0..self.entries.len() {
            let entry = &self.entries[index];
            let value = match entry.expr.window {
                Some(window) => {
                    let window = window.as_secs_f64();
                    if self.elapsed + 1e-6 < window {
                        continue;
                    }
                    self.window_value(&entry.metric, &entry.expr, window)
                }
                None => {
                    if self.elapsed + 1e-6 < entry.expr.delay_abort_eval.as_secs_f64() {
                        continue;
                    }
                    let operations = self.cumulative.iter().map(|(op, m)| (*op, m)).collect();
                    self.observe(operations, self.elapsed, &entry.metric, &entry.expr)
                }
            };
            let elapsed = self.elapsed;
            let entry = &mut self.entries[index];
            if let Some(value) = value {
                entry.judged = true;
                let fails = !entry.expr.passes(value);
                if entry.expr.window.is_some() && !entry.failed && (fails || worse(&entry.expr, value, entry.value)) {
                    entry.value = Some(value);
                }
                entry.failed |= fails && entry.expr.window.is_some();
                let may_abort = elapsed + 1e-6 >= entry.expr.delay_abort_eval.as_secs_f64();
                if fails && entry.expr.abort_on_fail && may_abort && abort.is_none() {
                    abort = Some(label(&entry.name, &entry.expr.text));
                }
            }
        }
        abort
    }

    fn window_value(&self, metric: &Metric, expr: &ThresholdExpr, window: f64) -> Option<f64> {
        let mut merged: BTreeMap<Operation, Measured> = BTreeMap::new();
        let mut covered = 0.0;
        for (length, second) in self.seconds.iter().rev() {
            if covered + 1e-6 >= window {
                break;
            }
            covered += length;
            merge_into(&mut merged, second.iter().map(|(op, m)| (*op, m)));
        }
        self.observe(merged.iter().map(|(op, m)| (*op, m)).collect(), covered, metric, expr)
    }

    fn observe(
        &self,
        operations: Vec<(Operation, &Measured)>,
        seconds: f64,
        metric: &Metric,
        expr: &ThresholdExpr,
    ) -> Option<f64> {
        let source = Measurements { operations, streams: &self.streams, seconds, extras: BTreeMap::new(), trends: &[] };
        source.observe(metric, expr.aggregation)
    }

    /// Every threshold's standing over the run so far: its value over the seconds seen (a
    /// windowed one failed if any window did); `value: None` for those observed by the samplers
    /// or the audit, which are judged at the end.
    pub fn standing(&self) -> Vec<ThresholdResult> {
        self.all
            .iter()
            .map(|(name, metric, expr)| {
                let windowed = self.entries.iter().find(|e| e.name == *name && e.expr.text == expr.text);
                let operations = self.cumulative.iter().map(|(op, m)| (*op, m)).collect();
                let value = match windowed {
                    Some(e) if e.expr.window.is_some() && e.judged => e.value,
                    _ => self.observe(operations, self.elapsed, metric, expr),
                };
                let failed_window = windowed.is_some_and(|e| e.failed);
                ThresholdResult {
                    metric: name.clone(),
                    expression: expr.text.clone(),
                    value,
                    passed: !failed_window && value.is_some_and(|v| expr.passes(v)),
                    aborted: false,
                }
            })
            .collect()
    }

    /// The windowed thresholds' results: failed if any window broke it. A run shorter than a
    /// window is judged over all of it.
    pub fn window_results(&self) -> Vec<ThresholdResult> {
        self.entries
            .iter()
            .filter(|e| e.expr.window.is_some())
            .map(|e| {
                let value = if e.judged {
                    e.value
                } else {
                    let all = self.cumulative.iter().map(|(op, m)| (*op, m)).collect();
                    self.observe(all, self.elapsed, &e.metric, &e.expr)
                };
                ThresholdResult {
                    metric: e.name.clone(),
                    expression: e.expr.text.clone(),
                    value,
                    passed: !e.failed && value.is_some_and(|v| e.expr.passes(v)),
                    aborted: false,
                }
            })
            .collect()
    }
}

/// True when `value` is further from passing than `than` (a higher value for `<`, lower for `>`).
fn worse(expr: &ThresholdExpr, value: f64, than: Option<f64>) -> bool {
    use crate::definition::threshold::Comparison::{Ge, Gt, Le, Lt};
    match (than, expr.comparison) {
        (None, _) => true,
        (Some(than), Lt | Le) => value > than,
        (Some(than), Gt | Ge) => value < than,
        (Some(_), _) => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::engine::recorder::{Outcome, Recorder};

    fn thresholds(yaml: &str) -> BTreeMap<String, Vec<ThresholdExpr>> {
        serde_yaml::from_str(yaml).unwrap()
    }

    /// One second of `n` stat calls taking `ms` each.
    fn second(recorder: &Recorder, n: usize, ms: u64) -> Vec<IntervalSnapshot> {
        let t0 = Instant::now();
        for _ in 0..n {
            recorder.record(Operation::Stat, 0, t0, t0, t0 + Duration::from_millis(ms), Outcome::ok(0));
        }
        recorder.take_intervals()
    }

    #[test]
    fn a_windowed_threshold_fails_on_one_bad_window_that_the_run_would_hide() {
        let t = thresholds("latency: ['p(95)<50 over 3s', 'p(95)<50']");
        let mut judge = LiveJudge::new(&t, vec!["events".into()]);
        let recorder = Recorder::new();
        for s in 0..20 {
            let ms = if (10..13).contains(&s) { 200 } else { 5 };
            assert_eq!(judge.second(&second(&recorder, 100, ms), 1.0), None, "nothing aborts");
        }
        let results = judge.window_results();
        assert_eq!(results.len(), 1, "only the windowed one is judged live");
        assert!(!results[0].passed, "seconds 10-12 broke it: {results:?}");
        assert!(results[0].value.unwrap() >= 199.0);
    }

    #[test]
    fn abort_on_fail_waits_for_its_delay_then_names_the_threshold() {
        let t = thresholds("latency: [{threshold: 'p(95)<50', abortOnFail: true, delayAbortEval: 3s}]");
        let mut judge = LiveJudge::new(&t, vec!["events".into()]);
        let recorder = Recorder::new();
        assert_eq!(judge.second(&second(&recorder, 10, 100), 1.0), None, "delayed");
        assert_eq!(judge.second(&second(&recorder, 10, 100), 1.0), None, "delayed");
        assert_eq!(judge.second(&second(&recorder, 10, 100), 1.0).as_deref(), Some("latency p(95)<50"));
    }

    #[test]
    fn every_threshold_stands_over_the_seconds_so_far_and_gauges_wait_for_the_end() {
        let t = thresholds("latency: ['p(95)<50']\nevents_lost: ['count==0']\ngrpc_req_failed: ['rate<0.1']");
        let mut judge = LiveJudge::new(&t, vec!["events".into()]);
        let recorder = Recorder::new();
        judge.second(&second(&recorder, 10, 5), 1.0);
        let standing = judge.standing();
        assert_eq!(standing.len(), 3, "{standing:?}");
        let latency = standing.iter().find(|r| r.metric == "latency").unwrap();
        assert!(latency.passed && latency.value.unwrap() < 6.0, "{latency:?}");
        let lost = standing.iter().find(|r| r.metric == "events_lost").unwrap();
        assert_eq!(lost.value, None, "the audit judges it at the end");
        judge.second(&second(&recorder, 90, 100), 1.0);
        let latency = judge.standing().into_iter().find(|r| r.metric == "latency").unwrap();
        assert!(!latency.passed && latency.value.unwrap() >= 99.0, "now failing: {latency:?}");
    }
}
