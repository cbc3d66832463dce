//! The LSTM's step function (the path of the GPU backends, and of sequences of several lengths
//! on the CPU) under f16 and bf16 products against f32, on flex, whose float16 arithmetic is
//! real: outputs, final states and the gradients of the input and every weight within the
//! format's rounding, and not equal to f32's (the products did run in it). The stacked weight is
//! converted once per sequence, so its gradient is summed over the steps in that format before
//! it reaches the float32 weights. A test binary of its own, its tests one at a time: the
//! precision is process-wide.

use burn::tensor::{DType, Device, Distribution, Tensor};
use kiln_common::{Precision, PrecisionScope};
use kiln_lstm::LstmConfig;
use std::sync::Mutex;

static PRECISION: Mutex<()> = Mutex::new(());

fn largest_gap(a: &Tensor<1>, b: &Tensor<1>) -> f32 {
    (a.clone() - b.clone()).abs().max().into_scalar()
}

fn largest(a: &Tensor<1>) -> f32 {
    a.clone().abs().max().into_scalar()
}

/// Runs the step function in `precision` and in f32 and compares every value and gradient, each
/// within `tolerance` of the tensor's largest value and not equal.
fn agrees_with_f32(precision: Precision, tolerance: f32) {
    let _serial = PRECISION.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    device.seed(7);
    let lstm = LstmConfig::new(5, 8).with_bidirectional(true).init(&device);
    let x = Tensor::<3>::random([3, 6, 5], Distribution::Normal(0.0, 1.0), &device).require_grad();
    // Sequences of several lengths take the step function on every backend.
    let lengths = [6, 4, 6];
    let run = |precision: Precision| {
        let _scope = PrecisionScope::new(precision);
        let (out, (h, c)) = lstm.forward(x.clone(), Some(&lengths));
        assert_eq!(out.dtype(), DType::F32, "the outputs come back in f32");
        let loss = (out.clone() * out.clone()).sum() + h.clone().sum() + c.clone().sum();
        let grads = loss.backward();
        let flat = |t: Tensor<3>| t.reshape([-1]);
        let grad2 = |p: &burn::module::Param<Tensor<2>>| p.grad(&grads).unwrap().reshape([-1]);
        let w_ih = lstm.weight_ih_l0.grad(&grads).unwrap();
        assert_eq!(
            w_ih.dtype(),
            DType::F32,
            "the master weights' gradients are f32"
        );
        [
            ("output", flat(out.inner())),
            ("h_n", flat(h.inner())),
            ("input grad", flat(x.grad(&grads).unwrap())),
            ("weight_ih grad", w_ih.reshape([-1])),
            ("weight_hh grad", grad2(&lstm.weight_hh_l0)),
            (
                "weight_hh_reverse grad",
                grad2(lstm.weight_hh_l0_reverse.as_ref().unwrap()),
            ),
        ]
    };
    let before = kiln_common::precision::low_precision_products();
    let lower = run(precision);
    assert!(kiln_common::precision::low_precision_products() > before);
    let full = run(Precision::F32);
    for ((name, low), (_, full)) in lower.iter().zip(&full) {
        let (gap, scale) = (largest_gap(low, full), largest(full));
        eprintln!("{name}: {precision} vs f32 {gap:e} (largest value {scale:e})");
        assert!(
            gap <= tolerance * scale,
            "{precision} {name}: {gap} against {scale}"
        );
        assert!(gap > 1e-6 * scale, "{precision} {name} was computed in f32");
    }
}

/// Float16 keeps 11 significant bits: within a few units of 2^-11 of each tensor's largest.
#[test]
fn the_step_function_in_f16_agrees_with_f32_in_values_and_every_gradient() {
    agrees_with_f32(Precision::F16, 4e-3);
}

/// bf16 keeps 8: within 2% of each tensor's largest, as the fused kernels' bf16 tests allow.
#[cfg(feature = "flex")]
#[test]
fn the_step_function_in_bf16_agrees_with_f32_in_values_and_every_gradient() {
    agrees_with_f32(Precision::Bf16, 2e-2);
}
