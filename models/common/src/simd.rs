//! Vectorisable arithmetic for kiln's CPU kernels: [`vectorised!`](crate::vectorised) compiles a
//! loop for the wide vector units the CPU has, and [`exp`] is an `e^x` without branches, so
//! that loops over it vectorise (the standard library's calls `expf`, one value at a time).

/// Defines `fn name(args) body`, compiled twice: for the baseline x86-64 CPU and for AVX2 and
/// FMA (8 f32 or u32 lanes instead of 4, fused multiply-add), picking the second at run time
/// where the CPU has them. For the element-wise loops of kiln's CPU kernels, which the compiler
/// vectorises but which the baseline build would run at half width.
#[macro_export]
macro_rules! vectorised {
    ($name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn wide($($arg: $ty),*) { body($($arg),*) }
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
/// (Cephes' `expf`: `x = n ln 2 + r`, a degree-6 polynomial in `r`, times `2^n`).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer.
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    let two_n = f32::from_bits(((shifted.to_bits() as i32 - 0x4B40_0000 + 127) << 23) as u32);
    e * two_n
}
