//! `radit-retriever`: the R-ft stage of RA-DIT.
//!
//! The query encoder `E_q` learns from the generator which chunks help it: for a query `x`
//! with gold continuation `y`, the top-`k'` chunks of the frozen index are scored by the
//! retriever (`s(x, c) = E_q(x) · E_d(c)`, with the stored document embeddings) and by the
//! frozen generator (`log p_LM(y | c ∘ x)`), and a [`loss::RetrieverLoss`] pulls the former
//! towards the latter. Only the query encoder's weights change; the document encoder and the
//! index are read, never written.
//!
//! - [`loss`]: the losses (`lsr`, `replug`, `pdist`, `emdr2`, `loop`, `infonce`), one trait
//!   and a registry that recipes select from by name;
//! - [`objective`]: candidates and targets per query, and the objective the shared loop of
//!   `radit-train` minimizes;
//! - [`feedback`]: human helpful / not-helpful judgments of retrieved chunks, checked
//!   against the store's chunk texts, that R-ft mixes into its targets;
//! - [`eval`]: recall@k and MRR of answer-bearing chunks on a dev set.

#![deny(missing_docs)]

use std::path::PathBuf;

pub mod embedder;
pub mod eval;
pub mod feedback;
pub mod loss;
pub mod objective;

pub use embedder::{EncoderEmbedder, QueryEncoder};
pub use feedback::HumanLabels;
pub use objective::{
    candidate_logits, Candidates, PrepareReport, RftExample, RftObjective, RftSettings,
    TargetSource,
};

use radit_models::Bert;
use radit_train::trainer::{train, Outcome, RunContext, TrainConfig, TrainError, TrainerState};

/// Errors of the R-ft stage.
#[derive(Debug, thiserror::Error)]
pub enum RetrieverError {
    /// A model failed.
    #[error(transparent)]
    Model(#[from] radit_models::ModelError),
    /// Generator scoring failed.
    #[error(transparent)]
    Generator(#[from] radit_generator::GeneratorError),
    /// Building instances or sampling failed.
    #[error(transparent)]
    Data(#[from] radit_data::DataError),
    /// The document store failed.
    #[error(transparent)]
    Docstore(#[from] radit_docstore::Error),
    /// The loss failed.
    #[error(transparent)]
    Loss(#[from] loss::LossError),
    /// Reading or writing a file failed.
    #[error("{}: {}", .0.display(), .1)]
    Io(PathBuf, std::io::Error),
    /// A line of a human-judgment file is not a judgment.
    #[error("{}:{line}: {message}", path.display())]
    Labels {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A tensor could not be read back or a record serialized.
    #[error("{0}")]
    Tensor(String),
    /// The inputs cannot make an R-ft run.
    #[error("{0}")]
    Input(String),
}

/// Runs (or resumes) R-ft of the query encoder `model` (on an autodiff device).
pub fn train_retriever(
    model: Bert,
    objective: &mut dyn radit_train::trainer::Objective<Bert>,
    config: &TrainConfig,
    run: RunContext<'_, Bert>,
) -> Result<(Bert, TrainerState, Outcome), TrainError> {
    train(model, objective, config, run)
}
