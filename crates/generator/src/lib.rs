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
    /// Building an instance failed.
    #[error(transparent)]
    Data(#[from] radit_data::DataError),
    /// Reading or writing a file (the score cache) failed.
    #[error("{}: {}", .0.display(), .1)]
    Io(std::path::PathBuf, std::io::Error),
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
///
/// Only weighted positions go through the output projection and the softmax: in RA-DIT the
/// answer is a small part of each sequence, and the vocabulary projection dominates the cost
/// of the rest.
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
    let scored: Vec<usize> = (0..b * t).filter(|&i| targets.weights[i] != 0.0).collect();
    if scored.is_empty() {
        return Ok(Tensor::zeros([b], &device));
    }
    let n = scored.len();
    let hidden = model.hidden_states(batch, None)?;
    let h = hidden.dims()[2];
    let rows: Vec<i64> = scored.iter().map(|&i| i as i64).collect();
    let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [n]), &device);
    let picked_hidden = hidden
        .reshape([b * t, h])
        .select(0, rows)
        .reshape([1, n, h]);
    let log_probs = log_softmax(
        model
            .logits(picked_hidden)
            .reshape([n, model.config().vocab_size]),
        1,
    );
    let ids: Vec<i64> = scored
        .iter()
        .map(|&i| i64::from(targets.targets[i]))
        .collect();
    let index = Tensor::<2, Int>::from_data(TensorData::new(ids, [n, 1]), &device);
    let picked = log_probs.gather(1, index);
    // A [batch, n] matrix of weights sums each row's scored positions in one matmul.
    let mut assign = vec![0.0f32; b * n];
    for (k, &i) in scored.iter().enumerate() {
        assign[(i / t) * n + k] = targets.weights[i];
    }
    let assign = Tensor::<2>::from_data(TensorData::new(assign, [b, n]), &device);
    Ok(assign.matmul(picked).reshape([b]))
}

pub mod dpo;
pub mod lora;
pub mod scoring;
pub mod trainer;

pub use scoring::{
    weights_fingerprint, LmScore, LmScorer, PromptTokenizer, ScoreCache, ScoreRequest,
};

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
