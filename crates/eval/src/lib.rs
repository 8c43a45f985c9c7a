//! `radit-eval`: RA-DIT inference and evaluation.
//!
//! For a question `x`, the query encoder retrieves the top-k chunks `c_1..c_k` of the frozen
//! index and weighs them with the retriever's softmax,
//! `p_R(c_k|x) = softmax_k(s(x, c_k) / τ_R)` with `s(x, c) = E_q(x)·E_d(c)`; the generator
//! reads each chunk separately and the answer likelihood is the mixture
//!
//! ```text
//! p(y|x) = Σ_k p_R(c_k|x) · p_LM(y | c_k ∘ x)
//! log p(y|x) = logsumexp_k( log p_R(c_k|x) + log p_LM(y | c_k ∘ x) )
//! ```
//!
//! computed in log space ([`ensemble`]). Candidates are the choices of a multiple-choice
//! question, or the distinct greedy answers decoded under each chunk; the prediction is the
//! candidate with the best [`Scoring`] (`nll`, `nll_token`, `nll_char`, `nll_comp`). Two
//! baselines share the pipeline ([`Mode`]): `concat` (the top-k chunks as one background)
//! and `closed_book` (no background).
//!
//! [`Evaluator::evaluate`] returns an [`EvalReport`]: EM, token F1 and ROUGE-L (with seeded
//! bootstrap 95 % intervals for EM and F1, [`bootstrap`]), accuracy on multiple-choice
//! questions, recall@k and MRR of the first answer-bearing chunk, and one record per question
//! (prediction, candidates, chunks with their weights). It serializes to JSON and renders as
//! a Markdown table ([`report`]). [`summary`] turns several such reports and the training
//! logs of runs into one Markdown study with paired differences and SVG plots (`radit report`).

#![deny(missing_docs)]

pub mod bootstrap;
pub mod ensemble;
mod pipeline;
pub mod report;
pub mod summary;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use bootstrap::{bootstrap_ci, ConfidenceInterval};
pub use ensemble::{
    contributions, ensemble_log_likelihood, logsumexp, retrieval_log_weights, Likelihood, Scoring,
    DEFAULT_RETRIEVER_TEMPERATURE,
};
pub use pipeline::{Evaluator, QueryEncoder, Retrieved, QUESTION_GROUP};
pub use report::{
    markdown_table, merge_reports, CandidateRecord, ChunkUse, EvalMetrics, EvalReport, MergeError,
    QuestionRecord, RetrievalSummary, RunInfo, ShardInfo,
};

/// Errors of evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A model (generation, embedding, tokenization) failed.
    #[error(transparent)]
    Model(#[from] radit_models::ModelError),
    /// Generator scoring failed.
    #[error(transparent)]
    Generator(#[from] radit_generator::GeneratorError),
    /// Building a prompt failed.
    #[error(transparent)]
    Data(#[from] radit_data::DataError),
    /// The document store failed.
    #[error(transparent)]
    Docstore(#[from] radit_docstore::Error),
    /// The settings or inputs cannot make an evaluation.
    #[error("{0}")]
    Input(String),
}

/// How the generator sees the retrieved chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// RA-DIT: one prompt per chunk, mixed with the retriever's weights,
    /// `log p(y|x) = logsumexp_k(log p_R(c_k|x) + log p_LM(y|c_k∘x))`.
    #[default]
    Ensemble,
    /// One prompt whose background is the top-k chunks joined in rank order (cut at the end
    /// to fit the prompt length): `log p(y|x) = log p_LM(y | c_1 … c_k ∘ x)`.
    Concat,
    /// No background: `log p(y|x) = log p_LM(y|x)`; nothing is retrieved.
    ClosedBook,
}

impl Mode {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Ensemble => "ensemble",
            Mode::Concat => "concat",
            Mode::ClosedBook => "closed_book",
        }
    }

    /// Every mode.
    pub const ALL: [Mode; 3] = [Mode::Ensemble, Mode::Concat, Mode::ClosedBook];
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mode {
    type Err = EvalError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                EvalError::Input(format!(
                    "unknown mode `{s}` (expected ensemble, concat or closed_book)"
                ))
            })
    }
}

/// Settings of an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalConfig {
    /// How chunks are used.
    pub mode: Mode,
    /// How candidates are ranked.
    pub scoring: Scoring,
    /// Chunks per question in the ensemble (paper: 10) or the concatenation.
    pub k: usize,
    /// τ_R of `p_R(c|x) = softmax(s(x, c) / τ_R)` (R-ft's `retriever_temperature`).
    pub retriever_temperature: f64,
    /// Most new tokens decoded per free-form answer.
    pub answer_tokens: usize,
    /// Sequences per generation or scoring batch.
    pub batch_size: usize,
    /// Retrieval depth of recall@k / MRR (at least `k`; recall@k is reported for the k of
    /// 1, 5, 10 that do not exceed it).
    pub retrieval_depth: usize,
    /// Bootstrap resamples of the EM / F1 intervals.
    pub bootstrap_resamples: usize,
    /// Seed of the bootstrap resampling.
    pub bootstrap_seed: u64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Ensemble,
            scoring: Scoring::Nll,
            k: 10,
            retriever_temperature: DEFAULT_RETRIEVER_TEMPERATURE,
            answer_tokens: 16,
            batch_size: 8,
            retrieval_depth: 10,
            bootstrap_resamples: bootstrap::DEFAULT_RESAMPLES,
            bootstrap_seed: 0,
        }
    }
}

impl EvalConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), EvalError> {
        if self.k == 0 {
            return Err(EvalError::Input("k must be at least 1".into()));
        }
        if !(self.retriever_temperature > 0.0 && self.retriever_temperature.is_finite()) {
            return Err(EvalError::Input(format!(
                "the retriever temperature must be positive, got {}",
                self.retriever_temperature
            )));
        }
        if self.answer_tokens == 0 {
            return Err(EvalError::Input("answer_tokens must be at least 1".into()));
        }
        if self.batch_size == 0 {
            return Err(EvalError::Input("batch_size must be at least 1".into()));
        }
        Ok(())
    }

    /// The retrieval depth actually searched: at least `k`.
    pub fn depth(&self) -> usize {
        self.retrieval_depth.max(self.k)
    }
}

/// The recall cut-offs reported (those not above the retrieval depth).
pub const RECALL_KS: [usize; 3] = [1, 5, 10];
