//! Convolutional networks: a configurable [`ConvBlock`] (conv, batch norm, activation, pool,
//! dropout) and a [`Cnn`] image classifier built from blocks and a dense head, with presets
//! matching the classic MNIST and CIFAR-10 tutorial nets.

#![warn(missing_docs)]

mod cnn;
mod conv_block;

pub use cnn::{Cnn, CnnConfig, CnnConfigError, Preset};
pub use conv_block::{ConvBlock, ConvBlockConfig, Padding, Pool};
