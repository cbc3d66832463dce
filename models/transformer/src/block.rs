use burn::config::Config;
use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Bool, Device, Tensor};
use kiln_common::dense::dense;
use kiln_common::{Activation, Dropout, DropoutConfig};

use crate::{MultiHeadAttention, MultiHeadAttentionConfig};

/// One Transformer encoder block, as in "Attention is all you need" and PyTorch's
/// `TransformerEncoderLayer`:
///
/// ```text
/// post-norm: x = norm1(x + attention(x));       x = norm2(x + feed_forward(x))
/// pre-norm:  x = x + attention(norm1(x));       x = x + feed_forward(norm2(x))
/// feed_forward(x) = linear2(dropout(activation(linear1(x))))
/// ```
///
/// with dropout on the attention weights and on each branch before it is added.
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use kiln_transformer::EncoderBlockConfig;
///
/// let device = Device::flex();
/// let block = EncoderBlockConfig::new(16, 4, 64).with_norm_first(true).init(&device);
/// let y = block.forward(Tensor::zeros([2, 5, 16], &device), None);
/// assert_eq!(y.dims(), [2, 5, 16]);
/// ```
#[derive(Config, Debug)]
pub struct EncoderBlockConfig {
    /// Width of the tokens' vectors.
    pub d_model: usize,
    /// Attention heads; must divide `d_model`.
    pub n_heads: usize,
    /// Width of the feed-forward layer.
    pub d_ff: usize,
    /// Dropout rate everywhere in the block, in training only. Default: 0.1 (PyTorch's).
    #[config(default = 0.1)]
    pub dropout: f64,
    /// Default: ReLU (PyTorch's).
    #[config(default = "Activation::Relu")]
    pub activation: Activation,
    /// Normalise before each branch (pre-norm, trains more stably in deep stacks) rather than
    /// after the residual sum (post-norm, the original). Default: false, post-norm.
    #[config(default = false)]
    pub norm_first: bool,
    /// Default: 1e-5.
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
}

impl EncoderBlockConfig {
    /// A block with freshly initialised weights on `device`.
    pub fn init(&self, device: &Device) -> EncoderBlock {
        let norm = || {
            LayerNormConfig::new(self.d_model)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        EncoderBlock {
            self_attn: MultiHeadAttentionConfig::new(self.d_model, self.n_heads)
                .with_dropout(self.dropout)
                .init(device),
            linear1: LinearConfig::new(self.d_model, self.d_ff).init(device),
            linear2: LinearConfig::new(self.d_ff, self.d_model).init(device),
            norm1: norm(),
            norm2: norm(),
            dropout: DropoutConfig::new(self.dropout).init(),
            activation: self.activation,
            norm_first: self.norm_first,
        }
    }
}

/// See [`EncoderBlockConfig`]. Field names follow PyTorch's, so its weights map one to one.
#[derive(Module, Debug)]
pub struct EncoderBlock {
    /// Multi-head self-attention.
    pub self_attn: MultiHeadAttention,
    /// The feed-forward network's first layer, `d_model -> d_ff`.
    pub linear1: Linear,
    /// Its second layer, `d_ff -> d_model`.
    pub linear2: Linear,
    /// Layer norm around the attention.
    pub norm1: LayerNorm,
    /// Layer norm around the feed-forward network.
    pub norm2: LayerNorm,
    /// Dropout on each sub-layer's output.
    pub dropout: Dropout,
    #[module(skip)]
    /// The feed-forward network's activation.
    pub activation: Activation,
    #[module(skip)]
    /// Layer norm before each sub-layer (pre-norm) rather than after.
    pub norm_first: bool,
}

impl EncoderBlock {
    /// # Shapes
    /// - x: `[batch, seq, d_model]`
    /// - padding: `[batch, seq]`, true at padded positions (never attended to)
    /// - output: `[batch, seq, d_model]`
    pub fn forward(&self, x: Tensor<3>, padding: Option<Tensor<2, Bool>>) -> Tensor<3> {
        let attend = |x: Tensor<3>| self.dropout.forward(self.self_attn.forward(x, padding));
        if self.norm_first {
            let x = x.clone() + attend(self.norm1.forward(x));
            x.clone() + self.feed_forward(self.norm2.forward(x))
        } else {
            let x = self.norm1.forward(x.clone() + attend(x));
            self.norm2.forward(x.clone() + self.feed_forward(x))
        }
    }

    /// The block's output in inference mode, and what the feed-forward activation received
    /// at every position (padded ones included).
    ///
    /// # Shapes
    /// - x: `[batch, seq, d_model]`
    /// - output: `[batch, seq, d_model]`, and the pre-activations `[batch * seq, d_ff]`
    pub fn activations(
        &self,
        x: Tensor<3>,
        padding: Option<Tensor<2, Bool>>,
    ) -> (Tensor<3>, Tensor<2>) {
        let [batch, seq, d_model] = x.dims();
        let ffn = |x: Tensor<3>| {
            let pre = self.linear1.forward(x.reshape([batch * seq, d_model]));
            let out = self.linear2.forward(self.activation.forward(pre.clone()));
            (out.reshape([batch, seq, d_model]), pre)
        };
        if self.norm_first {
            let x = x.clone() + self.self_attn.forward(self.norm1.forward(x), padding);
            let (out, pre) = ffn(self.norm2.forward(x.clone()));
            (x + out, pre)
        } else {
            let x = self
                .norm1
                .forward(x.clone() + self.self_attn.forward(x, padding));
            let (out, pre) = ffn(x.clone());
            (self.norm2.forward(x + out), pre)
        }
    }

    /// The position-wise feed-forward network: `linear1`, the activation, dropout, `linear2`,
    /// dropout.
    ///
    /// # Shapes
    /// - x: `[batch, seq, d_model]`
    /// - output: `[batch, seq, d_model]`
    pub fn feed_forward(&self, x: Tensor<3>) -> Tensor<3> {
        let hidden = dense(&self.linear1, x, Some(self.activation), Some(&self.dropout));
        dense(&self.linear2, hidden, None, Some(&self.dropout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Int};

    fn block(norm_first: bool) -> EncoderBlock {
        EncoderBlockConfig::new(8, 2, 16)
            .with_dropout(0.0)
            .with_norm_first(norm_first)
            .init(&Device::flex())
    }

    #[test]
    fn activations_follow_the_forward_pass_and_give_the_ffn_inputs() {
        let device = Device::flex();
        for norm_first in [false, true] {
            let block = block(norm_first);
            let x = Tensor::<3>::random([2, 5, 8], Distribution::Default, &device);
            let (out, pre) = block.activations(x.clone(), None);
            let want = block.forward(x, None);
            let gap: f32 = (out - want).abs().max().into_scalar();
            assert!(gap < 1e-5, "norm_first {norm_first}: {gap}");
            assert_eq!(pre.dims(), [10, 16], "every position by d_ff units");
        }
    }

    #[test]
    fn keeps_the_shape() {
        let x = Tensor::<3>::random([3, 5, 8], Distribution::Default, &Device::flex());
        assert_eq!(block(false).forward(x.clone(), None).dims(), [3, 5, 8]);
        assert_eq!(block(true).forward(x, None).dims(), [3, 5, 8]);
    }

    #[test]
    fn padded_positions_do_not_change_the_real_ones() {
        let device = Device::flex();
        for norm_first in [false, true] {
            let block = block(norm_first);
            let x = Tensor::<3>::random([1, 5, 8], Distribution::Default, &device);
            let other = Tensor::<3>::random([1, 2, 8], Distribution::Default, &device);
            let changed = Tensor::cat(vec![x.clone().slice([0..1, 0..3, 0..8]), other], 1);
            let padding = Tensor::<1, Int>::arange(0..5, &device)
                .greater_equal_elem(3)
                .reshape([1, 5]);
            let a = block
                .forward(x, Some(padding.clone()))
                .slice([0..1, 0..3, 0..8]);
            let b = block
                .forward(changed, Some(padding))
                .slice([0..1, 0..3, 0..8]);
            a.into_data()
                .assert_approx_eq::<f32>(&b.into_data(), Default::default());
        }
    }

    #[test]
    fn without_positions_the_block_is_permutation_equivariant() {
        let device = Device::flex();
        let block = block(false);
        let x = Tensor::<3>::random([2, 4, 8], Distribution::Default, &device);
        let order = Tensor::<1, Int>::from_ints([2, 0, 3, 1], &device);
        let permuted_then_block = block.forward(x.clone().select(1, order.clone()), None);
        let block_then_permuted = block.forward(x, None).select(1, order);
        permuted_then_block
            .into_data()
            .assert_approx_eq::<f32>(&block_then_permuted.into_data(), Default::default());
    }
}
