//! The trainer's error type: every bad input or failed step becomes one of these, never a panic.

use std::path::PathBuf;

/// Everything that can go wrong in the trainer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A line of a JSONL file is not valid (bad UTF-8, bad JSON, missing field or out-of-range value).
    #[error("{path}:{line}: {message}")]
    Record {
        /// The file that holds the line.
        path: PathBuf,
        /// One-based line number.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },
    /// A file as a whole is unusable (empty, wrong kind of content).
    #[error("{path}: {message}")]
    File {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A command-line option or configuration value is out of range or inconsistent.
    #[error("invalid option: {0}")]
    Config(String),
    /// The model or tensors disagree with what the trainer expects.
    #[error("model: {0}")]
    Model(String),
    /// A checkpoint is missing, corrupt or belongs to a different run.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint directory.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Plot rendering failed.
    #[error("plot {path}: {message}")]
    Plot {
        /// The image being written.
        path: PathBuf,
        /// The drawing backend's message.
        message: String,
    },
    /// An error from the debias-guard library (model loading, prompts, scoring).
    #[error(transparent)]
    Library(#[from] debias_guard::Error),
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result with the trainer's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
