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
