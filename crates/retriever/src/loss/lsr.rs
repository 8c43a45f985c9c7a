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
//!
//! With human judgments (`[stages.r_ft.feedback]`, weight λ), a query with at least one
//! candidate judged helpful distils towards a mixture instead:
//!
//! ```text
//! p_human(c_k | x) = 1/|H(x)| if c_k ∈ H(x) else 0     (H(x): candidates judged helpful)
//! p_target         = (1 − λ)·p_LSR + λ·p_human
//! ```
//! so λ = 0 is plain LSR and λ = 1 is the KL towards the reviewers' distribution (a
//! candidate without human mass gets the target `1e-30` there, see
//! [`super::HUMAN_LOG_FLOOR`]). Queries without a helpful judgment keep `p_LSR`.

use burn::tensor::activation::log_softmax;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::{
    human_log_target, kl_divergence, log_target, LossBatch, LossError, LossParams, Requires,
    RetrieverLoss,
};

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
    fn requires(&self) -> Requires {
        Requires {
            human: true,
            ..Requires::default()
        }
    }
    fn loss(&self, batch: &LossBatch) -> Result<Tensor<1>, LossError> {
        let mut target = log_target(self.signal.scores(batch), self.temperature);
        if let Some(human) = &batch.human {
            target = human_log_target(target, human.clone(), batch.human_weight);
        }
        let retriever = log_softmax(batch.retriever_logits.clone(), 1);
        Ok(self.direction.divergence(retriever, target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::HUMAN_LOG_FLOOR;
    use burn::tensor::{Device, TensorData};

    const K: usize = 3;

    fn tensor(data: &[f32]) -> Tensor<2> {
        let rows = data.len() / K;
        Tensor::from_data(TensorData::new(data.to_vec(), [rows, K]), &Device::flex())
    }

    fn value(t: Tensor<1>) -> f64 {
        f64::from(t.into_scalar::<f32>())
    }

    /// Two queries: the first has candidates 0 and 2 judged helpful, the second none.
    fn batch(weight: f64, human: bool) -> LossBatch {
        let logits = [0.5, -0.3, 1.2, 0.1, 0.9, -0.4];
        LossBatch {
            retriever_logits: tensor(&logits),
            lm_logprob: tensor(&[-2.0, -0.5, -3.0, -1.0, -4.0, -0.2]),
            answer_tokens: tensor(&[2.0; 6]),
            loo_logprob: None,
            positive: None,
            human: human.then(|| tensor(&[0.5, 0.0, 0.5, 0.0, 0.0, 0.0])),
            human_weight: weight,
        }
    }

    fn log_softmax_host(row: &[f64]) -> Vec<f64> {
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = row.iter().map(|x| (x - max).exp()).sum::<f64>().ln() + max;
        row.iter().map(|x| x - lse).collect()
    }

    fn lsr(direction: KlDirection) -> Lsr {
        Lsr {
            signal: LmSignal::Logprob,
            temperature: 0.5,
            direction,
        }
    }

    /// KL(p ‖ q) of one row, from log-probabilities.
    fn kl(log_p: &[f64], log_q: &[f64]) -> f64 {
        log_p
            .iter()
            .zip(log_q)
            .map(|(p, q)| p.exp() * (p - q))
            .sum()
    }

    #[test]
    fn weight_one_is_the_kl_towards_the_human_distribution() {
        let log_r = log_softmax_host(&[0.5, -0.3, 1.2]);
        let floor = HUMAN_LOG_FLOOR;
        let log_h = [0.5f64.ln(), floor, 0.5f64.ln()];
        // The second query has no label: plain LSR, with its LM target by hand.
        let lm = log_softmax_host(&[-1.0 / 0.5, -4.0 / 0.5, -0.2 / 0.5]);
        let log_r2 = log_softmax_host(&[0.1, 0.9, -0.4]);
        for direction in [KlDirection::TargetRetriever, KlDirection::RetrieverTarget] {
            let (first, second) = match direction {
                KlDirection::TargetRetriever => (kl(&log_h, &log_r), kl(&lm, &log_r2)),
                KlDirection::RetrieverTarget => (kl(&log_r, &log_h), kl(&log_r2, &lm)),
            };
            let expected = (first + second) / 2.0;
            let got = value(lsr(direction).loss(&batch(1.0, true)).unwrap());
            assert!(
                (got - expected).abs() < 1e-4 * expected.abs().max(1.0),
                "{direction:?}: {got} vs {expected}"
            );
        }
        // Towards p_human, only the helpful candidates count: ln ½ − ½(ln p_R0 + ln p_R2).
        let by_hand = 0.5f64.ln() - 0.5 * (log_r[0] + log_r[2]);
        assert!((kl(&log_h, &log_r) - by_hand).abs() < 1e-12);
    }

    #[test]
    fn weight_zero_is_plain_lsr() {
        for direction in [KlDirection::TargetRetriever, KlDirection::RetrieverTarget] {
            let plain = value(lsr(direction).loss(&batch(0.0, false)).unwrap());
            let zero = value(lsr(direction).loss(&batch(0.0, true)).unwrap());
            assert_eq!(plain, zero);
        }
    }

    #[test]
    fn rows_without_labels_are_unaffected() {
        let target = log_target(tensor(&[-2.0, -0.5, -3.0, -1.0, -4.0, -0.2]), 0.5);
        let human = tensor(&[0.5, 0.0, 0.5, 0.0, 0.0, 0.0]);
        for weight in [0.3, 1.0] {
            let before: Vec<f32> = target.clone().into_data().try_to_vec::<f32>().unwrap();
            let mixed: Vec<f32> = human_log_target(target.clone(), human.clone(), weight)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            assert_eq!(mixed[K..], before[K..], "λ = {weight}");
            // The labelled row is the mixture, by hand.
            for j in 0..K {
                let p_h = [0.5, 0.0, 0.5][j];
                let want = ((1.0 - weight) * f64::from(before[j]).exp() + weight * p_h)
                    .max(HUMAN_LOG_FLOOR.exp())
                    .ln();
                assert!(
                    (f64::from(mixed[j]) - want).abs() < 1e-4,
                    "λ = {weight}, {j}: {} vs {want}",
                    mixed[j]
                );
            }
        }
    }
}
