use std::path::PathBuf;

/// What can go wrong while loading or preparing data. Every variant names the file, field or
/// shape involved so that the message alone says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: file not found. {hint}")]
    MissingFile { path: PathBuf, hint: String },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: no column named `{column}` (columns are: {available})")]
    MissingColumn {
        path: PathBuf,
        column: String,
        available: String,
    },

    #[error("{path}: row {row}, column `{column}`: `{value}` is not a number")]
    NotNumeric {
        path: PathBuf,
        row: usize,
        column: String,
        value: String,
    },

    #[error("{path}: row {row} has {got} fields, expected {expected} like the header")]
    Ragged {
        path: PathBuf,
        row: usize,
        expected: usize,
        got: usize,
    },

    #[error("{path}: malformed CSV: {reason}")]
    Csv { path: PathBuf, reason: String },

    #[error("{path}: not an IDX file: {reason}")]
    BadIdxHeader { path: PathBuf, reason: String },

    #[error("{path}: truncated: expected {expected} bytes of data, found {got}")]
    Truncated {
        path: PathBuf,
        expected: usize,
        got: usize,
    },

    #[error("{what}: expected {expected}, got {got}")]
    ShapeMismatch {
        what: String,
        expected: String,
        got: String,
    },

    #[error("{0}: the dataset is empty")]
    Empty(String),

    #[error("invalid split fraction {0}: it must lie strictly between 0 and 1")]
    InvalidFraction(f64),

    #[error("a split of {n} samples with fraction {fraction} leaves one side empty")]
    SplitTooSmall { n: usize, fraction: f64 },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}
