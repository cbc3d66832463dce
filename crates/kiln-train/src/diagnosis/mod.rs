//! What a run's history and gradients say went wrong, and the flag that repairs it.

pub(crate) mod diagnose;
pub(crate) mod gradients;
pub(crate) mod repair;
