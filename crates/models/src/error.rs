//! The one error type of `radit-models`.

use std::path::PathBuf;

use crate::gguf::GgufError;

/// Everything that can go wrong while resolving, loading, running or exporting a model.
///
/// Messages name the file, tensor or key involved, so a user can fix their input
/// without reading the source.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A `config.json` (or GGUF metadata) could not be understood.
    #[error("{path}: invalid model config: {message}")]
    Config {
        /// The config file (or GGUF file) involved.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The config names an architecture radit does not implement.
    #[error("{path}: unsupported architecture `{found}` (supported: {supported})")]
    UnsupportedArchitecture {
        /// The config file (or GGUF file) involved.
        path: PathBuf,
        /// The architecture named by the config.
        found: String,
        /// The architectures this loader accepts.
        supported: String,
    },
    /// A safetensors file is malformed or truncated.
    #[error("{path}: invalid safetensors file: {message}")]
    Safetensors {
        /// The file involved.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A PyTorch checkpoint (`pytorch_model.bin`) is malformed, truncated or holds a tensor
    /// radit cannot read.
    #[error("{path}: invalid PyTorch checkpoint: {message}")]
    Pytorch {
        /// The file involved.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A PyTorch checkpoint's pickle imports a callable outside the tensor-rebuild allowlist
    /// (under Python, unpickling it could run arbitrary code). Nothing was executed.
    #[error(
        "{path}: refusing to load this PyTorch checkpoint: its pickle calls `{callable}`, \
         which is not a tensor, storage or OrderedDict constructor; radit parses pickles and \
         never executes them, and loads only plain state dicts (convert the weights to \
         safetensors if you trust them)"
    )]
    UnsafePickle {
        /// The file involved.
        path: PathBuf,
        /// The module-qualified name the pickle imports (`posix.system`, `builtins.eval`).
        callable: String,
    },
    /// A GGUF file is malformed, truncated or uses an unsupported tensor type.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A tensor the model needs is absent from the checkpoint.
    #[error("{source_name}: missing tensor `{tensor}`")]
    MissingTensor {
        /// The checkpoint (file or directory) searched.
        source_name: String,
        /// The tensor name that was looked up.
        tensor: String,
    },
    /// A tensor has a different shape than the config implies.
    #[error("{source_name}: tensor `{tensor}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The checkpoint (file or directory) involved.
        source_name: String,
        /// The tensor name.
        tensor: String,
        /// Shape in the checkpoint.
        found: Vec<usize>,
        /// Shape the config implies.
        expected: Vec<usize>,
    },
    /// The tokenizer and the model disagree, or the tokenizer could not be loaded.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A chat template failed to parse or render.
    #[error("chat template: {0}")]
    ChatTemplate(String),
    /// A model source (path or hub id) could not be resolved.
    #[error("model source `{source_spec}`: {message}")]
    Source {
        /// What the user gave.
        source_spec: String,
        /// Why it could not be resolved.
        message: String,
    },
    /// Invalid arguments to a model call (empty batch, bad generation settings, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Reading a tensor back from the device failed.
    #[error("tensor readback: {0}")]
    Readback(String),
}

impl From<radit_util::fs::FsError> for ModelError {
    fn from(e: radit_util::fs::FsError) -> Self {
        Self::Io {
            path: e.path,
            source: e.source,
        }
    }
}

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn config(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Config {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Result alias used throughout `radit-models`.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
