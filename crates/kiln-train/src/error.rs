use std::path::PathBuf;

/// What can go wrong while configuring, running or recording a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid trainer option `{option}`: {reason}")]
    InvalidOption {
        option: &'static str,
        reason: String,
    },

    #[error("the model's output has {got} columns but the data has {expected} {what}")]
    OutputWidth {
        expected: usize,
        got: usize,
        what: &'static str,
    },

    #[error("the model expects samples of shape {expected:?}, the data has {got:?}")]
    InputShape {
        expected: Vec<usize>,
        got: Vec<usize>,
    },

    #[error("the task is {task} but the data's targets are {targets}")]
    TaskMismatch {
        task: &'static str,
        targets: &'static str,
    },

    #[error(transparent)]
    Data(#[from] kiln_datasets::DataError),

    #[error("training stopped with an error: {0}")]
    Training(String),

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: {reason}")]
    Record { path: PathBuf, reason: String },

    /// The progress output was closed (its reader went away): the run stopped after the
    /// epochs in `history`, which its checkpoint holds.
    #[error("the output was closed; the run stopped after {} epochs", history.epochs.len())]
    OutputClosed { history: crate::History },

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
        epoch: usize,
        batch: usize,
        loss: f64,
        lr: f64,
        /// The completed epochs before it.
        history: crate::History,
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
