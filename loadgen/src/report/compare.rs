//! `loadgen report --compare A B`: each operation's numbers in run A (the baseline) and run B,
//! the change, and whether it is a regression beyond the tolerance.

use super::markup::{Block, Doc};
use crate::results::read::RunData;

/// One compared figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Delta {
    /// Operation.
    pub operation: String,
    /// Figure (`p95 ms`, `achieved/s`, …).
    pub figure: &'static str,
    /// In A.
    pub before: f64,
    /// In B.
    pub after: f64,
    /// Relative change (B − A) / A.
    pub change: f64,
    /// Worse by more than the tolerance.
    pub regression: bool,
}

/// The deltas of every operation both runs have. Latencies and error/drop rates regress when
/// they grow; the achieved rate when it shrinks. Rates below 0.1% absolute never count.
pub fn deltas(a: &RunData, b: &RunData, tolerance: f64) -> Vec<Delta> {
    let mut out = Vec::new();
    for (name, before) in &a.summary.operations {
        let Some(after) = b.summary.operations.get(name) else { continue };
        let figures: [(&'static str, f64, f64, bool, f64); 7] = [
            ("achieved/s", before.achieved_rate, after.achieved_rate, false, 0.0),
            ("p50 ms", before.latency_ms.p50, after.latency_ms.p50, true, 0.0),
            ("p95 ms", before.latency_ms.p95, after.latency_ms.p95, true, 0.0),
            ("p99 ms", before.latency_ms.p99, after.latency_ms.p99, true, 0.0),
            ("service p95 ms", before.service_time_ms.p95, after.service_time_ms.p95, true, 0.0),
            ("error rate", before.error_rate, after.error_rate, true, 0.001),
            ("dropped rate", before.dropped_ratio, after.dropped_ratio, true, 0.001),
        ];
        for (figure, x, y, higher_is_worse, floor) in figures {
            let change = if x.abs() > f64::EPSILON {
                (y - x) / x
            } else if y.abs() > f64::EPSILON {
                f64::INFINITY
            } else {
                0.0
            };
            let worse = if higher_is_worse { change > tolerance } else { change < -tolerance };
            let regression = worse && (y - x).abs() > floor;
            out.push(Delta { operation: name.clone(), figure, before: x, after: y, change, regression });
        }
    }
    out
}

/// The comparison as a document.
pub fn document(a: &RunData, b: &RunData, tolerance: f64) -> (Doc, usize) {
    let deltas = deltas(a, b, tolerance);
    let regressions = deltas.iter().filter(|d| d.regression).count();
    let mut doc = Doc::new("Run comparison");
    doc.p(format!(
        "A (baseline): `{}` ({}); B: `{}` ({}). Tolerance {:.0}%: a figure that got worse by more is a regression.",
        a.name,
        a.level_label(),
        b.name,
        b.level_label(),
        tolerance * 100.0
    ));
    if regressions > 0 {
        doc.push(Block::Warning(format!("{regressions} regression(s) beyond {:.0}%.", tolerance * 100.0)));
    } else {
        doc.p("**No regression** beyond the tolerance.");
    }
    doc.table(
        &["operation", "figure", "A", "B", "change", ""],
        deltas
            .iter()
            .map(|d| {
                vec![
                    d.operation.clone(),
                    d.figure.to_owned(),
                    format!("{:.3}", d.before),
                    format!("{:.3}", d.after),
                    if d.change.is_finite() { format!("{:+.1}%", d.change * 100.0) } else { "new".into() },
                    if d.regression { "REGRESSION".into() } else { String::new() },
                ]
            })
            .collect(),
    );
    (doc, regressions)
}
