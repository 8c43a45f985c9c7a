//! Learning-rate schedules as pure functions of the step.
//!
//! A schedule holds no state beyond its configuration, so a resumed run needs only the
//! global step to continue with the same learning rates.
//!
//! Step convention: `step` is the number of optimizer updates already applied (0 for the
//! first update). Warmup ramps linearly as `(step + 1) / warmup_steps`, so the first update
//! is not wasted at learning rate 0 and the peak is reached at step `warmup_steps - 1`.
//! Decay runs from the end of warmup to `total_steps`, after which the factor stays at the
//! floor.

use serde::{Deserialize, Serialize};

/// A schedule configuration, as written in a recipe:
///
/// ```toml
/// [stages.lm_ft.schedule]
/// kind = "cosine"
/// warmup_steps = 100
/// total_steps = 2000
/// min_lr_ratio = 0.1
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LrSchedule {
    /// The peak rate throughout, after an optional linear warmup.
    Constant {
        /// Steps of linear warmup (0 for none).
        #[serde(default)]
        warmup_steps: u64,
    },
    /// Linear warmup, then half a cosine from the peak down to the floor at `total_steps`.
    Cosine {
        /// Steps of linear warmup (0 for none).
        #[serde(default)]
        warmup_steps: u64,
        /// Step at which the floor is reached.
        total_steps: u64,
        /// The floor as a fraction of the peak rate, in `[0, 1]`.
        #[serde(default)]
        min_lr_ratio: f64,
    },
    /// Linear warmup, then a straight line from the peak down to the floor at `total_steps`.
    Linear {
        /// Steps of linear warmup (0 for none).
        #[serde(default)]
        warmup_steps: u64,
        /// Step at which the floor is reached.
        total_steps: u64,
        /// The floor as a fraction of the peak rate, in `[0, 1]`.
        #[serde(default)]
        min_lr_ratio: f64,
    },
}

/// A schedule whose parameters cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    /// The floor ratio is outside `[0, 1]` or not a number.
    #[error("min_lr_ratio must be in [0, 1], got {0}")]
    BadMinRatio(f64),
    /// Warmup does not end before the decay does.
    #[error("warmup_steps ({warmup_steps}) must be less than total_steps ({total_steps})")]
    WarmupTooLong {
        /// Configured warmup.
        warmup_steps: u64,
        /// Configured total.
        total_steps: u64,
    },
    /// The peak learning rate is not a positive finite number.
    #[error("the learning rate must be positive and finite, got {0}")]
    BadPeak(f64),
}

impl Default for LrSchedule {
    fn default() -> Self {
        LrSchedule::Constant { warmup_steps: 0 }
    }
}

impl LrSchedule {
    /// Checks the parameters (call once after loading a recipe).
    pub fn validate(&self) -> Result<(), ScheduleError> {
        match *self {
            LrSchedule::Constant { .. } => Ok(()),
            LrSchedule::Cosine {
                warmup_steps,
                total_steps,
                min_lr_ratio,
            }
            | LrSchedule::Linear {
                warmup_steps,
                total_steps,
                min_lr_ratio,
            } => {
                if !(0.0..=1.0).contains(&min_lr_ratio) {
                    return Err(ScheduleError::BadMinRatio(min_lr_ratio));
                }
                if warmup_steps >= total_steps {
                    return Err(ScheduleError::WarmupTooLong {
                        warmup_steps,
                        total_steps,
                    });
                }
                Ok(())
            }
        }
    }

    /// The multiplier of the peak rate for the update at `step`, in `[0, 1]`.
    pub fn factor(&self, step: u64) -> f64 {
        let warmup = match *self {
            LrSchedule::Constant { warmup_steps }
            | LrSchedule::Cosine { warmup_steps, .. }
            | LrSchedule::Linear { warmup_steps, .. } => warmup_steps,
        };
        if step < warmup {
            return (step + 1) as f64 / warmup as f64;
        }
        match *self {
            LrSchedule::Constant { .. } => 1.0,
            LrSchedule::Cosine {
                total_steps,
                min_lr_ratio,
                ..
            } => {
                let p = progress(step, warmup, total_steps);
                min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            }
            LrSchedule::Linear {
                total_steps,
                min_lr_ratio,
                ..
            } => {
                let p = progress(step, warmup, total_steps);
                min_lr_ratio + (1.0 - min_lr_ratio) * (1.0 - p)
            }
        }
    }

    /// The learning rate for the update at `step`, given the peak rate.
    pub fn lr(&self, peak_lr: f64, step: u64) -> f64 {
        peak_lr * self.factor(step)
    }
}

/// Checks a peak learning rate from a recipe.
pub fn validate_peak_lr(peak_lr: f64) -> Result<(), ScheduleError> {
    if peak_lr.is_finite() && peak_lr > 0.0 {
        Ok(())
    } else {
        Err(ScheduleError::BadPeak(peak_lr))
    }
}

/// Fraction of the decay phase done at `step`, clamped to `[0, 1]`.
fn progress(step: u64, warmup: u64, total: u64) -> f64 {
    if total <= warmup {
        return 1.0;
    }
    ((step - warmup) as f64 / (total - warmup) as f64).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn constant_with_and_without_warmup() {
        let s = LrSchedule::Constant { warmup_steps: 0 };
        for step in [0, 1, 1000] {
            close(s.lr(3e-4, step), 3e-4);
        }
        let s = LrSchedule::Constant { warmup_steps: 4 };
        let f: Vec<f64> = (0..6).map(|i| s.factor(i)).collect();
        assert_eq!(f, vec![0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn cosine_known_values() {
        let s = LrSchedule::Cosine {
            warmup_steps: 10,
            total_steps: 110,
            min_lr_ratio: 0.1,
        };
        s.validate().unwrap();
        close(s.factor(0), 0.1);
        close(s.factor(4), 0.5);
        close(s.factor(9), 1.0);
        close(s.factor(10), 1.0); // decay starts at its peak
        close(
            s.factor(35),
            0.1 + 0.9 * 0.5 * (1.0 + std::f64::consts::FRAC_1_SQRT_2),
        ); // quarter
        close(s.factor(60), 0.55); // halfway: the mean of peak and floor
        close(s.factor(110), 0.1);
        close(s.factor(5000), 0.1);
        close(s.lr(2e-5, 60), 1.1e-5);
    }

    #[test]
    fn cosine_to_zero_is_monotone_after_warmup() {
        let s = LrSchedule::Cosine {
            warmup_steps: 0,
            total_steps: 100,
            min_lr_ratio: 0.0,
        };
        close(s.factor(0), 1.0);
        close(s.factor(50), 0.5);
        close(s.factor(100), 0.0);
        for i in 0..120 {
            assert!(s.factor(i + 1) <= s.factor(i));
        }
    }

    #[test]
    fn linear_known_values() {
        let s = LrSchedule::Linear {
            warmup_steps: 2,
            total_steps: 12,
            min_lr_ratio: 0.0,
        };
        let f: Vec<f64> = [0, 1, 2, 7, 11, 12, 13]
            .iter()
            .map(|&i| s.factor(i))
            .collect();
        for (a, b) in f.iter().zip([0.5, 1.0, 1.0, 0.5, 0.1, 0.0, 0.0]) {
            close(*a, b);
        }
    }

    #[test]
    fn deserializes_from_recipe_toml() {
        let s: LrSchedule =
            toml::from_str("kind = \"cosine\"\nwarmup_steps = 5\ntotal_steps = 50\n").unwrap();
        assert_eq!(
            s,
            LrSchedule::Cosine {
                warmup_steps: 5,
                total_steps: 50,
                min_lr_ratio: 0.0
            }
        );
        let s: LrSchedule = toml::from_str("kind = \"constant\"").unwrap();
        assert_eq!(s, LrSchedule::default());
        let err = toml::from_str::<LrSchedule>("kind = \"cosine\"\ntotal_steps = 5\nwarmup = 1\n")
            .unwrap_err();
        assert!(err.to_string().contains("unknown field `warmup`"), "{err}");
        let err = toml::from_str::<LrSchedule>("kind = \"exp\"").unwrap_err();
        assert!(err.to_string().contains("unknown variant `exp`"), "{err}");
    }

    #[test]
    fn validation() {
        let bad = LrSchedule::Linear {
            warmup_steps: 10,
            total_steps: 10,
            min_lr_ratio: 0.0,
        };
        assert!(matches!(
            bad.validate(),
            Err(ScheduleError::WarmupTooLong { .. })
        ));
        let bad = LrSchedule::Cosine {
            warmup_steps: 0,
            total_steps: 10,
            min_lr_ratio: f64::NAN,
        };
        assert!(matches!(bad.validate(), Err(ScheduleError::BadMinRatio(_))));
        assert!(validate_peak_lr(0.0).is_err());
        assert!(validate_peak_lr(f64::INFINITY).is_err());
        assert!(validate_peak_lr(1e-4).is_ok());
    }
}
