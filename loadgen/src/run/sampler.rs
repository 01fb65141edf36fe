//! The per-second sampler beside the engine: each second's time series row and HDR intervals
//! (with their true start and length), the live thresholds, the fault verdicts' totals, the
//! second published to the live record (dashboard, `/metrics`), and the terminal's view or
//! progress line.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Conductor;
use crate::engine::recorder::{IntervalSnapshot, Recorder};
use crate::engine::stop::{Stop, StopReason};
use crate::engine::{self};
use crate::faults;
use crate::live::{self, Live};
use crate::results::{Interval, ResultsDir};
use crate::target::operations::Operation;
use crate::terminal;
use crate::verdict::live::LiveJudge;

/// What the per-second sampler works with.
pub(super) struct Sampling {
    /// Each second's totals, for the fault verdicts.
    pub seconds: Vec<faults::Second>,
    /// The engine's measurements.
    pub recorder: Arc<Recorder>,
    /// Each operation's target rate.
    pub targets: BTreeMap<Operation, f64>,
    /// The planned duration.
    pub total: Duration,
    /// No progress line.
    pub quiet: bool,
    /// The live thresholds.
    pub judge: LiveJudge,
    /// Stops the run (an `abortOnFail` threshold).
    pub stop: Stop,
    /// Where each second is published.
    pub live: Live,
    /// A distributed run's coordinator, sent each second (this process is a worker).
    pub conductor: Option<Arc<dyn Conductor>>,
    /// How long after each second's end it is taken: a coordinator waits for its workers'
    /// seconds to arrive (they take theirs at the second's end).
    pub lag: Duration,
}

/// Every second from the schedules' start: time series, HDR intervals with their true start
/// and length, the live thresholds, the progress line.
pub(super) async fn sample_every_second(
    mut results: ResultsDir,
    mut sampling: Sampling,
    gate: Arc<engine::StartGate>,
    done: CancellationToken,
) -> std::io::Result<(ResultsDir, LiveJudge, Vec<faults::Second>)> {
    let Some(started) = gate.opened(&done).await else { return Ok((results, sampling.judge, sampling.seconds)) };
    results.set_base_time(SystemTime::now() + started.saturating_duration_since(Instant::now()));
    if !sampling.quiet {
        eprintln!("gauntlet: every virtual user has started; load begins");
    }
    // Nothing is taken at the start: the timer wakes a little after it, and what was recorded
    // in between (arrivals due at the start) belongs to the first second, as it does to the
    // totals.
    tokio::time::sleep_until(started).await;
    // Seconds are counted from the start, and taken `lag` after their end.
    let counted_from = started + sampling.lag;
    let mut ticker = tokio::time::interval_at(counted_from + Duration::from_secs(1), Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let scheduled_seconds = sampling.total.as_secs_f64().ceil() as u64;
    let (mut second, mut previous) = (0u64, counted_from);
    let in_place = std::io::stderr().is_terminal();
    let mut drawn = 0;
    loop {
        let finished = tokio::select! {
            _ = ticker.tick() => false,
            () = done.cancelled() => true,
        };
        let now = Instant::now();
        second += 1;
        let snapshots = sampling.recorder.take_intervals();
        let interval = Interval {
            second,
            start: previous.saturating_duration_since(counted_from),
            length: now.saturating_duration_since(previous),
        };
        previous = now;
        // Only the seconds of the schedule carry a target (the drain after it carries none).
        let live_targets = if second <= scheduled_seconds { sampling.targets.clone() } else { BTreeMap::new() };
        results.write_interval(&interval, &snapshots, &live_targets)?;
        if let Some(conductor) = &sampling.conductor
            && conductor.second(second, &snapshots)
        {
            sampling.stop.stop(StopReason::Coordinator);
        }
        sampling.seconds.push(second_totals(&snapshots));
        if let Some(which) = sampling.judge.second(&snapshots, interval.length.as_secs_f64()) {
            if !sampling.stop.is_stopped() {
                eprintln!("gauntlet: threshold {which} failed (abortOnFail); stopping the run");
            }
            sampling.stop.stop(StopReason::Threshold(which));
        }
        if sampling.live.is_watched() {
            let named: BTreeMap<String, f64> =
                live_targets.iter().map(|(op, rate)| (op.name().to_owned(), *rate)).collect();
            let standing = sampling.judge.standing();
            let view = live::Second::from_interval(second, interval.length.as_secs_f64(), &snapshots, &named, standing);
            sampling.live.second(&view, &snapshots);
        }
        let elapsed = Duration::from_secs(second);
        if sampling.quiet {
            // Nothing on the terminal.
        } else if in_place {
            let cpu = sampling.live.latest_round().map(|r| r.components).unwrap_or_default();
            let cpu = cpu.into_iter().filter_map(|(name, usage)| Some((name, usage.cpu_percent?))).collect();
            let lines = terminal::view(elapsed, sampling.total, &snapshots, &live_targets, &cpu);
            drawn = terminal::redraw(&mut std::io::stderr(), &lines, drawn);
        } else {
            eprintln!("{}", terminal::progress_line(elapsed, sampling.total, &snapshots, &live_targets));
        }
        if finished || Duration::from_secs(second) > sampling.total + Duration::from_secs(30) {
            return Ok((results, sampling.judge, sampling.seconds));
        }
    }
}

/// One second's requests, failures and drops over every operation.
fn second_totals(snapshots: &[IntervalSnapshot]) -> faults::Second {
    let mut second = faults::Second::default();
    for snapshot in snapshots {
        for (key, series) in &snapshot.series {
            second.requests += series.requests;
            if !key.expected {
                second.errors += series.requests;
            }
        }
        second.dropped += snapshot.arrivals.values().map(|a| a.dropped).sum::<u64>();
        for (kind, n) in &snapshot.errors_by_kind {
            *second.errors_by_kind.entry(kind.clone()).or_default() += n;
        }
    }
    second
}
