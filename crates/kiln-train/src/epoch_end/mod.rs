//! What happens after each epoch: the history row, early stopping, the learning-rate schedule,
//! user callbacks and the checkpoint on disk.

pub(crate) mod callback;
pub(crate) mod checkpoint;
pub(crate) mod early_stopping;
pub(crate) mod hook;
pub(crate) mod schedule;
