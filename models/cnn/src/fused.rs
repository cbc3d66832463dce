//! A convolution with its bias and ReLU as one operation, with a hand-written backward pass, for
//! the CPU backends.
//!
//! Composed, burn-flex converts every convolution's input to NHWC and its output back, runs the
//! input's gradient as a transposed convolution and the weight's as another convolution, and
//! records the bias and the ReLU as nodes of their own: on the benchmark CNN the layout copies
//! alone were 8% of the step. This operation (`cpu_kernel.rs`) unrolls each image's patches
//! and makes one `gemm` product per image and direction, in NCHW throughout, with the bias and
//! the ReLU applied in place, and records one node.
//!
//! It is compiled for the backends whose cargo feature is on (`flex`, `ndarray`, forwarded by
//! the `kiln` facade); [`applies_to`] says whether a convolution can use it. Other backends
//! (wgpu) and other convolutions (dilated, grouped, "same"-padded, without a bias) use Burn's
//! `Conv2d`, the reference the tests compare against.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::backend_extension;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::tensor::{DType, Tensor};
use std::sync::Arc;

use kiln_common::kernel::{host_tensor, host_values, on_host, register_host_grads};

use crate::cpu_kernel::{self, ConvDims};

/// The fused convolution, routed by Burn to the backend of its inputs.
#[backend_extension(Flex: cfg(feature = "flex"), NdArray: cfg(feature = "ndarray"), Autodiff)]
pub trait ConvBackend: Backend {
    /// `conv2d(x, weight) + bias`, then ReLU when `relu`, then a max-pool with a `pool x pool`
    /// window and stride when `pool > 1`.
    ///
    /// # Shapes
    /// - x: `[batch, c_in, h, w]`
    /// - weight: `[c_out, c_in, kh, kw]`, bias: `[c_out]`
    /// - stride: `[rows, columns]`; padding: `[top, left, bottom, right]`
    /// - output: `[batch, c_out, h_out / pool, w_out / pool]`
    fn conv2d_bias_relu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 4],
        relu: bool,
        pool: usize,
    ) -> FloatTensor<Self> {
        // The plain CPU backends: the forward pass alone (autodiff overrides this).
        forward::<Self>(x, weight, bias, stride, padding, relu, pool).0
    }
}

#[cfg(feature = "flex")]
impl ConvBackend for burn::backend::Flex {}

#[cfg(feature = "ndarray")]
impl ConvBackend for burn::backend::NdArray {}

/// The padding `[top, left, bottom, right]` of `conv` where the fused path takes it: not
/// dilated, not grouped, with a bias and explicit (or no) padding, on f32 values on a CPU
/// backend compiled in with kiln-cnn's matching feature.
pub fn applies_to(conv: &Conv2d, x: &Tensor<4>) -> Option<[usize; 4]> {
    let padding = match conv.padding {
        PaddingConfig2d::Valid => [0; 4],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [top, left, bottom, right],
        PaddingConfig2d::Same => return None,
    };
    let plain = conv.dilation == [1, 1] && conv.groups == 1 && conv.bias.is_some();
    (plain && x.dtype() == DType::F32 && on_host(&x.device())).then_some(padding)
}

/// `conv`'s output, then ReLU when `relu`, then `pool`'s when given, by the fused operation;
/// call only with the padding [`applies_to`] returned, and with a pool [`pool_applies`] takes.
///
/// # Shapes
/// - x: `[batch, c_in, h, w]`
/// - output: `[batch, c_out, h_out, w_out]`, divided by the pool's window when pooled
pub fn conv2d_bias_relu(
    conv: &Conv2d,
    x: Tensor<4>,
    padding: [usize; 4],
    relu: bool,
    pool: Option<&MaxPool2d>,
) -> Tensor<4> {
    let bias = conv
        .bias
        .as_ref()
        .expect("applies_to checks the bias")
        .val();
    check_shapes(&x.dims(), &conv.weight.dims(), padding);
    Tensor::from_dispatch(<Dispatch as ConvBackend>::conv2d_bias_relu(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        bias.into_dispatch(),
        conv.stride,
        padding,
        relu,
        pool.map_or(1, |pool| pool.kernel_size[0]),
    ))
}

/// Panics, naming both shapes, where the kernel would read the weights with the wrong stride
/// (another input channel count) or the kernel does not fit the padded image, as Burn's
/// `Conv2d` refuses both.
fn check_shapes(x: &[usize; 4], weight: &[usize; 4], padding: [usize; 4]) {
    let ([_, c_in, h, w], [_, weight_c_in, kh, kw]) = (*x, *weight);
    assert_eq!(
        c_in, weight_c_in,
        "conv2d: the input {x:?} ([batch, channels, height, width]) has {c_in} channels, the \
         weight {weight:?} ([c_out, c_in, kh, kw]) takes {weight_c_in}"
    );
    let (padded_h, padded_w) = (h + padding[0] + padding[2], w + padding[1] + padding[3]);
    assert!(
        padded_h >= kh && padded_w >= kw,
        "conv2d: the {kh}x{kw} kernel of the weight {weight:?} is larger than the input {x:?} \
         padded to {padded_h}x{padded_w}"
    );
}

/// Whether the fused operation can take `pool`, after a ReLU: a square window with the same
/// stride, no padding, no dilation, floor mode — kiln's `ConvBlock` pools.
pub fn pool_applies(pool: &MaxPool2d) -> bool {
    let [k, k2] = pool.kernel_size;
    k == k2
        && pool.stride == [k, k]
        && matches!(pool.padding, PaddingConfig2d::Valid)
        && pool.dilation == [1, 1]
        && !pool.ceil_mode
}

/// What the backward pass needs from the forward one, on the host.
#[derive(Debug, Clone)]
struct Saved {
    dims: ConvDims,
    x: Arc<Vec<f32>>,
    weight: Arc<Vec<f32>>,
    out: Arc<Vec<f32>>,
    /// Each pooled value's position in its image's convolution output; empty without a pool.
    argmax: Arc<Vec<u32>>,
    relu: bool,
}

fn dims(
    x: &[usize],
    weight: &[usize],
    stride: [usize; 2],
    padding: [usize; 4],
    pool: usize,
) -> ConvDims {
    let [batch, c_in, h, w] = x[..] else {
        panic!("conv2d_bias_relu takes x as [batch, c_in, h, w]")
    };
    let [c_out, _, kh, kw] = weight[..] else {
        panic!("conv2d_bias_relu takes the weight as [c_out, c_in, kh, kw]")
    };
    ConvDims {
        batch,
        c_in,
        h,
        w,
        c_out,
        kh,
        kw,
        stride,
        pad: [padding[0], padding[1]],
        h_out: (h + padding[0] + padding[2] - kh) / stride[0] + 1,
        w_out: (w + padding[1] + padding[3] - kw) / stride[1] + 1,
        pool: pool.max(1),
    }
}

/// The forward pass: the output, and what backward needs.
fn forward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
    stride: [usize; 2],
    padding: [usize; 4],
    relu: bool,
    pool: usize,
) -> (FloatTensor<B>, Saved) {
    let d = dims(
        &x.shape().to_vec(),
        &weight.shape().to_vec(),
        stride,
        padding,
        pool,
    );
    let device = x.device();
    let (x, weight, bias) = (
        host_values::<B>(x),
        host_values::<B>(weight),
        host_values::<B>(bias),
    );
    let (out, argmax) = cpu_kernel::forward(d, &x, &weight, &bias, relu);
    let [h, w] = d.pooled();
    let output = host_tensor::<B>(out.clone(), &[d.batch, d.c_out, h, w], &device);
    let saved = Saved {
        dims: d,
        x: Arc::new(x),
        weight: Arc::new(weight),
        out: Arc::new(out),
        argmax: Arc::new(argmax),
        relu,
    };
    (output, saved)
}

#[derive(Debug)]
struct ConvBackward;

impl<B: Backend> Backward<B, 3> for ConvBackward {
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
        let [d_x, d_w, d_b] = cpu_kernel::backward(
            d,
            (&saved.x, &saved.weight, &saved.out, &saved.argmax),
            &host_values::<B>(grad),
            saved.relu,
            need_x,
        );
        let values = [
            (d_x, vec![d.batch, d.c_in, d.h, d.w]),
            (d_w, vec![d.c_out, d.c_in, d.kh, d.kw]),
            (d_b, vec![d.c_out]),
        ];
        let parents = ops.parents.map(|parent| parent.map(|node| node.id));
        register_host_grads::<B, 3>(grads, parents, values, &device);
    }
}

impl<B: Backend + ConvBackend, C: CheckpointStrategy> ConvBackend for Autodiff<B, C> {
    fn conv2d_bias_relu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 4],
        relu: bool,
        pool: usize,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), weight.node(), bias.node()];
        let (x, weight, bias) = (
            x.into_primitive(),
            weight.into_primitive(),
            bias.into_primitive(),
        );
        match ConvBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (output, saved) = forward::<B>(x, weight, bias, stride, padding, relu, pool);
                prep.finish(saved, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::conv2d_bias_relu(
                x, weight, bias, stride, padding, relu, pool,
            )),
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::pool::MaxPool2dConfig;
    use burn::tensor::Device;
    use burn::tensor::activation::relu;
    use burn::tensor::{Distribution, Tolerance};

    /// The fused path against Burn's `Conv2d` (then ReLU, then `MaxPool2d`): output and the
    /// gradients of the input, the weight and the bias, for strides, paddings, odd sizes, 1 or 3
    /// channels, with and without a pool (windows 2 and 3, the last rows and columns left out
    /// where the size is not a multiple).
    #[test]
    fn fused_equals_burns_conv2d_in_values_and_every_gradient() {
        let device = Device::flex().autodiff();
        device.seed(7);
        for case in [
            (
                1,
                [28, 28],
                3,
                [1, 1],
                PaddingConfig2d::Explicit(1, 1, 1, 1),
                true,
            ),
            (
                3,
                [9, 7],
                3,
                [2, 2],
                PaddingConfig2d::Explicit(1, 0, 1, 2),
                true,
            ),
            (
                3,
                [8, 8],
                2,
                [1, 2],
                PaddingConfig2d::Explicit(0, 0, 1, 1),
                false,
            ),
            (2, [5, 6], 3, [1, 1], PaddingConfig2d::Valid, true),
        ]
        .into_iter()
        .flat_map(|case| {
            let pools: &[usize] = if case.5 { &[1, 2, 3] } else { &[1] };
            pools.iter().map(move |&pool| (case.clone(), pool))
        }) {
            let ((c_in, [h, w], k, stride, padding, with_relu), pool) = case;
            let max_pool = (pool > 1).then(|| MaxPool2dConfig::new([pool, pool]).init());
            assert!(max_pool.as_ref().is_none_or(pool_applies));
            let conv = Conv2dConfig::new([c_in, 5], [k, k])
                .with_stride(stride)
                .with_padding(padding.clone())
                .init(&device);
            let x = Tensor::<4>::random([3, c_in, h, w], Distribution::Default, &device);
            let pad = applies_to(&conv, &x).expect("the fused path applies");
            let run = |fused: bool| {
                let x = x.clone().detach().require_grad();
                let out = if fused {
                    conv2d_bias_relu(&conv, x.clone(), pad, with_relu, max_pool.as_ref())
                } else if with_relu {
                    let out = relu(conv.forward(x.clone()));
                    match &max_pool {
                        Some(pool) => pool.forward(out),
                        None => out,
                    }
                } else {
                    conv.forward(x.clone())
                };
                // A gradient that differs per element, so that a misplaced one shows.
                let upstream = out.ones_like().cumsum(3);
                let grads = (out.clone() * upstream).sum().backward();
                let bias = conv.bias.as_ref().unwrap().val();
                [
                    out.into_data(),
                    x.grad(&grads).unwrap().into_data(),
                    conv.weight.val().grad(&grads).unwrap().into_data(),
                    bias.grad(&grads).unwrap().into_data(),
                ]
            };
            let (fused, composed) = (run(true), run(false));
            for (name, (f, c)) in ["output", "d x", "d weight", "d bias"]
                .iter()
                .zip(fused.iter().zip(&composed))
            {
                assert_eq!(f.shape(), c.shape(), "{name}, pool {pool}");
                f.assert_approx_eq::<f32>(c, Tolerance::absolute(1e-3).set_relative(1e-4));
            }
        }
    }

    #[test]
    fn other_convolutions_and_backends_take_burns_path() {
        let device = Device::flex();
        let x = Tensor::<4>::zeros([1, 1, 4, 4], &device);
        let same = Conv2dConfig::new([1, 2], [3, 3])
            .with_padding(PaddingConfig2d::Same)
            .init(&device);
        assert_eq!(applies_to(&same, &x), None);
        let dilated = Conv2dConfig::new([1, 2], [3, 3])
            .with_dilation([2, 2])
            .init(&device);
        assert_eq!(applies_to(&dilated, &x), None);
        let no_bias = Conv2dConfig::new([1, 2], [3, 3])
            .with_bias(false)
            .init(&device);
        assert_eq!(applies_to(&no_bias, &x), None);
        let plain = Conv2dConfig::new([1, 2], [3, 3]).init(&device);
        assert_eq!(applies_to(&plain, &x), Some([0; 4]));
    }

    /// An input with another channel count than the weights take is refused with both shapes
    /// (the kernel would read the weights with the wrong stride and return garbage).
    #[test]
    #[should_panic(
        expected = "the input [2, 1, 8, 8] ([batch, channels, height, width]) has 1 \
                               channels, the weight [4, 3, 3, 3] ([c_out, c_in, kh, kw]) takes 3"
    )]
    fn another_channel_count_is_refused() {
        let device = Device::flex();
        let conv = Conv2dConfig::new([3, 4], [3, 3]).init(&device);
        let x = Tensor::<4>::zeros([2, 1, 8, 8], &device);
        let padding = applies_to(&conv, &x).unwrap();
        conv2d_bias_relu(&conv, x, padding, true, None);
    }

    /// An empty batch gives an empty output and zero weight gradients, with and without a pool.
    #[test]
    fn an_empty_batch_gives_an_empty_output() {
        let device = Device::flex().autodiff();
        let conv = Conv2dConfig::new([1, 4], [3, 3]).init(&device);
        let pool = MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init();
        for pool in [None, Some(&pool)] {
            let x = Tensor::<4>::zeros([0, 1, 8, 8], &device).require_grad();
            let padding = applies_to(&conv, &x).unwrap();
            let out = conv2d_bias_relu(&conv, x, padding, true, pool);
            assert_eq!(out.dims()[0], 0);
            let grads = out.sum().backward();
            let weight = conv.weight.grad(&grads).unwrap();
            assert_eq!(weight.into_data().iter::<f32>().sum::<f32>(), 0.0);
        }
    }
}
