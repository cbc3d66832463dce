//! The fused dense layer with bf16 products (`Precision::Bf16`) against float32: the forward
//! pass equals the float32 layer on bf16-rounded inputs and weights (the products of bf16
//! values are exact in f32; only the order of the sums differs), and every gradient is within
//! bf16's rounding of the float32 one; and so does [`affine`] with a weight read through a
//! transpose (attention's stacked projection). A test binary of its own, its tests one at a
//! time: the precision is process-wide.
#![cfg(feature = "flex")]

use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};
use kiln_common::amx::round_bf16;
use kiln_common::dense::{affine, dense, fused_applies_to};
use kiln_common::{Precision, PrecisionScope};
use std::sync::Mutex;

/// Held by each test: the precision one sets is every thread's.
static PRECISION: Mutex<()> = Mutex::new(());

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// The layer (784 -> 128, no activation: a ReLU's mask would flip where bf16 moves a value
/// across 0, which is not a product's error) on a batch of 64: its output and the gradients of
/// `sum(out * target)` for the input, the weight and the bias, with `round` applied to the
/// input and the weight first.
fn run(round: bool) -> [Vec<f32>; 4] {
    let device = Device::flex().autodiff();
    let (rows, d_in, d_out) = (64, 784, 128);
    let r = |v: Vec<f32>| match round {
        true => v.into_iter().map(round_bf16).collect(),
        false => v,
    };
    let mut linear: Linear = LinearConfig::new(d_in, d_out).init(&device);
    let weight = TensorData::new(r(values(d_in * d_out, 1)), [d_in, d_out]);
    linear.weight = Param::from_tensor(Tensor::from_data(weight, &device));
    let bias = TensorData::new(values(d_out, 4), [d_out]);
    linear.bias = Some(Param::from_tensor(Tensor::from_data(bias, &device)));
    let x: Tensor<2> = Tensor::from_data(
        TensorData::new(r(values(rows * d_in, 2)), [rows, d_in]),
        &device,
    )
    .require_grad();
    assert!(fused_applies_to(&x));
    let out = dense(&linear, x.clone(), None, None);
    let target = Tensor::from_data(
        TensorData::new(values(rows * d_out, 3), [rows, d_out]),
        &device,
    );
    let grads = (out.clone() * target).sum().backward();
    [
        host(out),
        host(x.grad(&grads).unwrap()),
        host(linear.weight.grad(&grads).unwrap()),
        linear
            .bias
            .as_ref()
            .unwrap()
            .grad(&grads)
            .unwrap()
            .into_data()
            .iter::<f32>()
            .collect(),
    ]
}

fn largest_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn largest(a: &[f32]) -> f32 {
    a.iter().fold(0f32, |m, v| m.max(v.abs()))
}

#[test]
fn bf16_products_are_the_rounded_operands_products_and_gradients_stay_close() {
    let _serial = PRECISION.lock().unwrap_or_else(|e| e.into_inner());
    let f32_run = run(false);
    let rounded_f32 = run(true);
    let bf16_run = {
        let _bf16 = PrecisionScope::new(Precision::Bf16);
        run(false)
    };
    assert_eq!(
        kiln_common::precision(),
        Precision::F32,
        "the scope restored f32"
    );
    eprintln!("products on: {}", Precision::Bf16.unit());

    // Forward: the f32 layer on rounded operands, up to the order of 784-term sums.
    let (out, want) = (&bf16_run[0], &rounded_f32[0]);
    let off = largest_difference(out, want);
    assert!(off <= 1e-5 * largest(want), "output off by {off}");
    // ... and not the f32 layer's output: the products did run in bf16.
    let moved = largest_difference(out, &f32_run[0]);
    eprintln!("output: bf16 vs rounded operands {off:e}, bf16 vs f32 {moved:e}");
    assert!(moved > 1e-4, "bf16 output equals the f32 one ({moved:e})");

    // Backward: every gradient within bf16's rounding of the f32 one (2% of its largest
    // value; the bias gradient sums the upstream gradient alone, in f32: unchanged).
    for (i, name) in ["output", "d input", "d weight", "d bias"]
        .iter()
        .enumerate()
    {
        let off = largest_difference(&bf16_run[i], &f32_run[i]);
        let scale = largest(&f32_run[i]);
        eprintln!("{name}: bf16 vs f32 {off:e} (largest value {scale:e})");
        assert!(off <= 2e-2 * scale, "{name} off by {off} of {scale}");
    }
    assert!(largest_difference(&bf16_run[2], &f32_run[2]) > 0.0);
}

/// `x · w^T + b` for a `[d_out, d_in]` weight (PyTorch's layout, attention's `in_proj_weight`),
/// its output with `round` applied to the input and the weight first.
fn affine_output(round: bool) -> Vec<f32> {
    let device = Device::flex();
    let (rows, d_in, d_out) = (64, 96, 288);
    let r = |v: Vec<f32>| match round {
        true => v.into_iter().map(round_bf16).collect(),
        false => v,
    };
    let weight = Tensor::<2>::from_data(
        TensorData::new(r(values(d_out * d_in, 5)), [d_out, d_in]),
        &device,
    );
    let bias = Tensor::<1>::from_data(TensorData::new(values(d_out, 6), [d_out]), &device);
    let x = Tensor::<2>::from_data(
        TensorData::new(r(values(rows * d_in, 7)), [rows, d_in]),
        &device,
    );
    host(affine(x, weight.transpose(), bias))
}

#[test]
fn affine_of_a_transposed_weight_multiplies_in_bf16() {
    let _serial = PRECISION.lock().unwrap_or_else(|e| e.into_inner());
    let (f32_out, want) = (affine_output(false), affine_output(true));
    let out = {
        let _bf16 = PrecisionScope::new(Precision::Bf16);
        affine_output(false)
    };
    let off = largest_difference(&out, &want);
    let moved = largest_difference(&out, &f32_out);
    eprintln!("affine: bf16 vs rounded operands {off:e}, bf16 vs f32 {moved:e}");
    assert!(off <= 1e-5 * largest(&want), "output off by {off}");
    assert!(moved > 1e-4, "bf16 output equals the f32 one ({moved:e})");
}
