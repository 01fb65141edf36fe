//! A scenario's offered load, drawn before anything runs: each arrival-rate stream's arrivals
//! per second as the engine will release them (a Poisson stream's own arrivals, with its rate
//! drawn faint beside them), for the book's traffic-shape pages and `loadgen offered`.

use std::time::Duration;

use super::charts::{Series, line_chart};
use crate::definition::scenario::Scenario;

/// The offered-load chart of `scenario` (SVG); an error names a stream that cannot be drawn.
pub fn offered_load_chart(scenario: &Scenario) -> Result<String, String> {
    let mut series = Vec::new();
    for (index, (name, stream)) in scenario.streams.iter().enumerate() {
        let executor = stream
            .executor(scenario.duration, scenario.latency_limit(name))
            .map_err(|e| format!("streams.{name}: {e}"))?;
        let (Some(rate), Some(arrivals)) = (executor.rate_curve(), executor.arrival_curve(index as u64)) else {
            continue;
        };
        let arrivals = arrivals.map_err(|e| format!("streams.{name}: {e}"))?;
        let seconds = executor.duration().as_secs_f64().ceil() as usize;
        let mut per_second = vec![0u64; seconds.max(1)];
        let last = per_second.len() - 1;
        for i in 0..arrivals.total_arrivals() {
            let at = arrivals.time_of(i).unwrap_or_default().as_secs_f64() as usize;
            per_second[at.min(last)] += 1;
        }
        let counted: Vec<(f64, f64)> =
            per_second.iter().enumerate().map(|(s, n)| (s as f64 + 0.5, *n as f64)).collect();
        let poisson = stream.arrivals == Some(crate::definition::stream::ArrivalProcess::Poisson);
        if poisson {
            let curve: Vec<(f64, f64)> = (0..=seconds * 4)
                .map(|q| {
                    let t = q as f64 / 4.0;
                    (t, rate.rate_at(Duration::from_secs_f64(t)))
                })
                .collect();
            series.push(Series::faint(format!("{name}: rate"), curve));
            series.push(Series::new(format!("{name}: arrivals in each second (Poisson)"), counted));
        } else {
            series.push(Series::new(format!("{name}: arrivals in each second"), counted));
        }
    }
    let title = format!("{}: offered load", scenario.name);
    line_chart(&title, "seconds from the start of the load", "arrivals / s", &series)?
        .ok_or_else(|| format!("{}: no arrival-rate stream to draw", scenario.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_open_scenario_draws_its_offered_load() {
        for (name, _) in crate::definition::builtin::BUILTIN {
            let scenario = crate::definition::builtin::named(name).unwrap();
            let svg = offered_load_chart(&scenario).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(svg.starts_with("<svg") && svg.contains("offered load"), "{name}");
        }
    }
}
