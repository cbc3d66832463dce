use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Bool, Device, Tensor};

use kiln_common::LayerActivations;

use crate::{EncoderBlock, EncoderBlockConfig};

/// A stack of identical [`EncoderBlock`]s (PyTorch's `TransformerEncoder`).
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use kiln_transformer::{EncoderBlockConfig, EncoderConfig};
///
/// let device = Device::flex();
/// let encoder = EncoderConfig::new(EncoderBlockConfig::new(16, 4, 64))
///     .with_n_blocks(3)
///     .init(&device);
/// assert_eq!(encoder.forward(Tensor::zeros([2, 5, 16], &device), None).dims(), [2, 5, 16]);
/// ```
#[derive(Config, Debug)]
pub struct EncoderConfig {
    /// The configuration every block shares.
    pub block: EncoderBlockConfig,
    /// Number of blocks. Default: 2.
    #[config(default = 2)]
    pub n_blocks: usize,
}

impl EncoderConfig {
    /// An encoder with freshly initialised weights on `device`.
    pub fn init(&self, device: &Device) -> Encoder {
        Encoder {
            blocks: (0..self.n_blocks)
                .map(|_| self.block.init(device))
                .collect(),
        }
    }
}

/// See [`EncoderConfig`].
#[derive(Module, Debug)]
pub struct Encoder {
    /// The blocks, in order.
    pub blocks: Vec<EncoderBlock>,
}

impl Encoder {
    /// # Shapes
    /// - x: `[batch, seq, d_model]`
    /// - padding: `[batch, seq]`, true at padded positions
    /// - output: `[batch, seq, d_model]`
    pub fn forward(&self, x: Tensor<3>, padding: Option<Tensor<2, Bool>>) -> Tensor<3> {
        self.blocks
            .iter()
            .fold(x, |x, block| block.forward(x, padding.clone()))
    }

    /// The output in inference mode, and each block's feed-forward pre-activations
    /// (`blocks.0`, ...).
    ///
    /// # Shapes
    /// - x: `[batch, seq, d_model]`
    /// - output: `[batch, seq, d_model]`, and per block `[batch * seq, d_ff]`
    pub fn activations(
        &self,
        x: Tensor<3>,
        padding: Option<Tensor<2, Bool>>,
    ) -> (Tensor<3>, Vec<LayerActivations>) {
        let mut layers = Vec::new();
        let mut x = x;
        for (i, block) in self.blocks.iter().enumerate() {
            let (out, pre) = block.activations(x, padding.clone());
            layers.push(LayerActivations {
                layer: format!("blocks.{i}"),
                activation: block.activation,
                pre,
            });
            x = out;
        }
        (x, layers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn stacks_blocks_and_keeps_the_shape() {
        let device = Device::flex();
        let encoder = EncoderConfig::new(EncoderBlockConfig::new(8, 2, 16))
            .with_n_blocks(3)
            .init(&device);
        assert_eq!(encoder.blocks.len(), 3);
        let x = Tensor::<3>::random([2, 6, 8], Distribution::Default, &device);
        assert_eq!(encoder.forward(x, None).dims(), [2, 6, 8]);
    }
}
