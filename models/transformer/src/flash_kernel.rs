//! The tiled attention's arithmetic on host memory: FlashAttention's forward pass (an online
//! softmax over key tiles, keeping only the output and each row's softmax normaliser) and its
//! backward pass (the tiles' weights recomputed from the normalisers). Nothing of size
//! `seq_q x seq_k` is ever stored: the largest buffer is one tile of scores.
//!
//! Each `(sample, head)` is one parallel task; inside it, the products go to gemm through
//! [`kernel::matmul`] on one thread. Tiles of keys that are all padding are passed over (a
//! short text padded to a long `--seq-len` costs what its real tokens cost).

use kiln_common::kernel::{self, matmul};
use kiln_common::{DropoutDraw, vectorised};
use rayon::prelude::*;

use crate::softmax::MASKED;

/// Queries per tile.
const ROWS: usize = 64;
/// Keys per tile.
const COLS: usize = 64;

/// The sizes of one attention call: `q` is `[batch, heads, seq_q, d]`, `k` and `v` are
/// `[batch, heads, seq_k, d]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dims {
    pub batch: usize,
    pub heads: usize,
    pub seq_q: usize,
    pub seq_k: usize,
    pub d: usize,
}

/// What the forward pass keeps for the backward one, besides its inputs.
#[derive(Debug, Clone)]
pub(crate) struct Forward {
    /// The output, `[batch, heads, seq_q, d]`.
    pub out: Vec<f32>,
    /// Each query row's largest scaled score, `[batch, heads, seq_q]`.
    pub max: Vec<f32>,
    /// Each query row's `1 / sum(exp(score - max))`, `[batch, heads, seq_q]`: with `max`, the
    /// softmax's normaliser. (Not folded into one log-sum-exp: a row of padded keys has
    /// `max` -1e9, where f32 cannot hold `max + ln(sum)`.)
    pub inv_sum: Vec<f32>,
}

/// One call's constants: the padding, the scale and the dropout on the weights.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Setup<'a> {
    pub dims: Dims,
    /// `[batch, seq_k]`: true where the key is padding.
    pub masked: &'a [bool],
    pub scale: f32,
    pub dropout: Option<DropoutDraw>,
}

impl Setup<'_> {
    /// Whether a tile of sample `b`'s keys can be passed over: all padding, in a sample with a
    /// real key (`real`: whose queries give padding exactly zero weight, as `e^(-1e9 - max)`
    /// underflows). A sample of padding alone keeps its tiles: its weights are uniform, as
    /// composed.
    fn skips(&self, real: bool, b: usize, j0: usize, cols: usize) -> bool {
        real && self.masked(b, j0, cols).iter().all(|&m| m)
    }

    /// Whether sample `b` has a key that is not padding: once per sample, not per tile.
    fn has_real_key(&self, b: usize) -> bool {
        !self.masked(b, 0, self.dims.seq_k).iter().all(|&m| m)
    }

    /// Which of sample `b`'s keys `j0..j0 + cols` are padding.
    fn masked(&self, b: usize, j0: usize, cols: usize) -> &[bool] {
        let first = b * self.dims.seq_k + j0;
        &self.masked[first..first + cols]
    }

    /// The scaled, masked scores of one tile of sample `b`, its keys from `j0`:
    /// `scale * q_tile k_tile^T`, [`MASKED`] for a padded key (the composed path's `mask_fill`).
    fn scores(
        &self,
        (b, j0): (usize, usize),
        q: &[f32],
        k: &[f32],
        tile: (usize, usize),
        out: &mut [f32],
    ) {
        let (rows, cols) = tile;
        let d = self.dims.d;
        matmul((rows, cols, d), (out, cols), (q, d, 1), (k, 1, d), false);
        scale_and_mask(out, cols, self.masked(b, j0, cols), self.scale);
    }

    /// Multiplies a tile of weights by their dropout mask (`1 / keep` or 0), element `(i, j)`
    /// of head `(b, h)` being element `((b * heads + h) * seq_q + i) * seq_k + j` of the mask
    /// [`Dropout`](kiln_common::Dropout) draws for the whole `[batch, heads, seq_q, seq_k]`
    /// weights, so that the composed path with the same draw computes the same values.
    fn drop(&self, head: usize, first: (usize, usize), tile: (usize, usize), p: &mut [f32]) {
        let Some(draw) = self.dropout else {
            return;
        };
        let Dims { seq_q, seq_k, .. } = self.dims;
        for (r, row) in p.chunks_mut(tile.1).enumerate() {
            let base = (head * seq_q + first.0 + r) * seq_k + first.1;
            drop_row(row, draw, base);
        }
    }
}

vectorised!(drop_row(row: &mut [f32], draw: DropoutDraw, base: usize) {
    for (c, v) in row.iter_mut().enumerate() {
        *v *= draw.value_at(base + c);
    }
});

vectorised!(scale_and_mask(scores: &mut [f32], cols: usize, masked: &[bool], scale: f32) {
    for row in scores.chunks_mut(cols) {
        for (s, &m) in row.iter_mut().zip(masked) {
            *s = if m { MASKED } else { *s * scale };
        }
    }
});

vectorised!(
/// `exp(x - shift) * by` in place, zero below `e^-87` as `expf` underflows. (No running sum
/// in this loop: a floating-point reduction keeps the compiler from vectorising it.)
exp_shifted(row: &mut [f32], shift: f32, by: f32) {
    for v in row.iter_mut() {
        let d = *v - shift;
        *v = if d < -87.0 { 0.0 } else { kernel::exp(d) * by };
    }
});

/// Lanes of the partial sums and maxima below: as many as an AVX2 register holds.
const LANES: usize = 8;

vectorised!(
/// The sum of `row`, in [`LANES`] partial sums (which vectorise, unlike one running sum).
row_sum(row: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(chunk) {
            *l += v;
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
});

vectorised!(
/// The largest value of `row` (-inf when empty), in [`LANES`] partial maxima.
row_max(row: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(chunk) {
            *l = if v > *l { v } else { *l };
        }
    }
    let tail = chunks.remainder().iter().copied().fold(f32::NEG_INFINITY, f32::max);
    lanes.iter().copied().fold(tail, f32::max)
});

/// The forward pass.
pub(crate) fn forward(setup: &Setup, q: &[f32], k: &[f32], v: &[f32]) -> Forward {
    let Dims {
        batch,
        heads,
        seq_q,
        seq_k,
        d,
    } = setup.dims;
    let mut out = vec![0.0; batch * heads * seq_q * d];
    let mut max_of = vec![0.0; batch * heads * seq_q];
    let mut inv_sum = vec![0.0; batch * heads * seq_q];
    // No keys: every query's output is the empty sum, 0.
    if out.is_empty() || seq_k == 0 {
        return Forward {
            out,
            max: max_of,
            inv_sum,
        };
    }
    out.par_chunks_mut(seq_q * d)
        .zip(max_of.par_chunks_mut(seq_q))
        .zip(inv_sum.par_chunks_mut(seq_q))
        .enumerate()
        .for_each(|(head, ((out, max_of), inv_sum))| {
            let b = head / heads;
            let real = setup.has_real_key(b);
            let (q, k, v) = (
                &q[head * seq_q * d..(head + 1) * seq_q * d],
                &k[head * seq_k * d..(head + 1) * seq_k * d],
                &v[head * seq_k * d..(head + 1) * seq_k * d],
            );
            let mut s = vec![0.0; ROWS * COLS];
            let mut max = [0.0f32; ROWS];
            let mut sum = [0.0f32; ROWS];
            for i0 in (0..seq_q).step_by(ROWS) {
                let rows = ROWS.min(seq_q - i0);
                let q = &q[i0 * d..(i0 + rows) * d];
                let acc = &mut out[i0 * d..(i0 + rows) * d];
                max[..rows].fill(f32::NEG_INFINITY);
                sum[..rows].fill(0.0);
                for j0 in (0..seq_k).step_by(COLS) {
                    let cols = COLS.min(seq_k - j0);
                    if setup.skips(real, b, j0, cols) {
                        continue;
                    }
                    let s = &mut s[..rows * cols];
                    setup.scores((b, j0), q, &k[j0 * d..(j0 + cols) * d], (rows, cols), s);
                    for (r, row) in s.chunks_mut(cols).enumerate() {
                        let tile_max = row_max(row);
                        let new_max = max[r].max(tile_max);
                        // The earlier tiles' sums in terms of the new maximum; nothing before
                        // the first tile, and exactly nothing for a row whose earlier keys were
                        // all padding (e^-1e9).
                        let shift = max[r] - new_max;
                        let rescale = if shift < -87.0 {
                            0.0
                        } else {
                            kernel::exp(shift)
                        };
                        exp_shifted(row, new_max, 1.0);
                        sum[r] = sum[r] * rescale + row_sum(row);
                        max[r] = new_max;
                        for a in &mut acc[r * d..(r + 1) * d] {
                            *a *= rescale;
                        }
                    }
                    setup.drop(head, (i0, j0), (rows, cols), s);
                    matmul(
                        (rows, d, cols),
                        (acc, d),
                        (s, cols, 1),
                        (&v[j0 * d..(j0 + cols) * d], d, 1),
                        true,
                    );
                }
                for r in 0..rows {
                    let inv = 1.0 / sum[r];
                    for a in &mut acc[r * d..(r + 1) * d] {
                        *a *= inv;
                    }
                    max_of[i0 + r] = max[r];
                    inv_sum[i0 + r] = inv;
                }
            }
        });
    Forward {
        out,
        max: max_of,
        inv_sum,
    }
}

/// The backward pass: the gradients of `q`, `k` and `v` from the output's.
pub(crate) fn backward(
    setup: &Setup,
    (q, k, v): (&[f32], &[f32], &[f32]),
    forward: &Forward,
    grad: &[f32],
) -> [Vec<f32>; 3] {
    let Dims {
        batch,
        heads,
        seq_q,
        seq_k,
        d,
    } = setup.dims;
    let mut dq = vec![0.0; q.len()];
    let mut dk = vec![0.0; k.len()];
    let mut dv = vec![0.0; v.len()];
    if batch * heads * seq_q * seq_k * d == 0 {
        return [dq, dk, dv];
    }
    dq.par_chunks_mut(seq_q * d)
        .zip(dk.par_chunks_mut(seq_k * d))
        .zip(dv.par_chunks_mut(seq_k * d))
        .enumerate()
        .for_each(|(head, ((dq, dk), dv))| {
            let b = head / heads;
            let real = setup.has_real_key(b);
            // This head's rows of a `[batch, heads, n, d]` tensor.
            let rows_of = |n: usize| head * n * d..(head + 1) * n * d;
            let (q, k, v) = (&q[rows_of(seq_q)], &k[rows_of(seq_k)], &v[rows_of(seq_k)]);
            let out = &forward.out[rows_of(seq_q)];
            let grad = &grad[rows_of(seq_q)];
            let rows_stats = head * seq_q..(head + 1) * seq_q;
            let (max, inv_sum) = (
                &forward.max[rows_stats.clone()],
                &forward.inv_sum[rows_stats],
            );
            // D_i = dO_i . O_i (= sum_j P_ij dP_ij, dropout included).
            let delta: Vec<f32> = grad
                .chunks(d)
                .zip(out.chunks(d))
                .map(|(g, o)| g.iter().zip(o).map(|(g, o)| g * o).sum())
                .collect();
            let mut p = vec![0.0; ROWS * COLS];
            let mut dp = vec![0.0; ROWS * COLS];
            for i0 in (0..seq_q).step_by(ROWS) {
                let rows = ROWS.min(seq_q - i0);
                let q_tile = &q[i0 * d..(i0 + rows) * d];
                let g_tile = &grad[i0 * d..(i0 + rows) * d];
                for j0 in (0..seq_k).step_by(COLS) {
                    let cols = COLS.min(seq_k - j0);
                    if setup.skips(real, b, j0, cols) {
                        continue;
                    }
                    let (p, dp) = (&mut p[..rows * cols], &mut dp[..rows * cols]);
                    let (k_tile, v_tile) =
                        (&k[j0 * d..(j0 + cols) * d], &v[j0 * d..(j0 + cols) * d]);
                    setup.scores((b, j0), q_tile, k_tile, (rows, cols), p);
                    for (r, row) in p.chunks_mut(cols).enumerate() {
                        exp_shifted(row, max[i0 + r], inv_sum[i0 + r]);
                    }
                    // dP (of the dropped weights) = dO V^T, then through the mask.
                    matmul(
                        (rows, cols, d),
                        (dp, cols),
                        (g_tile, d, 1),
                        (v_tile, 1, d),
                        false,
                    );
                    setup.drop(head, (i0, j0), (rows, cols), dp);
                    // dV += (P with dropout)^T dO: the mask applied to a copy of P.
                    if setup.dropout.is_some() {
                        let mut dropped = p.to_vec();
                        setup.drop(head, (i0, j0), (rows, cols), &mut dropped);
                        matmul(
                            (cols, d, rows),
                            (&mut dv[j0 * d..(j0 + cols) * d], d),
                            (&dropped, 1, cols),
                            (g_tile, d, 1),
                            true,
                        );
                    } else {
                        matmul(
                            (cols, d, rows),
                            (&mut dv[j0 * d..(j0 + cols) * d], d),
                            (p, 1, cols),
                            (g_tile, d, 1),
                            true,
                        );
                    }
                    // dS = scale * P (dP - D), zero for padded keys; it replaces dP in place.
                    let masked = setup.masked(b, j0, cols);
                    for (r, (ds, p)) in dp.chunks_mut(cols).zip(p.chunks(cols)).enumerate() {
                        softmax_grad_row(ds, p, masked, delta[i0 + r], setup.scale);
                    }
                    matmul(
                        (rows, d, cols),
                        (&mut dq[i0 * d..(i0 + rows) * d], d),
                        (dp, cols, 1),
                        (k_tile, d, 1),
                        true,
                    );
                    matmul(
                        (cols, d, rows),
                        (&mut dk[j0 * d..(j0 + cols) * d], d),
                        (dp, 1, cols),
                        (q_tile, d, 1),
                        true,
                    );
                }
            }
        });
    [dq, dk, dv]
}

vectorised!(softmax_grad_row(ds: &mut [f32], p: &[f32], masked: &[bool], delta: f32, scale: f32) {
    for ((g, &p), &m) in ds.iter_mut().zip(p).zip(masked) {
        *g = if m { 0.0 } else { scale * p * (*g - delta) };
    }
});
