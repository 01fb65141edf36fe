//! What the terminal shows: on a terminal, a view redrawn in place every second (per operation
//! the target and achieved rate, p95, errors, dropped arrivals and calls in flight of the last
//! second, and each component's CPU); otherwise a progress line every second (elapsed and
//! remaining, achieved vs target rate, in-flight calls, p95, errors, dropped arrivals); and the
//! end-of-run summary table with the thresholds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::engine::recorder::IntervalSnapshot;

use crate::results::summary::Summary;
use crate::target::operations::Operation;

/// One progress line for the second that just ended.
pub fn progress_line(
    elapsed: Duration,
    total: Duration,
    snapshots: &[IntervalSnapshot],
    targets: &BTreeMap<Operation, f64>,
) -> String {
    let mut line = format!("[{:>4}s/{}s]", elapsed.as_secs(), total.as_secs());
    for s in snapshots {
        let target = targets.get(&s.operation);
        let Some(p95) = shown(s, target) else { continue };
        let _ = write!(line, " | {} {}", short(s.operation), s.requests());
        if let Some(t) = target {
            let _ = write!(line, "/{t:.0}");
        }
        let _ = write!(line, "/s p95 {p95:.1}ms fly {}", s.in_flight);
        if s.errors() > 0 {
            let _ = write!(line, " ERR {}", s.errors());
        }
        if s.dropped() > 0 {
            let _ = write!(line, " DROP {}", s.dropped());
        }
    }
    line
}

/// An operation's p95 of the second (ms, 0 without answers), if it is shown at all: it had
/// requests, drops, calls in flight or a target.
fn shown(s: &IntervalSnapshot, target: Option<&f64>) -> Option<f64> {
    if s.requests() == 0 && s.dropped() == 0 && s.in_flight == 0 && target.is_none() {
        return None;
    }
    let latency = s.latency();
    Some(if latency.is_empty() { 0.0 } else { latency.value_at_quantile(0.95) as f64 / 1000.0 })
}

/// The in-place view of the second that just ended: a header, one row per operation, one line
/// of CPU per component (`cpu`: % of one core, from the samplers' latest round).
pub fn view(
    elapsed: Duration,
    total: Duration,
    snapshots: &[IntervalSnapshot],
    targets: &BTreeMap<Operation, f64>,
    cpu: &BTreeMap<String, f64>,
) -> Vec<String> {
    let mut lines = vec![
        format!("gauntlet [{:>4}s/{}s]", elapsed.as_secs(), total.as_secs()),
        format!(
            "  {:<20} {:>9} {:>9} {:>9} {:>7} {:>7} {:>7}",
            "operation", "target/s", "actual/s", "p95 ms", "errors", "dropped", "in fly"
        ),
    ];
    for s in snapshots {
        let target = targets.get(&s.operation);
        let Some(p95) = shown(s, target) else { continue };
        lines.push(format!(
            "  {:<20} {:>9} {:>9} {:>9.2} {:>7} {:>7} {:>7}",
            s.operation.name(),
            target.map_or("-".to_owned(), |t| format!("{t:.0}")),
            s.requests(),
            p95,
            s.errors(),
            s.dropped(),
            s.in_flight
        ));
    }
    let mut usage = String::from("  cpu %:");
    for (component, percent) in cpu {
        let _ = write!(usage, " {component} {percent:.0}");
    }
    if cpu.is_empty() {
        usage.push_str(" (not sampled yet)");
    }
    lines.push(usage);
    lines
}

/// Redraws a view in place of the previous one (`previous`: its line count), returning this
/// one's line count.
pub fn redraw(out: &mut impl std::io::Write, lines: &[String], previous: usize) -> usize {
    let mut text = String::new();
    if previous > 0 {
        let _ = write!(text, "\x1b[{previous}A\x1b[J");
    }
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    lines.len()
}

fn short(op: Operation) -> &'static str {
    match op {
        Operation::GetChallenges => "GET",
        Operation::Claim => "claim",
        Operation::Login => "login",
        Operation::Stat => "stat",
        Operation::EndToEnd => "e2e",
        Operation::Session => "session",
    }
}

/// The end-of-run table.
pub fn summary_table(summary: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{} — {:.1}s of load{}",
        summary.scenario,
        summary.duration_s,
        summary.interrupted.as_ref().map_or(String::new(), |r| format!(" (ended early: {r})"))
    );
    let _ = writeln!(
        out,
        "{:<20} {:>9} {:>9} {:>9} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>11}",
        "operation",
        "target/s",
        "actual/s",
        "requests",
        "errors",
        "dropped",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "svc p95 ms"
    );
    for (name, op) in &summary.operations {
        let _ = writeln!(
            out,
            "{:<20} {:>9} {:>9.1} {:>9} {:>7} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>11.2}",
            name,
            op.target_rate.map_or("-".to_owned(), |t| format!("{t:.1}")),
            op.achieved_rate,
            op.requests,
            op.errors,
            op.dropped,
            op.latency_ms.p50,
            op.latency_ms.p95,
            op.latency_ms.p99,
            op.latency_ms.max,
            op.service_time_ms.p95,
        );
        for (kind, count) in &op.errors_by_kind {
            let _ = writeln!(out, "{:<20}   error {kind}: {count}", "");
        }
    }
    if !summary.thresholds.is_empty() {
        let _ = writeln!(out, "thresholds:");
        for t in &summary.thresholds {
            let _ = writeln!(
                out,
                "  {} {} {}  (observed {})",
                if t.passed { "PASS" } else { "FAIL" },
                t.metric,
                t.expression,
                t.value.map_or("no data".to_owned(), |v| if t.metric.starts_with("leak") {
                    format!("{v:.0} per hour at the 95% interval's low end")
                } else {
                    format!("{v:.4}")
                })
            );
        }
    }
    resources_lines(&mut out, summary);
    for warning in &summary.warnings {
        let _ = writeln!(out, "!!! {warning}");
    }
    let _ = writeln!(out, "verdict: {}", if summary.passed { "PASS" } else { "FAIL" });
    out
}

/// CPU and memory per component, and the database's headline figures.
fn resources_lines(out: &mut String, summary: &Summary) {
    if let Some(resources) = &summary.resources
        && !resources.components.is_empty()
    {
        let _ = writeln!(out, "{:<20} {:>10} {:>10} {:>12}", "component", "cpu% mean", "cpu% max", "memory MiB");
        for (name, c) in &resources.components {
            let _ = writeln!(
                out,
                "{name:<20} {:>10.1} {:>10.1} {:>12.1}",
                c.cpu_percent_mean, c.cpu_percent_max, c.memory_max_mb
            );
        }
    }
    if let Some(db) = &summary.database {
        let fmt = |v: Option<f64>, scale: f64| v.map_or("-".to_owned(), |v| format!("{:.1}", v * scale));
        let _ = writeln!(
            out,
            "database: pool busy max {}%, connections max {}, cache hit {}%, lock waits max {}",
            fmt(db.pool_busy_max, 100.0),
            fmt(db.connections_max, 1.0),
            fmt(db.cache_hit_ratio, 100.0),
            fmt(db.lock_waits_max, 1.0),
        );
        if let Some(top) = db.top_statements.first() {
            let _ = writeln!(
                out,
                "  top statement: {} calls, mean {:.2} ms: {}",
                top.calls,
                top.mean_ms,
                top.query.chars().take(90).collect::<String>()
            );
        }
        for note in &db.unavailable {
            let _ = writeln!(out, "  not observed: {note}");
        }
    }
    for profile in &summary.profiles {
        let _ = writeln!(out, "profile: {profile}");
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;
    use crate::engine::recorder::{Outcome, Recorder};

    #[test]
    fn the_view_shows_each_operation_and_the_cpu_and_is_redrawn_over_the_last_one() {
        let recorder = Recorder::new();
        let t0 = Instant::now();
        for _ in 0..40 {
            recorder.record(Operation::Stat, 0, t0, t0, t0 + Duration::from_millis(3), Outcome::ok(0));
        }
        recorder.record_dropped(Operation::Stat, 0, Duration::from_secs(2), false);
        let targets = BTreeMap::from([(Operation::Stat, 50.0)]);
        let cpu = BTreeMap::from([("event-handler".to_owned(), 12.4), ("postgres".to_owned(), 30.0)]);
        let lines = view(Duration::from_secs(3), Duration::from_secs(10), &recorder.take_intervals(), &targets, &cpu);
        assert_eq!(lines.len(), 4, "{lines:#?}");
        let row = &lines[2];
        assert!(row.contains(Operation::Stat.name()) && row.contains(" 50 ") && row.contains(" 40 "), "{row}");
        assert!(row.contains("3.00"), "p95 3 ms: {row}");
        assert!(lines[3].contains("event-handler 12") && lines[3].contains("postgres 30"), "{}", lines[3]);
        let mut out = Vec::new();
        assert_eq!(redraw(&mut out, &lines, 0), 4);
        assert!(!String::from_utf8_lossy(&out).contains('\x1b'), "nothing to draw over the first time");
        out.clear();
        redraw(&mut out, &lines, 4);
        assert!(
            String::from_utf8_lossy(&out).starts_with("\x1b[4A\x1b[J"),
            "moves up over the last view and clears it"
        );
    }
}
