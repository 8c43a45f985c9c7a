//! `pdist`: Atlas' perplexity distillation (Izacard et al., 2022, §2.2).
//!
//! ```text
//! p_PDist(d_k) = softmax_k( (1/|y|) log p_LM(y | d_k ∘ x) / τ )
//! loss         = KL(p_PDist ‖ p_R)
//! ```
//! The mean token log-likelihood is the negative log-perplexity of the answer. Recipe key:
//! `temperature` (default 1.0).

use burn::tensor::activation::log_softmax;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::{kl_divergence, log_target, LmSignal, LossBatch, LossError, LossParams, RetrieverLoss};

/// The `pdist` loss: Atlas' perplexity distillation, `KL(p_PDist ‖ p_R)` with
/// `p_PDist(d_k) = softmax_k(mean-token log p_LM(y | d_k ∘ x) / τ)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PerplexityDistillation {
    /// τ of the target softmax.
    pub temperature: f64,
}

impl Default for PerplexityDistillation {
    fn default() -> Self {
        Self { temperature: 1.0 }
    }
}

impl PerplexityDistillation {
    /// Reads `temperature` (optional).
    pub fn from_params(params: &LossParams) -> Result<Self, LossError> {
        let p: PerplexityDistillation = params.parse("pdist")?;
        LossParams::positive("pdist", "temperature", p.temperature)?;
        Ok(p)
    }
}

impl RetrieverLoss for PerplexityDistillation {
    fn name(&self) -> &'static str {
        "pdist"
    }
    fn loss(&self, batch: &LossBatch) -> Result<Tensor<1>, LossError> {
        let target = log_target(LmSignal::MeanLogprob.scores(batch), self.temperature);
        let retriever = log_softmax(batch.retriever_logits.clone(), 1);
        Ok(kl_divergence(target, retriever))
    }
}
