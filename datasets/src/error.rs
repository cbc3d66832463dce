use std::path::PathBuf;

/// What can go wrong while loading or preparing data. Every variant names the file, field or
/// shape involved so that the message alone says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {reason}")]
    /// An image file or folder that cannot be read as the data set it should be.
    Images {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A file is missing.
    #[error("{path}: file not found. {hint}")]
    MissingFile {
        /// The file.
        path: PathBuf,
        /// How to get it (the command that fetches it).
        hint: String,
    },

    #[error("{path}: {source}")]
    /// A file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        #[source]
        /// The operating system's error.
        source: std::io::Error,
    },

    #[error("{path}: no column named `{column}` (columns are: {available})")]
    /// A CSV has no column of the given name.
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column asked for.
        column: String,
        /// The columns it has.
        available: String,
    },

    #[error("{path}: row {row}, column `{column}`: `{value}` is not a finite number")]
    /// A cell that should be a finite number is not (`nan` and `inf`, which Rust's parser
    /// accepts, included).
    NotNumeric {
        /// The file.
        path: PathBuf,
        /// The row (from 1, the header being row 0).
        row: usize,
        /// The column.
        column: String,
        /// The cell's text.
        value: String,
    },

    #[error("{path}: row {row} has {got} fields, expected {expected} like the header")]
    /// A row has another number of fields than the header.
    Ragged {
        /// The file.
        path: PathBuf,
        /// The row (from 1).
        row: usize,
        /// Fields in the header.
        expected: usize,
        /// Fields in the row.
        got: usize,
    },

    #[error("{path}: {reason}")]
    /// A file's columns are not the ones a model reads: missing, unknown or in another number.
    WrongColumns {
        /// The file.
        path: PathBuf,
        /// Which columns, and which the model reads.
        reason: String,
    },

    /// A CSV file cannot be parsed.
    #[error("{path}: malformed CSV: {reason}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// What the CSV reader found wrong.
        reason: String,
    },

    /// A file is not in the IDX format (MNIST's).
    #[error("{path}: not an IDX file: {reason}")]
    BadIdxHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong with its header.
        reason: String,
    },

    #[error("{path}: truncated: expected {expected} bytes of data, found {got}")]
    /// A file ends before the data its header announces.
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes of data the header announces.
        expected: usize,
        /// Bytes present.
        got: usize,
    },

    #[error("{what}: expected {expected}, got {got}")]
    /// Two parts of a dataset disagree in shape.
    ShapeMismatch {
        /// What disagrees.
        what: String,
        /// The shape expected.
        expected: String,
        /// The shape found.
        got: String,
    },

    #[error("{0}: the dataset is empty")]
    /// A dataset (named) has no samples.
    Empty(String),

    #[error("invalid split fraction {0}: it must lie strictly between 0 and 1")]
    /// A split fraction outside (0, 1).
    InvalidFraction(f64),

    /// A cut to fewer classes or labelled samples ([`LabelSubset`](crate::LabelSubset)) that
    /// cannot be made.
    #[error("{field}: {reason}")]
    Subset {
        /// The setting at fault.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },

    /// A split would leave one side empty.
    #[error("a split of {n} samples with fraction {fraction} leaves one side empty")]
    SplitTooSmall {
        /// Samples to split.
        n: usize,
        /// The fraction asked for.
        fraction: f64,
    },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}
