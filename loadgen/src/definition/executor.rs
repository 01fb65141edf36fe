//! Executors (k6's names and semantics) and the rate curves of the open-model ones.
//!
//! Goose runs a closed model: each virtual user loops. The open model is added on top: an
//! open-model executor gives a [`RateCurve`], from which the stream's
//! [`ArrivalSchedule`](crate::engine::arrivals::ArrivalSchedule) releases arrivals at their intended
//! times; latency is measured from that time.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::text::{checked_duration, checked_number, duration_text};

/// The most virtual users `max_vus: auto` allocates. An idle user costs about 11 KB and no CPU
/// (measured: 25 MiB peak RSS with 10 users, 78 MiB with 5,000), and a stream opens only as
/// many connections as its concurrency needs; the cap bounds goose's start-up, which launches
/// every user before the load.
pub const AUTO_MAX_VUS: u32 = 10_000;

/// `max_vus: auto`: the users needed to keep `rate` arrivals per second in flight while each
/// takes `latency_limit` (Little's law, rounded up, at least 10, at most [`AUTO_MAX_VUS`]). Up
/// to that latency the pool never decides what is dropped; beyond it the target is over its
/// limit anyway.
pub fn auto_pool(rate: f64, latency_limit: Duration) -> u32 {
    let users = (rate * latency_limit.as_secs_f64()).ceil();
    if users.is_finite() { (users as u32).clamp(10, AUTO_MAX_VUS) } else { AUTO_MAX_VUS }
}

/// One ramp stage: reach `target` over `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Rate (per time unit) or virtual users at the end of the stage.
    #[serde(deserialize_with = "de_target")]
    pub target: f64,
    /// How long the stage lasts.
    #[serde(serialize_with = "duration_text::serialize", deserialize_with = "de_stage_duration")]
    pub duration: Duration,
}

fn de_target<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    checked_number(d, "target", true)
}

fn de_stage_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    checked_duration(d, "duration")
}

/// A validated executor. Rates are per second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "executor", rename_all = "kebab-case")]
pub enum Executor {
    /// `rate` arrivals per second for `duration`.
    ConstantArrivalRate {
        /// Arrivals per second.
        rate: f64,
        /// How long.
        #[serde(with = "duration_text")]
        duration: Duration,
        /// Users allocated before the run (informational: goose allocates `max_vus`).
        pre_allocated_vus: u32,
        /// Most iterations in flight.
        max_vus: u32,
        /// Arrivals as a Poisson process of the rate, rather than evenly spaced.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        poisson: bool,
    },
    /// A piecewise-linear arrival rate.
    RampingArrivalRate {
        /// Arrivals per second at the start.
        start_rate: f64,
        /// Stages with per-second targets.
        stages: Vec<Stage>,
        /// Users allocated before the run (informational).
        pre_allocated_vus: u32,
        /// Most iterations in flight.
        max_vus: u32,
        /// Arrivals as a Poisson process of the rate, rather than evenly spaced.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        poisson: bool,
    },
    /// `vus` looping users for `duration`.
    ConstantVus {
        /// Users.
        vus: u32,
        /// How long.
        #[serde(with = "duration_text")]
        duration: Duration,
    },
    /// A piecewise-linear number of looping users.
    RampingVus {
        /// Users at the start.
        start_vus: u32,
        /// Stages with user-count targets.
        stages: Vec<Stage>,
    },
}

impl Executor {
    /// How long the executor runs.
    pub fn duration(&self) -> Duration {
        match self {
            Executor::ConstantArrivalRate { duration, .. } | Executor::ConstantVus { duration, .. } => *duration,
            Executor::RampingArrivalRate { stages, .. } | Executor::RampingVus { stages, .. } => {
                stages.iter().map(|s| s.duration).sum()
            }
        }
    }

    /// Users goose allocates for this stream (goose cannot add users during a run).
    pub fn pool_size(&self) -> usize {
        match self {
            Executor::ConstantArrivalRate { max_vus, .. } | Executor::RampingArrivalRate { max_vus, .. } => {
                *max_vus as usize
            }
            Executor::ConstantVus { vus, .. } => *vus as usize,
            Executor::RampingVus { start_vus, stages } => {
                stages.iter().map(|s| s.target.ceil() as usize).max().unwrap_or(0).max(*start_vus as usize).max(1)
            }
        }
    }

    /// True for the open-model (arrival-rate) executors.
    pub fn is_open(&self) -> bool {
        matches!(self, Executor::ConstantArrivalRate { .. } | Executor::RampingArrivalRate { .. })
    }

    /// The arrival rate curve (open model only).
    pub fn rate_curve(&self) -> Option<RateCurve> {
        match self {
            Executor::ConstantArrivalRate { rate, duration, .. } => {
                Some(RateCurve::new(*rate, &[Stage { target: *rate, duration: *duration }]))
            }
            Executor::RampingArrivalRate { start_rate, stages, .. } => Some(RateCurve::new(*start_rate, stages)),
            _ => None,
        }
    }

    /// The curve the arrivals follow: the rate curve, its arrivals a Poisson process (seeded by
    /// `seed`, e.g. the stream's position) when the stream asks for one.
    pub fn arrival_curve(&self, seed: u64) -> Option<Result<RateCurve, String>> {
        let curve = self.rate_curve()?;
        let poisson = matches!(
            self,
            Executor::ConstantArrivalRate { poisson: true, .. } | Executor::RampingArrivalRate { poisson: true, .. }
        );
        Some(if poisson { curve.poisson(0x5EED_0000 ^ seed) } else { Ok(curve) })
    }

    /// Target arrivals per second at `t` (open model), or None.
    pub fn target_rate_at(&self, t: Duration) -> Option<f64> {
        self.rate_curve().map(|c| c.rate_at(t))
    }

    /// Active virtual users at `t` (closed model).
    pub fn vus_at(&self, t: Duration) -> usize {
        match self {
            Executor::ConstantVus { vus, .. } => *vus as usize,
            Executor::RampingVus { start_vus, stages } => {
                RateCurve::new(f64::from(*start_vus), stages).rate_at(t).round() as usize
            }
            _ => self.pool_size(),
        }
    }

    /// Replaces the rate of a constant-arrival-rate executor.
    pub fn set_rate(&mut self, new_rate: f64) -> Result<(), String> {
        match self {
            Executor::ConstantArrivalRate { rate, .. } => {
                *rate = new_rate;
                Ok(())
            }
            _ => Err("a rate override applies only to constant-arrival-rate streams".into()),
        }
    }

    /// Replaces the duration of a constant executor.
    pub fn set_duration(&mut self, new_duration: Duration) -> Result<(), String> {
        match self {
            Executor::ConstantArrivalRate { duration, .. } | Executor::ConstantVus { duration, .. } => {
                *duration = new_duration;
                Ok(())
            }
            _ => Err("a duration override applies only to constant executors; ramping ones follow their stages".into()),
        }
    }

    /// The highest arrival rate of an open-model executor (per second).
    pub fn peak_rate(&self) -> Option<f64> {
        match self {
            Executor::ConstantArrivalRate { rate, .. } => Some(*rate),
            Executor::RampingArrivalRate { start_rate, stages, .. } => {
                Some(stages.iter().map(|s| s.target).fold(*start_rate, f64::max))
            }
            _ => None,
        }
    }

    /// Sizes an open-model pool as `max_vus: auto` does: [`auto_pool`] of the peak rate and
    /// `latency_limit`.
    pub fn size_pool(&mut self, latency_limit: Duration) -> Result<(), String> {
        let rate = self.peak_rate().ok_or("max_vus: auto applies only to arrival-rate executors")?;
        self.set_vus(auto_pool(rate, latency_limit))
    }

    /// Keeps `segment`'s share of every user count: an arrival-rate pool (at least one user, for
    /// the share's arrivals), or a closed model's users at each stage. The arrival rate stays
    /// whole: the engine takes the share's arrivals from the whole schedule.
    pub fn split(&mut self, segment: super::plan::Segment) {
        let share = |n: u32| u32::try_from(segment.share(u64::from(n))).unwrap_or(n);
        match self {
            Executor::ConstantArrivalRate { max_vus, pre_allocated_vus, .. }
            | Executor::RampingArrivalRate { max_vus, pre_allocated_vus, .. } => {
                *max_vus = share(*max_vus).max(1);
                *pre_allocated_vus = share(*pre_allocated_vus).min(*max_vus);
            }
            Executor::ConstantVus { vus, .. } => *vus = share(*vus),
            Executor::RampingVus { start_vus, stages } => {
                *start_vus = share(*start_vus);
                for stage in stages {
                    stage.target = share(stage.target.round() as u32) as f64;
                }
            }
        }
    }

    /// Replaces the number of users (constant-vus) or the in-flight limit (arrival-rate).
    pub fn set_vus(&mut self, new_vus: u32) -> Result<(), String> {
        match self {
            Executor::ConstantVus { vus, .. } => *vus = new_vus,
            Executor::ConstantArrivalRate { max_vus, pre_allocated_vus, .. }
            | Executor::RampingArrivalRate { max_vus, pre_allocated_vus, .. } => {
                *max_vus = new_vus;
                *pre_allocated_vus = (*pre_allocated_vus).min(new_vus);
            }
            Executor::RampingVus { .. } => return Err("ramping-vus follows its stages".into()),
        }
        Ok(())
    }
}

/// A piecewise-linear rate over time, and the inverse of its integral (when arrival `i` is due).
///
/// Arrivals fall evenly (arrival `i` where the integral reaches `i`), or, with
/// [`poisson`](RateCurve::poisson), as a Poisson process of that rate: arrival `i` where the
/// integral reaches the `i`-th point of a unit-rate Poisson process (exponential gaps from a
/// seeded hash, so a run is repeatable and any arrival's time can be computed on its own).
#[derive(Debug, Clone, PartialEq)]
pub struct RateCurve {
    segments: Vec<Segment>,
    poisson: Option<Arc<PoissonPoints>>,
    /// Only every `count`-th arrival from the `index`-th (a distributed run's share).
    stride: super::plan::Segment,
}

/// The points of a unit-rate Poisson process up to a limit: every 64th point's position kept,
/// the ones between recomputed from their gaps.
#[derive(Debug, PartialEq)]
struct PoissonPoints {
    seed: u64,
    every_64th: Vec<f64>,
    count: u64,
}

/// At most this many Poisson arrivals per stream (their index costs 8 bytes per 64).
pub const MAX_POISSON_ARRIVALS: u64 = 200_000_000;

impl PoissonPoints {
    /// Gap `k`: an exponential variate of mean 1 from a hash of (seed, k).
    fn gap(seed: u64, k: u64) -> f64 {
        let mut z = seed ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let uniform = ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        -uniform.ln()
    }

    fn new(seed: u64, limit: f64) -> Result<Self, String> {
        let mut every_64th = Vec::new();
        let (mut at, mut k) = (0.0, 0u64);
        loop {
            at += Self::gap(seed, k);
            if at > limit {
                break;
            }
            if k % 64 == 0 {
                every_64th.push(at);
            }
            k += 1;
            if k > MAX_POISSON_ARRIVALS {
                return Err(format!("arrivals: poisson takes at most {MAX_POISSON_ARRIVALS} arrivals per stream"));
            }
        }
        Ok(Self { seed, every_64th, count: k })
    }

    fn point(&self, i: u64) -> f64 {
        let block = (i / 64) as usize;
        let mut at = self.every_64th[block];
        for k in (block as u64 * 64 + 1)..=i {
            at += Self::gap(self.seed, k);
        }
        at
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Segment {
    start: f64,
    length: f64,
    from: f64,
    to: f64,
    arrivals_before: f64,
}

impl RateCurve {
    /// Starts at `start` and follows `stages` linearly.
    pub fn new(start: f64, stages: &[Stage]) -> Self {
        let mut segments = Vec::with_capacity(stages.len());
        let (mut at, mut from, mut arrivals) = (0.0, start, 0.0);
        for stage in stages {
            let length = stage.duration.as_secs_f64();
            segments.push(Segment { start: at, length, from, to: stage.target, arrivals_before: arrivals });
            arrivals += (from + stage.target) / 2.0 * length;
            at += length;
            from = stage.target;
        }
        Self { segments, poisson: None, stride: super::plan::Segment::WHOLE }
    }

    /// Only `segment`'s arrivals of this curve: arrival `k` of the result is arrival
    /// `k·count + index` of the whole, so the shares interleave and add up to it exactly; the
    /// rate is the share's.
    pub fn striped(self, segment: super::plan::Segment) -> Self {
        Self { stride: segment, ..self }
    }

    fn whole_total(&self) -> u64 {
        if let Some(points) = &self.poisson {
            return points.count;
        }
        self.segments.last().map_or(0, |s| (s.arrivals_before + (s.from + s.to) / 2.0 * s.length + 1e-9).floor() as u64)
    }

    /// The same rate, its arrivals a Poisson process (seeded by `seed`).
    pub fn poisson(self, seed: u64) -> Result<Self, String> {
        let limit = self.segments.last().map_or(0.0, |s| s.arrivals_before + (s.from + s.to) / 2.0 * s.length);
        let points = PoissonPoints::new(seed, limit)?;
        Ok(Self { poisson: Some(Arc::new(points)), ..self })
    }

    /// The rate at `t` (0 after the end).
    pub fn rate_at(&self, t: Duration) -> f64 {
        let t = t.as_secs_f64();
        self.segments
            .iter()
            .find(|s| t >= s.start && t < s.start + s.length)
            .map_or(0.0, |s| s.from + (s.to - s.from) * (t - s.start) / s.length)
            / f64::from(self.stride.count.max(1))
    }

    /// Arrivals in the whole curve (the integral, rounded down; a Poisson curve's own count), or
    /// in its share.
    pub fn total_arrivals(&self) -> u64 {
        // Of the whole's arrivals 0..W, those numbered index, index + count, …: ⌈(W − index) / count⌉.
        let (whole, index, count) =
            (self.whole_total(), u64::from(self.stride.index), u64::from(self.stride.count.max(1)));
        whole.saturating_sub(index).div_ceil(count)
    }

    /// Arrivals due by `t` (the integral up to `t`).
    pub fn arrivals_by(&self, t: Duration) -> f64 {
        let t = t.as_secs_f64();
        let mut total = 0.0;
        for s in &self.segments {
            if t <= s.start {
                break;
            }
            let tau = (t - s.start).min(s.length);
            total = s.arrivals_before + s.from * tau + (s.to - s.from) / (2.0 * s.length) * tau * tau;
        }
        total / f64::from(self.stride.count.max(1))
    }

    /// When arrival `i` (0-based) is due: the time at which the integral reaches `i` (or the
    /// `i`-th Poisson point).
    pub fn time_of(&self, i: u64) -> Option<Duration> {
        let i = i.checked_mul(u64::from(self.stride.count.max(1)))?.checked_add(u64::from(self.stride.index))?;
        let i = match &self.poisson {
            Some(points) if i >= points.count => return None,
            Some(points) => points.point(i),
            None => i as f64,
        };
        let segment = self
            .segments
            .iter()
            .find(|s| i < s.arrivals_before + (s.from + s.to) / 2.0 * s.length - 1e-9)
            .or_else(|| self.segments.last().filter(|_| self.poisson.is_some()))?;
        let x = i - segment.arrivals_before;
        let a = (segment.to - segment.from) / (2.0 * segment.length);
        let b = segment.from;
        let tau = if a.abs() < 1e-12 { x / b } else { (-b + (b * b + 4.0 * a * x).max(0.0).sqrt()) / (2.0 * a) };
        Some(Duration::from_secs_f64(segment.start + tau.clamp(0.0, segment.length)))
    }
}

#[cfg(test)]
mod tests {
    use crate::definition::plan::Segment;

    #[test]
    fn striped_shares_add_up_to_the_whole_and_interleave() {
        let whole = RateCurve::new(1000.0, &[Stage { target: 1000.0, duration: Duration::from_secs(10) }]);
        let shares: Vec<RateCurve> = (0..3).map(|index| whole.clone().striped(Segment { index, count: 3 })).collect();
        assert_eq!(shares.iter().map(RateCurve::total_arrivals).sum::<u64>(), whole.total_arrivals());
        assert_eq!(shares.iter().map(RateCurve::total_arrivals).collect::<Vec<_>>(), [3334, 3333, 3333]);
        for k in [0u64, 1, 500, 3332] {
            for (index, share) in shares.iter().enumerate() {
                assert_eq!(share.time_of(k), whole.time_of(k * 3 + index as u64), "arrival {k} of share {index}");
            }
        }
        let huge = RateCurve::new(1e300, &[Stage { target: 1e300, duration: Duration::from_secs(10) }]);
        assert_eq!(huge.clone().striped(Segment { index: 1, count: 2 }).total_arrivals(), u64::MAX / 2);
    }

    use super::*;

    fn stage(target: f64, secs: u64) -> Stage {
        Stage { target, duration: Duration::from_secs(secs) }
    }

    #[test]
    fn poisson_arrivals_keep_the_rate_with_exponential_gaps_and_repeat_with_the_seed() {
        let even = RateCurve::new(1000.0, &[stage(1000.0, 100)]);
        let curve = even.clone().poisson(7).unwrap();
        let n = curve.total_arrivals();
        // 100,000 expected; a Poisson count's standard deviation is about 316.
        assert!((n as f64 - 100_000.0).abs() < 1_500.0, "{n}");
        let times: Vec<f64> = (0..n).map(|i| curve.time_of(i).unwrap().as_secs_f64()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "due times rise");
        assert_eq!(curve.time_of(n), None);
        let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        assert!((mean - 0.001).abs() < 0.00005, "mean gap {mean}");
        // Exponential: the standard deviation equals the mean (an even spacing has none).
        assert!((var.sqrt() / mean - 1.0).abs() < 0.05, "cv {}", var.sqrt() / mean);
        let short = gaps.iter().filter(|g| **g < 0.001 * 0.1).count() as f64 / gaps.len() as f64;
        assert!((short - (1.0 - (-0.1f64).exp())).abs() < 0.01, "P(gap < mean/10) = {short}");
        assert_eq!(even.poisson(7).unwrap().time_of(12_345), curve.time_of(12_345), "the seed repeats the run");
        let ramp = RateCurve::new(0.0, &[stage(2000.0, 10)]).poisson(1).unwrap();
        let first_half = (0..ramp.total_arrivals()).filter(|i| ramp.time_of(*i).unwrap().as_secs_f64() < 5.0).count();
        // A ramp from 0: a quarter of the arrivals in the first half.
        assert!((first_half as f64 / ramp.total_arrivals() as f64 - 0.25).abs() < 0.02, "{first_half}");
    }

    #[test]
    fn a_constant_rate_spaces_arrivals_evenly() {
        let curve = RateCurve::new(100.0, &[stage(100.0, 10)]);
        assert_eq!(curve.total_arrivals(), 1000);
        assert_eq!(curve.time_of(0), Some(Duration::ZERO));
        assert_eq!(curve.time_of(250), Some(Duration::from_millis(2500)));
        assert_eq!(curve.time_of(999), Some(Duration::from_millis(9990)));
        assert_eq!(curve.time_of(1000), None);
    }

    #[test]
    fn a_ramp_follows_the_integral_of_its_rate() {
        // 0 → 100/s over 10 s: 500 arrivals; arrival i at sqrt(2 i / 10) s.
        let curve = RateCurve::new(0.0, &[stage(100.0, 10), stage(100.0, 5)]);
        assert_eq!(curve.total_arrivals(), 1000);
        let t = curve.time_of(125).unwrap().as_secs_f64();
        assert!((t - 5.0).abs() < 1e-9, "{t}");
        let t = curve.time_of(600).unwrap().as_secs_f64();
        assert!((t - 11.0).abs() < 1e-9, "{t}");
        assert!((curve.rate_at(Duration::from_secs(5)) - 50.0).abs() < 1e-9);
        assert!((curve.arrivals_by(Duration::from_secs(10)) - 500.0).abs() < 1e-9);
        // Monotonic everywhere.
        let times: Vec<Duration> = (0..1000).map(|i| curve.time_of(i).unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }
}
