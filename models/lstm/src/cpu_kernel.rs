//! The LSTM sequence on host memory: matrix products by `gemm` (the kernel library burn-flex
//! uses), gate activations in one vectorised pass per step, the batch split across threads.
//! Buffers are batch-major and row-major: `[batch, seq, features]`.

use kiln_common::kernel::{Rhs, exp, matmul, matmul_with};
use kiln_common::vectorised;
use rayon::prelude::*;

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[inline(always)]
fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

vectorised!(forward_row(gates: &mut [f32], c_prev: &[f32], h_c: &mut [f32], tanh_c: &mut [f32]) {
    // gates: pre-activations in, activations out (i, f, g, o); h_c: h then c.
    let hd = tanh_c.len();
    let (gi, rest) = gates.split_at_mut(hd);
    let (gf, rest) = rest.split_at_mut(hd);
    let (gg, go) = rest.split_at_mut(hd);
    let (h, c) = h_c.split_at_mut(hd);
    let (go, c_prev) = (&mut go[..hd], &c_prev[..hd]);
    let (h, c) = (&mut h[..hd], &mut c[..hd]);
    // One simple loop per activation, each vectorised with its constants in registers: 4.1 ns
    // per hidden unit against 6.6 ns for one loop computing all of them (4.7 ns once the
    // slices' lengths were known to the compiler).
    gi.iter_mut().for_each(|v| *v = sigmoid(*v));
    gf.iter_mut().for_each(|v| *v = sigmoid(*v));
    gg.iter_mut().for_each(|v| *v = tanh(*v));
    go.iter_mut().for_each(|v| *v = sigmoid(*v));
    for j in 0..hd {
        c[j] = gf[j] * c_prev[j] + gi[j] * gg[j];
    }
    tanh_c.iter_mut().zip(&*c).for_each(|(t, c)| *t = tanh(*c));
    for j in 0..hd {
        h[j] = go[j] * tanh_c[j];
    }
});

vectorised!(backward_row(
    d: &mut [f32],
    gates: &[f32],
    grad_h_c: &[f32],
    c_prev: &[f32],
    tanh_c: &[f32],
    dh_next: &mut [f32],
    dc_next: &mut [f32]
) {
    // d: the gates' pre-activation gradients out; dh_next in (from step t + 1); dc_next in and
    // out (to step t - 1).
    let hd = tanh_c.len();
    let (gi, gf, gg, go) = (&gates[..hd], &gates[hd..2 * hd], &gates[2 * hd..3 * hd], &gates[3 * hd..4 * hd]);
    let (grad_h, grad_c) = (&grad_h_c[..hd], &grad_h_c[hd..2 * hd]);
    let (c_prev, dh_next, dc_next) = (&c_prev[..hd], &dh_next[..hd], &mut dc_next[..hd]);
    let (di, rest) = d.split_at_mut(hd);
    let (df, rest) = rest.split_at_mut(hd);
    let (dg, d_o) = rest.split_at_mut(hd);
    let d_o = &mut d_o[..hd];
    for j in 0..hd {
        let dh = grad_h[j] + dh_next[j];
        // dL/dc_t: from the output, from step t + 1, and through h_t = o tanh(c_t).
        let dc = grad_c[j] + dc_next[j] + dh * go[j] * (1.0 - tanh_c[j] * tanh_c[j]);
        dc_next[j] = dc * gf[j];
        // Through the activations: σ' = σ(1 - σ), tanh' = 1 - tanh².
        di[j] = dc * gg[j] * gi[j] * (1.0 - gi[j]);
        df[j] = dc * c_prev[j] * gf[j] * (1.0 - gf[j]);
        dg[j] = dc * gi[j] * (1.0 - gg[j] * gg[j]);
        d_o[j] = dh * tanh_c[j] * go[j] * (1.0 - go[j]);
    }
});

/// The `cols x rows` transpose of a row-major `rows x cols` matrix.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; rows * cols];
    for (r, row) in m.chunks_exact(cols).enumerate() {
        for (c, v) in row.iter().enumerate() {
            t[c * rows + r] = *v;
        }
    }
    t
}

/// Sizes of one sequence batch.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub batch: usize,
    pub seq: usize,
    pub d_input: usize,
    pub hd: usize,
}

/// What the forward pass keeps for the backward one.
#[derive(Debug, Clone)]
pub struct Forward {
    /// The gates after their activations, `[batch, seq, 4H]` (i, f, g, o).
    pub gates: Vec<f32>,
    /// Each step's `h` then `c`, `[batch, seq, 2H]`: the operation's output.
    pub h_c: Vec<f32>,
    /// `tanh(c)`, `[batch, seq, H]`.
    pub tanh_c: Vec<f32>,
}

/// Samples per thread: the recurrences of different samples are independent, so each thread
/// runs the whole time loop for its share of the batch, with no synchronisation between steps.
fn per_thread(batch: usize) -> usize {
    batch.div_ceil(rayon::current_num_threads()).max(1)
}

/// The forward pass from a zero state. `x`: `[batch, seq, d_input]`; weights PyTorch-shaped.
pub fn forward(
    dims: Dims,
    x: &[f32],
    weight_ih: &[f32],
    weight_hh: &[f32],
    bias: &[f32],
) -> Forward {
    let Dims {
        batch,
        seq,
        d_input,
        hd,
    } = dims;
    let rows = batch * seq;
    // W_hh^T laid out row-major once, so that each step's product reads it contiguously.
    let weight_hh_t = transpose(weight_hh, 4 * hd, hd);
    let mut out = Forward {
        // Every row starts as the bias; the input and recurrent products accumulate onto it.
        gates: bias.repeat(rows),
        h_c: vec![0.0; rows * 2 * hd],
        tanh_c: vec![0.0; rows * hd],
    };
    let per = per_thread(batch) * seq;
    out.gates
        .par_chunks_mut(per * 4 * hd)
        .zip(out.h_c.par_chunks_mut(per * 2 * hd))
        .zip(out.tanh_c.par_chunks_mut(per * hd))
        .zip(x.par_chunks(per * d_input))
        .for_each(|(((gates, h_c), tanh_c), x)| {
            let dims = Dims {
                batch: x.len() / (seq * d_input),
                ..dims
            };
            forward_samples(dims, x, (weight_ih, &weight_hh_t), gates, h_c, tanh_c);
        });
    out
}

/// [`forward`] for some of the samples, on the calling thread; `gates` holds the bias in every
/// row.
fn forward_samples(
    dims: Dims,
    x: &[f32],
    (weight_ih, weight_hh_t): (&[f32], &[f32]),
    gates: &mut [f32],
    h_c: &mut [f32],
    tanh_c: &mut [f32],
) {
    let Dims {
        batch,
        seq,
        d_input,
        hd,
    } = dims;
    let g4 = 4 * hd;
    let rows = batch * seq;
    // Every step's input projection, all gates, in one product: [batch * seq, 4H].
    let w_ih_t = (weight_ih, 1, d_input);
    matmul(
        (rows, g4, d_input),
        (gates, g4),
        (x, d_input, 1),
        w_ih_t,
        true,
    );
    let zeros = vec![0.0; hd];
    // The same W_hh^T at every step: prepared (packed for bf16 tiles) once.
    let w_hh_t = Rhs::new((weight_hh_t, g4, 1), hd, g4);
    for t in 0..seq {
        if t > 0 {
            // gates_t += h_{t-1} W_hh^T, in place, for these samples.
            let (g, h) = (&mut gates[t * g4..], &h_c[(t - 1) * 2 * hd..]);
            matmul_with(batch, (g, seq * g4), (h, seq * 2 * hd, 1), &w_hh_t, true);
        }
        for b in 0..batch {
            let r = b * seq + t;
            let (before, from_t) = h_c.split_at_mut(r * 2 * hd);
            let c_prev = match t {
                0 => &zeros[..],
                _ => &before[(r - 1) * 2 * hd + hd..r * 2 * hd],
            };
            forward_row(
                &mut gates[r * g4..(r + 1) * g4],
                c_prev,
                &mut from_t[..2 * hd],
                &mut tanh_c[r * hd..(r + 1) * hd],
            );
        }
    }
}

/// Backpropagation through time for some of the samples, on the calling thread: the gates'
/// pre-activation gradients `d` (`[batch, seq, 4H]`) from the output's `grad`.
fn bptt_samples(
    dims: Dims,
    saved: (&[f32], &[f32], &[f32]),
    weight_hh: &[f32],
    grad: &[f32],
    d: &mut [f32],
) {
    let Dims { batch, seq, hd, .. } = dims;
    let (gates, h_c, tanh_c) = saved;
    let g4 = 4 * hd;
    let mut dh_next = vec![0.0; batch * hd];
    let mut dc_next = vec![0.0; batch * hd];
    let zeros = vec![0.0; hd];
    // The same W_hh at every step: prepared (packed for bf16 tiles) once.
    let w_hh = Rhs::new((weight_hh, hd, 1), g4, hd);
    for t in (0..seq).rev() {
        for b in 0..batch {
            let r = b * seq + t;
            let c_prev = match t {
                0 => &zeros[..],
                _ => &h_c[(r - 1) * 2 * hd + hd..r * 2 * hd],
            };
            backward_row(
                &mut d[r * g4..(r + 1) * g4],
                &gates[r * g4..(r + 1) * g4],
                &grad[r * 2 * hd..(r + 1) * 2 * hd],
                c_prev,
                &tanh_c[r * hd..(r + 1) * hd],
                &mut dh_next[b * hd..(b + 1) * hd],
                &mut dc_next[b * hd..(b + 1) * hd],
            );
        }
        if t > 0 {
            // dL/dh_{t-1} through the recurrence: d_t W_hh.
            let d_t = (&d[t * g4..], seq * g4, 1);
            matmul_with(batch, (&mut dh_next, hd), d_t, &w_hh, false);
        }
    }
}

/// Gradients of `(x, weight_ih, weight_hh, bias)` from the output's `grad` (`[batch, seq, 2H]`);
/// `x`'s only when `need_x` (a first layer's input, the data, needs none).
pub fn backward(
    dims: Dims,
    saved: &Forward,
    (x, weight_ih, weight_hh): (&[f32], &[f32], &[f32]),
    grad: &[f32],
    need_x: bool,
) -> [Vec<f32>; 4] {
    let Dims {
        batch,
        seq,
        d_input,
        hd,
    } = dims;
    let g4 = 4 * hd;
    let rows = batch * seq;
    // The gates' pre-activation gradients, [batch, seq, 4H].
    let mut d = vec![0.0; rows * g4];
    let per = per_thread(batch) * seq;
    d.par_chunks_mut(per * g4)
        .zip(saved.gates.par_chunks(per * g4))
        .zip(saved.h_c.par_chunks(per * 2 * hd))
        .zip(saved.tanh_c.par_chunks(per * hd))
        .zip(grad.par_chunks(per * 2 * hd))
        .for_each(|((((d, gates), h_c), tanh_c), grad)| {
            let dims = Dims {
                batch: d.len() / (seq * g4),
                ..dims
            };
            bptt_samples(dims, (gates, h_c, tanh_c), weight_hh, grad, d);
        });
    let d_rows = (&d[..], g4, 1);
    let d_cols = (&d[..], 1, g4);
    let mut d_x = Vec::new();
    if need_x {
        d_x = vec![0.0; rows * d_input];
        matmul(
            (rows, d_input, g4),
            (&mut d_x, d_input),
            d_rows,
            (weight_ih, d_input, 1),
            false,
        );
    }
    let mut d_w_ih = vec![0.0; g4 * d_input];
    matmul(
        (g4, d_input, rows),
        (&mut d_w_ih, d_input),
        d_cols,
        (x, d_input, 1),
        false,
    );
    // h_{t-1} for every row, zero at t = 0.
    let mut h_prev = vec![0.0; rows * hd];
    for r in (0..rows).filter(|r| r % seq != 0) {
        h_prev[r * hd..(r + 1) * hd].copy_from_slice(&saved.h_c[(r - 1) * 2 * hd..][..hd]);
    }
    let mut d_w_hh = vec![0.0; g4 * hd];
    matmul(
        (g4, hd, rows),
        (&mut d_w_hh, hd),
        d_cols,
        (&h_prev, hd, 1),
        false,
    );
    let mut d_bias = vec![0.0; g4];
    for row in d.chunks_exact(g4) {
        d_bias.iter_mut().zip(row).for_each(|(s, v)| *s += v);
    }
    [d_x, d_w_ih, d_w_hh, d_bias]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_activations_match_std() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.01;
            assert!((exp(x) - x.exp()).abs() <= 2e-7 * x.exp(), "exp({x})");
            assert!(
                (sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs() < 1e-6,
                "sigmoid({x})"
            );
            assert!((tanh(x) - x.tanh()).abs() < 1e-6, "tanh({x})");
        }
        assert!(sigmoid(-200.0) < 1e-30 && sigmoid(200.0) == 1.0);
        assert_eq!(tanh(200.0), 1.0);
    }

    /// One step's gates, cell and output against their definitions with the standard library's
    /// `exp` and `tanh`, for pre-activations from -100 to 100.
    #[test]
    fn a_step_matches_the_definitions() {
        let sigmoid = |x: f32| 1.0 / (1.0 + (-x).exp());
        let hd = 101;
        for scale in [0.05f32, 1.0, 100.0] {
            let pre: Vec<f32> = (0..4 * hd)
                .map(|i| scale * ((i * 37 % 101) as f32 / 50.0 - 1.0))
                .collect();
            let c_prev: Vec<f32> = (0..hd).map(|i| (i % 7) as f32 / 3.0 - 1.0).collect();
            let mut gates = pre.clone();
            let (mut h_c, mut tanh_c) = (vec![0.0; 2 * hd], vec![0.0; hd]);
            forward_row(&mut gates, &c_prev, &mut h_c, &mut tanh_c);
            for j in 0..hd {
                let i = sigmoid(pre[j]);
                let f = sigmoid(pre[hd + j]);
                let g = pre[2 * hd + j].tanh();
                let o = sigmoid(pre[3 * hd + j]);
                let c = f * c_prev[j] + i * g;
                let want = [i, f, g, o, c, c.tanh(), o * c.tanh()];
                let got = [
                    gates[j],
                    gates[hd + j],
                    gates[2 * hd + j],
                    gates[3 * hd + j],
                    h_c[hd + j],
                    tanh_c[j],
                    h_c[j],
                ];
                for (k, (g, w)) in got.iter().zip(want).enumerate() {
                    assert!(
                        (g - w).abs() < 1e-6,
                        "scale {scale}, unit {j}, value {k}: {g} vs {w}"
                    );
                }
            }
        }
    }
}
