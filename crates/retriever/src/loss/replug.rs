//! `replug`: REPLUG's LM-supervised retrieval (Shi et al., 2023, eq. 4–5).
//!
//! ```text
//! P_R(d_k | x)   = softmax_k( s(x, d_k) / γ )      (γ = τ_R, applied to the logits)
//! Q(d_k | x, y)  = softmax_k( P_LM(y | d_k ∘ x) / β )
//! loss           = KL(P_R ‖ Q)
//! ```
//! The supervision is the plain probability of the continuation, never its logarithm, and
//! the divergence always runs from the retriever to the target. Recipe key: `beta` (default
//! 0.01). `lsr` with `signal = "prob"` is the same family with free choices.

use burn::tensor::activation::log_softmax;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::{kl_divergence, log_target, LossBatch, LossError, LossParams, RetrieverLoss};

/// The `replug` loss: REPLUG's `KL(P_R ‖ Q)` with `Q(d_k) = softmax_k(P_LM(y | d_k ∘ x) / β)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Replug {
    /// β, the temperature of the LM target.
    pub beta: f64,
}

impl Default for Replug {
    fn default() -> Self {
        Self { beta: 0.01 }
    }
}

impl Replug {
    /// Reads `beta` (optional).
    pub fn from_params(params: &LossParams) -> Result<Self, LossError> {
        let r: Replug = params.parse("replug")?;
        LossParams::positive("replug", "beta", r.beta)?;
        Ok(r)
    }
}

impl RetrieverLoss for Replug {
    fn name(&self) -> &'static str {
        "replug"
    }
    fn loss(&self, batch: &LossBatch) -> Result<Tensor<1>, LossError> {
        let target = log_target(batch.lm_logprob.clone().exp(), self.beta);
        let retriever = log_softmax(batch.retriever_logits.clone(), 1);
        Ok(kl_divergence(retriever, target))
    }
}
