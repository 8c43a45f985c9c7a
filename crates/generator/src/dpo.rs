//! DPO (Direct Preference Optimization, Rafailov et al. 2023) of the generator as an
//! [`Objective`] of the shared loop.
//!
//! A preference pair is one prompt `x` (the RA-DIT prompt with its background chunk) with a
//! chosen answer `y_c` and a rejected one `y_r`. With π the generator being trained and π_ref
//! the generator at the start of the stage (frozen), each pair's loss is
//!
//! ```text
//! z    = β · [(log π(y_c|x) − log π_ref(y_c|x)) − (log π(y_r|x) − log π_ref(y_r|x))]
//! loss = −log σ(z) = softplus(−z)
//! ```
//!
//! where `log π(y|x)` is the sum of the answer tokens' log-probabilities (EOS included, as in
//! LM-ft), and a micro-batch's loss is the mean over its pairs. π_ref's log-probabilities are
//! computed once, when the objective is built, so π_ref need not stay in memory.

use burn::tensor::activation::softplus;
use burn::tensor::{Tensor, TensorData};
use radit_data::{
    pad_batch, BuildReport, Example, ExampleKey, Instance, InstanceBuilder, Sampler, SamplerConfig,
    SamplerState, Tokenize,
};
use radit_models::layers::to_host;
use radit_models::{Llama, TokenBatch};
use radit_train::trainer::{BoxError, MicroBatchLoss, Objective};

use crate::{target_log_likelihood, GeneratorError, LmTargets};

/// Per-pair DPO logits `z = β·[(π_c − ref_c) − (π_r − ref_r)]`, `[pairs]`, from summed answer
/// log-probabilities (each `[pairs]`). Differentiable through the policy terms.
pub fn dpo_logits(
    policy_chosen: Tensor<1>,
    policy_rejected: Tensor<1>,
    ref_chosen: Tensor<1>,
    ref_rejected: Tensor<1>,
    beta: f64,
) -> Tensor<1> {
    policy_chosen
        .sub(ref_chosen)
        .sub(policy_rejected.sub(ref_rejected))
        .mul_scalar(beta)
}

/// The DPO loss of a micro-batch: the mean over pairs of `−log σ(z)` (see [`dpo_logits`]),
/// `[1]`. Computed as `softplus(−z)`, which stays finite for large `|z|` where
/// `log(sigmoid(z))` would underflow to `log 0`.
pub fn dpo_loss(
    policy_chosen: Tensor<1>,
    policy_rejected: Tensor<1>,
    ref_chosen: Tensor<1>,
    ref_rejected: Tensor<1>,
    beta: f64,
) -> Tensor<1> {
    mean_loss_of_logits(dpo_logits(
        policy_chosen,
        policy_rejected,
        ref_chosen,
        ref_rejected,
        beta,
    ))
}

/// `mean(softplus(−z))`, `[1]`: the DPO loss of the logits `z`.
pub fn mean_loss_of_logits(z: Tensor<1>) -> Tensor<1> {
    softplus(z.neg(), 1.0).mean()
}

/// The two instances of one preference pair: the same prompt (key, background, markers) with
/// the chosen and the rejected answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairInstances {
    /// Prompt and chosen answer.
    pub chosen: Instance,
    /// The same prompt and the rejected answer.
    pub rejected: Instance,
}

/// Builds the instances of a preference pair with `builder` (the RA-DIT prompt LM-ft trains
/// on): `prompt` is the question, `background` the chunk (none: a closed-book prompt). Both
/// answers get answer-only label masks. `None` (counted in `report`) when either side does not
/// fit the builder's `max_len`.
///
/// The builder truncates the background to leave room for the answer, so two answers of
/// different lengths may get different cuts; the pair then takes the shorter prompt for both
/// sides, because DPO compares two answers to the *same* `x`. (The shorter prompt was cut for
/// the longer answer, so it leaves room for either.)
pub fn pair_instances<T: Tokenize>(
    builder: &InstanceBuilder<T>,
    key: ExampleKey,
    prompt: &str,
    chosen: &str,
    rejected: &str,
    background: Option<&str>,
    report: &mut BuildReport,
) -> Result<Option<PairInstances>, GeneratorError> {
    let chunks: Vec<&str> = background.into_iter().collect();
    let mut build = |answer: &str| -> Result<Option<Instance>, GeneratorError> {
        let example = Example {
            id: format!("preference:{}", key.example),
            question: prompt.to_string(),
            answers: vec![answer.to_string()],
            context: None,
            choices: Vec::new(),
        };
        Ok(builder
            .instances(key, &example, &chunks, report)?
            .into_iter()
            .next())
    };
    let (Some(mut chosen), Some(mut rejected)) = (build(chosen)?, build(rejected)?) else {
        return Ok(None);
    };
    if chosen.ids[..chosen.prompt_len] != rejected.ids[..rejected.prompt_len] {
        if chosen.prompt_len < rejected.prompt_len {
            rejected = with_prompt_of(&chosen, &rejected);
        } else {
            chosen = with_prompt_of(&rejected, &chosen);
        }
    }
    Ok(Some(PairInstances { chosen, rejected }))
}

/// `answer`'s answer tokens after `prompt`'s prompt tokens.
fn with_prompt_of(prompt: &Instance, answer: &Instance) -> Instance {
    let mut ids = prompt.ids[..prompt.prompt_len].to_vec();
    ids.extend_from_slice(&answer.ids[answer.prompt_len..]);
    let mut answer_mask = prompt.answer_mask[..prompt.prompt_len].to_vec();
    answer_mask.extend_from_slice(&answer.answer_mask[answer.prompt_len..]);
    Instance {
        key: answer.key,
        chunk: answer.chunk,
        ids,
        answer_mask,
        prompt_len: prompt.prompt_len,
        background_tokens_dropped: prompt.background_tokens_dropped,
    }
}

/// Summed answer log-probability of `instances[i]` for each `i` of `indices`, `[indices]`,
/// one right-padded row per instance (differentiable on an autodiff device). The policy and
/// the reference both go through here, so both score exactly the same tokens.
pub fn answer_log_likelihoods(
    model: &Llama,
    instances: &[Instance],
    indices: &[usize],
    pad_id: u32,
) -> Result<Tensor<1>, GeneratorError> {
    let batch = pad_batch(instances, indices, pad_id, None)?;
    let tokens = TokenBatch::packed(batch.ids, batch.segment_ids, batch.rows, batch.seq_len)?;
    let targets = LmTargets::from_answer_mask(&tokens, &batch.answer_mask)?;
    target_log_likelihood(model, &tokens, &targets)
}

/// Settings of the DPO objective.
#[derive(Debug, Clone, PartialEq)]
pub struct DpoConfig {
    /// β: how far the policy may move from the reference (the paper's 0.1 is typical).
    pub beta: f64,
    /// Pairs per micro-batch (each pair is two rows).
    pub batch_size: usize,
    /// Seed of the pair order.
    pub seed: u64,
    /// Padding token id.
    pub pad_id: u32,
}

/// The DPO objective over a fixed set of preference pairs, served in a seeded order that
/// checkpoints save and restore (the same sampler LM-ft uses, one "example" per pair).
pub struct DpoObjective {
    /// `rows[2i]` is pair `i`'s chosen instance, `rows[2i + 1]` its rejected one.
    rows: Vec<Instance>,
    /// π_ref's summed answer log-probability of each row.
    reference: Vec<f32>,
    sampler: Sampler,
    config: DpoConfig,
}

impl DpoObjective {
    /// The objective over `pairs`, with `reference` (the generator at the start of the stage,
    /// on an inference device) scoring every pair once, `config.batch_size` pairs at a time.
    pub fn new(
        reference: &Llama,
        pairs: Vec<PairInstances>,
        config: DpoConfig,
    ) -> Result<Self, GeneratorError> {
        if !(config.beta.is_finite() && config.beta > 0.0) {
            return Err(GeneratorError::Targets(format!(
                "DPO beta must be finite and > 0, got {}",
                config.beta
            )));
        }
        let n = pairs.len();
        let rows: Vec<Instance> = pairs
            .into_iter()
            .flat_map(|p| [p.chosen, p.rejected])
            .collect();
        // One group per pair: the sampler shuffles pairs, never splits one.
        let groups = vec![(0..n).map(|i| vec![i]).collect()];
        let sampler = Sampler::new(
            groups,
            SamplerConfig {
                batch_size: config.batch_size,
                seed: config.seed,
                cap: None,
                drop_last: false,
            },
        )?;
        let all: Vec<usize> = (0..rows.len()).collect();
        let mut scores = Vec::with_capacity(rows.len());
        for chunk in all.chunks(2 * config.batch_size.max(1)) {
            let logprobs = answer_log_likelihoods(reference, &rows, chunk, config.pad_id)?.detach();
            scores.extend(to_host(logprobs)?.data);
        }
        Ok(Self {
            rows,
            reference: scores,
            sampler,
            config,
        })
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.rows.len() / 2
    }

    /// Whether there is no pair (never true for a built objective: the sampler refuses it).
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// π_ref's summed answer log-probabilities `(chosen, rejected)` of pair `i`.
    pub fn reference(&self, i: usize) -> Option<(f32, f32)> {
        Some((*self.reference.get(2 * i)?, *self.reference.get(2 * i + 1)?))
    }

    /// The DPO logits `z` (see [`dpo_logits`]) of `pairs` under `model`, `[pairs]`.
    pub fn logits(&self, model: &Llama, pairs: &[usize]) -> Result<Tensor<1>, GeneratorError> {
        let n = pairs.len();
        if let Some(&bad) = pairs.iter().find(|&&i| i >= self.len()) {
            return Err(GeneratorError::Targets(format!(
                "pair {bad} of {} requested",
                self.len()
            )));
        }
        // Chosen rows first, then rejected ones: one forward pass for the whole micro-batch.
        let indices: Vec<usize> = pairs
            .iter()
            .map(|&i| 2 * i)
            .chain(pairs.iter().map(|&i| 2 * i + 1))
            .collect();
        let policy = answer_log_likelihoods(model, &self.rows, &indices, self.config.pad_id)?;
        let device = model.device();
        let reference: Vec<f32> = indices.iter().map(|&r| self.reference[r]).collect();
        let reference = Tensor::<1>::from_data(TensorData::new(reference, [2 * n]), &device);
        Ok(dpo_logits(
            policy.clone().narrow(0, 0, n),
            policy.narrow(0, n, n),
            reference.clone().narrow(0, 0, n),
            reference.narrow(0, n, n),
            self.config.beta,
        ))
    }

    /// The mean DPO loss of `pairs` under `model` (no sampling: for inspection and tests).
    pub fn loss(&self, model: &Llama, pairs: &[usize]) -> Result<Tensor<1>, GeneratorError> {
        Ok(mean_loss_of_logits(self.logits(model, pairs)?))
    }
}

impl Objective<Llama> for DpoObjective {
    fn next_loss(&mut self, model: &Llama, _step: u64) -> Result<MicroBatchLoss, BoxError> {
        let sampled = self.sampler.next_batch();
        Ok(MicroBatchLoss {
            loss: self.loss(model, &sampled.indices)?,
            items: sampled.indices.len() as u64,
        })
    }
    fn state(&self) -> Result<Vec<u8>, BoxError> {
        Ok(serde_json::to_vec(&self.sampler.state())?)
    }
    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        let state: SamplerState = serde_json::from_slice(state)?;
        Ok(self.sampler.restore(state)?)
    }
    fn unit(&self) -> &'static str {
        "pairs"
    }
}
