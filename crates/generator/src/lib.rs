//! `radit-generator`: the generator side of RA-DIT.
//!
//! LM-ft trains the generator on `Background: {chunk}\n\n{instruction}{answer}` with the loss
//! on answer tokens only. This crate holds that loss, and the no-gradient scoring of answers
//! that R-ft (LM-supervised retrieval targets) and evaluation (the ensemble over chunks) use.
//!
//! Targets are next-token ids aligned with the input: `targets[i]` is what position `i` must
//! predict (the token at `i + 1`), and `weights[i]` is 1 where that token belongs to the
//! answer (or the end-of-sequence token after it) and 0 elsewhere. Positions with weight 0 never
//! influence the loss, whatever their target.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use radit_models::{Llama, ModelError, TokenBatch};

/// Errors of the generator stage.
#[derive(Debug, thiserror::Error)]
pub enum GeneratorError {
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Targets do not fit the batch.
    #[error("targets: {0}")]
    Targets(String),
}

/// Next-token targets and loss weights for a [`TokenBatch`], both `[batch, seq_len]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct LmTargets {
    /// Token each position must predict (anything where the weight is 0).
    pub targets: Vec<u32>,
    /// 1.0 on positions whose next token is an answer token, 0.0 elsewhere.
    pub weights: Vec<f32>,
}

impl LmTargets {
    /// Targets for causal LM training where `answer_mask[i]` marks the answer tokens of the
    /// input itself: position `i` predicts token `i + 1`, weighted when `i + 1` is an answer token.
    pub fn from_answer_mask(
        batch: &TokenBatch,
        answer_mask: &[u8],
    ) -> Result<Self, GeneratorError> {
        let n = batch.batch_size * batch.seq_len;
        if answer_mask.len() != n {
            return Err(GeneratorError::Targets(format!(
                "answer mask has {} entries for a {}×{} batch",
                answer_mask.len(),
                batch.batch_size,
                batch.seq_len
            )));
        }
        let mut targets = vec![0u32; n];
        let mut weights = vec![0.0f32; n];
        for r in 0..batch.batch_size {
            let base = r * batch.seq_len;
            for i in 0..batch.seq_len.saturating_sub(1) {
                targets[base + i] = batch.ids[base + i + 1];
                let next_is_answer =
                    answer_mask[base + i + 1] != 0 && batch.mask[base + i + 1] != 0;
                weights[base + i] = if next_is_answer { 1.0 } else { 0.0 };
            }
        }
        Ok(Self { targets, weights })
    }

    /// Number of weighted (answer) positions.
    pub fn count(&self) -> f32 {
        self.weights.iter().sum()
    }
}

/// Per-row summed log-probability of the weighted targets, `[batch]` (differentiable on an
/// autodiff device).
pub fn target_log_likelihood(
    model: &Llama,
    batch: &TokenBatch,
    targets: &LmTargets,
) -> Result<Tensor<1>, GeneratorError> {
    let (b, t) = (batch.batch_size, batch.seq_len);
    if targets.targets.len() != b * t || targets.weights.len() != b * t {
        return Err(GeneratorError::Targets(format!(
            "targets have {} entries for a {b}×{t} batch",
            targets.targets.len()
        )));
    }
    let device = model.device();
    let log_probs = log_softmax(model.logits(model.hidden_states(batch, None)?), 2);
    let ids: Vec<i64> = targets.targets.iter().map(|&v| i64::from(v)).collect();
    let index = Tensor::<3, Int>::from_data(TensorData::new(ids, [b, t, 1]), &device);
    let weights = Tensor::<2>::from_data(TensorData::new(targets.weights.clone(), [b, t]), &device);
    let picked = log_probs.gather(2, index).reshape([b, t]);
    Ok(picked.mul(weights).sum_dim(1).reshape([b]))
}

pub mod trainer;

/// Mean negative log-likelihood per answer token over the whole batch: the LM-ft loss.
pub fn answer_nll(
    model: &Llama,
    batch: &TokenBatch,
    targets: &LmTargets,
) -> Result<Tensor<1>, GeneratorError> {
    let count = targets.count();
    if count == 0.0 {
        return Err(GeneratorError::Targets(
            "the batch has no answer tokens to train on".into(),
        ));
    }
    Ok(target_log_likelihood(model, batch, targets)?
        .sum()
        .neg()
        .div_scalar(count))
}
