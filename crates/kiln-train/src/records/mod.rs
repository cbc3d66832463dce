//! A run's records: its directory, history, weights for other tools, TensorBoard events and
//! pictures.

pub(crate) mod files;
pub(crate) mod history;
pub(crate) mod plot;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod study_plot;
pub(crate) mod tensorboard;
pub(crate) mod weights;
