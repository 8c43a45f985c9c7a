//! Errors of the pipeline: what the crates below report, plus recipe and run-layout problems.

use std::path::PathBuf;

/// Anything that stops a pipeline run, an evaluation setup or a cross-validation.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The recipe file could not be read or parsed (the message names the key).
    #[error(transparent)]
    Recipe(Box<radit_train::recipe::RecipeError>),
    /// The recipe parsed but its settings cannot work; the message names the key.
    #[error("{0}")]
    Invalid(String),
    /// The run directory is missing something or holds something unexpected.
    #[error("{}: {message}", path.display())]
    RunDir {
        /// The run (or stage) directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written atomically (the message names the action and the path).
    #[error(transparent)]
    Write(#[from] radit_util::fs::FsError),
    /// A JSON file of the run (done marker, cross-validation summary) is malformed.
    #[error("{}: {message}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A line of a preferences file (`stages.dpo.preferences`) is not a preference pair, or
    /// the file holds none.
    #[error("{}: {message}", file_line(path, *line))]
    Preferences {
        /// The file.
        path: PathBuf,
        /// The 1-based line, 0 for the whole file.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Loading or running a model failed; `what` says which model.
    #[error("{what}: {source}")]
    Model {
        /// Which model and where from.
        what: String,
        /// The underlying error.
        #[source]
        source: Box<radit_models::ModelError>,
    },
    /// The document store failed.
    #[error(transparent)]
    Docstore(Box<radit_docstore::Error>),
    /// Datasets, prompts or sampling failed.
    #[error(transparent)]
    Data(Box<radit_data::DataError>),
    /// The generator stage failed.
    #[error(transparent)]
    Generator(Box<radit_generator::GeneratorError>),
    /// The retriever stage failed.
    #[error(transparent)]
    Retriever(Box<radit_retriever::RetrieverError>),
    /// The retriever loss could not be built.
    #[error("stages.r_ft.loss: {0}")]
    Loss(#[from] radit_retriever::loss::LossError),
    /// Evaluation failed.
    #[error(transparent)]
    Eval(Box<radit_eval::EvalError>),
    /// The training loop failed.
    #[error(transparent)]
    Train(Box<radit_train::trainer::TrainError>),
    /// A metric sink could not be created.
    #[error(transparent)]
    Metric(Box<radit_train::metrics::MetricError>),
    /// The signal handler could not be installed.
    #[error(transparent)]
    Signal(#[from] radit_train::signals::SignalError),
}

/// `path:line`, or `path` alone for line 0 (the whole file).
fn file_line(path: &std::path::Path, line: usize) -> String {
    match line {
        0 => path.display().to_string(),
        n => format!("{}:{n}", path.display()),
    }
}

impl PipelineError {
    /// A model error with the model it concerns.
    pub fn model(what: impl Into<String>, source: radit_models::ModelError) -> Self {
        Self::Model {
            what: what.into(),
            source: Box::new(source),
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// `From` for the variants that box their source (keeping `PipelineError` small: it travels
/// through every `?` of the pipeline).
macro_rules! boxed_from {
    ($($variant:ident($source:ty)),* $(,)?) => {
        $(impl From<$source> for PipelineError {
            fn from(e: $source) -> Self {
                Self::$variant(Box::new(e))
            }
        })*
    };
}

boxed_from!(
    Recipe(radit_train::recipe::RecipeError),
    Docstore(radit_docstore::Error),
    Data(radit_data::DataError),
    Generator(radit_generator::GeneratorError),
    Retriever(radit_retriever::RetrieverError),
    Eval(radit_eval::EvalError),
    Train(radit_train::trainer::TrainError),
    Metric(radit_train::metrics::MetricError),
);

/// `Result` with a [`PipelineError`].
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// Returns early with [`PipelineError::Invalid`] built from a format string.
macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err($crate::error::PipelineError::Invalid(format!($($arg)*)))
    };
}
pub(crate) use invalid;
