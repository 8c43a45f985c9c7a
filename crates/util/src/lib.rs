//! Shared primitives every radit crate uses, kept in one place so they cannot drift apart.
//!
//! - [`rng`]: the SplitMix64 generator and the [`rng::mix`] seed derivation behind every
//!   seeded stream (sampler order, prompt markers, fold splits, generation sampling,
//!   bootstrap resamples, test weights). Resume and determinism tests compare these streams
//!   bit for bit, so their arithmetic is pinned by tests here.
//! - [`fs`]: durable file and directory replacement (temporary file, fsync, rename, fsync
//!   of the parent directory).
//! - [`mutate`]: seeded mutations of a valid input (flips, truncations, huge integer
//!   fields, text edits) and a runner that classifies a parser's result on each: the shared
//!   core of the mutation tests and of `radit-fuzz`.
//! - [`shard`]: which part of a job task `I` of `N` owns (`--shard I/N` or a SLURM array
//!   task), the one split every sharded command uses.
//! - [`question_key`]: when two reviewed questions are the same question, for the review
//!   app's export and for R-ft's human labels alike.
//!
//! Only std and thiserror: the crates without burn (radit-data, radit-docstore) depend on it.

#![deny(missing_docs)]

pub mod fs;
pub mod mutate;
pub mod rng;
pub mod shard;

/// The key under which judgments of the same question are grouped: whitespace runs
/// collapsed to one space, trimmed, lowercase (so "Who founded  X?" and "who founded x?" are
/// one question, as a reviewer would count them).
pub fn question_key(question: &str) -> String {
    question
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}
