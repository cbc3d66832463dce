//! What a model's activation layers compute on a batch, before the non-linearity: the raw
//! material of the diagnosis of dead units (ReLUs whose input never rises above zero) and
//! saturated ones (sigmoid and tanh units pinned in their flat tails).

use burn::tensor::Tensor;

use crate::Activation;

/// One activation layer's inputs (pre-activations) on a batch, one column per unit.
#[derive(Debug, Clone)]
pub struct LayerActivations {
    /// The layer's path in the model, as its parameters' names start (`hidden.0`).
    pub layer: String,
    /// The non-linearity the layer applies to these values.
    pub activation: Activation,
    /// The values the activation receives.
    ///
    /// # Shapes
    /// `[observations, units]`: a dense layer's samples by units; a convolution's samples and
    /// positions by channels; a sequence model's samples and positions by units.
    pub pre: Tensor<2>,
}

impl LayerActivations {
    /// The layer as seen from inside a module at `prefix` (`head` makes `hidden.0` into
    /// `head.hidden.0`).
    pub fn within(mut self, prefix: &str) -> Self {
        self.layer = format!("{prefix}.{}", self.layer);
        self
    }
}
