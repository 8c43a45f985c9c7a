//! `infonce`: contrastive loss against a given positive chunk (DPR, Contriever).
//!
//! ```text
//! loss = − (1/|B⁺|) Σ_{x ∈ B⁺} log softmax_k( s(x, c_k) / τ_R )[positive(x)]
//! ```
//! over the queries `B⁺` that have a positive among their candidates (the other candidates
//! are the negatives). The generator's scores are not used. Queries without a positive
//! contribute nothing; a batch without any gives a zero loss.
//!
//! With human judgments (`[stages.r_ft.feedback]`, weight λ > 0), the positive of a query
//! with a candidate judged helpful is the best-ranked such candidate, overriding the
//! answer-bearing (or source) chunk; candidates judged not helpful stay negatives. The
//! objective builds [`LossBatch::positive`] that way
//! ([`crate::Candidates::training_positive`]), so the formula above is unchanged.

use burn::tensor::activation::log_softmax;
use burn::tensor::Tensor;

use super::{LossBatch, LossError, Requires, RetrieverLoss};

/// The `infonce` loss (no parameters; the retriever temperature τ_R is in the logits).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InfoNce;

impl RetrieverLoss for InfoNce {
    fn name(&self) -> &'static str {
        "infonce"
    }
    fn requires(&self) -> Requires {
        Requires {
            positive: true,
            human: true,
            ..Requires::default()
        }
    }
    fn loss(&self, batch: &LossBatch) -> Result<Tensor<1>, LossError> {
        let positive = batch.positive.clone().ok_or(LossError::MissingInput {
            name: "infonce",
            input: "positive chunks",
        })?;
        let count = positive.clone().sum().into_scalar::<f32>().max(1.0);
        let log_p = log_softmax(batch.retriever_logits.clone(), 1);
        Ok(log_p.mul(positive).sum().neg().div_scalar(f64::from(count)))
    }
}
