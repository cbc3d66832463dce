//! Batches from data held in memory, and the augmentation of training images.

pub(crate) mod augment;
pub(crate) mod batch;
