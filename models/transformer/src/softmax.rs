//! The attention weights `softmax(scale * scores, masked keys -> MASKED)` as one operation, with a
//! hand-written backward pass, for the CPU backends.
//!
//! Composed from tensor operations (scale, mask, then softmax's max, subtract, `exp`, sum and
//! divide), the attention weights cost six passes over a `[batch, heads, seq, seq]` tensor
//! forward and as many backward, each writing a full-size buffer and recording an autodiff node,
//! and burn-flex's `exp` is the scalar `expf`: on the benchmark transformer, 19% of the step.
//! This operation reads the scores once and writes the weights once, with a vectorised `exp`
//! and the rows split across threads; its backward pass is one more pass per row:
//! `d scores = scale * p * (d p - sum(d p * p))`, zero for masked keys.
//!
//! It is compiled for the backends whose cargo feature is on (`flex`, `ndarray`, forwarded by
//! the `kiln` facade); other backends (wgpu, whose fusion merges the composed kernels) use the
//! composed path, which computes the same values and is the reference in the tests.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::backend_extension;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata};
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, DType, Tensor};
use kiln_common::kernel::{self, host_tensor, host_values, on_host};
use kiln_common::vectorised;
use rayon::prelude::*;
use std::sync::Arc;

/// The score of a padded key: its weight underflows to zero.
pub(crate) const MASKED: f32 = -1.0e9;

/// The fused attention weights, routed by Burn to the backend of their inputs.
#[backend_extension(Flex: cfg(feature = "flex"), NdArray: cfg(feature = "ndarray"), Autodiff)]
pub trait AttentionBackend: Backend {
    /// `softmax(scale * scores)` over the keys, a masked key's score replaced by `MASKED`.
    ///
    /// # Shapes
    /// - scores: `[batch, heads, seq_q, seq_k]`
    /// - masked: `[batch, seq_k]`, 1 where the key is padding, else 0
    /// - output: `[batch, heads, seq_q, seq_k]`
    fn attention_softmax(
        scores: FloatTensor<Self>,
        masked: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        // The plain CPU backends: the forward pass alone (autodiff overrides this).
        forward::<Self>(scores, masked, scale).0
    }
}

#[cfg(feature = "flex")]
impl AttentionBackend for burn::backend::Flex {}

#[cfg(feature = "ndarray")]
impl AttentionBackend for burn::backend::NdArray {}

/// The attention weights of `scores`: `softmax(scale * scores)` over the last dimension, with
/// the score of every padded key replaced by `MASKED` first. Fused on the CPU backends compiled
/// in, composed from Burn's operations elsewhere.
///
/// # Shapes
/// - scores: `[batch, heads, seq_q, seq_k]`
/// - padding: `[batch, seq_k]`, true where the key is padding
/// - output: `[batch, heads, seq_q, seq_k]`
pub fn attention_weights(
    scores: Tensor<4>,
    padding: Option<Tensor<2, Bool>>,
    scale: f32,
) -> Tensor<4> {
    if fused_applies_to(&scores) {
        fused(scores, padding, scale)
    } else {
        composed(scores, padding, scale)
    }
}

/// The same weights from Burn's tensor operations: the path of the GPU backends, and the
/// reference the fused one is tested against.
pub fn composed(scores: Tensor<4>, padding: Option<Tensor<2, Bool>>, scale: f32) -> Tensor<4> {
    let [batch, _, _, seq_k] = scores.dims();
    let mut scores = scores.mul_scalar(scale);
    if let Some(padding) = padding {
        scores = scores.mask_fill(padding.reshape([batch, 1, 1, seq_k]), MASKED);
    }
    softmax(scores, 3)
}

/// The fused operation; call only where [`fused_applies_to`] is true.
pub fn fused(scores: Tensor<4>, padding: Option<Tensor<2, Bool>>, scale: f32) -> Tensor<4> {
    let [batch, _, _, seq_k] = scores.dims();
    let device = scores.device();
    let masked = match padding {
        Some(padding) => padding.float(),
        None => Tensor::zeros([batch, seq_k], &device),
    };
    Tensor::from_dispatch(<Dispatch as AttentionBackend>::attention_softmax(
        scores.into_dispatch(),
        masked.into_dispatch(),
        scale,
    ))
}

/// Whether `scores` can take the fused path: f32 values on a backend compiled in with
/// kiln-transformer's matching feature.
pub fn fused_applies_to(scores: &Tensor<4>) -> bool {
    scores.dtype() == DType::F32 && on_host(&scores.device())
}

/// What the backward pass needs: the weights and which keys are masked, on the host.
#[derive(Debug, Clone)]
struct Saved {
    weights: Arc<Vec<f32>>,
    masked: Arc<Vec<bool>>,
    shape: [usize; 4],
    scale: f32,
}

/// Rows of `seq_k` per parallel task: enough work per task to pay for its scheduling.
fn rows_per_task(seq_k: usize) -> usize {
    (16_384 / seq_k.max(1)).max(1)
}

vectorised!(softmax_row(scores: &[f32], masked: &[bool], scale: f32, out: &mut [f32]) {
    let mut max = f32::NEG_INFINITY;
    for ((o, &s), &m) in out.iter_mut().zip(scores).zip(masked) {
        *o = if m { MASKED } else { s * scale };
        max = max.max(*o);
    }
    let mut sum = 0.0;
    for o in out.iter_mut() {
        // Below e^-87 a weight is zero, as `expf` underflows (a masked key's, for one).
        let d = *o - max;
        *o = if d < -87.0 { 0.0 } else { kernel::exp(d) };
        sum += *o;
    }
    let inv = 1.0 / sum;
    for o in out.iter_mut() {
        *o *= inv;
    }
});

vectorised!(softmax_backward_row(weights: &[f32], grad: &mut [f32], masked: &[bool], scale: f32) {
    // grad: the weights' gradient in, the scores' out.
    let dot: f32 = weights.iter().zip(grad.iter()).map(|(p, g)| p * g).sum();
    for ((g, &p), &m) in grad.iter_mut().zip(weights).zip(masked) {
        *g = if m { 0.0 } else { scale * p * (*g - dot) };
    }
});

/// The forward pass: the weights, and what backward needs.
fn forward<B: Backend>(
    scores: FloatTensor<B>,
    masked: FloatTensor<B>,
    scale: f32,
) -> (FloatTensor<B>, Saved) {
    let [batch, heads, seq_q, seq_k] = scores.shape().to_vec()[..] else {
        panic!("attention_softmax takes scores as [batch, heads, seq_q, seq_k]")
    };
    let device = scores.device();
    let scores = host_values::<B>(scores);
    let masked: Vec<bool> = host_values::<B>(masked)
        .into_iter()
        .map(|m| m != 0.0)
        .collect();
    let mut weights = vec![0.0; scores.len()];
    let sample = heads * seq_q * seq_k;
    // At least one value per chunk: no keys (seq_k 0) means no weights and no chunks.
    let rows = rows_per_task(seq_k) * seq_k.max(1);
    weights
        .par_chunks_mut(rows)
        .zip(scores.par_chunks(rows))
        .enumerate()
        .for_each(|(task, (out, scores))| {
            for (r, (out, scores)) in out.chunks_mut(seq_k).zip(scores.chunks(seq_k)).enumerate() {
                let b = (task * rows + r * seq_k) / sample;
                let masked = &masked[b * seq_k..(b + 1) * seq_k];
                softmax_row(scores, masked, scale, out);
            }
        });
    let shape = [batch, heads, seq_q, seq_k];
    let output = host_tensor::<B>(weights.clone(), &shape, &device);
    let saved = Saved {
        weights: Arc::new(weights),
        masked: Arc::new(masked),
        shape,
        scale,
    };
    (output, saved)
}

/// The scores' gradient from the weights'.
fn backward<B: Backend>(saved: Saved, grad: FloatTensor<B>) -> FloatTensor<B> {
    let device = grad.device();
    let [_, heads, seq_q, seq_k] = saved.shape;
    let mut grad = host_values::<B>(grad);
    let sample = heads * seq_q * seq_k;
    // At least one value per chunk: no keys (seq_k 0) means no weights and no chunks.
    let rows = rows_per_task(seq_k) * seq_k.max(1);
    grad.par_chunks_mut(rows)
        .zip(saved.weights.par_chunks(rows))
        .enumerate()
        .for_each(|(task, (grad, weights))| {
            for (r, (grad, weights)) in grad
                .chunks_mut(seq_k)
                .zip(weights.chunks(seq_k))
                .enumerate()
            {
                let b = (task * rows + r * seq_k) / sample;
                let masked = &saved.masked[b * seq_k..(b + 1) * seq_k];
                softmax_backward_row(weights, grad, masked, saved.scale);
            }
        });
    host_tensor::<B>(grad, &saved.shape, &device)
}

#[derive(Debug)]
struct AttentionSoftmaxBackward;

impl<B: Backend> Backward<B, 2> for AttentionSoftmaxBackward {
    type State = Saved;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = &ops.parents[0] {
            grads.register::<B>(node.id, backward::<B>(ops.state, grad));
        }
    }
}

impl<B: Backend + AttentionBackend, C: CheckpointStrategy> AttentionBackend for Autodiff<B, C> {
    fn attention_softmax(
        scores: FloatTensor<Self>,
        masked: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        let nodes = [scores.node(), masked.node()];
        let (scores, masked) = (scores.into_primitive(), masked.into_primitive());
        match AttentionSoftmaxBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (output, saved) = forward::<B>(scores, masked, scale);
                prep.finish(saved, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::attention_softmax(scores, masked, scale)),
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};
    use burn::tensor::{Distribution, Tolerance};

    fn inputs(device: &Device) -> (Tensor<4>, Tensor<2, Bool>, Tensor<4>) {
        // Odd sizes, keys masked at the end of the first sample only, and scores spread wide
        // enough that the largest dominate some rows.
        let scores = Tensor::<4>::random([2, 3, 5, 7], Distribution::Normal(0.0, 4.0), device);
        let padding = Tensor::<2, Bool>::from_data(
            TensorData::new(
                [[false, false, false, false, true, true, true], [false; 7]]
                    .concat()
                    .to_vec(),
                [2, 7],
            ),
            device,
        );
        let upstream = Tensor::<4>::random([2, 3, 5, 7], Distribution::Default, device);
        (scores, padding, upstream)
    }

    #[test]
    fn fused_equals_composed_in_values_and_gradient() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let (scores, padding, upstream) = inputs(&device);
        assert!(fused_applies_to(&scores));
        let scale = 1.0 / 2.0_f32.sqrt();
        let run = |path: fn(Tensor<4>, Option<Tensor<2, Bool>>, f32) -> Tensor<4>| {
            let scores = scores.clone().detach().require_grad();
            let weights = path(scores.clone(), Some(padding.clone()), scale);
            let grads = (weights.clone() * upstream.clone()).sum().backward();
            (weights, scores.grad(&grads).expect("the scores' gradient"))
        };
        let (fused_w, fused_g) = run(fused);
        let (composed_w, composed_g) = run(composed);
        fused_w
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&composed_w.into_data(), Tolerance::absolute(1e-6));
        fused_g
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&composed_g.into_data(), Tolerance::absolute(1e-6));
        // Masked keys get no weight and no gradient; every row sums to 1.
        let w = fused_w.into_data().into_vec::<f32>().unwrap();
        let g = fused_g.into_data().into_vec::<f32>().unwrap();
        for row in 0..15 {
            assert_eq!(&w[row * 7 + 4..row * 7 + 7], &[0.0; 3]);
            assert_eq!(&g[row * 7 + 4..row * 7 + 7], &[0.0; 3]);
            let sum: f32 = w[row * 7..row * 7 + 7].iter().sum();
            assert!((sum - 1.0).abs() < 1e-6, "row {row} sums to {sum}");
        }
    }

    #[test]
    fn fused_gradient_matches_finite_differences() {
        // Central differences of sum(weights * upstream) in f64 from the forward pass alone.
        let device = Device::flex().autodiff();
        device.seed(4);
        let (scores, padding, upstream) = inputs(&device);
        let scale = 0.5;
        let x = scores.clone().detach().require_grad();
        let grads = (fused(x.clone(), Some(padding.clone()), scale) * upstream.clone())
            .sum()
            .backward();
        let analytic = x
            .grad(&grads)
            .unwrap()
            .into_data()
            .into_vec::<f32>()
            .unwrap();
        let s = scores.into_data().into_vec::<f32>().unwrap();
        let u = upstream.into_data().into_vec::<f32>().unwrap();
        let objective = |s: &[f32], row: usize| -> f64 {
            // One row (the other rows do not depend on its scores).
            let masked = row < 15;
            let x: Vec<f64> = (0..7)
                .map(|j| {
                    if masked && j >= 4 {
                        MASKED as f64
                    } else {
                        s[row * 7 + j] as f64 * scale as f64
                    }
                })
                .collect();
            let max = x.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = x.iter().map(|v| (v - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            (0..7).map(|j| e[j] / sum * u[row * 7 + j] as f64).sum()
        };
        for i in 0..s.len() {
            let row = i / 7;
            let h = 1e-2;
            let (mut plus, mut minus) = (s.clone(), s.clone());
            plus[i] += h;
            minus[i] -= h;
            let numeric = (objective(&plus, row) - objective(&minus, row)) / (2.0 * h as f64);
            assert!(
                (analytic[i] as f64 - numeric).abs() < 1e-4,
                "score {i}: analytic {} numeric {numeric}",
                analytic[i]
            );
        }
    }

    #[test]
    fn without_padding_and_without_autodiff_it_is_a_plain_softmax() {
        let device = Device::flex();
        device.seed(5);
        let scores = Tensor::<4>::random([1, 2, 3, 300], Distribution::Normal(0.0, 3.0), &device);
        fused(scores.clone(), None, 0.25)
            .into_data()
            .assert_approx_eq::<f32>(
                &softmax(scores.mul_scalar(0.25), 3).into_data(),
                Tolerance::absolute(1e-6),
            );
    }

    /// No keys, or no queries, or an empty batch: empty weights and gradients, as the composed
    /// path gives, not a panic inside rayon.
    #[test]
    fn empty_shapes_give_empty_weights() {
        let device = Device::flex().autodiff();
        for shape in [[2, 3, 5, 0], [2, 3, 0, 7], [0, 3, 5, 7]] {
            let scores = Tensor::<4>::zeros(shape, &device).require_grad();
            let weights = fused(scores.clone(), None, 0.5);
            assert_eq!(weights.dims(), shape);
            let grads = weights.sum().backward();
            assert_eq!(scores.grad(&grads).unwrap().dims(), shape);
        }
    }
}
