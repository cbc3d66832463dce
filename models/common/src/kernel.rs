//! Building blocks of kiln's fused CPU kernels: [`vectorised!`](crate::vectorised) compiles a
//! loop for the wide vector units the CPU has, [`exp`] is an `e^x` without branches, so that
//! loops over it vectorise (the standard library's calls `expf`, one value at a time), and
//! [`matmul`] is a strided matrix product by `gemm`, the kernel library burn-flex runs on.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, BackendTypes};
use burn::tensor::{Device, TensorData, read_sync};

/// Defines `[vis] fn name(args) body`, compiled twice: for the baseline x86-64 CPU and for AVX2 and
/// FMA (8 f32 or u32 lanes instead of 4, fused multiply-add), picking the second at run time
/// where the CPU has them. For the element-wise loops of kiln's CPU kernels, which the compiler
/// vectorises but which the baseline build would run at half width.
#[macro_export]
macro_rules! vectorised {
    ($(#[$doc:meta])* $vis:vis $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        $crate::vectorised!($(#[$doc])* $vis $name($($arg: $ty),*) -> () $body);
    };
    ($(#[$doc:meta])* $vis:vis $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty $body:block) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[inline(always)]
            fn body($($arg: $ty),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn wide($($arg: $ty),*) -> $ret { body($($arg),*) }
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has the features `wide` is compiled for.
                    return unsafe { wide($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

/// `e^x` to about 1e-7 relative error, without branches so that loops over it vectorise
/// (Cephes' `expf`: `x = n ln 2 + r`, a degree-6 polynomial in `r`, times `2^n`). The
/// polynomial is written with `mul_add`, which the [`vectorised!`](crate::vectorised) loops
/// compile to fused multiply-adds: 0.48 ns per value on this machine against 0.82 ns for
/// separate multiplies and adds. (A build for a CPU without FMA calls the C library's `fmaf`.)
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer.
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = n.mul_add(2.121_944_4e-4, n.mul_add(-0.693_359_4, x));
    let mut p: f32 = 1.987_569_1e-4;
    p = p.mul_add(r, 1.398_2e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 0.5);
    let e = (p * r).mul_add(r, r + 1.0);
    let two_n = f32::from_bits(((shifted.to_bits() as i32 - 0x4B40_0000 + 127) << 23) as u32);
    e * two_n
}

/// `dst = lhs · rhs` (or `dst += lhs · rhs` when `accumulate`), for `m x k` times `k x n`
/// matrices given as (slice, row stride, column stride); in bf16 with f32 sums when the
/// [precision](mod@crate::precision) is bf16 ([`matmul_bf16`](crate::amx::matmul_bf16)).
pub fn matmul(
    dims: (usize, usize, usize),
    dst: (&mut [f32], usize),
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
    accumulate: bool,
) {
    match crate::precision() {
        crate::Precision::Bf16 => crate::amx::matmul_bf16(dims, dst, lhs, rhs, accumulate),
        // f16 is for the GPU backends' products; the CPU kernels compute it in f32.
        crate::Precision::F32 | crate::Precision::F16 => {
            matmul_f32(dims, dst, lhs, rhs, accumulate)
        }
    }
}

/// A right operand for several products with the same matrix: prepared once for bf16 when the
/// [precision](mod@crate::precision) is bf16 (packed for tiles, or rounded:
/// [`PackedRhs`](crate::amx::PackedRhs)), read as it is otherwise ([`matmul_with`]).
pub struct Rhs<'a> {
    values: (&'a [f32], usize, usize),
    k: usize,
    n: usize,
    packed: Option<crate::amx::PackedRhs>,
}

impl<'a> Rhs<'a> {
    /// `values` (`k x n`, as (slice, row stride, column stride)) prepared for the current
    /// precision.
    pub fn new(values: (&'a [f32], usize, usize), k: usize, n: usize) -> Self {
        let packed = match crate::precision() {
            crate::Precision::Bf16 => Some(crate::amx::PackedRhs::new(values, k, n)),
            crate::Precision::F32 | crate::Precision::F16 => None,
        };
        Self {
            values,
            k,
            n,
            packed,
        }
    }
}

/// [`matmul`] of an `m x k` `lhs` by a prepared `rhs`.
pub fn matmul_with(
    m: usize,
    dst: (&mut [f32], usize),
    lhs: (&[f32], usize, usize),
    rhs: &Rhs,
    accumulate: bool,
) {
    match &rhs.packed {
        Some(packed) => crate::amx::matmul_bf16_packed(m, dst, lhs, packed, accumulate),
        None => matmul((m, rhs.n, rhs.k), dst, lhs, rhs.values, accumulate),
    }
}

/// [`matmul`] in f32, whatever the precision.
pub fn matmul_f32(
    (m, n, k): (usize, usize, usize),
    dst: (&mut [f32], usize),
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
    accumulate: bool,
) {
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| {
        (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs
    };
    // Every element each operand's strides reach lies inside its slice.
    assert!(m * n == 0 || last(m, n, dst.1, 1) < dst.0.len());
    assert!(m * k == 0 || last(m, k, lhs.1, lhs.2) < lhs.0.len());
    assert!(k * n == 0 || last(k, n, rhs.1, rhs.2) < rhs.0.len());
    if m * n == 0 {
        return;
    }
    // Inside a rayon worker the batch is already split across threads: one thread per product.
    // Elsewhere, a product uses every core when it is large enough to repay waking them:
    // burn-flex's threshold, 192^3 multiply-adds (below it, splitting a 64 x 128 x 784 product
    // over 2 cores made an MLP's step 25% slower).
    let parallelism = match rayon::current_thread_index() {
        None if m * n * k >= 192 * 192 * 192 => gemm::Parallelism::Rayon(0),
        _ => gemm::Parallelism::None,
    };
    // SAFETY: the assertions above keep every access in bounds; `dst` is borrowed mutably, so
    // it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.0.as_mut_ptr(),
            1,
            dst.1 as isize,
            accumulate,
            lhs.0.as_ptr(),
            lhs.2 as isize,
            lhs.1 as isize,
            rhs.0.as_ptr(),
            rhs.2 as isize,
            rhs.1 as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Whether tensors on `device` live in host memory, on a CPU backend compiled in (flex, ndarray,
/// by kiln-common's features of the same names): where kiln's fused CPU kernels run, and where
/// [`Dropout`](crate::Dropout) builds its mask without a transfer.
pub fn on_host(device: &Device) -> bool {
    #[allow(unreachable_patterns)]
    match device.clone().without_autodiff().as_dispatch() {
        #[cfg(feature = "flex")]
        burn::backend::DispatchDevice::Flex(_) => true,
        #[cfg(feature = "ndarray")]
        burn::backend::DispatchDevice::NdArray(_) => true,
        _ => false,
    }
}

/// A tensor's f32 values on the host: a fused kernel's input (a copy, on the CPU backends the
/// kernels serve).
pub fn host_values<B: Backend>(t: FloatTensor<B>) -> Vec<f32> {
    read_sync(B::float_into_data(t))
        .expect("a fused CPU kernel reads its inputs")
        .try_into_vec::<f32>()
        .expect("a fused CPU kernel runs on f32 values")
}

/// `values` as a tensor of `shape` on `device`: a fused kernel's output.
pub fn host_tensor<B: Backend>(
    values: Vec<f32>,
    shape: &[usize],
    device: &<B as BackendTypes>::Device,
) -> FloatTensor<B> {
    B::float_from_data(TensorData::new(values, shape.to_vec()), device)
}

/// A fused kernel's backward pass handing its gradients to autodiff: each `(values, shape)` as
/// the gradient of the parent at the same place, for the parents autodiff tracks (`None`: a
/// constant, whose gradient the kernel may leave empty).
pub fn register_host_grads<B: Backend, const N: usize>(
    grads: &mut Gradients,
    parents: [Option<NodeId>; N],
    values: [(Vec<f32>, Vec<usize>); N],
    device: &<B as BackendTypes>::Device,
) {
    for (parent, (values, shape)) in parents.into_iter().zip(values) {
        if let Some(id) = parent {
            grads.register::<B>(id, host_tensor::<B>(values, &shape, device));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `matmul` against the definition for shapes that reach every kind of gemm tile (full,
    /// edge, one row or column) on one thread and, above the threshold, on every core.
    fn matmul_matches_the_definition() {
        let values = |n: usize, seed: usize| -> Vec<f32> {
            (0..n)
                .map(|i| ((i * 31 + seed * 17) % 23) as f32 / 11.0 - 1.0)
                .collect()
        };
        for (m, n, k) in [
            (1, 1, 1),
            (7, 13, 5),
            (64, 128, 784),
            (33, 511, 129),
            (200, 200, 200),
        ] {
            let (lhs, rhs) = (values(m * k, 1), values(k * n, 2));
            let mut dst = values(m * n, 3);
            let before = dst.clone();
            matmul((m, n, k), (&mut dst, n), (&lhs, k, 1), (&rhs, n, 1), true);
            for i in 0..m {
                for j in 0..n {
                    let want: f32 = before[i * n + j]
                        + (0..k).map(|p| lhs[i * k + p] * rhs[p * n + j]).sum::<f32>();
                    let got = dst[i * n + j];
                    assert!(
                        (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "[{m}x{k}]·[{k}x{n}] at ({i}, {j}): {got} vs {want}"
                    );
                }
            }
        }
    }

    /// The gemm kernels this CPU dispatches to (AVX-512 here, with gemm's `x86-v4` feature).
    #[test]
    fn matmul_on_this_cpu() {
        matmul_matches_the_definition();
    }

    /// The path of a CPU without AVX-512, on this one: the test binary re-run under valgrind,
    /// whose virtual CPU has no AVX-512, so gemm's run-time detection picks its AVX2 kernels.
    /// Skipped, saying so, where valgrind is not installed.
    #[test]
    fn matmul_without_avx512() {
        const CHILD: &str = "KILN_TEST_WITHOUT_AVX512";
        if std::env::var_os(CHILD).is_some() {
            #[cfg(target_arch = "x86_64")]
            assert!(
                !std::arch::is_x86_feature_detected!("avx512f"),
                "valgrind should hide AVX-512"
            );
            matmul_matches_the_definition();
            println!("matmul checked without AVX-512");
            return;
        }
        if std::process::Command::new("valgrind")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("valgrind is not installed: the no-AVX-512 path is not checked");
            return;
        }
        let out = std::process::Command::new("valgrind")
            .args(["--quiet", "--error-exitcode=3"])
            .arg(std::env::current_exe().expect("the test binary"))
            .args([
                "--exact",
                "kernel::tests::matmul_without_avx512",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .expect("valgrind runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("matmul checked without AVX-512"),
            "under valgrind: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn matmul_follows_the_strides() {
        // [2x3] · [3x2], the right one read transposed from a [2x3] buffer.
        let lhs = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let rhs_t = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        let mut dst = vec![10.0; 4];
        matmul((2, 2, 3), (&mut dst, 2), (&lhs, 3, 1), (&rhs_t, 1, 3), true);
        assert_eq!(dst, [14.0, 12.0, 20.0, 15.0]);
    }
}
