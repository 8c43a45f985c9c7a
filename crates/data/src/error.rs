use std::path::PathBuf;

/// A boxed error from a caller-supplied component (tokenizer, chat template).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the data pipeline. Malformed dataset lines and over-long instances are not
/// errors: they are counted and reported ([`crate::LoadReport`], [`crate::BuildReport`]).
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A dataset file held no usable example.
    #[error(
        "{path}: empty dataset: no usable example ({skipped} malformed line(s) skipped{first})",
        first = first_reason.as_deref().map(|r| format!("; first: {r}")).unwrap_or_default()
    )]
    EmptyDataset {
        /// The file.
        path: PathBuf,
        /// How many lines were skipped as malformed.
        skipped: usize,
        /// The first skipped line, `line N: reason`, to show the likely cause.
        first_reason: Option<String>,
    },
    /// The dataset format could not be inferred from the file name.
    #[error("{path}: cannot tell the dataset format from the extension (expected .jsonl, .json, .tsv or .txt)")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The tokenizer failed on some text.
    #[error("tokenizer failed: {0}")]
    Tokenizer(#[source] BoxError),
    /// The caller's retrieval callback failed for an example.
    #[error("retrieval failed for example {id}: {source}")]
    Retrieval {
        /// The example id.
        id: String,
        /// The callback's error.
        #[source]
        source: BoxError,
    },
    /// The chat template failed, or its output did not contain the user message.
    #[error("chat template: {0}")]
    ChatTemplate(String),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// An instance index passed to a collate function does not exist.
    #[error("instance index {index} out of range ({len} instances)")]
    IndexOutOfRange {
        /// The index.
        index: usize,
        /// The number of instances.
        len: usize,
    },
    /// An instance is longer than the requested sequence length.
    #[error("instance {index} has {len} tokens, longer than the sequence length {seq_len}")]
    InstanceTooLong {
        /// The instance index.
        index: usize,
        /// Its length.
        len: usize,
        /// The sequence length.
        seq_len: usize,
    },
    /// A sampler state restored from a checkpoint does not fit this data.
    #[error("sampler state {state} does not fit this data: {reason}")]
    BadSamplerState {
        /// The state, as `epoch E cursor C`.
        state: String,
        /// Why.
        reason: String,
    },
}
