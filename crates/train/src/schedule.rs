//! Learning-rate schedules as pure functions of the step.
//!
//! A schedule holds no state beyond its configuration, so a resumed run needs only the
//! global step to continue with the same learning rates.
//!
//! Step convention: `step` is the number of optimizer updates already applied (0 for the
//! first update). Warmup ramps linearly as `(step + 1) / warmup_steps`, so the first update
//! is not wasted at learning rate 0 and the peak is reached at step `warmup_steps - 1`.
//! Decay runs from the end of warmup to `total_steps`, after which the factor stays at the
//! floor. `total_steps` defaults to the run's `max_steps`, so a recipe states the length of
//! a run once; the schedule is therefore evaluated against the run's `max_steps`.

use serde::{Deserialize, Serialize};

/// A schedule configuration, as written in a recipe:
///
/// ```toml
/// [stages.lm_ft.train.schedule]
/// kind = "cosine"
/// warmup_steps = 100
/// total_steps = 2000   # optional: the stage's max_steps when left out
/// min_lr_ratio = 0.1
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
        /// Step at which the floor is reached; `None`: the run's `max_steps`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total_steps: Option<u64>,
        /// The floor as a fraction of the peak rate, in `[0, 1]`.
        #[serde(default)]
        min_lr_ratio: f64,
    },
    /// Linear warmup, then a straight line from the peak down to the floor at `total_steps`.
    Linear {
        /// Steps of linear warmup (0 for none).
        #[serde(default)]
        warmup_steps: u64,
        /// Step at which the floor is reached; `None`: the run's `max_steps`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total_steps: Option<u64>,
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
        /// The resolved total (`max_steps` where it is left out).
        total_steps: u64,
    },
    /// A constant schedule's warmup outlasts the run, so the peak is never reached.
    #[error("warmup_steps ({warmup_steps}) must be at most max_steps ({max_steps})")]
    WarmupOutlastsRun {
        /// Configured warmup.
        warmup_steps: u64,
        /// The run's length.
        max_steps: u64,
    },
    /// An explicit total ends the decay before the run does.
    #[error("total_steps ({total_steps}) must be at least max_steps ({max_steps}); leave it out to decay over the whole run")]
    TotalBeforeEnd {
        /// Configured total.
        total_steps: u64,
        /// The run's length.
        max_steps: u64,
    },
    /// The peak learning rate is not a positive finite number.
    #[error("the learning rate must be positive and finite, got {0}")]
    BadPeak(f64),
}

impl ScheduleError {
    /// The offending key, relative to the table that holds the schedule (`schedule.…`), or
    /// `lr` for the peak rate: what a recipe error should point at.
    pub fn key(&self) -> &'static str {
        match self {
            ScheduleError::BadMinRatio(_) => "schedule.min_lr_ratio",
            ScheduleError::WarmupTooLong { .. } | ScheduleError::WarmupOutlastsRun { .. } => {
                "schedule.warmup_steps"
            }
            ScheduleError::TotalBeforeEnd { .. } => "schedule.total_steps",
            ScheduleError::BadPeak(_) => "lr",
        }
    }
}

impl Default for LrSchedule {
    fn default() -> Self {
        LrSchedule::Constant { warmup_steps: 0 }
    }
}

impl LrSchedule {
    /// Checks the parameters against a run of `max_steps` updates (call once after loading
    /// a recipe).
    pub fn validate(&self, max_steps: u64) -> Result<(), ScheduleError> {
        match *self {
            LrSchedule::Constant { warmup_steps } => {
                // A warmup longer than the run never reaches the configured peak.
                if warmup_steps > max_steps {
                    return Err(ScheduleError::WarmupOutlastsRun {
                        warmup_steps,
                        max_steps,
                    });
                }
                Ok(())
            }
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
                if let Some(total) = total_steps {
                    // A decay that ends early would train the rest of the run at the floor:
                    // almost always a stale total after max_steps was raised.
                    if total < max_steps {
                        return Err(ScheduleError::TotalBeforeEnd {
                            total_steps: total,
                            max_steps,
                        });
                    }
                }
                let total = total_steps.unwrap_or(max_steps);
                if warmup_steps >= total {
                    return Err(ScheduleError::WarmupTooLong {
                        warmup_steps,
                        total_steps: total,
                    });
                }
                Ok(())
            }
        }
    }

    /// The step at which the decay reaches its floor in a run of `max_steps` updates
    /// (`None` for a constant schedule, which does not decay).
    pub fn total_steps(&self, max_steps: u64) -> Option<u64> {
        match *self {
            LrSchedule::Constant { .. } => None,
            LrSchedule::Cosine { total_steps, .. } | LrSchedule::Linear { total_steps, .. } => {
                Some(total_steps.unwrap_or(max_steps))
            }
        }
    }

    /// The same schedule with an omitted `total_steps` filled in from `max_steps`: the
    /// fully explicit form, e.g. for a resolved recipe that must not depend on a default.
    pub fn resolved(&self, max_steps: u64) -> LrSchedule {
        let mut out = self.clone();
        if let LrSchedule::Cosine { total_steps, .. } | LrSchedule::Linear { total_steps, .. } =
            &mut out
        {
            *total_steps = Some(total_steps.unwrap_or(max_steps));
        }
        out
    }

    /// The multiplier of the peak rate for the update at `step` of a run of `max_steps`
    /// updates, in `[0, 1]`. `max_steps` matters only where `total_steps` is omitted.
    pub fn factor(&self, step: u64, max_steps: u64) -> f64 {
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
                let p = progress(step, warmup, total_steps.unwrap_or(max_steps));
                min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            }
            LrSchedule::Linear {
                total_steps,
                min_lr_ratio,
                ..
            } => {
                let p = progress(step, warmup, total_steps.unwrap_or(max_steps));
                min_lr_ratio + (1.0 - min_lr_ratio) * (1.0 - p)
            }
        }
    }

    /// The learning rate for the update at `step` of a run of `max_steps` updates, given
    /// the peak rate.
    pub fn lr(&self, peak_lr: f64, step: u64, max_steps: u64) -> f64 {
        peak_lr * self.factor(step, max_steps)
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

    /// A run length that leaves every explicit total in these tests valid and unused.
    const M: u64 = 10;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn constant_with_and_without_warmup() {
        let s = LrSchedule::Constant { warmup_steps: 0 };
        for step in [0, 1, 1000] {
            close(s.lr(3e-4, step, M), 3e-4);
        }
        let s = LrSchedule::Constant { warmup_steps: 4 };
        let f: Vec<f64> = (0..6).map(|i| s.factor(i, M)).collect();
        assert_eq!(f, vec![0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn cosine_known_values() {
        let s = LrSchedule::Cosine {
            warmup_steps: 10,
            total_steps: Some(110),
            min_lr_ratio: 0.1,
        };
        s.validate(M).unwrap();
        close(s.factor(0, M), 0.1);
        close(s.factor(4, M), 0.5);
        close(s.factor(9, M), 1.0);
        close(s.factor(10, M), 1.0); // decay starts at its peak
        close(
            s.factor(35, M),
            0.1 + 0.9 * 0.5 * (1.0 + std::f64::consts::FRAC_1_SQRT_2),
        ); // quarter
        close(s.factor(60, M), 0.55); // halfway: the mean of peak and floor
        close(s.factor(110, M), 0.1);
        close(s.factor(5000, M), 0.1);
        close(s.lr(2e-5, 60, M), 1.1e-5);
    }

    #[test]
    fn cosine_to_zero_is_monotone_after_warmup() {
        let s = LrSchedule::Cosine {
            warmup_steps: 0,
            total_steps: Some(100),
            min_lr_ratio: 0.0,
        };
        close(s.factor(0, M), 1.0);
        close(s.factor(50, M), 0.5);
        close(s.factor(100, M), 0.0);
        for i in 0..120 {
            assert!(s.factor(i + 1, M) <= s.factor(i, M));
        }
    }

    #[test]
    fn linear_known_values() {
        let s = LrSchedule::Linear {
            warmup_steps: 2,
            total_steps: Some(12),
            min_lr_ratio: 0.0,
        };
        let f: Vec<f64> = [0, 1, 2, 7, 11, 12, 13]
            .iter()
            .map(|&i| s.factor(i, M))
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
                total_steps: Some(50),
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
            total_steps: Some(10),
            min_lr_ratio: 0.0,
        };
        assert!(matches!(
            bad.validate(M),
            Err(ScheduleError::WarmupTooLong { .. })
        ));
        let bad = LrSchedule::Cosine {
            warmup_steps: 0,
            total_steps: Some(10),
            min_lr_ratio: f64::NAN,
        };
        assert!(matches!(
            bad.validate(M),
            Err(ScheduleError::BadMinRatio(_))
        ));
        assert!(validate_peak_lr(0.0).is_err());
        assert!(validate_peak_lr(f64::INFINITY).is_err());
        assert!(validate_peak_lr(1e-4).is_ok());
    }

    #[test]
    fn omitted_total_is_the_runs_max_steps() {
        let s: LrSchedule =
            toml::from_str("kind = \"cosine\"\nwarmup_steps = 3\nmin_lr_ratio = 0.1\n").unwrap();
        let explicit = LrSchedule::Cosine {
            warmup_steps: 3,
            total_steps: Some(24),
            min_lr_ratio: 0.1,
        };
        assert_eq!(s.total_steps(24), Some(24));
        assert_eq!(s.resolved(24), explicit);
        s.validate(24).unwrap();
        for step in 0..30 {
            // Bit for bit: an omitted total is the same schedule as the explicit one.
            assert_eq!(
                s.factor(step, 24).to_bits(),
                explicit.factor(step, 24).to_bits()
            );
        }
        // An explicit total ignores the run length.
        assert_eq!(explicit.factor(10, 24), explicit.factor(10, 1000));
        assert_eq!(explicit.resolved(1000), explicit);
        let linear: LrSchedule = toml::from_str("kind = \"linear\"").unwrap();
        close(linear.factor(5, 10), 0.5);
        assert_eq!(LrSchedule::default().total_steps(10), None);
        // The resolved recipe leaves an omitted total out rather than writing a default.
        let text = toml::to_string(&s).unwrap();
        assert!(!text.contains("total_steps"), "{text}");
    }

    #[test]
    fn validation_against_the_run_length() {
        let s = LrSchedule::Cosine {
            warmup_steps: 2,
            total_steps: Some(6),
            min_lr_ratio: 0.0,
        };
        s.validate(6).unwrap();
        s.validate(4).unwrap();
        let err = s.validate(10).unwrap_err();
        assert_eq!(
            err,
            ScheduleError::TotalBeforeEnd {
                total_steps: 6,
                max_steps: 10
            }
        );
        assert_eq!(err.key(), "schedule.total_steps");
        let omitted = LrSchedule::Linear {
            warmup_steps: 8,
            total_steps: None,
            min_lr_ratio: 0.0,
        };
        omitted.validate(9).unwrap();
        let err = omitted.validate(8).unwrap_err();
        assert_eq!(err.key(), "schedule.warmup_steps");
        assert!(
            err.to_string().contains("less than total_steps (8)"),
            "{err}"
        );
        let constant = LrSchedule::Constant { warmup_steps: 5 };
        constant.validate(5).unwrap();
        let err = constant.validate(4).unwrap_err();
        assert!(err.to_string().contains("at most max_steps (4)"), "{err}");
    }
}
