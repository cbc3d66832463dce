//! Attention `dropout(softmax(scale * q k^T, padded keys masked)) v` as one operation with a
//! hand-written backward pass, in tiles (FlashAttention, Dao et al. 2022), for the CPU
//! backends: memory linear in the sequence length.
//!
//! Composed from tensor operations, attention keeps the `[batch, heads, seq, seq]` scores, weights
//! and dropout mask for the backward pass: at 1,024 tokens that was twice PyTorch's memory, and
//! at 2,048 more than this machine has. This operation keeps its inputs, its output and one
//! softmax normaliser per query (`flash_kernel.rs`); the backward pass recomputes each tile's weights
//! from them, and regenerates the dropout mask from its seed (kiln's counter-based mask, the same
//! values [`Dropout`](kiln_common::Dropout) draws for the whole weights).
//!
//! Compiled for the backends whose cargo feature is on (`flex`, `ndarray`); elsewhere (wgpu)
//! [`MultiHeadAttention`](crate::MultiHeadAttention) takes the composed path ([`composed`]),
//! which computes the same values and is the reference in the tests.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::backend_extension;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata};
use burn::tensor::{Bool, DType, Tensor, TensorData};
use kiln_common::DropoutDraw;
use kiln_common::autocast::matmul;
use kiln_common::kernel::{host_tensor, host_values, on_host, register_host_grads};
use std::sync::Arc;

use crate::flash_kernel::{self, Dims, Setup};
use crate::softmax::attention_weights;

/// The tiled attention, routed by Burn to the backend of its inputs.
#[backend_extension(Flex: cfg(feature = "flex"), NdArray: cfg(feature = "ndarray"), Autodiff)]
pub trait FlashAttentionBackend: Backend {
    /// `dropout(softmax(scale * q k^T)) v`, a padded key's score replaced by `MASKED`; no
    /// dropout where `keep` is 1, else the mask of `(keep, seed)` (see [`DropoutDraw`]).
    ///
    /// # Shapes
    /// - q: `[batch, heads, seq_q, d_k]`
    /// - k, v: `[batch, heads, seq_k, d_k]`
    /// - masked: `[batch, seq_k]`, 1 where the key is padding, else 0
    /// - output: `[batch, heads, seq_q, d_k]`
    fn flash_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        masked: FloatTensor<Self>,
        scale: f32,
        keep: f64,
        seed: u64,
    ) -> FloatTensor<Self> {
        // The plain CPU backends: the forward pass alone (autodiff overrides this).
        forward::<Self>([q, k, v, masked], scale, draw(keep, seed)).0
    }
}

#[cfg(feature = "flex")]
impl FlashAttentionBackend for burn::backend::Flex {}

#[cfg(feature = "ndarray")]
impl FlashAttentionBackend for burn::backend::NdArray {}

fn draw(keep: f64, seed: u64) -> Option<DropoutDraw> {
    (keep < 1.0).then_some(DropoutDraw { keep, seed })
}

/// Attention over `q`, `k`, `v`, tiled; call only where [`applies_to`] is true.
///
/// # Shapes
/// - q: `[batch, heads, seq_q, d_k]`
/// - k, v: `[batch, heads, seq_k, d_k]`
/// - padding: `[batch, seq_k]`, true where the key is padding
/// - output: `[batch, heads, seq_q, d_k]`
pub fn fused(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    padding: Option<Tensor<2, Bool>>,
    scale: f32,
    dropout: Option<DropoutDraw>,
) -> Tensor<4> {
    let [batch, _, seq_k, _] = k.dims();
    let masked = match padding {
        Some(padding) => padding.float(),
        None => Tensor::zeros([batch, seq_k], &k.device()),
    };
    let (keep, seed) = dropout.map_or((1.0, 0), |d| (d.keep, d.seed));
    Tensor::from_dispatch(<Dispatch as FlashAttentionBackend>::flash_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        masked.into_dispatch(),
        scale,
        keep,
        seed,
    ))
}

/// The same attention from Burn's tensor operations, keeping the `[batch, heads, seq_q,
/// seq_k]` weights: the GPU backends' path and the tests' reference. The dropout, where given,
/// is the mask of that draw.
pub fn composed(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    padding: Option<Tensor<2, Bool>>,
    scale: f32,
    dropout: Option<DropoutDraw>,
) -> Tensor<4> {
    let weights = attention_weights(matmul(q, k.swap_dims(2, 3)), padding, scale);
    let weights = match dropout {
        Some(draw) => {
            let shape = weights.shape();
            let mask = TensorData::new(draw.mask(shape.num_elements()), shape);
            let device = weights.device();
            weights * Tensor::from_data(mask, &device)
        }
        None => weights,
    };
    matmul(weights, v)
}

/// Whether attention over `q` can take the tiled path: f32 values on a backend compiled in
/// with kiln-transformer's matching feature.
pub fn applies_to(q: &Tensor<4>) -> bool {
    q.dtype() == DType::F32 && on_host(&q.device())
}

/// What the backward pass needs: the inputs, the output and the rows' normalisers, on the host.
#[derive(Debug, Clone)]
struct Saved {
    dims: Dims,
    q: Arc<Vec<f32>>,
    k: Arc<Vec<f32>>,
    v: Arc<Vec<f32>>,
    masked: Arc<Vec<bool>>,
    forward: Arc<flash_kernel::Forward>,
    scale: f32,
    dropout: Option<DropoutDraw>,
}

impl Saved {
    fn setup(&self) -> Setup<'_> {
        Setup {
            dims: self.dims,
            masked: &self.masked,
            scale: self.scale,
            dropout: self.dropout,
        }
    }
}

/// The forward pass: the output, and what backward needs.
fn forward<B: Backend>(
    [q, k, v, masked]: [FloatTensor<B>; 4],
    scale: f32,
    dropout: Option<DropoutDraw>,
) -> (FloatTensor<B>, Saved) {
    let ([batch, heads, seq_q, d], [_, _, seq_k, _]) = (dims4::<B>(&q), dims4::<B>(&k));
    let dims = Dims {
        batch,
        heads,
        seq_q,
        seq_k,
        d,
    };
    let device = q.device();
    let masked: Vec<bool> = host_values::<B>(masked)
        .into_iter()
        .map(|m| m != 0.0)
        .collect();
    let (q, k, v) = (
        host_values::<B>(q),
        host_values::<B>(k),
        host_values::<B>(v),
    );
    let setup = Setup {
        dims,
        masked: &masked,
        scale,
        dropout,
    };
    let forward = flash_kernel::forward(&setup, &q, &k, &v);
    let output = host_tensor::<B>(forward.out.clone(), &[batch, heads, seq_q, d], &device);
    let saved = Saved {
        dims,
        q: Arc::new(q),
        k: Arc::new(k),
        v: Arc::new(v),
        masked: Arc::new(masked),
        forward: Arc::new(forward),
        scale,
        dropout,
    };
    (output, saved)
}

fn dims4<B: Backend>(t: &FloatTensor<B>) -> [usize; 4] {
    let [a, b, c, d] = t.shape().to_vec()[..] else {
        panic!("flash_attention takes q, k and v as [batch, heads, seq, d_k]")
    };
    [a, b, c, d]
}

#[derive(Debug)]
struct FlashAttentionBackward;

impl<B: Backend> Backward<B, 4> for FlashAttentionBackward {
    type State = Saved;

    fn backward(
        self,
        ops: Ops<Self::State, 4>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let device = grad.device();
        let saved = ops.state;
        let grad = host_values::<B>(grad);
        let [dq, dk, dv] = flash_kernel::backward(
            &saved.setup(),
            (&saved.q, &saved.k, &saved.v),
            &saved.forward,
            &grad,
        );
        let Dims {
            batch,
            heads,
            seq_q,
            seq_k,
            d,
        } = saved.dims;
        let parents = ops.parents.map(|p| p.map(|node| node.id));
        register_host_grads::<B, 4>(
            grads,
            parents,
            [
                (dq, vec![batch, heads, seq_q, d]),
                (dk, vec![batch, heads, seq_k, d]),
                (dv, vec![batch, heads, seq_k, d]),
                // The padding is a constant: no gradient.
                (vec![0.0; batch * seq_k], vec![batch, seq_k]),
            ],
            &device,
        );
    }
}

impl<B: Backend + FlashAttentionBackend, C: CheckpointStrategy> FlashAttentionBackend
    for Autodiff<B, C>
{
    fn flash_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        masked: FloatTensor<Self>,
        scale: f32,
        keep: f64,
        seed: u64,
    ) -> FloatTensor<Self> {
        let nodes = [q.node(), k.node(), v.node(), masked.node()];
        let inputs = [
            q.into_primitive(),
            k.into_primitive(),
            v.into_primitive(),
            masked.into_primitive(),
        ];
        match FlashAttentionBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (output, saved) = forward::<B>(inputs, scale, draw(keep, seed));
                prep.finish(saved, output)
            }
            OpsKind::UnTracked(prep) => {
                let [q, k, v, masked] = inputs;
                prep.finish(B::flash_attention(q, k, v, masked, scale, keep, seed))
            }
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, Tolerance};

    type Path = fn(
        Tensor<4>,
        Tensor<4>,
        Tensor<4>,
        Option<Tensor<2, Bool>>,
        f32,
        Option<DropoutDraw>,
    ) -> Tensor<4>;

    /// Output and the gradients of q, k and v of `sum(attention * upstream)` along `path`; the
    /// upstream gradient is a fixed pattern (tests running at once share the device's random
    /// generator, so a random one would differ between the two paths).
    fn run(
        path: Path,
        [q, k, v]: &[Tensor<4>; 3],
        padding: Option<Tensor<2, Bool>>,
        dropout: Option<DropoutDraw>,
    ) -> [Tensor<4>; 4] {
        let [q, k, v] = [q, k, v].map(|t| t.clone().detach().require_grad());
        let out = path(q.clone(), k.clone(), v.clone(), padding, 0.37, dropout);
        let n = out.shape().num_elements();
        let pattern: Vec<f32> = (0..n).map(|i| (i as f32 * 0.61).sin()).collect();
        let upstream = Tensor::<4>::from_data(TensorData::new(pattern, out.shape()), &out.device());
        let grads = (out.clone() * upstream).sum().backward();
        let grad = |t: &Tensor<4>| t.grad(&grads).expect("a gradient");
        [out.clone(), grad(&q), grad(&k), grad(&v)]
    }

    fn inputs(device: &Device, [batch, heads, seq_q, seq_k, d]: [usize; 5]) -> [Tensor<4>; 3] {
        let spread = Distribution::Normal(0.0, 2.0);
        [
            Tensor::random([batch, heads, seq_q, d], spread, device),
            Tensor::random([batch, heads, seq_k, d], spread, device),
            Tensor::random([batch, heads, seq_k, d], Distribution::Default, device),
        ]
    }

    /// `keys` padded at the end of sample 0 from `from` (at its start up to `keys - from`
    /// when `from` is past the end: left padding), all of sample 1 when `all`.
    fn padding(
        device: &Device,
        batch: usize,
        keys: usize,
        from: usize,
        all: bool,
    ) -> Tensor<2, Bool> {
        let mut mask = vec![false; batch * keys];
        for (j, m) in mask[..keys].iter_mut().enumerate() {
            *m = if from > keys {
                j < from - keys
            } else {
                j >= from
            };
        }
        if all && batch > 1 {
            mask[keys..2 * keys].fill(true);
        }
        Tensor::from_data(TensorData::new(mask, [batch, keys]), device)
    }

    fn assert_close(a: &[Tensor<4>; 4], b: &[Tensor<4>; 4]) {
        for (a, b) in a.iter().zip(b) {
            a.clone()
                .into_data()
                .assert_approx_eq::<f32>(&b.clone().into_data(), Tolerance::absolute(1e-4));
        }
    }

    /// Tiles cut at odd places (67 queries and 130 keys against tiles of 64), padding at the
    /// end and at the start, a sample whose every key is padding (uniform weights, as the composed path's finite mask
    /// gives), one-token sequences: the same output and gradients as the composed path.
    #[test]
    fn tiles_equal_the_composed_path_in_output_and_every_gradient() {
        let device = Device::flex().autodiff();
        for (shape, pad) in [
            ([2, 3, 67, 130, 5], Some((100, true))),
            // The first 70 keys padding: whole tiles of nothing before the real keys.
            ([2, 2, 65, 130, 4], Some((200, false))),
            ([3, 2, 9, 9, 8], Some((4, false))),
            ([2, 1, 1, 1, 4], None),
            ([1, 2, 1, 70, 16], Some((3, false))),
            ([2, 2, 128, 64, 16], None),
        ] {
            let qkv = inputs(&device, shape);
            assert!(applies_to(&qkv[0]));
            let padding = pad.map(|(from, all)| padding(&device, shape[0], shape[3], from, all));
            let want = run(composed, &qkv, padding.clone(), None);
            let got = run(fused, &qkv, padding, None);
            assert_close(&got, &want);
        }
    }

    /// Dropout on the weights: the tiles regenerate the mask the composed path builds whole.
    #[test]
    fn dropout_in_the_tiles_is_the_whole_mask_of_the_same_draw() {
        let device = Device::flex().autodiff();
        let qkv = inputs(&device, [2, 2, 70, 75, 6]);
        let padding = padding(&device, 2, 75, 60, false);
        let draw = DropoutDraw {
            keep: 0.8,
            seed: 0xfeed_beef,
        };
        let want = run(composed, &qkv, Some(padding.clone()), Some(draw));
        let got = run(fused, &qkv, Some(padding.clone()), Some(draw));
        assert_close(&got, &want);
        // And it drops something: without it the output differs.
        let plain = run(fused, &qkv, Some(padding), None);
        let gap: f32 = (plain[0].clone() - got[0].clone())
            .abs()
            .max()
            .into_scalar();
        assert!(gap > 1e-2, "{gap}");
    }

    /// Central differences of `sum(attention * upstream)` in f64, against the tiles' gradient,
    /// on a small case with padding.
    #[test]
    fn gradients_match_finite_differences() {
        let device = Device::flex();
        let shape = [1, 1, 3, 4, 2];
        let [q, k, v] = inputs(&device, shape).map(|t| t.into_data().into_vec::<f32>().unwrap());
        let u: Vec<f32> = (0..6).map(|i| (i as f32 * 0.7).sin()).collect();
        let scale = 0.37f64;
        let masked = [false, false, true, false];
        let objective = |q: &[f32], k: &[f32], v: &[f32]| -> f64 {
            let mut total = 0.0;
            for i in 0..3 {
                let s: Vec<f64> = (0..4)
                    .map(|j| {
                        if masked[j] {
                            MASKED_F64
                        } else {
                            scale
                                * (0..2)
                                    .map(|c| q[i * 2 + c] as f64 * k[j * 2 + c] as f64)
                                    .sum::<f64>()
                        }
                    })
                    .collect();
                let max = s.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for c in 0..2 {
                    let o: f64 = (0..4).map(|j| e[j] / sum * v[j * 2 + c] as f64).sum();
                    total += o * u[i * 2 + c] as f64;
                }
            }
            total
        };
        let ad = Device::flex().autodiff();
        let tensor = |x: &[f32], rows| {
            Tensor::<4>::from_data(TensorData::new(x.to_vec(), [1, 1, rows, 2]), &ad).require_grad()
        };
        let (tq, tk, tv) = (tensor(&q, 3), tensor(&k, 4), tensor(&v, 4));
        let pad = Tensor::<2, Bool>::from_data(TensorData::new(masked.to_vec(), [1, 4]), &ad);
        let out = fused(
            tq.clone(),
            tk.clone(),
            tv.clone(),
            Some(pad),
            scale as f32,
            None,
        );
        let upstream = Tensor::<4>::from_data(TensorData::new(u.clone(), [1, 1, 3, 2]), &ad);
        let grads = (out * upstream).sum().backward();
        let h = 1e-2;
        for (which, t) in [(0, &tq), (1, &tk), (2, &tv)] {
            let analytic = t
                .grad(&grads)
                .unwrap()
                .into_data()
                .into_vec::<f32>()
                .unwrap();
            for (i, a) in analytic.iter().enumerate() {
                let mut inputs = [q.clone(), k.clone(), v.clone()];
                inputs[which][i] += h;
                let plus = objective(&inputs[0], &inputs[1], &inputs[2]);
                inputs[which][i] -= 2.0 * h;
                let minus = objective(&inputs[0], &inputs[1], &inputs[2]);
                let numeric = (plus - minus) / (2.0 * h as f64);
                assert!(
                    (*a as f64 - numeric).abs() < 1e-3,
                    "input {which}, element {i}: analytic {a}, numeric {numeric}"
                );
            }
        }
    }

    const MASKED_F64: f64 = crate::softmax::MASKED as f64;

    /// No queries, no keys, an empty batch: empty outputs and gradients, no panic.
    #[test]
    fn empty_shapes_give_empty_outputs() {
        let device = Device::flex().autodiff();
        for shape in [[2, 2, 0, 5, 4], [2, 2, 5, 0, 4], [0, 2, 5, 5, 4]] {
            let qkv = inputs(&device, shape);
            let [out, dq, dk, dv] = run(fused, &qkv, None, None);
            assert_eq!(out.dims(), [shape[0], shape[1], shape[2], shape[4]]);
            assert_eq!(dq.dims(), qkv[0].dims());
            assert_eq!((dk.dims(), dv.dims()), (qkv[1].dims(), qkv[2].dims()));
        }
    }
}
