//! The training loop: kiln's [`Trainer`](crate::Trainer) on burn-train's learner, the steps it
//! runs, how a batch is shared among devices, and what the run shows while it trains.

pub(crate) mod failures;
pub(crate) mod loss_scale;
pub(crate) mod model;
#[cfg(feature = "mpi")]
pub(crate) mod mpi;
pub(crate) mod nan_guard;
pub(crate) mod prefetch;
pub(crate) mod progress;
pub(crate) mod ranks;
pub(crate) mod replicas;
pub(crate) mod steps;
pub(crate) mod strategy;
pub(crate) mod trainer;
