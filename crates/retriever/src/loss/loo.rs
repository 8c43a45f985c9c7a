//! `loop`: Atlas' leave-one-out perplexity distillation (Izacard et al., 2022, §2.2).
//!
//! ```text
//! f(d_k)      = − log p_LM(y | {d_j : j ≠ k} ∘ x)     (the other K−1 chunks, concatenated)
//! p_LOOP(d_k) = softmax_k( f(d_k) / τ )
//! loss        = KL(p_LOOP ‖ p_R)
//! ```
//! A chunk whose removal hurts the continuation most gets the most target mass. The
//! leave-one-out log-likelihoods are computed by the generator for losses that report
//! [`Requires::leave_one_out`]. Recipe key: `temperature` (default 1.0).

use burn::tensor::activation::log_softmax;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::{kl_divergence, log_target, LossBatch, LossError, LossParams, Requires, RetrieverLoss};

/// The `loop` loss: Atlas' leave-one-out perplexity distillation, `KL(p_LOOP ‖ p_R)` with
/// `p_LOOP(d_k) = softmax_k(−log p_LM(y | other chunks ∘ x) / τ)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LeaveOneOut {
    /// τ of the target softmax.
    pub temperature: f64,
}

impl Default for LeaveOneOut {
    fn default() -> Self {
        Self { temperature: 1.0 }
    }
}

impl LeaveOneOut {
    /// Reads `temperature` (optional).
    pub fn from_params(params: &LossParams) -> Result<Self, LossError> {
        let l: LeaveOneOut = params.parse("loop")?;
        LossParams::positive("loop", "temperature", l.temperature)?;
        Ok(l)
    }
}

impl RetrieverLoss for LeaveOneOut {
    fn name(&self) -> &'static str {
        "loop"
    }
    fn requires(&self) -> Requires {
        Requires {
            leave_one_out: true,
            ..Requires::default()
        }
    }
    fn loss(&self, batch: &LossBatch) -> Result<Tensor<1>, LossError> {
        let loo = batch.loo_logprob.clone().ok_or(LossError::MissingInput {
            name: "loop",
            input: "leave-one-out log-likelihoods",
        })?;
        let target = log_target(loo.neg(), self.temperature);
        let retriever = log_softmax(batch.retriever_logits.clone(), 1);
        Ok(kl_divergence(target, retriever))
    }
}
