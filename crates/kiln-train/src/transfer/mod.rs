//! Starting from trained weights: loading what fits, freezing, low-rank adapters, and learning
//! from a teacher's outputs (distillation).

pub(crate) mod distill;

pub(crate) mod init;
pub(crate) mod lora;
pub(crate) mod unfreeze;
