//! kiln_common::autocast, the products Burn computes for kiln's layers, under each precision:
//! f16 against f32 in outputs and every gradient (flex's float16 arithmetic is real), every
//! padding Burn's `Conv2d` takes, f32 left as Burn's, bf16 as the f32 products of rounded
//! operands forward and backward. A test binary of its own, its tests taking turns: the
//! precision is process-wide, and a test beside these that expects f32 would see theirs.

use burn::nn::conv::Conv2dConfig;
use burn::nn::{LinearConfig, PaddingConfig2d};
use burn::tensor::{DType, Device, Distribution, Tensor};
use kiln_common::autocast;
use kiln_common::{Precision, PrecisionScope};

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
    let x = Tensor::<3>::random([2, 5, 24], Distribution::Normal(0.0, 1.0), &device).require_grad();
    let run = |precision| {
        let _scope = PrecisionScope::new(precision);
        let out = autocast::linear(&linear, x.clone());
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
    let before = kiln_common::precision::low_precision_products();
    let (o16, x16, w16, b16) = run(Precision::F16);
    assert!(kiln_common::precision::low_precision_products() > before);
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
            let out = autocast::conv2d(&conv, x.clone());
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
    assert_eq!(autocast::product_dtype(), None);
    let got = autocast::linear(&linear, x.clone()).into_data();
    assert_eq!(got, linear.forward(x.clone()).into_data());
}

/// `t` with every value rounded to bf16, outside the autodiff graph.
#[cfg(feature = "flex")]
fn rounded<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    kiln_common::bf16_round::operand(t.inner()).detach()
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
    let x = Tensor::<2>::random([16, 40], Distribution::Normal(0.0, 1.0), &device).require_grad();
    let upstream = Tensor::<2>::random([16, 24], Distribution::Normal(0.0, 1.0), &device);
    let run = |precision| {
        let _scope = PrecisionScope::new(precision);
        let out = autocast::linear(&linear, x.clone());
        let grads = (out.clone() * upstream.clone()).sum().backward();
        let w = linear.weight.grad(&grads).unwrap();
        (out.inner(), x.grad(&grads).unwrap(), w)
    };
    let before = kiln_common::precision::low_precision_products();
    let (out, dx, dw) = run(Precision::Bf16);
    assert!(kiln_common::precision::low_precision_products() > before);
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
