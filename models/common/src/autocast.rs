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
    let weight = linear.weight.val();
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
    let out = match &linear.bias {
        Some(bias) => out + bias.val().unsqueeze_dim(0),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Precision, PrecisionScope};
    use burn::nn::LinearConfig;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Device, Distribution};

    /// The precision is process-wide: these tests take turns.
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn largest_gap<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    fn largest<const D: usize>(a: Tensor<D>) -> f32 {
        a.abs().max().into_scalar()
    }

    fn flat<const D: usize>(a: Tensor<D>) -> Tensor<1> {
        a.reshape([-1])
    }

    #[test]
    fn f16_products_agree_with_f32_in_values_and_every_gradient() {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let device = Device::flex().autodiff();
        let linear = LinearConfig::new(24, 7).init(&device);
        let x =
            Tensor::<3>::random([2, 5, 24], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let run = |precision| {
            let _scope = PrecisionScope::new(precision);
            let out = super::linear(&linear, x.clone());
            assert_eq!(out.dtype(), DType::F32, "products come back in f32");
            let grads = (out.clone() * out.clone()).sum().backward();
            let w = linear.weight.grad(&grads).unwrap();
            let b = linear.bias.as_ref().unwrap().grad(&grads).unwrap();
            assert_eq!(
                w.dtype(),
                DType::F32,
                "the master weights' gradients are f32"
            );
            (flat(out.inner()), flat(x.grad(&grads).unwrap()), flat(w), b)
        };
        let before = crate::precision::low_precision_products();
        let (o16, x16, w16, b16) = run(Precision::F16);
        assert!(crate::precision::low_precision_products() > before);
        let (o32, x32, w32, b32) = run(Precision::F32);
        // f16 keeps 11 significant bits: each value within a few units of 2^-11 of the
        // tensor's largest, and not equal to f32 (the products did run in f16).
        for (name, low, full) in [
            ("output", o16, o32),
            ("input grad", x16, x32),
            ("weight grad", w16, w32),
            ("bias grad", b16, b32),
        ] {
            let (gap, scale) = (largest_gap(low, full.clone()), largest(full));
            assert!(gap <= 4e-3 * scale, "{name}: {gap} against {scale}");
            if name != "bias grad" {
                assert!(gap > 1e-6 * scale, "{name} was computed in f32");
            }
        }
    }

    #[test]
    fn f16_convolutions_pad_as_burns_and_agree_with_f32() {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let device = Device::flex().autodiff();
        for (padding, stride, size) in [
            (PaddingConfig2d::Same, [1, 1], 7),
            (PaddingConfig2d::Same, [2, 2], 8),
            (PaddingConfig2d::Same, [2, 1], 9),
            (PaddingConfig2d::Valid, [1, 2], 6),
            (PaddingConfig2d::Explicit(1, 0, 2, 1), [1, 1], 5),
        ] {
            let conv = Conv2dConfig::new([3, 4], [3, 2])
                .with_padding(padding.clone())
                .with_stride(stride)
                .init(&device);
            let x = Tensor::<4>::random([2, 3, size, size + 1], Distribution::Default, &device)
                .require_grad();
            let run = |precision| {
                let _scope = PrecisionScope::new(precision);
                let out = conv2d(&conv, x.clone());
                let grads = (out.clone() * out.clone()).sum().backward();
                (
                    out.inner(),
                    x.grad(&grads).unwrap(),
                    conv.weight.grad(&grads).unwrap(),
                )
            };
            let (o16, x16, w16) = run(Precision::F16);
            let (o32, x32, w32) = run(Precision::F32);
            assert_eq!(o16.dims(), o32.dims(), "{padding:?} {stride:?}");
            for (name, low, full) in [
                ("output", flat(o16), flat(o32)),
                ("input grad", flat(x16), flat(x32)),
                ("weight grad", flat(w16), flat(w32)),
            ] {
                let (gap, scale) = (largest_gap(low, full.clone()), largest(full));
                assert!(gap <= 4e-3 * scale, "{padding:?} {name}: {gap} / {scale}");
                assert!(gap > 1e-6 * scale, "{padding:?} {name} was computed in f32");
            }
        }
    }

    #[test]
    fn f32_leaves_burns_operations_as_they_are() {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let device = Device::flex();
        let linear = LinearConfig::new(6, 3).init(&device);
        let x = Tensor::<2>::random([4, 6], Distribution::Default, &device);
        let _scope = PrecisionScope::new(Precision::F32);
        assert_eq!(product_dtype(), None);
        let got = super::linear(&linear, x.clone()).into_data();
        assert_eq!(got, linear.forward(x.clone()).into_data());
    }

    /// `t` with every value rounded to bf16, outside the autodiff graph.
    #[cfg(feature = "flex")]
    fn rounded<const D: usize>(t: Tensor<D>) -> Tensor<D> {
        crate::bf16_round::operand(t.inner()).detach()
    }

    /// Under bf16 on a CPU backend: the output is the f32 product of the rounded input and
    /// weight plus the bias, and the gradients are the f32 products of the rounded upstream
    /// gradient with the rounded weight (input) and rounded input (weight); not the f32 ones.
    #[cfg(feature = "flex")]
    #[test]
    fn bf16_products_take_rounded_operands_forward_and_backward() {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let device = Device::flex().autodiff();
        let linear = LinearConfig::new(40, 24).init(&device);
        let x =
            Tensor::<2>::random([16, 40], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let upstream = Tensor::<2>::random([16, 24], Distribution::Normal(0.0, 1.0), &device);
        let run = |precision| {
            let _scope = PrecisionScope::new(precision);
            let out = super::linear(&linear, x.clone());
            let grads = (out.clone() * upstream.clone()).sum().backward();
            let w = linear.weight.grad(&grads).unwrap();
            (out.inner(), x.grad(&grads).unwrap(), w)
        };
        let before = crate::precision::low_precision_products();
        let (out, dx, dw) = run(Precision::Bf16);
        assert!(crate::precision::low_precision_products() > before);
        let (out32, dx32, dw32) = run(Precision::F32);

        let (xr, wr, ur) = (
            rounded(x.clone()),
            rounded(linear.weight.val()),
            rounded(upstream.clone()),
        );
        let bias = linear.bias.as_ref().unwrap().val().inner().unsqueeze_dim(0);
        let want_out = xr.clone().matmul(wr.clone()) + bias;
        let want_dx = ur.clone().matmul(wr.transpose());
        let want_dw = xr.transpose().matmul(ur);
        for (name, got, want, full) in [
            ("output", out, want_out, out32),
            ("input grad", dx, want_dx, dx32),
            ("weight grad", dw, want_dw, dw32),
        ] {
            let scale = largest(want.clone());
            let off = largest_gap(got.clone(), want);
            let moved = largest_gap(got, full);
            assert!(
                off <= 1e-6 * scale,
                "{name}: {off} off the rounded operands' product"
            );
            assert!(
                moved > 1e-4 * scale,
                "{name} was computed in f32 ({moved:e})"
            );
        }
    }
}
