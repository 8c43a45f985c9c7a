//! LM-ft as an [`Objective`] of the shared loop: answer-only NLL of token batches.

use radit_models::{Llama, TokenBatch};
use radit_train::trainer::{
    train, BoxError, MicroBatchLoss, Objective, Outcome, RunContext, TrainConfig, TrainError,
    TrainerState,
};

use crate::{answer_nll, LmTargets};

/// Where LM-ft batches come from, with a position that checkpoints save and restore so a
/// resumed run sees exactly the batches an uninterrupted one would.
pub trait BatchSource {
    /// The next micro-batch and its answer mask (`[batch, seq_len]`, 1 on answer tokens).
    fn next_batch(&mut self) -> Result<(TokenBatch, Vec<u8>), BoxError>;
    /// The current position, serialized. An error fails the checkpoint being written (and
    /// the run) rather than saving a position that could not resume.
    fn state(&self) -> Result<Vec<u8>, BoxError>;
    /// Restores a position returned by [`BatchSource::state`].
    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError>;
}

/// A borrowed source serves its owner's batches.
impl<S: BatchSource + ?Sized> BatchSource for &mut S {
    fn next_batch(&mut self) -> Result<(TokenBatch, Vec<u8>), BoxError> {
        (**self).next_batch()
    }
    fn state(&self) -> Result<Vec<u8>, BoxError> {
        (**self).state()
    }
    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        (**self).restore(state)
    }
}

/// The LM-ft objective: mean NLL of answer tokens, throughput counted in (non-padding) tokens.
/// It owns its source (`&mut S` borrows one).
pub struct LmObjective<S> {
    source: S,
}

impl<S: BatchSource> LmObjective<S> {
    /// Trains on the batches of `source`.
    pub fn new(source: S) -> Self {
        Self { source }
    }
}

impl<S: BatchSource> Objective<Llama> for LmObjective<S> {
    fn next_loss(&mut self, model: &Llama, _step: u64) -> Result<MicroBatchLoss, BoxError> {
        let (batch, answer_mask) = self.source.next_batch()?;
        let targets = LmTargets::from_answer_mask(&batch, &answer_mask)?;
        let items = batch.mask.iter().map(|&m| u64::from(m)).sum::<u64>();
        Ok(MicroBatchLoss {
            loss: answer_nll(model, &batch, &targets)?,
            items,
        })
    }
    fn state(&self) -> Result<Vec<u8>, BoxError> {
        self.source.state()
    }
    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        self.source.restore(state)
    }
    fn unit(&self) -> &'static str {
        "tokens"
    }
}

/// Runs (or resumes) LM-ft of `model` (on an autodiff device) on the batches of `source`.
pub fn train_lm(
    model: Llama,
    source: &mut dyn BatchSource,
    config: &TrainConfig,
    run: RunContext<'_, Llama>,
) -> Result<(Llama, TrainerState, Outcome), TrainError> {
    train(model, &mut LmObjective::new(source), config, run)
}
