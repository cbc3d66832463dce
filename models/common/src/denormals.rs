//! Subnormal floats flushed to zero while kiln trains, as TensorFlow does on the CPU by default
//! (PyTorch's `torch.set_flush_denormal(True)`).
//!
//! Why: Adam's moment estimates of a weight whose gradient is rarely non-zero (the first
//! layer's weights of an MNIST border pixel) shrink by `beta1` (0.9) every step until they
//! fall below f32's smallest normal value, 1.2e-38, after some 700 steps; from then on every
//! multiplication that reads or writes them takes a microcode assist, about a hundred times
//! slower on x86. An MNIST MLP's epochs after the first ran 2.8 times slower for it (2.35 s
//! against 0.83 s with them flushed). With the processor's flush-to-zero and
//! denormals-are-zero modes (MXCSR bits FTZ and DAZ) such values are zero instead, which
//! changes no result above 1.2e-38.
//!
//! The modes are per thread: [`FlushDenormals`] sets them on the calling thread and on every
//! thread of rayon's global pool (where the kernels and Burn's CPU backends compute) for as
//! long as it lives; threads of kiln's own call [`flush_denormals_on_this_thread`]. Elsewhere
//! than on x86-64 it does nothing.

use std::sync::Mutex;

/// MXCSR's flush-to-zero (bit 15) and denormals-are-zero (bit 6) bits.
#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

/// How many [`FlushDenormals`] are alive, and the pool threads' modes before the first.
static POOL: Mutex<(usize, Vec<u32>)> = Mutex::new((0, Vec::new()));

/// Flush-to-zero on this thread and on rayon's pool while it lives; the previous modes after.
/// Guards nest, and may live on several threads at once (the pool is restored when the last
/// one ends).
#[derive(Debug)]
pub struct FlushDenormals {
    saved: u32,
}

impl FlushDenormals {
    /// Sets the modes; dropping it restores them.
    pub fn new() -> Self {
        // The pool first, then this thread (which may be one of the pool's): each saves the
        // modes it found.
        let mut pool = POOL.lock().expect("denormal mode lock");
        if pool.0 == 0 {
            pool.1 = rayon::broadcast(|_| set_modes(true));
        }
        pool.0 += 1;
        drop(pool);
        Self {
            saved: set_modes(true),
        }
    }
}

impl Default for FlushDenormals {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FlushDenormals {
    fn drop(&mut self) {
        // In the reverse order of `new`.
        restore_modes(self.saved);
        let mut pool = POOL.lock().expect("denormal mode lock");
        pool.0 -= 1;
        if pool.0 == 0 {
            let saved = std::mem::take(&mut pool.1);
            rayon::broadcast(|ctx| {
                if let Some(&mode) = saved.get(ctx.index()) {
                    restore_modes(mode);
                }
            });
        }
    }
}

/// Flush-to-zero on this thread for the rest of its life (a thread kiln starts for training).
pub fn flush_denormals_on_this_thread() {
    set_modes(true);
}

/// Sets (or clears) this thread's FTZ and DAZ bits; returns its previous MXCSR.
fn set_modes(on: bool) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        let old = mxcsr();
        let new = if on { old | FTZ_DAZ } else { old & !FTZ_DAZ };
        restore_modes(new);
        old
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = on;
        0
    }
}

#[cfg(target_arch = "x86_64")]
fn mxcsr() -> u32 {
    let mut value = 0u32;
    // SAFETY: `stmxcsr` stores the 4-byte MXCSR register into `value`, a live local.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut value, options(nostack, preserves_flags));
    }
    value
}

/// Writes `value` (a value `mxcsr` read, with at most the FTZ and DAZ bits changed) to this
/// thread's MXCSR.
fn restore_modes(value: u32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `ldmxcsr` loads MXCSR from `value`, a live local; the value is one the register
    // held, with only the FTZ/DAZ bits (valid on every x86-64 with SSE2) changed, so no
    // reserved bit is set (which would fault) and the rounding mode and exception masks stay.
    unsafe {
        std::arch::asm!("ldmxcsr [{}]", in(reg) &value, options(nostack, preserves_flags));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

#[cfg(test)]
mod tests {
    use std::hint::black_box;

    use super::*;

    /// Half the smallest normal f32: a subnormal, unless flushed.
    fn halved() -> f32 {
        black_box(f32::MIN_POSITIVE) * black_box(0.5)
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn subnormals_are_zero_inside_and_back_after_on_every_thread() {
        let before = halved();
        assert!(before > 0.0 && !before.is_normal());
        let pool_before: Vec<f32> = rayon::broadcast(|_| halved());
        {
            let _outer = FlushDenormals::new();
            assert_eq!(halved(), 0.0);
            assert!(rayon::broadcast(|_| halved()).iter().all(|&v| v == 0.0));
            {
                let _inner = FlushDenormals::new();
                assert_eq!(halved(), 0.0);
            }
            // The inner guard's end keeps the outer one's modes.
            assert_eq!(halved(), 0.0);
            assert!(rayon::broadcast(|_| halved()).iter().all(|&v| v == 0.0));
            // A subnormal input reads as zero too (DAZ), normal values are untouched.
            assert_eq!(black_box(f32::MIN_POSITIVE / 4.0) * black_box(4.0), 0.0);
            assert_eq!(black_box(3.0f32) * black_box(0.5), 1.5);
        }
        assert_eq!(halved(), before);
        assert_eq!(rayon::broadcast(|_| halved()), pool_before);
        // A thread of kiln's own keeps the mode for its life.
        let on_thread = std::thread::spawn(|| {
            flush_denormals_on_this_thread();
            halved()
        });
        assert_eq!(on_thread.join().unwrap(), 0.0);
        assert_eq!(halved(), before);
    }
}
