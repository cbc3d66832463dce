//! A dense layer on host memory, forward and backward: `x · W + b` by one `gemm` product (the
//! bias written first, the product accumulated onto it), the activation and the dropout mask
//! applied in place, and the backward pass as two products and a column sum.

use crate::Activation;
use crate::kernel::{exp, matmul};

/// The shapes of one dense layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DenseDims {
    /// Rows of the input (the batch, times the sequence for sequences).
    pub rows: usize,
    pub d_input: usize,
    pub d_output: usize,
}

// `if v < 0`, not `v.max(0.0)`: `max` maps NaN to 0, while Burn's and PyTorch's ReLU keep it,
// so that a NaN reaches the loss and stops the run instead of silently zeroing a unit.
crate::vectorised!(relu(v: &mut [f32]) {
    v.iter_mut().for_each(|v| *v = if *v < 0.0 { 0.0 } else { *v });
});

crate::vectorised!(leaky_relu(v: &mut [f32]) {
    v.iter_mut().for_each(|v| *v = if *v > 0.0 { *v } else { 0.01 * *v });
});

crate::vectorised!(elu(v: &mut [f32]) {
    v.iter_mut().for_each(|v| *v = if *v > 0.0 { *v } else { exp(*v) - 1.0 });
});

crate::vectorised!(sigmoid(v: &mut [f32]) {
    v.iter_mut().for_each(|v| *v = 1.0 / (1.0 + exp(-*v)));
});

crate::vectorised!(multiply(v: &mut [f32], by: &[f32]) {
    v.iter_mut().zip(by).for_each(|(v, m)| *v *= m);
});

/// Whether the fused kernel computes `activation` (`None`: no activation). GELU's derivative
/// needs the input, not the output: it stays a composed operation.
pub(crate) fn fuses(activation: Option<Activation>) -> bool {
    activation != Some(Activation::Gelu)
}

/// Applies `activation` to `v` in place.
fn activate(activation: Option<Activation>, v: &mut [f32]) {
    match activation {
        None => {}
        Some(Activation::Relu) => relu(v),
        Some(Activation::LeakyRelu) => leaky_relu(v),
        Some(Activation::Elu) => elu(v),
        Some(Activation::Sigmoid) => sigmoid(v),
        Some(Activation::Tanh) => v.iter_mut().for_each(|v| *v = v.tanh()),
        Some(Activation::Gelu) => unreachable!("GELU is not fused (see `fuses`)"),
    }
}

/// `grad *= activation'(z)`, the derivative written in terms of the activation's output
/// `a = activation(z)`.
fn chain(activation: Option<Activation>, a: &[f32], grad: &mut [f32]) {
    let each = |f: fn(f32) -> f32, grad: &mut [f32]| {
        grad.iter_mut().zip(a).for_each(|(g, &a)| *g *= f(a));
    };
    match activation {
        None => {}
        // As PyTorch's `threshold_backward`: zero where the output is <= 0, so a NaN output
        // passes its gradient on.
        Some(Activation::Relu) => each(|a| if a <= 0.0 { 0.0 } else { 1.0 }, grad),
        Some(Activation::LeakyRelu) => each(|a| if a <= 0.0 { 0.01 } else { 1.0 }, grad),
        // For z <= 0, a = e^z - 1, whose derivative e^z is a + 1.
        Some(Activation::Elu) => each(|a| if a > 0.0 { 1.0 } else { a + 1.0 }, grad),
        Some(Activation::Sigmoid) => each(|a| a * (1.0 - a), grad),
        Some(Activation::Tanh) => each(|a| 1.0 - a * a, grad),
        Some(Activation::Gelu) => unreachable!("GELU is not fused (see `fuses`)"),
    }
}

/// `activation(x · weight + bias)`, row-major, `x` `[rows, d_input]`, `weight`
/// `[d_input, d_output]`: the activation's output, before any dropout.
pub(crate) fn forward(
    d: DenseDims,
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    activation: Option<Activation>,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(d.rows * d.d_output);
    for _ in 0..d.rows {
        out.extend_from_slice(bias);
    }
    matmul(
        (d.rows, d.d_output, d.d_input),
        (&mut out, d.d_output),
        (x, d.d_input, 1),
        (weight, d.d_output, 1),
        true,
    );
    activate(activation, &mut out);
    out
}

/// `values * mask`, element-wise: the dropout applied to an activation's output.
pub(crate) fn masked(values: &[f32], mask: &[f32]) -> Vec<f32> {
    let mut out = values.to_vec();
    multiply(&mut out, mask);
    out
}

/// Gradients of `[x, weight, bias]` from the output's, given the activation's output `a` and
/// the dropout mask applied after it; `x`'s only when `need_x` (empty otherwise).
pub(crate) fn backward(
    d: DenseDims,
    (x, weight, a): (&[f32], &[f32], &[f32]),
    mask: Option<&[f32]>,
    activation: Option<Activation>,
    mut grad: Vec<f32>,
    need_x: bool,
) -> [Vec<f32>; 3] {
    if let Some(mask) = mask {
        multiply(&mut grad, mask);
    }
    chain(activation, a, &mut grad);
    let mut d_bias = vec![0.0; d.d_output];
    for row in grad.chunks(d.d_output.max(1)) {
        d_bias.iter_mut().zip(row).for_each(|(b, g)| *b += g);
    }
    // d_weight [d_input, d_output] = x^T [d_input, rows] · grad [rows, d_output]
    let mut d_weight = vec![0.0; d.d_input * d.d_output];
    matmul(
        (d.d_input, d.d_output, d.rows),
        (&mut d_weight, d.d_output),
        (x, 1, d.d_input),
        (&grad, d.d_output, 1),
        false,
    );
    // d_x [rows, d_input] = grad [rows, d_output] · weight^T [d_output, d_input]
    let mut d_x = vec![0.0; if need_x { d.rows * d.d_input } else { 0 }];
    if need_x {
        matmul(
            (d.rows, d.d_input, d.d_output),
            (&mut d_x, d.d_input),
            (&grad, d.d_output, 1),
            (weight, 1, d.d_output),
            false,
        );
    }
    [d_x, d_weight, d_bias]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layer by its definition, one output at a time.
    fn direct(d: DenseDims, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; d.rows * d.d_output];
        for r in 0..d.rows {
            for o in 0..d.d_output {
                out[r * d.d_output + o] = b[o]
                    + (0..d.d_input)
                        .map(|i| x[r * d.d_input + i] * w[i * d.d_output + o])
                        .sum::<f32>();
            }
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn each_activation_matches_its_definition() {
        let d = DenseDims {
            rows: 5,
            d_input: 7,
            d_output: 3,
        };
        let (x, w, b) = (values(35, 1), values(21, 2), values(3, 3));
        let z = direct(d, &x, &w, &b);
        type Definition = fn(f32) -> f32;
        let definitions: [(Option<Activation>, Definition); 6] = [
            (None, |z| z),
            (Some(Activation::Relu), |z| z.max(0.0)),
            (Some(Activation::LeakyRelu), |z| {
                if z > 0.0 { z } else { 0.01 * z }
            }),
            (Some(Activation::Elu), |z| {
                if z > 0.0 { z } else { z.exp() - 1.0 }
            }),
            (Some(Activation::Sigmoid), |z| 1.0 / (1.0 + (-z).exp())),
            (Some(Activation::Tanh), f32::tanh),
        ];
        for (activation, f) in definitions {
            let got = forward(d, &x, &w, &b, activation);
            for (g, z) in got.iter().zip(&z) {
                assert!((g - f(*z)).abs() < 1e-6, "{activation:?}: {g} vs {}", f(*z));
            }
        }
    }

    /// Every gradient against central finite differences of `sum(out * upstream)`, in f64 on
    /// the definition, for each activation and with a dropout mask.
    #[test]
    fn gradients_match_finite_differences() {
        let d = DenseDims {
            rows: 4,
            d_input: 5,
            d_output: 3,
        };
        let (x, w, b) = (values(20, 4), values(15, 5), values(3, 8));
        let upstream = values(12, 7);
        let mask: Vec<f32> = (0..12)
            .map(|i| if i % 3 == 0 { 0.0 } else { 1.5 })
            .collect();
        let loss = |x: &[f32], w: &[f32], b: &[f32], act: Option<Activation>| -> f64 {
            let a = forward(d, x, w, b, act);
            a.iter()
                .zip(&mask)
                .zip(&upstream)
                .map(|((a, m), u)| (a * m * u) as f64)
                .sum()
        };
        for activation in [None, Some(Activation::Sigmoid), Some(Activation::Tanh)]
            .into_iter()
            .chain([Activation::Relu, Activation::LeakyRelu, Activation::Elu].map(Some))
        {
            let a = forward(d, &x, &w, &b, activation);
            let [d_x, d_w, d_b] = backward(
                d,
                (&x, &w, &a),
                Some(&mask),
                activation,
                upstream.clone(),
                true,
            );
            // A step that moves no pre-activation across a kink (ReLU's, ELU's at 0): each
            // entry of x, w and b lies in [-1, 1], so a step moves z by at most h.
            let h = 1e-3;
            let z = direct(d, &x, &w, &b);
            assert!(z.iter().all(|z| z.abs() > 2.0 * h), "{z:?}");
            let check = |which: usize, analytic: &[f32]| {
                for (i, &g) in analytic.iter().enumerate() {
                    let mut p = [x.clone(), w.clone(), b.clone()];
                    let mut m = [x.clone(), w.clone(), b.clone()];
                    p[which][i] += h;
                    m[which][i] -= h;
                    let numeric = (loss(&p[0], &p[1], &p[2], activation)
                        - loss(&m[0], &m[1], &m[2], activation))
                        / (2.0 * h as f64);
                    assert!(
                        (g as f64 - numeric).abs() < 2e-3,
                        "{activation:?} operand {which} element {i}: {g} vs {numeric}"
                    );
                }
            };
            check(0, &d_x);
            check(1, &d_w);
            check(2, &d_b);
        }
    }

    /// A NaN input reaches the output through every activation (ReLU included: `max(x, 0)`
    /// would turn it into 0), and its gradient reaches the weights, as in Burn and PyTorch.
    #[test]
    fn nan_passes_through_every_activation_and_its_gradient() {
        let d = DenseDims {
            rows: 3,
            d_input: 4,
            d_output: 5,
        };
        let (mut x, w, b) = (values(12, 1), values(20, 2), values(5, 3));
        x[4 + 2] = f32::NAN; // row 1, feature 2
        for activation in [None, Some(Activation::Sigmoid), Some(Activation::Tanh)]
            .into_iter()
            .chain([Activation::Relu, Activation::LeakyRelu, Activation::Elu].map(Some))
        {
            let a = forward(d, &x, &w, &b, activation);
            for (i, v) in a.iter().enumerate() {
                assert_eq!(v.is_nan(), i / 5 == 1, "{activation:?} output {i}: {v}");
            }
            let [_, d_w, _] = backward(d, (&x, &w, &a), None, activation, vec![1.0; 15], false);
            assert!(
                d_w[2 * 5..3 * 5].iter().all(|g| g.is_nan()),
                "{activation:?}: the NaN feature's weights get a NaN gradient: {d_w:?}"
            );
        }
        // ReLU keeps infinities and zeroes only negatives.
        let mut v = vec![f32::INFINITY, f32::NEG_INFINITY, -0.5, 0.5, f32::NAN];
        relu(&mut v);
        assert_eq!(v[..4], [f32::INFINITY, 0.0, 0.0, 0.5]);
        assert!(v[4].is_nan());
    }
}
