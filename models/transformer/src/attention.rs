use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Bool, Device, Tensor};
use kiln_common::autocast::matmul;
use kiln_common::dense::{affine, dense};
use kiln_common::{Dropout, DropoutConfig};

use crate::flash;
use crate::softmax::attention_weights;

/// Multi-head self-attention, `softmax(Q K^T / sqrt(d_k)) V` in `n_heads` subspaces of width
/// `d_k = d_model / n_heads`, concatenated and projected.
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use kiln_transformer::MultiHeadAttentionConfig;
///
/// let device = Device::flex();
/// let attention = MultiHeadAttentionConfig::new(16, 4).init(&device);
/// let y = attention.forward(Tensor::zeros([2, 5, 16], &device), None);
/// assert_eq!(y.dims(), [2, 5, 16]);
/// ```
#[derive(Config, Debug)]
pub struct MultiHeadAttentionConfig {
    /// Width of the tokens' vectors.
    pub d_model: usize,
    /// Must divide `d_model`.
    pub n_heads: usize,
    /// Dropout on the attention weights, in training only. Default: 0.
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl MultiHeadAttentionConfig {
    /// A layer with freshly initialised weights on `device` (PyTorch's initialisation).
    pub fn init(&self, device: &Device) -> MultiHeadAttention {
        assert!(
            self.n_heads > 0 && self.d_model.is_multiple_of(self.n_heads),
            "n_heads ({}) must divide d_model ({})",
            self.n_heads,
            self.d_model
        );
        let d = self.d_model;
        // PyTorch's initialisation: Xavier-uniform projections, zero biases.
        let in_proj_weight = Initializer::XavierUniform { gain: 1.0 }.init_with(
            [3 * d, d],
            Some(d),
            Some(3 * d),
            device,
        );
        MultiHeadAttention {
            in_proj_weight,
            in_proj_bias: Initializer::Zeros.init([3 * d], device),
            out_proj: LinearConfig::new(d, d).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            n_heads: self.n_heads,
        }
    }
}

/// Multi-head self-attention with PyTorch's parameter layout: `in_proj_weight` `[3 d_model,
/// d_model]` stacks `W_q`, `W_k`, `W_v` (rows, `[out, in]`), so one matrix product projects all
/// three; `out_proj` is a Linear (Burn's `[in, out]` weight: transpose PyTorch's to load it).
#[derive(Module, Debug)]
pub struct MultiHeadAttention {
    /// The query, key and value projections stacked, `[3 * d_model, d_model]` (PyTorch's `in_proj_weight`).
    pub in_proj_weight: Param<Tensor<2>>,
    /// Their biases, `[3 * d_model]`.
    pub in_proj_bias: Param<Tensor<1>>,
    /// The output projection.
    pub out_proj: Linear,
    /// Dropout on the attention weights.
    pub dropout: Dropout,
    /// Number of heads.
    pub n_heads: usize,
}

impl MultiHeadAttention {
    /// Self-attention of every position over every non-padded position.
    ///
    /// # Shapes
    /// - x: `[batch, seq, d_model]`
    /// - padding: `[batch, seq]`, true where the position is padding (it is never attended to)
    /// - output: `[batch, seq, d_model]`
    pub fn forward(&self, x: Tensor<3>, padding: Option<Tensor<2, Bool>>) -> Tensor<3> {
        let [batch, seq, d_model] = x.dims();
        let (heads, d_k) = (self.n_heads, d_model / self.n_heads);
        // One product for q, k and v: fused on the CPU (in the run's precision, as every dense
        // layer), Burn's elsewhere.
        let qkv = affine(
            x,
            self.in_proj_weight.val().transpose(),
            self.in_proj_bias.val(),
        );
        let mut parts = qkv.chunk(3, 2).into_iter().map(|part| {
            part.reshape([batch, seq, heads, d_k]).swap_dims(1, 2) // [batch, heads, seq, d_k]
        });
        let (q, k, v) = (
            parts.next().expect("q"),
            parts.next().expect("k"),
            parts.next().expect("v"),
        );
        let scale = 1.0 / (d_k as f32).sqrt();
        // In tiles on the CPU backends (memory linear in `seq`), composed elsewhere.
        let context = if flash::applies_to(&q) {
            let dropout = self.dropout.draw(&q.device());
            flash::fused(q, k, v, padding, scale, dropout)
        } else {
            let scores = matmul(q, k.swap_dims(2, 3)); // [batch, heads, seq, seq]
            let weights = attention_weights(scores, padding, scale);
            matmul(self.dropout.forward(weights), v)
        };
        let context = context.swap_dims(1, 2).reshape([batch, seq, d_model]);
        dense(&self.out_proj, context, None, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn one_head_over_one_key_returns_its_projected_value() {
        let device = Device::flex();
        let attention = MultiHeadAttentionConfig::new(4, 2).init(&device);
        // With a single position every weight is 1, so the output is out_proj(W_v x + b_v).
        let x = Tensor::<3>::random([2, 1, 4], Distribution::Default, &device);
        let got = attention.forward(x.clone(), None);
        let w_v = attention.in_proj_weight.val().slice([8..12, 0..4]);
        let b_v = attention.in_proj_bias.val().slice(8..12);
        let v = x.reshape([2, 4]).matmul(w_v.transpose()) + b_v.unsqueeze_dim(0);
        let want = attention.out_proj.forward(v).reshape([2, 1, 4]);
        got.into_data()
            .assert_approx_eq::<f32>(&want.into_data(), Default::default());
    }

    #[test]
    #[should_panic(expected = "must divide")]
    fn heads_must_divide_the_width() {
        MultiHeadAttentionConfig::new(6, 4).init(&Device::flex());
    }
}
