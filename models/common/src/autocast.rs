//! The products Burn computes for kiln's layers, in the [precision](mod@crate::precision)'s
//! lower format: PyTorch's `torch.autocast`, for the paths the GPU backends take and the
//! layers kiln's fused CPU kernels do not cover (a GRU, an LSTM given sequence lengths, a
//! batch-normalised or dilated convolution).
//!
//! Under [`Precision::F16`](crate::Precision::F16) each product here casts its operands to
//! float16, multiplies (Burn's own float16 kernels: on wgpu, float16 shaders) and casts the
//! result back to float32; biases are added after, in float32, and everything between the
//! products (activations, normalisation, softmax, losses) stays float32. The weights stay
//! float32 parameters: the casts are operations of the autodiff graph, so their gradients
//! arrive in float32, and the backward products run in float16 as the forward ones do.
//!
//! Under [`Precision::Bf16`](crate::Precision::Bf16), on a CPU backend, each product rounds
//! its operands to bf16 and multiplies them in float32, and the gradient reaching it is
//! rounded too ([`crate::bf16_round`]): products of bf16 values with f32 sums, forward and
//! backward, as kiln's fused kernels compute them. Under f32 (and bf16 on a GPU backend, which
//! the trainer refuses) these are Burn's plain operations.

use burn::nn::conv::Conv2d;
use burn::nn::{Linear, PaddingConfig2d};
use burn::tensor::module::conv2d as burn_conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Device, Tensor};

use crate::bf16_round;

/// The format the products here compute in under the current precision: float16 under
/// [`Precision::F16`](crate::Precision::F16), `None` (float32 values: f32, or bf16 rounded
/// into them) otherwise.
pub fn product_dtype() -> Option<DType> {
    (crate::precision() == crate::Precision::F16).then_some(DType::F16)
}

/// How the products on a device compute under the current precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Products {
    F32,
    F16,
    /// bf16 operands (rounded, held in f32) and f32 sums: the CPU backends'.
    Bf16,
}

fn products(device: &Device) -> Products {
    match crate::precision() {
        crate::Precision::F16 => Products::F16,
        crate::Precision::Bf16 if crate::kernel::on_host(device) => Products::Bf16,
        _ => Products::F32,
    }
}

/// `t` as an operand of the current precision's products: cast to float16 under f16, its
/// values rounded to bf16 under bf16 on a CPU backend, as it is otherwise. A weight used in
/// many products (the LSTM's at every step) is prepared once and multiplied by
/// [`matmul_prepared`].
///
/// # Shapes
/// - t: any; output: the same
pub fn operand<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    in_format(products(&t.device()), t)
}

fn in_format<const D: usize>(products: Products, t: Tensor<D>) -> Tensor<D> {
    match products {
        Products::F32 => t,
        Products::F16 => t.cast(DType::F16),
        Products::Bf16 => bf16_round::operand(t),
    }
}

/// A product's result back in float32 (f16), its gradient rounded (bf16).
fn finished<const D: usize>(products: Products, t: Tensor<D>) -> Tensor<D> {
    if products != Products::F32 {
        crate::precision::count_low_precision_product();
    }
    match products {
        Products::F32 => t,
        Products::F16 => t.cast(DType::F32),
        Products::Bf16 => bf16_round::result(t),
    }
}

/// `lhs.matmul(rhs)` in the current precision's products.
///
/// # Shapes
/// - lhs: `[..., m, k]`
/// - rhs: `[..., k, n]`
/// - output: `[..., m, n]`
pub fn matmul<const D: usize>(lhs: Tensor<D>, rhs: Tensor<D>) -> Tensor<D> {
    let products = products(&lhs.device());
    let out = in_format(products, lhs).matmul(in_format(products, rhs));
    finished(products, out)
}

/// [`matmul`] of `lhs` by an `rhs` that [`operand`] prepared already (under the same
/// precision), which is not converted again.
///
/// # Shapes
/// - lhs: `[..., m, k]`
/// - rhs: `[..., k, n]`
/// - output: `[..., m, n]`
pub fn matmul_prepared<const D: usize>(lhs: Tensor<D>, rhs: Tensor<D>) -> Tensor<D> {
    let products = products(&lhs.device());
    finished(products, in_format(products, lhs).matmul(rhs))
}

/// `linear`'s map of `x` (Burn's `Linear::forward`), its product in the current precision's
/// products, the bias added after in float32.
///
/// # Shapes
/// - x: `[..., d_input]`
/// - output: `[..., d_output]`
pub fn linear<const D: usize>(linear: &Linear, x: Tensor<D>) -> Tensor<D> {
    if products(&x.device()) == Products::F32 {
        return linear.forward(x);
    }
    affine(
        x,
        linear.weight.val(),
        linear.bias.as_ref().map(|b| b.val()),
    )
}

/// `x · weight (+ bias)` in the current precision's products, the bias added after in float32:
/// [`linear`]'s map, and [`dense::affine`](crate::dense::affine)'s off the CPU kernels.
///
/// # Shapes
/// - x: `[..., d_input]`
/// - weight: `[d_input, d_output]`, bias: `[d_output]`
/// - output: `[..., d_output]`
pub(crate) fn affine<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Tensor<D> {
    let [d_input, d_output] = weight.dims();
    let mut dims = x.dims();
    assert_eq!(
        dims[D - 1],
        d_input,
        "linear: the input {dims:?} has {} features, the weight [d_input, d_output] is \
         [{d_input}, {d_output}]",
        dims[D - 1]
    );
    let rows = x.shape().num_elements() / d_input.max(1);
    dims[D - 1] = d_output;
    let out = matmul(x.reshape([rows, d_input]), weight);
    let out = match bias {
        Some(bias) => out + bias.unsqueeze_dim(0),
        None => out,
    };
    out.reshape(dims)
}

/// `conv`'s output for `x` (Burn's `Conv2d::forward`), its product in the current precision's
/// products, the bias added after in float32.
///
/// # Shapes
/// - x: `[batch, c_in, h, w]`
/// - output: `[batch, c_out, h_out, w_out]`
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let products = products(&x.device());
    if products == Products::F32 {
        return conv.forward(x);
    }
    let [_, _, height, width] = x.dims();
    let [top, bottom] = padding(&conv.padding, 0, height, conv);
    let [left, right] = padding(&conv.padding, 1, width, conv);
    let options = ConvOptions::new_with_padding(
        conv.stride,
        [(top, bottom), (left, right)],
        conv.dilation,
        conv.groups,
    );
    let (x, weight) = (
        in_format(products, x),
        in_format(products, conv.weight.val()),
    );
    let out = finished(products, burn_conv2d(x, weight, None, options));
    match &conv.bias {
        Some(bias) => out + bias.val().reshape([1, -1, 1, 1]),
        None => out,
    }
}

/// The padding before and after axis `axis` (0: height, 1: width) of an input `size` long, as
/// Burn's `Conv2d` computes it (`Same`: the output is `ceil(size / stride)` long, the padding
/// split with the odd one after).
fn padding(config: &PaddingConfig2d, axis: usize, size: usize, conv: &Conv2d) -> [usize; 2] {
    match *config {
        PaddingConfig2d::Valid => [0, 0],
        PaddingConfig2d::Explicit(top, left, bottom, right) => match axis {
            0 => [top, bottom],
            _ => [left, right],
        },
        PaddingConfig2d::Same => {
            let (kernel, stride) = (conv.kernel_size[axis], conv.stride[axis]);
            let out = size.div_ceil(stride);
            let total = match out {
                0 => 0,
                _ => ((out - 1) * stride + kernel).saturating_sub(size),
            };
            [total / 2, total - total / 2]
        }
    }
}
