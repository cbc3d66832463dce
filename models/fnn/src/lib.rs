//! Feed-forward networks: the [`Perceptron`] of Rosenblatt and the multi-layer perceptron
//! ([`Mlp`]) trained by backpropagation.

#![warn(missing_docs)]

mod mlp;
mod perceptron;

pub use kiln_common::Activation;
pub use mlp::{DenseBlock, Mlp, MlpConfig, MlpConfigError};
pub use perceptron::{Perceptron, PerceptronConfig, PerceptronFit};
