//! A dense layer — linear map, bias, activation and dropout — as one operation with a
//! hand-written backward pass, for the CPU backends.
//!
//! Composed, a hidden layer is four autodiff nodes (matmul, bias add, activation, dropout
//! multiply), each writing a full-size tensor forward and another backward. This operation
//! (`dense_kernel.rs`) writes the bias, accumulates `x · W` onto it with one `gemm` product,
//! applies the activation and the dropout mask in place and records one node; backward is two
//! products and a column sum.
//!
//! It is compiled for the backends whose cargo feature is on (`flex`, `ndarray`, forwarded by
//! the `kiln` facade); other backends (wgpu) compose Burn's `Linear`, the activation and
//! [`Dropout`], the reference the tests compare against. GELU (whose derivative needs the
//! input, not the output) is applied after the fused linear map, and so is dropout behind it.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::backend_extension;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata};
use burn::nn::Linear;
use burn::tensor::{DType, Tensor};
use std::sync::Arc;

use crate::dense_kernel::{self, DenseDims};
use crate::dropout::DropoutDraw;
use crate::kernel::{host_tensor, host_values, on_host, register_host_grads};
use crate::{Activation, Dropout};

/// The fused dense layer, routed by Burn to the backend of its inputs.
#[backend_extension(Flex: cfg(feature = "flex"), NdArray: cfg(feature = "ndarray"), Autodiff)]
pub trait DenseBackend: Backend {
    /// `dropout(activation(x · weight + bias))`: no activation when `activation` is `None`,
    /// no dropout when `dropout` is `None`. GELU is not computed here (see [`dense`]).
    ///
    /// # Shapes
    /// - x: `[rows, d_input]`
    /// - weight: `[d_input, d_output]`, bias: `[d_output]`
    /// - output: `[rows, d_output]`
    fn dense(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        activation: Option<Activation>,
        dropout: Option<DropoutDraw>,
    ) -> FloatTensor<Self> {
        // The plain CPU backends: the forward pass alone (autodiff overrides this).
        forward::<Self>(x, weight, bias, activation, dropout).0
    }
}

#[cfg(feature = "flex")]
impl DenseBackend for burn::backend::Flex {}

#[cfg(feature = "ndarray")]
impl DenseBackend for burn::backend::NdArray {}

/// `dropout(activation(linear(x)))`, the layer of every dense block and head: one fused
/// operation on the CPU backends compiled in, Burn's `Linear`, [`Activation::forward`] and
/// [`Dropout::forward`] elsewhere. `activation` `None` is the identity; `dropout` `None` keeps
/// every value.
///
/// # Shapes
/// - x: `[..., d_input]`
/// - output: `[..., d_output]`
pub fn dense<const D: usize>(
    linear: &Linear,
    x: Tensor<D>,
    activation: Option<Activation>,
    dropout: Option<&Dropout>,
) -> Tensor<D> {
    let Some(bias) = linear.bias.as_ref().filter(|_| fused_applies_to(&x)) else {
        return composed(linear, x, activation, dropout);
    };
    // GELU, and the dropout after it, follow the fused linear map.
    let (inner, outer) = if dense_kernel::fuses(activation) {
        (activation, None)
    } else {
        (None, activation)
    };
    let draw = match outer {
        None => dropout.and_then(|d| d.draw(&x.device())),
        Some(_) => None,
    };
    let out = fused(linear.weight.val(), bias.val(), x, inner, draw);
    match outer {
        Some(activation) => {
            let out = activation.forward(out);
            match dropout {
                Some(dropout) => dropout.forward(out),
                None => out,
            }
        }
        None => out,
    }
}

/// `x · weight + bias`, for a weight held as a tensor rather than a `Linear` (a stacked
/// projection such as attention's `in_proj_weight`, a tied output embedding): the fused
/// operation on the CPU backends compiled in, so that its products follow the
/// [precision](mod@crate::precision) as every dense layer's do; Burn's product and a bias add
/// elsewhere ([`autocast`](crate::autocast)).
///
/// # Shapes
/// - x: `[..., d_input]`
/// - weight: `[d_input, d_output]`, bias: `[d_output]`
/// - output: `[..., d_output]`
pub fn affine<const D: usize>(x: Tensor<D>, weight: Tensor<2>, bias: Tensor<1>) -> Tensor<D> {
    match fused_applies_to(&x) {
        true => fused(weight, bias, x, None, None),
        false => crate::autocast::affine(x, weight, Some(bias)),
    }
}

/// The fused operation on `x` of any rank, with a dropout mask already drawn; `weight` is
/// `[d_input, d_output]`.
fn fused<const D: usize>(
    weight: Tensor<2>,
    bias: Tensor<1>,
    x: Tensor<D>,
    activation: Option<Activation>,
    draw: Option<DropoutDraw>,
) -> Tensor<D> {
    let mut dims = x.dims();
    let d_input = dims[D - 1];
    let rows = x.shape().num_elements() / d_input.max(1);
    let [weight_in, d_output] = weight.dims();
    // The kernel reads `d_input` values of each weight column: another count would read the
    // weights with the wrong stride (Burn's `Linear` refuses it too).
    assert_eq!(
        d_input, weight_in,
        "dense layer: the input {dims:?} has {d_input} features, the weight [d_input, \
         d_output] is [{weight_in}, {d_output}]"
    );
    dims[D - 1] = d_output;
    Tensor::<2>::from_dispatch(<Dispatch as DenseBackend>::dense(
        x.reshape([rows, d_input]).into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        activation,
        draw,
    ))
    .reshape(dims)
}

/// The same layer from Burn's operations: the path of the GPU backends, and the reference the
/// fused one is tested against.
pub fn composed<const D: usize>(
    linear: &Linear,
    x: Tensor<D>,
    activation: Option<Activation>,
    dropout: Option<&Dropout>,
) -> Tensor<D> {
    let x = crate::autocast::linear(linear, x);
    let x = match activation {
        Some(activation) => activation.forward(x),
        None => x,
    };
    match dropout {
        Some(dropout) => dropout.forward(x),
        None => x,
    }
}

/// Whether the fused operation serves `x`: f32 values on a CPU backend compiled in.
pub fn fused_applies_to<const D: usize>(x: &Tensor<D>) -> bool {
    x.dtype() == DType::F32 && on_host(&x.device())
}

/// What the backward pass needs from the forward one, on the host.
#[derive(Debug, Clone)]
struct Saved {
    dims: DenseDims,
    x: Arc<Vec<f32>>,
    weight: Arc<Vec<f32>>,
    /// The activation's output, before dropout.
    activated: Arc<Vec<f32>>,
    mask: Option<Arc<Vec<f32>>>,
    activation: Option<Activation>,
}

/// The forward pass: the output, and what backward needs.
fn forward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
    activation: Option<Activation>,
    dropout: Option<DropoutDraw>,
) -> (FloatTensor<B>, Saved) {
    let ([rows, d_input], [w_in, d_output]) = (dims2(&x), dims2(&weight));
    assert_eq!(
        d_input, w_in,
        "dense: the input has {d_input} features, the weight expects {w_in}"
    );
    let dims = DenseDims {
        rows,
        d_input,
        d_output,
    };
    let device = x.device();
    let (x, weight, bias) = (
        host_values::<B>(x),
        host_values::<B>(weight),
        host_values::<B>(bias),
    );
    let activated = dense_kernel::forward(dims, &x, &weight, &bias, activation);
    let mask = dropout.map(|draw| draw.mask(rows * d_output));
    let out = match &mask {
        Some(mask) => dense_kernel::masked(&activated, mask),
        None => activated.clone(),
    };
    let output = host_tensor::<B>(out, &[rows, d_output], &device);
    let saved = Saved {
        dims,
        x: Arc::new(x),
        weight: Arc::new(weight),
        activated: Arc::new(activated),
        mask: mask.map(Arc::new),
        activation,
    };
    (output, saved)
}

/// A 2-D tensor's shape.
fn dims2<T: TensorMetadata>(t: &T) -> [usize; 2] {
    match t.shape().to_vec()[..] {
        [a, b] => [a, b],
        ref other => panic!("dense takes 2-D inputs, got shape {other:?}"),
    }
}

#[derive(Debug)]
struct DenseBackward;

impl<B: Backend> Backward<B, 3> for DenseBackward {
    type State = Saved;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let device = grad.device();
        let saved = ops.state;
        let d = saved.dims;
        let need_x = ops.parents[0].is_some();
        let [d_x, d_w, d_b] = dense_kernel::backward(
            d,
            (&saved.x, &saved.weight, &saved.activated),
            saved.mask.as_deref().map(Vec::as_slice),
            saved.activation,
            host_values::<B>(grad),
            need_x,
        );
        let values = [
            (d_x, vec![d.rows, d.d_input]),
            (d_w, vec![d.d_input, d.d_output]),
            (d_b, vec![d.d_output]),
        ];
        let parents = ops.parents.map(|parent| parent.map(|node| node.id));
        register_host_grads::<B, 3>(grads, parents, values, &device);
    }
}

impl<B: Backend + DenseBackend, C: CheckpointStrategy> DenseBackend for Autodiff<B, C> {
    fn dense(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        activation: Option<Activation>,
        dropout: Option<DropoutDraw>,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), weight.node(), bias.node()];
        let (x, weight, bias) = (
            x.into_primitive(),
            weight.into_primitive(),
            bias.into_primitive(),
        );
        match DenseBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (output, saved) = forward::<B>(x, weight, bias, activation, dropout);
                prep.finish(saved, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::dense(x, weight, bias, activation, dropout)),
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::DropoutConfig;
    use burn::nn::LinearConfig;
    use burn::tensor::{Device, Distribution, TensorData, Tolerance};

    /// The fused layer against Burn's `Linear`, the activation and the same dropout mask as a
    /// tensor: output and the gradients of the input, the weight and the bias, for every
    /// activation the kernel computes, with and without dropout, on a 3-D input. (The mask is
    /// given, not drawn: the backend's generator is shared by the tests running beside this one.)
    #[test]
    fn fused_equals_the_composed_layer_in_values_and_every_gradient() {
        let device = Device::flex().autodiff();
        let linear = LinearConfig::new(6, 4).init(&device);
        let activations = [None].into_iter().chain(Activation::ALL.map(Some));
        let draws = [
            None,
            Some(DropoutDraw {
                keep: 0.6,
                seed: 0x5EED,
            }),
        ];
        for (activation, draw) in activations
            .filter(|&a| dense_kernel::fuses(a))
            .flat_map(|a| draws.map(|d| (a, d)))
        {
            let x = Tensor::<3>::random([3, 5, 6], Distribution::Default, &device) - 0.5;
            let run = |fused_path: bool| {
                let x = x.clone().detach().require_grad();
                let out = if fused_path {
                    let bias = linear.bias.as_ref().unwrap().val();
                    fused(linear.weight.val(), bias, x.clone(), activation, draw)
                } else {
                    let out = composed(&linear, x.clone(), activation, None);
                    match draw {
                        Some(draw) => {
                            let mask = TensorData::new(draw.mask(3 * 5 * 4), [3, 5, 4]);
                            out * Tensor::from_data(mask, &device)
                        }
                        None => out,
                    }
                };
                let upstream = out.ones_like().cumsum(2);
                let grads = (out.clone() * upstream).sum().backward();
                let bias = linear.bias.as_ref().unwrap().val();
                [
                    out.into_data(),
                    x.grad(&grads).unwrap().into_data(),
                    linear.weight.val().grad(&grads).unwrap().into_data(),
                    bias.grad(&grads).unwrap().into_data(),
                ]
            };
            let (fused, composed) = (run(true), run(false));
            for (name, (f, c)) in ["output", "d x", "d weight", "d bias"]
                .iter()
                .zip(fused.iter().zip(&composed))
            {
                assert_eq!(f.shape(), c.shape(), "{activation:?} {draw:?}: {name}");
                f.assert_approx_eq::<f32>(c, Tolerance::absolute(1e-5).set_relative(1e-4));
            }
        }
    }

    /// `affine` with a weight read through a transpose (PyTorch's `[out, in]` layout, as
    /// attention's `in_proj_weight` is held) against Burn's product and bias add: output and
    /// the gradients of the input, the stored weight and the bias.
    #[test]
    fn affine_of_a_transposed_weight_equals_the_product_in_values_and_every_gradient() {
        let device = Device::flex().autodiff();
        let weight = Tensor::<2>::random([5, 6], Distribution::Default, &device) - 0.5;
        let bias = Tensor::<1>::random([5], Distribution::Default, &device);
        let x = Tensor::<3>::random([2, 3, 6], Distribution::Default, &device) - 0.5;
        let run = |fused_path: bool| {
            let (x, weight, bias) = (
                x.clone().detach().require_grad(),
                weight.clone().detach().require_grad(),
                bias.clone().detach().require_grad(),
            );
            let out = if fused_path {
                affine(x.clone(), weight.clone().transpose(), bias.clone())
            } else {
                x.clone()
                    .matmul(weight.clone().transpose().unsqueeze::<3>())
                    + bias.clone().unsqueeze()
            };
            assert_eq!(out.dims(), [2, 3, 5]);
            let upstream = out.ones_like().cumsum(2);
            let grads = (out.clone() * upstream).sum().backward();
            [
                out.into_data(),
                x.grad(&grads).unwrap().into_data(),
                weight.grad(&grads).unwrap().into_data(),
                bias.grad(&grads).unwrap().into_data(),
            ]
        };
        assert!(fused_applies_to(&x));
        let (fused, composed) = (run(true), run(false));
        for (name, (f, c)) in ["output", "d x", "d weight", "d bias"]
            .iter()
            .zip(fused.iter().zip(&composed))
        {
            assert_eq!(f.shape(), c.shape(), "{name}");
            f.assert_approx_eq::<f32>(c, Tolerance::absolute(1e-5).set_relative(1e-4));
        }
    }

    /// GELU is applied after the fused linear map: the same values and gradients as composed.
    #[test]
    fn gelu_follows_the_fused_linear_map() {
        let device = Device::flex().autodiff();
        let linear = LinearConfig::new(5, 3).init(&device);
        let x = Tensor::<2>::random([4, 5], Distribution::Default, &device) - 0.5;
        let run = |fused_path: bool| {
            let x = x.clone().detach().require_grad();
            let gelu = Some(Activation::Gelu);
            let out = if fused_path {
                dense(&linear, x.clone(), gelu, None)
            } else {
                composed(&linear, x.clone(), gelu, None)
            };
            let grads = out.clone().sum().backward();
            [out.into_data(), x.grad(&grads).unwrap().into_data()]
        };
        let (fused, composed) = (run(true), run(false));
        for (f, c) in fused.iter().zip(&composed) {
            f.assert_approx_eq::<f32>(c, Tolerance::absolute(1e-5).set_relative(1e-4));
        }
    }

    #[test]
    fn evaluation_keeps_every_value_and_other_backends_compose() {
        let device = Device::flex();
        let linear = LinearConfig::new(3, 2).init(&device);
        let dropout = DropoutConfig::new(0.5).init();
        let x = Tensor::<2>::random([4, 3], Distribution::Default, &device);
        // No autodiff: no dropout, in the fused path as in the composed one.
        let fused = dense(&linear, x.clone(), Some(Activation::Tanh), Some(&dropout));
        let reference = composed(&linear, x.clone(), Some(Activation::Tanh), None);
        fused
            .into_data()
            .assert_approx_eq::<f32>(&reference.into_data(), Tolerance::default());
        assert!(fused_applies_to(&x));
    }

    /// An input with another feature count than the weight takes is refused with both shapes.
    #[test]
    #[should_panic(
        expected = "the input [3, 5] has 5 features, the weight [d_input, d_output] \
                               is [6, 4]"
    )]
    fn another_feature_count_is_refused() {
        let device = Device::flex();
        let linear = LinearConfig::new(6, 4).init(&device);
        dense(&linear, Tensor::<2>::zeros([3, 5], &device), None, None);
    }

    /// An empty batch gives an empty output and zero gradients.
    #[test]
    fn an_empty_batch_gives_an_empty_output() {
        let device = Device::flex().autodiff();
        let linear = LinearConfig::new(6, 4).init(&device);
        let x = Tensor::<2>::zeros([0, 6], &device).require_grad();
        let out = dense(&linear, x, Some(Activation::Relu), None);
        assert_eq!(out.dims(), [0, 4]);
        let grads = out.sum().backward();
        let weight = linear.weight.grad(&grads).unwrap();
        assert_eq!(weight.into_data().iter::<f32>().sum::<f32>(), 0.0);
    }
}
