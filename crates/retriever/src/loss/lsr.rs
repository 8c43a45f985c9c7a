//! `lsr`: LM-supervised retrieval (RA-DIT §2.4; REPLUG; Atlas).
//!
//! ```text
//! p_R(c_k | x)      = softmax_k( s(x, c_k) / τ_R )
//! p_LSR(c_k | x, y) = softmax_k( f(c_k) / τ )
//! loss              = KL(p_R ‖ p_LSR)          (direction = "retriever_target", RA-DIT)
//!                   | KL(p_LSR ‖ p_R)          (direction = "target_retriever", Atlas)
//! ```
//! where `f(c)` is, by `signal`, `p_LM(y | c ∘ x)` (`"prob"`, RA-DIT), the summed
//! log-probability `log p_LM(y | c ∘ x)` (`"logprob"`), or its mean per token
//! (`"mean_logprob"`, Atlas). Recipe keys: `signal`, `temperature` (τ, paper 0.01), `direction`.

use burn::tensor::activation::log_softmax;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::{kl_divergence, log_target, LossBatch, LossError, LossParams, RetrieverLoss};

/// Which generator quantity supervises the retriever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LmSignal {
    /// `p_LM(y | c ∘ x)` (RA-DIT, REPLUG).
    Prob,
    /// `log p_LM(y | c ∘ x)`, summed over the continuation's tokens.
    Logprob,
    /// `log p_LM(y | c ∘ x)` divided by the number of tokens (Atlas' perplexity distillation).
    MeanLogprob,
}

impl LmSignal {
    /// `f(c)` for every candidate, `[B, K]`.
    pub fn scores(self, batch: &LossBatch) -> Tensor<2> {
        match self {
            LmSignal::Prob => batch.lm_logprob.clone().exp(),
            LmSignal::Logprob => batch.lm_logprob.clone(),
            LmSignal::MeanLogprob => batch.lm_logprob.clone().div(batch.answer_tokens.clone()),
        }
    }
}

/// Which way the KL divergence goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KlDirection {
    /// `KL(p_R ‖ p_target)` (RA-DIT, REPLUG).
    RetrieverTarget,
    /// `KL(p_target ‖ p_R)` (Atlas).
    TargetRetriever,
}

impl KlDirection {
    /// The divergence between the retriever's and the target's log-distributions.
    pub fn divergence(self, log_retriever: Tensor<2>, log_target: Tensor<2>) -> Tensor<1> {
        match self {
            KlDirection::RetrieverTarget => kl_divergence(log_retriever, log_target),
            KlDirection::TargetRetriever => kl_divergence(log_target, log_retriever),
        }
    }
}

/// The `lsr` loss: LM-supervised retrieval (RA-DIT §2.4), the KL between the retriever's
/// softmax and `p_LSR(c_k) = softmax_k(f(c_k) / τ)`, `f` chosen by `signal`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Lsr {
    /// The generator quantity `f`.
    pub signal: LmSignal,
    /// τ of the target softmax.
    pub temperature: f64,
    /// KL direction.
    pub direction: KlDirection,
}

impl Default for Lsr {
    fn default() -> Self {
        Self {
            signal: LmSignal::Prob,
            temperature: 0.01,
            direction: KlDirection::RetrieverTarget,
        }
    }
}

impl Lsr {
    /// Reads `signal`, `temperature` and `direction` (all optional).
    pub fn from_params(params: &LossParams) -> Result<Self, LossError> {
        let lsr: Lsr = params.parse("lsr")?;
        LossParams::positive("lsr", "temperature", lsr.temperature)?;
        Ok(lsr)
    }
}

impl RetrieverLoss for Lsr {
    fn name(&self) -> &'static str {
        "lsr"
    }
    fn loss(&self, batch: &LossBatch) -> Result<Tensor<1>, LossError> {
        let target = log_target(self.signal.scores(batch), self.temperature);
        let retriever = log_softmax(batch.retriever_logits.clone(), 1);
        Ok(self.direction.divergence(retriever, target))
    }
}
