//! The plan's thresholds judged over the whole run: each expression's value from the measured
//! data, windowed ones from the live judge's worst window.

use crate::definition::threshold::{Metric, ThresholdExpr};
use crate::results::summary::ThresholdResult;

use super::source::MetricSource;

/// How a threshold is named where one is reported alone (an abort): `metric expression`.
pub fn label(metric: &str, expression: &str) -> String {
    format!("{metric} {expression}")
}

/// Evaluates every threshold over the whole run against `source`; windowed ones take their
/// results from `windows` (the live judge's, by metric and expression).
pub fn evaluate<'a>(
    thresholds: impl IntoIterator<Item = (&'a String, &'a Vec<ThresholdExpr>)>,
    source: &dyn MetricSource,
    windows: &[ThresholdResult],
) -> Vec<ThresholdResult> {
    let mut results = Vec::new();
    for (name, expressions) in thresholds {
        let metric = Metric::parse(name);
        for expr in expressions {
            let windowed = windows.iter().find(|w| &w.metric == name && w.expression == expr.text);
            if let Some(found) = windowed.filter(|_| expr.window.is_some()) {
                results.push(found.clone());
                continue;
            }
            let value = metric.as_ref().ok().and_then(|m| source.observe(m, expr.aggregation));
            results.push(ThresholdResult {
                metric: name.clone(),
                expression: expr.text.clone(),
                value,
                passed: value.is_some_and(|v| expr.passes(v)),
                aborted: false,
            });
        }
    }
    results
}
