//! Stops a run at the first non-finite loss, saying where it happened and what to resume from.

use std::path::{Path, PathBuf};

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

#[cfg(test)]
mod tests {
    use super::*;

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
