//! A 2-D convolution with its bias and ReLU on host memory, forward and backward, one image at a
//! time in Caffe's layout: each image's patches unrolled into a `[c_in * kh * kw, h_out * w_out]`
//! matrix (im2col), one `gemm` product with the `[c_out, c_in * kh * kw]` weights giving the
//! output directly in NCHW, so no layout conversion is needed on either side. The batch is split
//! across threads, each running its images' products on one core.
//!
//! A max-pool with a `pool x pool` window and the same stride may follow the ReLU: each window's
//! maximum and its position are kept, and the full-size convolution output is never stored.
//!
//! Backward, per image: the output gradient routed to each window's maximum and masked by ReLU,
//! the weight gradient as the product of that gradient with the unrolled patches (recomputed,
//! not kept), and the input gradient as the weights' transpose times the gradient, folded back
//! onto the image (col2im).

use kiln_common::kernel::matmul;
use rayon::prelude::*;

/// The shapes of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvDims {
    pub batch: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    /// Rows and columns of zeros before the image (top, left); those after it only shape
    /// `h_out` and `w_out`.
    pub pad: [usize; 2],
    pub h_out: usize,
    pub w_out: usize,
    /// The max-pool's window side and stride after the convolution; 1 for none.
    pub pool: usize,
}

impl ConvDims {
    /// Rows of the unrolled patches: `c_in * kh * kw`.
    fn k(&self) -> usize {
        self.c_in * self.kh * self.kw
    }

    fn hw_out(&self) -> usize {
        self.h_out * self.w_out
    }

    /// The output's `[height, width]`, after the pool.
    pub fn pooled(&self) -> [usize; 2] {
        [self.h_out / self.pool, self.w_out / self.pool]
    }

    /// Values per image of the output, after the pool.
    fn pooled_len(&self) -> usize {
        let [h, w] = self.pooled();
        self.c_out * h * w
    }

    /// For the kernel row `i` (column `j`), output row (column) `o` reads input row (column)
    /// `o * stride + i - pad`; the outputs whose input lies inside the image, as a range.
    fn inside(
        o_len: usize,
        stride: usize,
        offset: usize,
        pad: usize,
        len: usize,
    ) -> (usize, usize) {
        // o * stride + offset >= pad  and  o * stride + offset < pad + len
        let lo = pad.saturating_sub(offset).div_ceil(stride);
        let hi = (pad + len)
            .saturating_sub(offset)
            .div_ceil(stride)
            .min(o_len);
        (lo.min(hi), hi)
    }
}

/// Unrolls one image `[c_in, h, w]` into `cols` `[c_in * kh * kw, h_out * w_out]`.
fn im2col(d: &ConvDims, x: &[f32], cols: &mut [f32]) {
    let hw = d.hw_out();
    let [sy, sx] = d.stride;
    for c in 0..d.c_in {
        let image = &x[c * d.h * d.w..(c + 1) * d.h * d.w];
        for i in 0..d.kh {
            let (oy_lo, oy_hi) = ConvDims::inside(d.h_out, sy, i, d.pad[0], d.h);
            for j in 0..d.kw {
                let row = (c * d.kh + i) * d.kw + j;
                let row = &mut cols[row * hw..(row + 1) * hw];
                let (ox_lo, ox_hi) = ConvDims::inside(d.w_out, sx, j, d.pad[1], d.w);
                row[..oy_lo * d.w_out].fill(0.0);
                row[oy_hi * d.w_out..].fill(0.0);
                for oy in oy_lo..oy_hi {
                    let src = &image[(oy * sy + i - d.pad[0]) * d.w..][..d.w];
                    let dst = &mut row[oy * d.w_out..(oy + 1) * d.w_out];
                    dst[..ox_lo].fill(0.0);
                    dst[ox_hi..].fill(0.0);
                    if ox_lo == ox_hi {
                        continue;
                    }
                    if sx == 1 {
                        let start = ox_lo + j - d.pad[1];
                        dst[ox_lo..ox_hi].copy_from_slice(&src[start..start + ox_hi - ox_lo]);
                    } else {
                        for (ox, v) in dst[ox_lo..ox_hi].iter_mut().enumerate() {
                            *v = src[(ox_lo + ox) * sx + j - d.pad[1]];
                        }
                    }
                }
            }
        }
    }
}

/// Folds `cols` `[c_in * kh * kw, h_out * w_out]` back onto one image `[c_in, h, w]`, adding
/// every patch entry to the input element it was read from.
fn col2im(d: &ConvDims, cols: &[f32], x: &mut [f32]) {
    x.fill(0.0);
    let hw = d.hw_out();
    let [sy, sx] = d.stride;
    for c in 0..d.c_in {
        let image = &mut x[c * d.h * d.w..(c + 1) * d.h * d.w];
        for i in 0..d.kh {
            let (oy_lo, oy_hi) = ConvDims::inside(d.h_out, sy, i, d.pad[0], d.h);
            for j in 0..d.kw {
                let row = (c * d.kh + i) * d.kw + j;
                let row = &cols[row * hw..(row + 1) * hw];
                let (ox_lo, ox_hi) = ConvDims::inside(d.w_out, sx, j, d.pad[1], d.w);
                for oy in oy_lo..oy_hi {
                    let dst = &mut image[(oy * sy + i - d.pad[0]) * d.w..][..d.w];
                    let src = &row[oy * d.w_out + ox_lo..oy * d.w_out + ox_hi];
                    if src.is_empty() {
                        continue;
                    }
                    if sx == 1 {
                        let start = ox_lo + j - d.pad[1];
                        for (v, g) in dst[start..start + src.len()].iter_mut().zip(src) {
                            *v += g;
                        }
                    } else {
                        for (ox, g) in src.iter().enumerate() {
                            dst[(ox_lo + ox) * sx + j - d.pad[1]] += g;
                        }
                    }
                }
            }
        }
    }
}

/// Images per task of the backward pass: a fixed count, so that the order in which the weight
/// gradient is summed does not depend on the number of threads (a batch of 64 makes 16 tasks:
/// enough for 16 threads, few enough that each task's share of the gradient costs little).
const IMAGES_PER_GRADIENT_TASK: usize = 4;

/// Images per parallel task of the forward pass (each image's output is computed alone, so the
/// split does not change its values): the batch in one even share per core.
fn per_task(batch: usize) -> usize {
    batch.div_ceil(rayon::current_num_threads().max(1)).max(1)
}

/// Writes `max_pool(conv)` of one image to `out` and the position in `conv` of each window's
/// maximum (the first, on ties) to `argmax`. A NaN in a window is its maximum, as in PyTorch's
/// `max_pool2d`: a NaN is never hidden by a larger neighbour.
///
/// `NAN`: whether `conv` may hold a NaN. The NaN test costs ~9% of the CNN's step in this
/// branchy loop, so the caller scans the image once (one vectorised pass) and takes this
/// variant only when the scan found one.
fn max_pool<const NAN: bool>(d: &ConvDims, conv: &[f32], out: &mut [f32], argmax: &mut [u32]) {
    let p = d.pool;
    if p == 2 && !NAN {
        return max_pool_2x2(d, conv, out, argmax);
    }
    let [hp, wp] = d.pooled();
    for c in 0..d.c_out {
        for py in 0..hp {
            for px in 0..wp {
                let (mut best, mut at) = (f32::NEG_INFINITY, 0);
                for i in 0..p {
                    let row = (c * d.h_out + py * p + i) * d.w_out + px * p;
                    for (j, &v) in conv[row..row + p].iter().enumerate() {
                        if v > best || (j == 0 && i == 0) || (NAN && v.is_nan() && !best.is_nan()) {
                            (best, at) = (v, row + j);
                        }
                    }
                }
                let o = (c * hp + py) * wp + px;
                (out[o], argmax[o]) = (best, at as u32);
            }
        }
    }
}

/// [`max_pool`] of windows 2 x 2 in an image without NaN (the usual case): a row of outputs
/// at a time, each window's four values compared without branches, so that the loop
/// vectorises; the same choice as the general loop (in the window's row order, a later value
/// wins only when strictly larger).
fn max_pool_2x2(d: &ConvDims, conv: &[f32], out: &mut [f32], argmax: &mut [u32]) {
    let [hp, wp] = d.pooled();
    let below = d.w_out as u32;
    for c in 0..d.c_out {
        for py in 0..hp {
            let top = (c * d.h_out + 2 * py) * d.w_out;
            let o = (c * hp + py) * wp;
            let rows = conv[top..top + 2 * wp]
                .chunks_exact(2)
                .zip(conv[top + d.w_out..top + d.w_out + 2 * wp].chunks_exact(2));
            let outputs = out[o..o + wp].iter_mut().zip(&mut argmax[o..o + wp]);
            for (px, ((value, at), (upper, lower))) in outputs.zip(rows).enumerate() {
                let (mut best, mut offset) = (upper[0], 0);
                for (v, off) in [(upper[1], 1), (lower[0], below), (lower[1], below + 1)] {
                    let larger = v > best;
                    best = if larger { v } else { best };
                    offset = if larger { off } else { offset };
                }
                *value = best;
                *at = (top + 2 * px) as u32 + offset;
            }
        }
    }
}

/// `relu(conv(x, weight) + bias)` (without the ReLU when `relu` is false), max-pooled when
/// `d.pool > 1`, NCHW; and the position of each pooled value in its image's convolution output
/// (empty without a pool).
pub fn forward(
    d: ConvDims,
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    relu: bool,
) -> (Vec<f32>, Vec<u32>) {
    let (k, hw) = (d.k(), d.hw_out());
    let (x_len, conv_len, out_len) = (d.c_in * d.h * d.w, d.c_out * hw, d.pooled_len());
    let pooled = d.pool > 1;
    let mut out = vec![0.0; d.batch * out_len];
    let mut argmax = vec![0u32; if pooled { d.batch * out_len } else { 0 }];
    if out.is_empty() || x_len == 0 {
        // No images, or none with an output (a pool wider than the output): nothing to compute.
        return (out, argmax);
    }
    let n = per_task(d.batch);
    let mut argmax_chunks: Vec<&mut [u32]> = if pooled {
        argmax.chunks_mut(n * out_len).collect()
    } else {
        (0..d.batch.div_ceil(n)).map(|_| &mut [][..]).collect()
    };
    out.par_chunks_mut(n * out_len)
        .zip(x.par_chunks(n * x_len))
        .zip(argmax_chunks.par_iter_mut())
        .for_each(|((out, x), argmax)| {
            let mut cols = vec![0.0; k * hw];
            let mut conv = vec![0.0; if pooled { conv_len } else { 0 }];
            for (image, x) in x.chunks(x_len).enumerate() {
                let out = &mut out[image * out_len..(image + 1) * out_len];
                let target = if pooled { &mut conv[..] } else { &mut *out };
                im2col(&d, x, &mut cols);
                for (row, &b) in target.chunks_mut(hw).zip(bias) {
                    row.fill(b);
                }
                matmul(
                    (d.c_out, hw, k),
                    (target, hw),
                    (weight, k, 1),
                    (&cols, hw, 1),
                    true,
                );
                if relu {
                    // Not `v.max(0.0)`, which maps NaN to 0: NaN is kept, as by Burn and PyTorch.
                    target
                        .iter_mut()
                        .for_each(|v| *v = if *v < 0.0 { 0.0 } else { *v });
                }
                if pooled {
                    let argmax = &mut argmax[image * out_len..(image + 1) * out_len];
                    // A fold, not `any`: no early exit, so the scan vectorises.
                    if conv.iter().fold(false, |nan, v| nan | v.is_nan()) {
                        max_pool::<true>(&d, &conv, out, argmax);
                    } else {
                        max_pool::<false>(&d, &conv, out, argmax);
                    }
                }
            }
        });
    (out, argmax)
}

/// Gradients of `[x, weight, bias]` from the output's, given the forward pass's output (for
/// the ReLU's mask) and its pool positions; `x`'s only when `need_x` (empty otherwise).
pub fn backward(
    d: ConvDims,
    (x, weight, out, argmax): (&[f32], &[f32], &[f32], &[u32]),
    grad: &[f32],
    relu: bool,
    need_x: bool,
) -> [Vec<f32>; 3] {
    let (k, hw) = (d.k(), d.hw_out());
    let (x_len, conv_len, out_len) = (d.c_in * d.h * d.w, d.c_out * hw, d.pooled_len());
    let mut d_x = vec![0.0; if need_x { d.batch * x_len } else { 0 }];
    if grad.is_empty() || x_len == 0 {
        return [d_x, vec![0.0; d.c_out * k], vec![0.0; d.c_out]];
    }
    // Tasks of a fixed number of images, not one per thread: the weight gradient is the sum of
    // the tasks' shares in task order, so its bits are the same on any core count, and a run
    // resumed on another machine stays exact.
    let n = IMAGES_PER_GRADIENT_TASK;
    let tasks = d.batch.div_ceil(n).max(1);
    // Each task's share of the weight and bias gradients, summed afterwards.
    let mut parts: Vec<(Vec<f32>, Vec<f32>)> = (0..tasks)
        .map(|_| (vec![0.0; d.c_out * k], vec![0.0; d.c_out]))
        .collect();
    let mut d_x_chunks: Vec<&mut [f32]> = if need_x {
        d_x.chunks_mut(n * x_len).collect()
    } else {
        (0..tasks).map(|_| &mut [][..]).collect()
    };
    parts
        .par_iter_mut()
        .zip(d_x_chunks.par_iter_mut())
        .enumerate()
        // The unrolled patches and the gradient of the convolution's output (before the pool):
        // scratch space, made once per rayon job and reused by its tasks (both are overwritten
        // whole for each image), not once per task.
        .for_each_init(
            || (vec![0.0; k * hw], vec![0.0; conv_len]),
            |(cols, g), (task, ((d_w, d_b), d_x))| {
                for image in task * n..((task + 1) * n).min(d.batch) {
                    let local = image - task * n;
                    let grad = &grad[image * out_len..(image + 1) * out_len];
                    let out = &out[image * out_len..(image + 1) * out_len];
                    let masked = |dy: f32, y: f32| if relu && y <= 0.0 { 0.0 } else { dy };
                    if d.pool > 1 {
                        g.fill(0.0);
                        let argmax = &argmax[image * out_len..(image + 1) * out_len];
                        for ((&dy, &y), &at) in grad.iter().zip(out).zip(argmax) {
                            g[at as usize] += masked(dy, y);
                        }
                    } else {
                        for ((g, &dy), &y) in g.iter_mut().zip(grad).zip(out) {
                            *g = masked(dy, y);
                        }
                    }
                    for (b, row) in d_b.iter_mut().zip(g.chunks(hw)) {
                        *b += row.iter().sum::<f32>();
                    }
                    im2col(&d, &x[image * x_len..(image + 1) * x_len], cols);
                    // d_w [c_out, k] += g [c_out, hw] · cols^T [hw, k]
                    matmul((d.c_out, k, hw), (d_w, k), (g, hw, 1), (cols, 1, hw), true);
                    if need_x {
                        // cols [k, hw] = weight^T [k, c_out] · g [c_out, hw], folded onto the image.
                        matmul(
                            (k, hw, d.c_out),
                            (cols, hw),
                            (weight, 1, k),
                            (g, hw, 1),
                            false,
                        );
                        col2im(&d, cols, &mut d_x[local * x_len..(local + 1) * x_len]);
                    }
                }
            },
        );
    let mut parts = parts.into_iter();
    let (mut d_w, mut d_b) = parts.next().expect("at least one task");
    for (w, b) in parts {
        d_w.iter_mut().zip(w).for_each(|(a, v)| *a += v);
        d_b.iter_mut().zip(b).for_each(|(a, v)| *a += v);
    }
    [d_x, d_w, d_b]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct convolution by the definition, for comparison.
    fn direct(d: &ConvDims, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; d.batch * d.c_out * d.hw_out()];
        for n in 0..d.batch {
            for o in 0..d.c_out {
                for oy in 0..d.h_out {
                    for ox in 0..d.w_out {
                        let mut acc = bias[o];
                        for c in 0..d.c_in {
                            for i in 0..d.kh {
                                for j in 0..d.kw {
                                    let y = (oy * d.stride[0] + i) as isize - d.pad[0] as isize;
                                    let xx = (ox * d.stride[1] + j) as isize - d.pad[1] as isize;
                                    if y < 0 || xx < 0 || y >= d.h as isize || xx >= d.w as isize {
                                        continue;
                                    }
                                    acc += x
                                        [((n * d.c_in + c) * d.h + y as usize) * d.w + xx as usize]
                                        * weight[((o * d.c_in + c) * d.kh + i) * d.kw + j];
                                }
                            }
                        }
                        out[((n * d.c_out + o) * d.h_out + oy) * d.w_out + ox] = acc;
                    }
                }
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
    fn forward_matches_the_definition_for_strides_and_paddings() {
        // Odd sizes, stride 1 and 2, asymmetric padding, 1 and 3 input channels.
        for (c_in, h, w, k, stride, pad, pad_end) in [
            (1, 5, 7, 3, [1, 1], [1, 1], [1, 1]),
            (3, 6, 5, 3, [2, 1], [1, 0], [1, 2]),
            (3, 7, 7, 2, [2, 2], [0, 0], [1, 1]),
            (2, 4, 4, 3, [1, 1], [0, 0], [0, 0]),
        ] {
            let h_out = (h + pad[0] + pad_end[0] - k) / stride[0] + 1;
            let w_out = (w + pad[1] + pad_end[1] - k) / stride[1] + 1;
            let d = ConvDims {
                batch: 3,
                c_in,
                h,
                w,
                c_out: 4,
                kh: k,
                kw: k,
                stride,
                pad,
                h_out,
                w_out,
                pool: 1,
            };
            let x = values(3 * c_in * h * w, 1);
            let weight = values(4 * c_in * k * k, 2);
            let bias = values(4, 3);
            let expected = direct(&d, &x, &weight, &bias);
            let (got, _) = forward(d, &x, &weight, &bias, false);
            for (a, b) in got.iter().zip(&expected) {
                assert!((a - b).abs() < 1e-5, "{d:?}: {a} vs {b}");
            }
            let (relu, _) = forward(d, &x, &weight, &bias, true);
            for (a, b) in relu.iter().zip(&got) {
                assert_eq!(*a, b.max(0.0));
            }
            // Max-pooled by 2: each window's largest value, at the position recorded.
            let pooled_dims = ConvDims { pool: 2, ..d };
            let (pooled, argmax) = forward(pooled_dims, &x, &weight, &bias, true);
            let [hp, wp] = pooled_dims.pooled();
            let conv_len = 4 * h_out * w_out;
            for n in 0..3 {
                for c in 0..4 {
                    for py in 0..hp {
                        for px in 0..wp {
                            let o = ((n * 4 + c) * hp + py) * wp + px;
                            let window = (0..4).map(|e| {
                                relu[n * conv_len
                                    + (c * h_out + 2 * py + e / 2) * w_out
                                    + 2 * px
                                    + e % 2]
                            });
                            assert_eq!(pooled[o], window.fold(f32::NEG_INFINITY, f32::max));
                            assert_eq!(relu[n * conv_len + argmax[o] as usize], pooled[o]);
                        }
                    }
                }
            }
        }
    }

    /// The 2 x 2 pool's branch-free loop picks what the general loop picks, ties included
    /// (values of three levels, so most windows hold equal values), for odd and even sizes.
    #[test]
    fn the_2x2_pool_picks_as_the_general_loop() {
        for (h_out, w_out) in [(4, 4), (5, 7), (2, 3), (7, 2)] {
            let d = ConvDims {
                batch: 1,
                c_in: 1,
                h: h_out,
                w: w_out,
                c_out: 3,
                kh: 1,
                kw: 1,
                stride: [1, 1],
                pad: [0, 0],
                h_out,
                w_out,
                pool: 2,
            };
            let conv: Vec<f32> = values(3 * h_out * w_out, 7)
                .iter()
                .map(|v| (v * 3.0).round())
                .collect();
            let n = d.pooled_len();
            let (mut general, mut general_at) = (vec![0.0; n], vec![0; n]);
            // `NAN = true` takes the general loop; without a NaN it chooses as `NAN = false`.
            max_pool::<true>(&d, &conv, &mut general, &mut general_at);
            let (mut fast, mut fast_at) = (vec![0.0; n], vec![0; n]);
            max_pool::<false>(&d, &conv, &mut fast, &mut fast_at);
            assert_eq!(fast, general, "{h_out} x {w_out}");
            assert_eq!(fast_at, general_at, "{h_out} x {w_out}");
        }
    }

    #[test]
    fn col2im_is_the_transpose_of_im2col() {
        // <im2col(x), c> = <x, col2im(c)> for any x and c.
        let d = ConvDims {
            batch: 1,
            c_in: 2,
            h: 5,
            w: 6,
            c_out: 1,
            kh: 3,
            kw: 2,
            stride: [2, 1],
            pad: [1, 1],
            h_out: 3,
            w_out: 6,
            pool: 1,
        };
        let x = values(2 * 5 * 6, 4);
        let c = values(d.k() * d.hw_out(), 5);
        let mut cols = vec![0.0; c.len()];
        im2col(&d, &x, &mut cols);
        let mut folded = vec![0.0; x.len()];
        col2im(&d, &c, &mut folded);
        let lhs: f32 = cols.iter().zip(&c).map(|(a, b)| a * b).sum();
        let rhs: f32 = x.iter().zip(&folded).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-4, "{lhs} vs {rhs}");
    }

    /// A NaN pixel makes every output that reads it NaN, through the ReLU and the max-pool
    /// (whose window maximum it is, as in PyTorch), and nothing else.
    #[test]
    fn nan_reaches_every_output_that_reads_it() {
        let d = ConvDims {
            batch: 2,
            c_in: 1,
            h: 6,
            w: 6,
            c_out: 3,
            kh: 3,
            kw: 3,
            stride: [1, 1],
            pad: [1, 1],
            h_out: 6,
            w_out: 6,
            pool: 2,
        };
        let mut x = values(72, 1);
        x[36 + 2 * 6 + 2] = f32::NAN; // image 1, row 2, column 2
        let bias = [-5.0, 0.0, 5.0]; // channel 0 mostly below zero: ReLU's zeros around the NaN
        let (out, _) = forward(d, &x, &values(27, 2), &bias, true);
        // Conv outputs in rows and columns 1..=3 read the pixel: pooled windows 0 and 1 of both.
        for (i, v) in out.iter().enumerate() {
            let (image, c, py, px) = (i / 27, i / 9 % 3, i / 3 % 3, i % 3);
            let reads = image == 1 && py <= 1 && px <= 1;
            assert_eq!(
                v.is_nan(),
                reads,
                "image {image} channel {c} ({py}, {px}): {v}"
            );
        }
    }

    /// The gradients' bits do not depend on the number of threads: a run resumed on a machine
    /// with another core count stays exact.
    #[test]
    fn gradients_are_the_same_bits_on_any_thread_count() {
        let d = ConvDims {
            batch: 37,
            c_in: 2,
            h: 7,
            w: 7,
            c_out: 5,
            kh: 3,
            kw: 3,
            stride: [1, 1],
            pad: [1, 1],
            h_out: 7,
            w_out: 7,
            pool: 1,
        };
        let (x, weight, bias) = (values(37 * 98, 1), values(90, 2), values(5, 3));
        let grad = values(37 * 5 * 49, 4);
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let (out, argmax) = forward(d, &x, &weight, &bias, true);
                let grads = backward(d, (&x, &weight, &out, &argmax), &grad, true, true);
                (out, grads)
            })
        };
        let one = on(1);
        for threads in [2, 3, 8] {
            assert!(
                on(threads) == one,
                "{threads} threads gave other bits than 1"
            );
        }
    }
}
