//! Percentile bootstrap confidence intervals of a mean over questions.
//!
//! Each resample draws `n` per-question scores with replacement (a seeded SplitMix64 stream,
//! so the same seed gives the same interval on every machine); the interval is the
//! `(1 − level)/2` and `(1 + level)/2` nearest-rank quantiles of the resample means.

use radit_util::rng::SplitMix64;
use serde::{Deserialize, Serialize};

/// Resamples of the report's intervals.
pub const DEFAULT_RESAMPLES: usize = 1000;

/// Coverage of the report's intervals.
pub const DEFAULT_LEVEL: f64 = 0.95;

/// A mean with its bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceInterval {
    /// The mean of the values.
    pub mean: f64,
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
    /// Nominal coverage (0.95).
    pub level: f64,
    /// Resamples drawn.
    pub resamples: usize,
    /// Seed of the resampling.
    pub seed: u64,
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// The mean of `values` with a `level` percentile bootstrap interval from `resamples`
/// seeded resamples. No values give 0 everywhere; `resamples == 0` gives the mean as both
/// bounds. `level` is clamped to `[0, 1]`.
pub fn bootstrap_ci(values: &[f64], resamples: usize, level: f64, seed: u64) -> ConfidenceInterval {
    let m = mean(values);
    let level = if level.is_nan() {
        DEFAULT_LEVEL
    } else {
        level.clamp(0.0, 1.0)
    };
    let mut out = ConfidenceInterval {
        mean: m,
        low: m,
        high: m,
        level,
        resamples,
        seed,
    };
    if values.is_empty() || resamples == 0 {
        return out;
    }
    let n = values.len();
    let mut rng = SplitMix64::new(seed);
    // `below_biased`, not `below`: the draws the published intervals were computed with.
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| {
            (0..n)
                .map(|_| values[rng.below_biased(n as u64) as usize])
                .sum::<f64>()
                / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let alpha = (1.0 - level) / 2.0;
    // Nearest-rank quantiles: the ceil(q·R)-th smallest mean (1-based), within 1..=R.
    let rank = |q: f64| -> usize {
        let r = (q * resamples as f64 - 1e-9).ceil().max(0.0) as usize;
        r.clamp(1, resamples) - 1
    };
    out.low = means[rank(alpha)];
    out.high = means[rank(1.0 - alpha)];
    out
}
