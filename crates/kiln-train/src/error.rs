use std::path::PathBuf;

/// What can go wrong while configuring, running or recording a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid trainer option `{option}`: {reason}")]
    /// A trainer option that cannot work.
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// Why it cannot work.
        reason: String,
    },

    #[error("the model's output has {got} columns but the data has {expected} {what}")]
    /// The model's outputs do not match the data's classes or target columns.
    OutputWidth {
        /// Columns the data needs.
        expected: usize,
        /// Columns the model gives.
        got: usize,
        /// What the columns are (`classes`, `target columns`).
        what: &'static str,
    },

    #[error("the model expects samples of shape {expected:?}, the data has {got:?}")]
    /// The model cannot take the data's samples.
    InputShape {
        /// The shape the model takes (empty where the model does not say).
        expected: Vec<usize>,
        /// The data's sample shape.
        got: Vec<usize>,
    },

    #[error("the task is {task} but the data's targets are {targets}")]
    /// The task does not suit the data's targets.
    TaskMismatch {
        /// The task (`classification`, `regression`).
        task: &'static str,
        /// What the targets are.
        targets: &'static str,
    },

    #[error(transparent)]
    /// The data could not be loaded or split.
    Data(#[from] kiln_datasets::DataError),

    #[error("training stopped with an error: {0}")]
    /// burn-train or kiln's epoch-end hook failed.
    Training(String),

    #[error("{path}: {source}")]
    /// A file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        #[source]
        /// The operating system's error.
        source: std::io::Error,
    },

    /// A run record (config, weights, checkpoint) is missing a part or does not fit.
    #[error("{path}: {reason}")]
    Record {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The progress output was closed (its reader went away): the run stopped after the
    /// epochs in `history`, which its checkpoint holds.
    #[error("the output was closed; the run stopped after {} epochs", history.epochs.len())]
    OutputClosed {
        /// The completed epochs.
        history: crate::History,
    },

    /// The model's parameters would not fit in this machine's memory (counted before any is
    /// allocated).
    #[error(
        "the model has {} parameters: {what} about {needed}, more than the {available} of \
         memory available; make it smaller (fewer or narrower layers)",
        kiln_common::thousands(*n_params)
    )]
    ModelTooLarge {
        /// Its parameters.
        n_params: usize,
        /// What needs the memory: "training needs", "its weights need".
        what: &'static str,
        /// The bytes needed, for a person.
        needed: String,
        /// The bytes available, for a person.
        available: String,
    },

    /// A component of the run (a logger, say) failed.
    #[error("training stopped: {0}")]
    Component(String),

    /// Keras's `TerminateOnNaN`: the run stopped at the first non-finite training loss.
    #[error(
        "the training loss became {loss} in epoch {epoch}, batch {batch} (learning rate {lr}): \
         the run diverged; try a lower --lr (for example {suggested})",
        suggested = (lr / 10.0) as f32
    )]
    NonFiniteLoss {
        /// The epoch (from 1).
        epoch: usize,
        /// The batch within the epoch (from 1).
        batch: usize,
        /// The loss's value (NaN or infinite).
        loss: f64,
        /// The learning rate in force.
        lr: f64,
        /// The completed epochs before it.
        history: crate::History,
        /// What the rules make of it (a divergence, and what led to it).
        diagnosis: Box<crate::Diagnosis>,
        /// The gradient measurements up to the failing step, the failing epoch's last.
        gradients: Vec<crate::EpochGradients>,
    },
}

impl TrainError {
    pub(crate) fn option(option: &'static str, reason: impl Into<String>) -> Self {
        TrainError::InvalidOption {
            option,
            reason: reason.into(),
        }
    }
}
