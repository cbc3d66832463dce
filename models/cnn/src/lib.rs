//! Convolutional networks: a configurable [`ConvBlock`] (conv, batch norm, activation, pool,
//! dropout) and a [`Cnn`] image classifier built from blocks and a dense head, with presets
//! matching the classic MNIST and CIFAR-10 tutorial nets.

#![warn(missing_docs)]

mod cnn;
mod conv_block;
mod cpu_kernel;
// burn-ndarray is deprecated upstream but remains one of kiln's CPU backends.
#[allow(deprecated)]
// Without a CPU backend the generated dispatch routes nowhere and leaves its arguments unread.
#[cfg_attr(
    not(any(feature = "flex", feature = "ndarray")),
    allow(unused_variables)
)]
pub mod fused;

pub use cnn::{Cnn, CnnConfig, CnnConfigError, Preset};
pub use conv_block::{ConvBlock, ConvBlockConfig, Padding, Pool};
