//! How throughput scales: the Universal Scalability Law fitted to measured levels, and the knee
//! of a sweep.
//!
//! The law (Gunther): with concurrency `N`, throughput `X(N) = λN / (1 + α(N−1) + βN(N−1))`,
//! where λ is the throughput of one unit of concurrency, α the share serialised by contention
//! (queueing for a shared resource) and β the cost of coherency (units waiting on each other),
//! which makes throughput fall past a peak at `N* = √((1−α)/β)`. For load levels of one
//! deployment, `N` is the concurrency the measurements imply by Little's law (achieved rate ×
//! mean latency); across replica counts it is the replicas.

use serde::{Deserialize, Serialize};

/// A fitted Universal Scalability Law.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UslFit {
    /// Throughput of one unit of concurrency.
    pub lambda: f64,
    /// Contention.
    pub alpha: f64,
    /// Coherency.
    pub beta: f64,
    /// Share of the throughput's variance the fit explains.
    pub r_squared: f64,
    /// Points fitted.
    pub points: usize,
}

impl UslFit {
    /// Throughput at concurrency `n`.
    pub fn throughput(&self, n: f64) -> f64 {
        self.lambda * n / (1.0 + self.alpha * (n - 1.0) + self.beta * n * (n - 1.0))
    }

    /// Where throughput peaks, and the peak (None when the coherency cost is nil: it levels off
    /// at λ/α instead, or grows without bound when α is nil too).
    pub fn peak(&self) -> Option<(f64, f64)> {
        (self.beta > 1e-12).then(|| {
            let n = ((1.0 - self.alpha).max(0.0) / self.beta).sqrt().max(1.0);
            (n, self.throughput(n))
        })
    }
}

fn usl_shape(alpha: f64, beta: f64, n: f64) -> f64 {
    n / (1.0 + alpha * (n - 1.0) + beta * n * (n - 1.0))
}

/// The sum of squared errors at (α, β), with λ at its least-squares value.
fn fitted(points: &[(f64, f64)], alpha: f64, beta: f64) -> (f64, f64) {
    let (gx, gg) = points.iter().fold((0.0, 0.0), |(gx, gg), (n, x)| {
        let g = usl_shape(alpha, beta, *n);
        (gx + g * x, gg + g * g)
    });
    let lambda = if gg > 0.0 { gx / gg } else { 0.0 };
    let sse = points.iter().map(|(n, x)| (x - lambda * usl_shape(alpha, beta, *n)).powi(2)).sum();
    (lambda, sse)
}

/// Fits the law to `(n, throughput)` points by least squares (λ exactly for each (α, β), which
/// are searched on a grid and refined); None with fewer than three usable points.
pub fn fit_usl(points: &[(f64, f64)]) -> Option<UslFit> {
    let points: Vec<(f64, f64)> =
        points.iter().copied().filter(|(n, x)| n.is_finite() && x.is_finite() && *n > 0.0 && *x >= 0.0).collect();
    if points.len() < 3 {
        return None;
    }
    let max_n = points.iter().map(|p| p.0).fold(1.0, f64::max);
    // α from 0 to ~1, β from 0 to where the peak would sit at one unit.
    let alphas = std::iter::once(0.0).chain((0..=48).map(|i| 10f64.powf(-6.0 + f64::from(i) * 6.0 / 48.0) * 0.999));
    let betas: Vec<f64> = std::iter::once(0.0)
        .chain((0..=60).map(|i| 10f64.powf(-12.0 + f64::from(i) * 12.0 / 60.0) / max_n.max(1.0)))
        .collect();
    let mut best = (0.0, 0.0, f64::INFINITY);
    for alpha in alphas {
        for &beta in &betas {
            let (_, sse) = fitted(&points, alpha, beta);
            if sse < best.2 {
                best = (alpha, beta, sse);
            }
        }
    }
    // Pattern search around the best grid point.
    let (mut alpha, mut beta, mut sse) = best;
    let (mut da, mut db) = ((alpha * 0.5).max(1e-4), (beta * 0.5).max(1e-9 / max_n));
    for _ in 0..200 {
        let mut moved = false;
        for (a, b) in [(alpha + da, beta), (alpha - da, beta), (alpha, beta + db), (alpha, beta - db)] {
            if !(0.0..1.0).contains(&a) || b < 0.0 {
                continue;
            }
            let (_, s) = fitted(&points, a, b);
            if s < sse {
                (alpha, beta, sse, moved) = (a, b, s, true);
            }
        }
        if !moved {
            da *= 0.5;
            db *= 0.5;
        }
    }
    let (lambda, sse) = fitted(&points, alpha, beta);
    let mean = points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64;
    let sst: f64 = points.iter().map(|p| (p.1 - mean).powi(2)).sum();
    let r_squared = if sst > 0.0 { 1.0 - sse / sst } else { 1.0 };
    Some(UslFit { lambda, alpha, beta, r_squared, points: points.len() })
}

/// The fewest replicas whose fitted throughput reaches `needed` (the law fitted across replica
/// counts), searching up to `most`; None when no count up to the law's peak (or `most`) does —
/// past the peak more replicas only lower it.
pub fn replicas_for(fit: &UslFit, needed: f64, most: u32) -> Option<u32> {
    let last = fit.peak().map_or(most, |(n, _)| (n.ceil() as u32).clamp(1, most));
    (1..=last).find(|n| fit.throughput(f64::from(*n)) >= needed)
}

/// One level of a sweep, as the knee is judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelPoint {
    /// Offered arrivals per second.
    pub offered: f64,
    /// Achieved per second.
    pub achieved: f64,
    /// Corrected p95, ms.
    pub p95_ms: f64,
}

/// The knee of a sweep, by definition: the first level (in offered order) whose achieved rate
/// fell below 0.95 × offered, or whose p95 went over `p95_limit_ms`.
pub fn knee(levels: &[LevelPoint], p95_limit_ms: f64) -> Option<usize> {
    levels.iter().position(|l| l.achieved < 0.95 * l.offered || l.p95_ms > p95_limit_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_the_fewest_that_reach_the_need_and_none_past_the_peak() {
        // 1,000/s per replica, 10% contention, a little coherency: peak near N = 30.
        let fit = UslFit { lambda: 1000.0, alpha: 0.1, beta: 0.001, r_squared: 1.0, points: 3 };
        assert_eq!(replicas_for(&fit, 900.0, 64), Some(1));
        let three = replicas_for(&fit, 2500.0, 64).unwrap();
        assert!(fit.throughput(f64::from(three)) >= 2500.0 && fit.throughput(f64::from(three - 1)) < 2500.0);
        let (_, peak) = fit.peak().unwrap();
        assert_eq!(replicas_for(&fit, peak * 1.01, 64), None, "beyond the peak no count reaches it");
        let linear = UslFit { lambda: 1000.0, alpha: 0.0, beta: 0.0, r_squared: 1.0, points: 3 };
        assert_eq!(replicas_for(&linear, 7500.0, 64), Some(8));
        assert_eq!(replicas_for(&linear, 75_000.0, 64), None, "more than the search allows");
    }

    #[test]
    fn a_known_law_is_recovered_from_its_points() {
        let truth = UslFit { lambda: 1200.0, alpha: 0.05, beta: 0.002, r_squared: 1.0, points: 0 };
        let points: Vec<(f64, f64)> =
            [1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0].iter().map(|&n| (n, truth.throughput(n))).collect();
        let fit = fit_usl(&points).unwrap();
        assert!((fit.alpha - 0.05).abs() < 0.005, "{fit:?}");
        assert!((fit.beta - 0.002).abs() < 0.0002, "{fit:?}");
        assert!((fit.lambda - 1200.0).abs() / 1200.0 < 0.02, "{fit:?}");
        assert!(fit.r_squared > 0.999, "{fit:?}");
        let (n, x) = fit.peak().unwrap();
        let (tn, tx) = truth.peak().unwrap();
        assert!((n - tn).abs() / tn < 0.05 && (x - tx).abs() / tx < 0.01, "peak {n} {x} vs {tn} {tx}");
    }

    #[test]
    fn linear_scaling_has_no_peak_and_noise_lowers_the_fit() {
        let linear: Vec<(f64, f64)> = (1..=6).map(|n| (f64::from(n), 100.0 * f64::from(n))).collect();
        let fit = fit_usl(&linear).unwrap();
        assert!(fit.alpha < 1e-3 && fit.peak().is_none_or(|(n, _)| n > 1000.0), "{fit:?}");
        let noisy: Vec<(f64, f64)> =
            linear.iter().enumerate().map(|(i, (n, x))| (*n, x * if i % 2 == 0 { 1.3 } else { 0.7 })).collect();
        assert!(fit_usl(&noisy).unwrap().r_squared < 0.95);
        assert!(fit_usl(&linear[..2]).is_none(), "two points fit anything");
    }

    #[test]
    fn the_knee_is_the_first_level_short_of_its_offer_or_over_the_limit() {
        let level = |offered, achieved, p95_ms| LevelPoint { offered, achieved, p95_ms };
        let levels =
            [level(100.0, 100.0, 5.0), level(200.0, 199.0, 9.0), level(400.0, 370.0, 20.0), level(800.0, 500.0, 900.0)];
        assert_eq!(knee(&levels, 200.0), Some(2), "370 < 0.95 × 400");
        let slow = [level(100.0, 100.0, 5.0), level(200.0, 200.0, 250.0)];
        assert_eq!(knee(&slow, 200.0), Some(1), "p95 over the limit");
        assert_eq!(knee(&levels[..2], 200.0), None);
    }
}
