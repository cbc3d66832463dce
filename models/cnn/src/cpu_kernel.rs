//! A 2-D convolution with its bias and ReLU on host memory, forward and backward, one image at a
//! time in Caffe's layout: each image's patches unrolled into a `[c_in * kh * kw, h_out * w_out]`
//! matrix (im2col), one `gemm` product with the `[c_out, c_in * kh * kw]` weights giving the
//! output directly in NCHW, so no layout conversion is needed on either side. The batch is split
//! across threads, each running its images' products on one core.
//!
//! Backward, per image: the output gradient masked by ReLU, the weight gradient as the product of
//! that gradient with the unrolled patches (recomputed, not kept), and the input gradient as the
//! weights' transpose times the gradient, folded back onto the image (col2im).

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
}

impl ConvDims {
    /// Rows of the unrolled patches: `c_in * kh * kw`.
    fn k(&self) -> usize {
        self.c_in * self.kh * self.kw
    }

    fn hw_out(&self) -> usize {
        self.h_out * self.w_out
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

/// Images per parallel task: the batch in one even share per core.
fn per_task(batch: usize) -> usize {
    batch.div_ceil(rayon::current_num_threads().max(1)).max(1)
}

/// `relu(conv(x, weight) + bias)` (without the ReLU when `relu` is false), NCHW.
pub fn forward(d: ConvDims, x: &[f32], weight: &[f32], bias: &[f32], relu: bool) -> Vec<f32> {
    let (k, hw) = (d.k(), d.hw_out());
    let (x_len, out_len) = (d.c_in * d.h * d.w, d.c_out * hw);
    let mut out = vec![0.0; d.batch * out_len];
    let n = per_task(d.batch);
    out.par_chunks_mut(n * out_len)
        .zip(x.par_chunks(n * x_len))
        .for_each(|(out, x)| {
            let mut cols = vec![0.0; k * hw];
            for (out, x) in out.chunks_mut(out_len).zip(x.chunks(x_len)) {
                im2col(&d, x, &mut cols);
                for (row, &b) in out.chunks_mut(hw).zip(bias) {
                    row.fill(b);
                }
                matmul(
                    (d.c_out, hw, k),
                    (out, hw),
                    (weight, k, 1),
                    (&cols, hw, 1),
                    true,
                );
                if relu {
                    out.iter_mut().for_each(|v| *v = v.max(0.0));
                }
            }
        });
    out
}

/// Gradients of `[x, weight, bias]` from the output's, given the forward pass's output (for
/// the ReLU's mask); `x`'s only when `need_x` (empty otherwise).
pub fn backward(
    d: ConvDims,
    (x, weight, out): (&[f32], &[f32], &[f32]),
    grad: &[f32],
    relu: bool,
    need_x: bool,
) -> [Vec<f32>; 3] {
    let (k, hw) = (d.k(), d.hw_out());
    let (x_len, out_len) = (d.c_in * d.h * d.w, d.c_out * hw);
    let mut d_x = vec![0.0; if need_x { d.batch * x_len } else { 0 }];
    let n = per_task(d.batch);
    let tasks = d.batch.div_ceil(n);
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
        .for_each(|(task, ((d_w, d_b), d_x))| {
            let mut cols = vec![0.0; k * hw];
            let mut g = vec![0.0; out_len];
            for image in task * n..((task + 1) * n).min(d.batch) {
                let local = image - task * n;
                let grad = &grad[image * out_len..(image + 1) * out_len];
                let out = &out[image * out_len..(image + 1) * out_len];
                for ((g, &dy), &y) in g.iter_mut().zip(grad).zip(out) {
                    *g = if relu && y <= 0.0 { 0.0 } else { dy };
                }
                for (b, row) in d_b.iter_mut().zip(g.chunks(hw)) {
                    *b += row.iter().sum::<f32>();
                }
                im2col(&d, &x[image * x_len..(image + 1) * x_len], &mut cols);
                // d_w [c_out, k] += g [c_out, hw] · cols^T [hw, k]
                matmul(
                    (d.c_out, k, hw),
                    (d_w, k),
                    (&g, hw, 1),
                    (&cols, 1, hw),
                    true,
                );
                if need_x {
                    // cols [k, hw] = weight^T [k, c_out] · g [c_out, hw], folded onto the image.
                    matmul(
                        (k, hw, d.c_out),
                        (&mut cols, hw),
                        (weight, 1, k),
                        (&g, hw, 1),
                        false,
                    );
                    col2im(&d, &cols, &mut d_x[local * x_len..(local + 1) * x_len]);
                }
            }
        });
    let (mut d_w, mut d_b) = parts.pop().expect("at least one task");
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
            };
            let x = values(3 * c_in * h * w, 1);
            let weight = values(4 * c_in * k * k, 2);
            let bias = values(4, 3);
            let expected = direct(&d, &x, &weight, &bias);
            let got = forward(d, &x, &weight, &bias, false);
            for (a, b) in got.iter().zip(&expected) {
                assert!((a - b).abs() < 1e-5, "{d:?}: {a} vs {b}");
            }
            let relu = forward(d, &x, &weight, &bias, true);
            for (a, b) in relu.iter().zip(&got) {
                assert_eq!(*a, b.max(0.0));
            }
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
}
