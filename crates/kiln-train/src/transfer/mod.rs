//! Starting from trained weights: loading what fits, freezing, low-rank adapters.

pub(crate) mod init;
pub(crate) mod lora;
