//! What the documents share: number formats, the run a section describes, runs grouped by what
//! they loaded.

use crate::results::read::RunData;

pub(super) fn ms(v: f64) -> String {
    format!("{v:.2}")
}

pub(super) fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

/// A growth per hour: bytes in MB (powers of 1000), things as counted.
pub(super) fn per_hour(value: f64, bytes: bool) -> String {
    if bytes { format!("{:+.2} MB/h", value / 1e6) } else { format!("{value:+.1}/h") }
}

pub(super) fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "–".to_owned(), f)
}

/// The run a per-run section describes most (the heaviest level).
pub(super) fn heaviest(runs: &[RunData]) -> &RunData {
    runs.iter().max_by(|a, b| a.offered_total().total_cmp(&b.offered_total())).expect("at least one run")
}

/// The runs grouped by what they loaded (API only, events only, both): levels are only
/// comparable within a group.
pub(super) fn groups(runs: &[RunData]) -> Vec<(&'static str, Vec<&RunData>)> {
    let kinds = [("API only", true, false), ("events only", false, true), ("API and events", true, true)];
    kinds
        .iter()
        .map(|(name, api, events)| {
            let members = runs
                .iter()
                .filter(|r| {
                    let (rps, eps) = r.offered();
                    (rps > 0.0) == *api && (eps > 0.0) == *events
                })
                .collect::<Vec<_>>();
            (*name, members)
        })
        .filter(|(_, members)| !members.is_empty())
        .collect()
}
