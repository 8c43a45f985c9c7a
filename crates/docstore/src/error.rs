//! Error type of the document store.

use std::path::{Path, PathBuf};

use crate::embed::EncoderIdentity;

/// Boxed error returned by [`crate::Embedder`] implementations.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `s` cut to 100 characters, with `...` when something was cut: for strings quoted from a
/// manifest in messages, which a corrupt manifest can make any length (found by radit-fuzz).
pub(crate) fn clip(s: &str) -> std::borrow::Cow<'_, str> {
    clip_to(s, 100)
}

/// `s` cut to `n` characters, with `...` when something was cut.
pub(crate) fn clip_to(s: &str, n: usize) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(n) {
        None => s.into(),
        Some((cut, _)) => format!("{}...", &s[..cut]).into(),
    }
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while building, opening or searching an index.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation on `path` failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file of the index (manifest, build state, chunk record) could not be parsed or written.
    #[error("{}: {message}", path.display())]
    Json {
        /// The file involved.
        path: PathBuf,
        /// What went wrong, with line and column where known.
        message: String,
    },
    /// The corpus had malformed input and the build was asked to be strict, or nothing usable was found.
    #[error("corpus {}: {message}", path.display())]
    Corpus {
        /// The corpus path as given.
        path: PathBuf,
        /// Summary, including the first problems with file and line.
        message: String,
    },
    /// A file of the index does not match the checksum or size recorded in the manifest.
    #[error("index file {} is corrupt: {message}", file.display())]
    Checksum {
        /// The corrupt (or truncated, or missing) file.
        file: PathBuf,
        /// Expected versus actual size or hash.
        message: String,
    },
    /// The index was built with a different document encoder than the one supplied.
    #[error("encoder mismatch for index {}: it was built with {built}, but the encoder given is {given}", dir.display())]
    EncoderMismatch {
        /// The index directory.
        dir: PathBuf,
        /// The encoder recorded in the manifest.
        built: Box<EncoderIdentity>,
        /// The encoder the caller supplied.
        given: Box<EncoderIdentity>,
    },
    /// The directory is not a (complete) index of a format this version can read.
    #[error("{}: {message}", dir.display())]
    InvalidIndex {
        /// The index directory.
        dir: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// An interrupted (killed, not failed) build that already holds embeddings exists, and its
    /// settings differ from the requested ones. It is not discarded silently: that could throw
    /// away hours of embedding over a mistyped setting.
    #[error("cannot resume the interrupted build in {}: {message}; rerun with the same settings to resume it, or remove that folder or build with `restart` to start over", staging.display())]
    ResumeMismatch {
        /// The staging folder of the interrupted build.
        staging: PathBuf,
        /// Which setting differs, with both values.
        message: String,
    },
    /// Another build of the same output is running: it holds the output's lock file.
    #[error("another build holds {} ({}); wait for it to finish or stop it, then retry", lock.display(), holder(*pid))]
    Locked {
        /// The lock file, `<out>.lock` next to the output.
        lock: PathBuf,
        /// Process id of the holder, as it recorded it in the lock file (if readable).
        pid: Option<u32>,
    },
    /// The output folder already exists and overwriting was not requested.
    #[error("{} already exists (pass overwrite to replace it)", .0.display())]
    Exists(PathBuf),
    /// The embedder failed or returned unusable output.
    #[error("encoder failed on chunks {first}..{end}: {message}")]
    Embedder {
        /// First chunk row of the failing batch.
        first: usize,
        /// One past the last chunk row of the failing batch.
        end: usize,
        /// The embedder's error or the validation failure.
        message: String,
    },
    /// A caller-supplied argument is invalid (dimension mismatch, k = 0, missing index part, ...).
    #[error("{0}")]
    InvalidArgument(String),
}

/// `pid N`, or `pid unknown` when the holder had not recorded it yet.
fn holder(pid: Option<u32>) -> String {
    pid.map_or_else(|| "pid unknown".to_string(), |p| format!("pid {p}"))
}

impl From<radit_util::fs::FsError> for Error {
    fn from(e: radit_util::fs::FsError) -> Self {
        Error::Io {
            path: e.path,
            source: e.source,
        }
    }
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// Wraps a JSON error with the path it concerns.
    pub(crate) fn json(path: impl AsRef<Path>, err: impl std::fmt::Display) -> Self {
        Error::Json {
            path: path.as_ref().to_path_buf(),
            // serde quotes the offending value ("invalid type: string \"...\"").
            message: clip_to(&err.to_string(), 300).into_owned(),
        }
    }

    /// An index-format error.
    pub(crate) fn invalid(dir: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::InvalidIndex {
            dir: dir.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    /// A caller-argument error.
    pub(crate) fn arg(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }
}
