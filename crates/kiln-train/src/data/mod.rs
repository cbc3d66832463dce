//! Batches from data held in memory, the augmentation of training images, and the masking of
//! texts for masked-language pre-training.

pub(crate) mod augment;
pub(crate) mod batch;
pub(crate) mod masking;
