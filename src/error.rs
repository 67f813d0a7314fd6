//! The library's one error type. Every variant names what failed and, where a
//! user can act, what to do next; causes are kept as `#[source]`.

use std::path::PathBuf;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O failure on a named path.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The model directory is missing or incomplete.
    #[error("model not found: {what}\n  fix: {fix}")]
    ModelMissing { what: String, fix: String },

    /// A model file exists but cannot be used (corrupt, truncated, wrong shape).
    #[error("model file {path} is unusable: {reason}\n  fix: {fix}")]
    ModelCorrupt {
        path: PathBuf,
        reason: String,
        fix: String,
    },

    /// Provisioning (Hub, PyPI fallback, import) failed.
    #[error("model provisioning failed: {0}")]
    Provision(String),

    /// A file is not valid UTF-8.
    #[error("{path}: not valid UTF-8 at byte {offset} (use --lossy to decode with replacement characters)")]
    InvalidUtf8 { path: PathBuf, offset: usize },

    /// A file looks binary and was not read as text.
    #[error("{path}: looks like a binary file, skipped")]
    Binary { path: PathBuf },

    /// The store file is not a pareil store or cannot be opened.
    #[error("store {path}: {reason}")]
    Store { path: PathBuf, reason: String },

    /// The store was built with another model or a newer schema.
    #[error("store {path} is incompatible: {reason}")]
    StoreMismatch { path: PathBuf, reason: String },

    /// An ingest stopped because duplicates were found and `--on-duplicate fail` was set.
    #[error("duplicates found in {count} document(s); nothing was written for them")]
    DuplicatesRefused { count: usize },

    /// A lookup (passage id, file:line) found nothing.
    #[error("not found: {0}")]
    NotFound(String),

    /// Bad user input that is not a file problem.
    #[error("{0}")]
    Usage(String),

    /// A storage backend failed (SQLite, later PostgreSQL): the backend's
    /// own error is the cause, so callers need not know which backend it was.
    #[error("store backend: {source}")]
    StoreBackend {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    #[error("tensor computation: {0}")]
    Candle(#[from] candle_core::Error),

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::StoreBackend {
            source: Box::new(e),
        }
    }
}

impl Error {
    /// Wraps an `io::Error` with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
