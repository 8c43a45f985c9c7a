//! Data handling for RA-DIT (retrieval-augmented dual instruction tuning).
//!
//! The path from a dataset file to token batches:
//!
//! 1. [`load_dataset`] (or [`load_jsonl`] / [`load_dpr_tsv`]) reads [`Example`]s and a
//!    [`LoadReport`] listing every malformed line with its file, line number and reason, and
//!    every group of duplicate records (kept, but reported).
//! 2. The caller retrieves the top-k chunk texts per example; [`InstanceBuilder::instances`]
//!    turns one example and its chunks into k independent [`Instance`]s (one per chunk, or one
//!    with the example's gold context), rendered with the RA-DIT prompt
//!    (`Background: {chunk}\n\n{instruction}{answer}`) and tokenized through [`Tokenize`],
//!    with an answer-only loss mask. Over-long instances lose background tokens, never
//!    instruction or answer tokens; both cases are counted in a [`BuildReport`].
//! 3. A [`Sampler`] over the instances (grouped by dataset and example, capped per dataset as
//!    in the paper's mixture) yields batches of instance indices in a `(seed, epoch)` order; its
//!    [`SamplerState`] goes into the checkpoint and restores the exact same batch sequence.
//! 4. [`pad_batch`] or [`packed_batch`] collate the instances of a step into a host [`Batch`]
//!    (`ids`, `mask`, `answer_mask`, `segment_ids`, `positions`, row-major `[rows, seq_len]`).
//!
//! [`metrics`] holds SQuAD-normalized exact match, token F1 and ROUGE-L for answers
//! ([`QaMetrics`]), and recall@k and MRR for retrieval ([`RetrievalMetrics`]).
//!
//! For retrieval experiments: [`corpus_pairs`] cuts the retriever fine-tuning (R-ft) corpus
//! pairs (query = a chunk's start, target = its end); [`AnswerIndex`] finds which QA examples
//! have an answer somewhere in a corpus, [`contains_answer`] / [`first_answer_rank`] which
//! retrieved chunks hold one; [`split_holdout`] makes a seeded train/holdout split.

#![deny(missing_docs)]

mod answerable;
mod batch;
mod dataset;
mod error;
mod instance;
pub mod metrics;
mod pairs;
mod prompt;
mod rng;
mod sampler;
mod tokenize;

pub use answerable::{
    contains_answer, first_answer_rank, kfold_split, split_holdout, AnswerIndex,
    DEFAULT_MAX_ANSWER_WORDS,
};
pub use batch::{pack_rows, packed_batch, pad_batch, Batch};
pub use dataset::{
    load_dataset, load_dpr_tsv, load_jsonl, parse_python_str_list, read_dpr_tsv, read_jsonl,
    Dataset, DatasetFormat, DuplicateKind, DuplicateRecords, Example, JsonlFields, LoadReport,
    SkippedLine, REPORT_LIST_LIMIT,
};
pub use error::{BoxError, DataError};
pub use instance::{
    BuildOutcome, BuildReport, ExampleKey, Instance, InstanceBuilder, InstanceConfig, PromptTokens,
    SkippedInstance,
};
pub use metrics::{
    exact_match, normalize_answer, normalize_tokens, rouge_l, rouge_l_max, token_f1, QaMetrics,
    RetrievalMetrics,
};
pub use pairs::{corpus_pairs, CorpusPair, MIN_PAIR_WORDS};
pub use prompt::{
    markers, render_prompt, ChatRender, Markers, PromptParts, PromptStyle, ANSWER_PREFIXES,
    BACKGROUND_PREFIX, BACKGROUND_SEPARATOR, INSTRUCTION_PREFIXES,
};
pub use sampler::{
    group_instances, mixture_selection, SampledBatch, Sampler, SamplerConfig, SamplerState,
};
pub use tokenize::Tokenize;
