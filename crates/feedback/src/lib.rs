//! Human judgments of RA-DIT answers and chunks.
//!
//! A reviewer (through `radit review`) sees a question, the ensemble answer and the k chunks it
//! was computed from, and says which chunks helped, whether the answer is right, what the right
//! answer is, and, comparing two models, which answer is better. This crate keeps those
//! judgments and turns them into training data:
//!
//! * [`FeedbackDb`]: the store, one SQLite file. Every answer shown is recorded with what
//!   produced it (weight fingerprints of the generator and query encoder, the index identity,
//!   each chunk's id and text hash, p_R and share of p(y|x)); judgments and preferences refer to
//!   it. A write returns only after SQLite has committed it to disk (`synchronous = FULL`), so
//!   a judgment the page shows as saved survives a killed server. The schema has a version
//!   (`PRAGMA user_version`, [`SCHEMA_VERSION`]).
//! * [`export`]: `lm_ft.jsonl` (question, approved or corrected answer, helpful chunks as the
//!   background), `retrieval.jsonl` (question, chunk id, relevance label) and
//!   `preferences.jsonl` (TRL's DPO format: prompt, chosen, rejected).
//! * [`stats`]: counts, and how often the reviewers' chunk labels agree with the generator's
//!   own preference (the LSR signal R-ft trains on).

mod db;
pub mod export;
pub mod stats;

pub use db::{
    AnswerView, Choice, ChunkLabel, FeedbackDb, Judgment, JudgmentView, ModelIdentity, Preference,
    PreferenceView, ShownAnswer, ShownChunk, Verdict, SCHEMA_VERSION,
};
pub use export::{export, ExportReport};
pub use stats::{stats, Stats};

use std::path::PathBuf;

/// Errors of the feedback store and its exports.
#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    /// SQLite failed on the database file.
    #[error("{path}: {source}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file is a database, but not one this version of radit can use.
    #[error("{path}: {message}")]
    Schema {
        /// The database file.
        path: PathBuf,
        /// What does not match.
        message: String,
    },
    /// A judgment refers to something that does not exist or is invalid.
    #[error("{0}")]
    Invalid(String),
    /// A referenced answer is not in the database.
    #[error("no answer with id {0} in the database")]
    UnknownAnswer(i64),
    /// Writing an export file failed.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// `Result` with [`FeedbackError`].
pub type Result<T, E = FeedbackError> = std::result::Result<T, E>;

pub use radit_util::question_key;
