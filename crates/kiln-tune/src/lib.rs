//! Hyperparameter tuning for kiln: search spaces, samplers (random, grid, TPE), pruners
//! (median, successive halving), and studies kept in SQLite or PostgreSQL so that several
//! processes (and machines) work on one.
//!
//! [`Tuner`] runs a study from code; `kiln tune` runs one over `kiln train`'s flags, each
//! trial a training process of its own that reports through [`Study::attach`].

#![warn(missing_docs)]

mod error;
mod pruner;
mod report;
mod sampler;
mod space;
mod storage;
mod study;
mod trial;
mod tuner;

pub use error::TuneError;
pub use pruner::Pruner;
pub use report::{importance, study_csv, study_table};
pub use sampler::{Sampler, TpeConfig};
pub use space::{Distribution, ParamValue, Params, SearchSpace};
#[cfg(feature = "postgres")]
pub use storage::PostgresStorage;
pub use storage::{Ask, SqliteStorage, Storage, open as open_storage};
pub use study::{Budget, STALE_AFTER, Study, StudyConfig, Trial, best_of, now, this_owner};
pub use trial::{Direction, TrialRecord, TrialState};
pub use tuner::{StudyResult, Tuner, metric_of};
