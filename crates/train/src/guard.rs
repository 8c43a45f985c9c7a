//! Stops a run at the first non-finite loss, gradient norm or parameter, and when training
//! has stalled (see [`DivergenceConfig`]), saying where it happened and what to resume from.
//!
//! The trainer checks the loss and the global gradient norm before the optimizer step, and
//! the parameters' finiteness before every checkpoint, so no checkpoint it writes (nor the
//! one [`NonFiniteError`] names as the last good one) holds NaN or infinite weights.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A loss (or other watched value) became NaN or infinite.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", self.message())]
pub struct NonFiniteError {
    /// The quantity, e.g. `loss` or `grad-norm`.
    pub what: String,
    /// The step at which it became non-finite.
    pub step: u64,
    /// The value (NaN, +inf or -inf).
    pub value: f64,
    /// The newest checkpoint saved before it, `(step, directory)`.
    pub last_good: Option<(u64, PathBuf)>,
}

impl NonFiniteError {
    fn message(&self) -> String {
        let mut msg = format!(
            "{} became {} at step {}; training stopped",
            self.what, self.value, self.step
        );
        match &self.last_good {
            Some((step, dir)) => msg.push_str(&format!(
                ". The last good checkpoint is step {step} at {} (intact; resume from it, \
                 perhaps with a lower learning rate)",
                dir.display()
            )),
            None => msg.push_str(". No checkpoint had been saved yet"),
        }
        msg
    }
}

/// Watches losses and remembers the last checkpoint saved before them.
#[derive(Debug, Clone, Default)]
pub struct LossGuard {
    last_good: Option<(u64, PathBuf)>,
}

impl LossGuard {
    /// A guard that knows of no checkpoint yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A guard for a resumed run, which starts from checkpoint `dir` at `step`.
    pub fn resumed_from(step: u64, dir: &Path) -> Self {
        LossGuard {
            last_good: Some((step, dir.to_path_buf())),
        }
    }

    /// Records a checkpoint saved after finite losses only.
    pub fn checkpoint_saved(&mut self, step: u64, dir: &Path) {
        self.last_good = Some((step, dir.to_path_buf()));
    }

    /// The newest checkpoint recorded.
    pub fn last_good(&self) -> Option<(u64, &Path)> {
        self.last_good.as_ref().map(|(s, d)| (*s, d.as_path()))
    }

    /// Passes finite parameters through. `probe` is the sum of `0 × x` over every parameter
    /// `x` (0 when all are finite, NaN otherwise; unlike a sum of squares it cannot overflow).
    /// `lr` and `grad_norm` are those of the optimizer step that produced them.
    pub fn check_params(
        &self,
        step: u64,
        probe: f64,
        lr: f64,
        grad_norm: f64,
    ) -> Result<(), NonFiniteError> {
        let what = format!(
            "a parameter (after the optimizer step at lr {lr:e}, gradient norm {grad_norm:e})"
        );
        self.check(&what, step, probe).map(|_| ())
    }

    /// Passes a finite `loss` through; a NaN or infinite one is an error.
    pub fn check_loss(&self, step: u64, loss: f64) -> Result<f64, NonFiniteError> {
        self.check("loss", step, loss)
    }

    /// Like [`LossGuard::check_loss`] for any watched value (e.g. `grad-norm`).
    pub fn check(&self, what: &str, step: u64, value: f64) -> Result<f64, NonFiniteError> {
        if value.is_finite() {
            Ok(value)
        } else {
            Err(NonFiniteError {
                what: what.to_string(),
                step,
                value,
                last_good: self.last_good.clone(),
            })
        }
    }
}

/// When training has stalled without any value becoming non-finite: the check that stops a
/// run whose learning rate wrecked the model (e.g. `lr = 1e6`: the loss freezes and the
/// gradients vanish) instead of letting it finish "successfully". As written in a train
/// table (all keys optional; these are the defaults):
///
/// ```toml
/// divergence = { patience = 20, zero_grad = true }
/// ```
///
/// - `zero_grad`: the global gradient norm (before clipping) was exactly `0.0` for
///   `patience` consecutive steps. A healthy run never has an exactly zero gradient, let
///   alone twenty in a row (it also fires when nothing is trainable), so it is on by default.
/// - `loss_factor` (off by default): the loss stayed above `loss_factor ×` the run's first
///   loss for `patience` consecutive steps. Losses of different objectives have different
///   floors (a KL can start near 0), so no factor suits every recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DivergenceConfig {
    /// Consecutive steps a rule must hold before the run stops (at least 1).
    #[serde(default = "default_patience")]
    pub patience: u64,
    /// Stop on an exactly zero gradient norm for `patience` steps.
    #[serde(default = "yes")]
    pub zero_grad: bool,
    /// Stop when the loss stays above this multiple of the first loss (finite, > 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_factor: Option<f64>,
}

fn default_patience() -> u64 {
    20
}

fn yes() -> bool {
    true
}

impl Default for DivergenceConfig {
    fn default() -> Self {
        DivergenceConfig {
            patience: default_patience(),
            zero_grad: true,
            loss_factor: None,
        }
    }
}

/// Consecutive-step counts of the [`DivergenceConfig`] rules, saved with the trainer state
/// so that a resumed run counts on exactly as an uninterrupted one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Streaks {
    /// Steps in a row with a gradient norm of exactly 0.
    #[serde(default)]
    pub zero_grad: u64,
    /// Steps in a row with the loss above `loss_factor ×` the first loss.
    #[serde(default)]
    pub high_loss: u64,
}

impl DivergenceConfig {
    /// Checks the settings: `Err((key, reason))`, the key relative to the train table.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.patience == 0 {
            return Err(("divergence.patience", "must be at least 1, got 0".into()));
        }
        if let Some(f) = self.loss_factor {
            if !(f.is_finite() && f > 1.0) {
                return Err((
                    "divergence.loss_factor",
                    format!("must be finite and > 1, got {f}"),
                ));
            }
        }
        Ok(())
    }

    /// Counts step `step` (1-based) into `streaks`, given its finite `loss` and gradient
    /// norm and the run's `first_loss`; an error when a rule has held for `patience` steps.
    pub fn observe(
        &self,
        streaks: &mut Streaks,
        step: u64,
        loss: f64,
        first_loss: f64,
        grad_norm: f64,
    ) -> Result<(), DivergenceError> {
        streaks.zero_grad = if grad_norm == 0.0 {
            streaks.zero_grad + 1
        } else {
            0
        };
        let high = self
            .loss_factor
            .is_some_and(|f| first_loss.is_finite() && loss > f * first_loss.abs());
        streaks.high_loss = if high { streaks.high_loss + 1 } else { 0 };
        let rule = if self.zero_grad && streaks.zero_grad >= self.patience {
            Some(Stall::ZeroGradient)
        } else {
            self.loss_factor
                .filter(|_| streaks.high_loss >= self.patience)
                .map(|factor| Stall::HighLoss { factor, first_loss })
        };
        match rule {
            Some(rule) => Err(DivergenceError {
                rule,
                step,
                since: step + 1 - self.patience,
                loss,
                last_good: None,
            }),
            None => Ok(()),
        }
    }
}

/// Which [`DivergenceConfig`] rule fired.
#[derive(Debug, Clone, PartialEq)]
pub enum Stall {
    /// The gradient norm was exactly 0.
    ZeroGradient,
    /// The loss stayed above `factor × first_loss`.
    HighLoss {
        /// The configured `loss_factor`.
        factor: f64,
        /// The run's first loss.
        first_loss: f64,
    },
}

/// Training stalled: a [`DivergenceConfig`] rule held for `patience` steps.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", self.message())]
pub struct DivergenceError {
    /// The rule that fired.
    pub rule: Stall,
    /// The step at which it fired (that step was not applied).
    pub step: u64,
    /// The first step of the streak.
    pub since: u64,
    /// The loss at `step`.
    pub loss: f64,
    /// The newest checkpoint still on disk from before the streak: its weights still had
    /// a gradient, `(step, directory)`.
    pub last_good: Option<(u64, PathBuf)>,
}

impl DivergenceError {
    fn message(&self) -> String {
        let what = match &self.rule {
            Stall::ZeroGradient => format!(
                "the gradient norm was exactly 0 at every step from {} to {} (loss {}): the \
                 parameters no longer change, most likely because the learning rate wrecked \
                 the model (or nothing is trainable)",
                self.since, self.step, self.loss
            ),
            Stall::HighLoss { factor, first_loss } => format!(
                "the loss stayed above {factor} × the first loss ({first_loss}) at every step \
                 from {} to {} (now {}): training diverged",
                self.since, self.step, self.loss
            ),
        };
        let mut msg = format!("{what}; training stopped (see `divergence` in the train table)");
        match &self.last_good {
            Some((step, dir)) => msg.push_str(&format!(
                ". The newest checkpoint from before that is step {step} at {}; checkpoints \
                 saved since hold the stalled model. Resume from it with a lower learning rate",
                dir.display()
            )),
            None => msg.push_str(
                ". No checkpoint from before that is left; start over with a lower learning rate",
            ),
        }
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_gradients_for_patience_steps_stop_the_run() {
        let cfg = DivergenceConfig {
            patience: 3,
            ..DivergenceConfig::default()
        };
        let mut s = Streaks::default();
        cfg.observe(&mut s, 1, 10.8, 10.8, 0.0).unwrap();
        cfg.observe(&mut s, 2, 10.8, 10.8, 0.0).unwrap();
        // A non-zero norm restarts the count.
        cfg.observe(&mut s, 3, 10.8, 10.8, 1e-30).unwrap();
        cfg.observe(&mut s, 4, 10.8, 10.8, 0.0).unwrap();
        cfg.observe(&mut s, 5, 10.8, 10.8, 0.0).unwrap();
        let e = cfg.observe(&mut s, 6, 10.8, 10.8, 0.0).unwrap_err();
        assert_eq!(
            (e.step, e.since, e.rule.clone()),
            (6, 4, Stall::ZeroGradient)
        );
        assert!(
            e.to_string()
                .contains("exactly 0 at every step from 4 to 6"),
            "{e}"
        );
        assert!(e.to_string().contains("No checkpoint from before"), "{e}");
        // Off: never fires.
        let off = DivergenceConfig {
            zero_grad: false,
            ..cfg.clone()
        };
        let mut s = Streaks::default();
        for step in 1..100 {
            off.observe(&mut s, step, 10.8, 10.8, 0.0).unwrap();
        }
    }

    #[test]
    fn loss_factor_is_opt_in_and_needs_consecutive_steps() {
        let mut s = Streaks::default();
        // The default has no factor: a loss far above the first never fires.
        let default = DivergenceConfig::default();
        for step in 1..100 {
            default.observe(&mut s, step, 1e6, 3.0, 5.0).unwrap();
        }
        let cfg = DivergenceConfig {
            patience: 2,
            zero_grad: true,
            loss_factor: Some(3.0),
        };
        let mut s = Streaks::default();
        cfg.observe(&mut s, 1, 10.0, 3.0, 5.0).unwrap();
        cfg.observe(&mut s, 2, 8.0, 3.0, 5.0).unwrap();
        cfg.observe(&mut s, 3, 9.5, 3.0, 5.0).unwrap();
        let e = cfg.observe(&mut s, 4, 9.6, 3.0, 5.0).unwrap_err();
        assert_eq!(e.since, 3);
        assert!(
            e.to_string().contains("above 3 × the first loss (3)"),
            "{e}"
        );
        assert_eq!(cfg.validate(), Ok(()));
        let bad = DivergenceConfig {
            loss_factor: Some(0.5),
            ..cfg
        };
        assert_eq!(bad.validate().unwrap_err().0, "divergence.loss_factor");
    }

    #[test]
    fn finite_passes_nan_reports_step_and_checkpoint() {
        let mut g = LossGuard::new();
        assert_eq!(g.check_loss(1, 2.5), Ok(2.5));
        let e = g.check_loss(3, f64::NAN).unwrap_err();
        assert_eq!(
            e.to_string(),
            "loss became NaN at step 3; training stopped. No checkpoint had been saved yet"
        );
        g.checkpoint_saved(200, Path::new("run/checkpoints/step-00000200"));
        let e = g.check_loss(257, f64::INFINITY).unwrap_err();
        assert_eq!(e.step, 257);
        assert_eq!(
            e.to_string(),
            "loss became inf at step 257; training stopped. The last good checkpoint is step 200 \
             at run/checkpoints/step-00000200 (intact; resume from it, perhaps with a lower \
             learning rate)"
        );
        let e = g.check("grad-norm", 258, f64::NEG_INFINITY).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("grad-norm became -inf at step 258"));
        let r = LossGuard::resumed_from(9, Path::new("d"));
        assert_eq!(r.last_good(), Some((9, Path::new("d"))));
    }
}
