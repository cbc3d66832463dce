//! Matrix products in bfloat16 with float32 accumulation on Intel's AMX tile unit (Sapphire
//! Rapids and later): `tdpbf16ps` multiplies a 16 x 32 tile of bf16 by a 32 x 16 one into 16 x 16
//! f32 sums, 16 times the multiply-adds of an AVX-512 FMA per instruction.
//!
//! [`matmul_bf16`] has [`matmul`](crate::kernel::matmul)'s interface: the operands (f32, any
//! strides) are rounded to bf16 (to nearest, ties to even) as they are packed into tiles, the
//! products summed in f32 and added to (or written over) `dst`. Where the CPU has no AMX, or the
//! operating system does not grant it, the same rounding is done and the product of the rounded
//! operands runs in f32 ([`matmul_f32`](crate::kernel::matmul_f32)): a product of two bf16 values is
//! exact in f32, so both paths compute the same sums, in a different order.
//!
//! The inline assembly is the only way to AMX on stable Rust (its intrinsics are unstable);
//! every `asm!` block below names the tile registers it uses in its comment. Other processors
//! than x86-64 compile the rounding path alone.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

#[cfg(target_arch = "x86_64")]
use std::arch::asm;
use std::sync::OnceLock;

/// Rows of a tile, and f32 columns of the result tile.
const T: usize = 16;
/// bf16 values along the summed dimension per tile (64 bytes a row).
const TK: usize = 32;
/// A packed tile: 16 rows of 64 bytes.
const TILE: usize = T * TK;

/// f32 to bf16, rounded to nearest, ties to even; NaN stays NaN (quiet).
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) as u16
}

/// bf16 back to f32 (exact).
#[inline(always)]
pub fn from_bf16(v: u16) -> f32 {
    f32::from_bits(u32::from(v) << 16)
}

/// `x` rounded to the nearest bf16, as an f32.
#[inline(always)]
pub fn round_bf16(x: f32) -> f32 {
    from_bf16(to_bf16(x))
}

/// Whether this process may use AMX's bf16 tiles: the CPU has them and Linux granted this
/// process the tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`), asked
/// once.
pub fn amx_available() -> bool {
    static GRANTED: OnceLock<bool> = OnceLock::new();
    *GRANTED.get_or_init(|| {
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        {
            // CPUID leaf 7: EDX bit 22 AMX-BF16, bit 24 AMX-TILE (std's detection of them is
            // unstable).
            let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
            if edx & (1 << 22) == 0 || edx & (1 << 24) == 0 {
                return false;
            }
            const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
            const XFEATURE_XTILEDATA: i64 = 18;
            let ret: i64;
            // SAFETY: the arch_prctl system call (158) with two integer arguments; it reads and
            // writes no memory of this process. `syscall` clobbers rcx and r11.
            unsafe {
                asm!("syscall", inlateout("rax") 158i64 => ret, in("rdi") ARCH_REQ_XCOMP_PERM,
                     in("rsi") XFEATURE_XTILEDATA, lateout("rcx") _, lateout("r11") _,
                     options(nostack));
            }
            ret == 0
        }
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
        false
    })
}

/// An operand as (slice, row stride, column stride).
type Operand<'a> = (&'a [f32], usize, usize);

/// `dst = lhs · rhs` (or `dst += lhs · rhs` when `accumulate`) with bf16 operands and f32 sums,
/// for `m x k` times `k x n` matrices; as [`matmul`](crate::kernel::matmul) otherwise.
pub fn matmul_bf16(
    dims: (usize, usize, usize),
    dst: (&mut [f32], usize),
    lhs: Operand,
    rhs: Operand,
    accumulate: bool,
) {
    crate::precision::count_low_precision_product();
    // Shallow products go to f32 on rounded operands: below two tiles of depth, packing the
    // operands costs as much as the products (a transformer of d_model 32, whose products are
    // 12,800 x 32 x 32, trained at 0.80x of f32 with them on tiles, 0.87-0.89x with them in
    // f32); a short side is padded, not avoided (rounding a tall operand's copy cost an LSTM's
    // 28 x 512 x 1,792 weight gradient more than the padding).
    let tiles = amx_available() && dims.2 >= 2 * TK;
    product(tiles, dims, dst, lhs, rhs, accumulate);
}

/// A right operand prepared once for several products with it (the LSTM's recurrent weight at
/// every step of a sequence): packed into tiles where the products run on them, else rounded
/// to bf16 once into an f32 copy. [`matmul_bf16_packed`] skips the packing or rounding
/// [`matmul_bf16`] does on every call (rounding an LSTM's 128 x 512 recurrent weight at each of
/// 28 steps cost more than rounding the 64 x 128 hidden states it multiplies).
pub struct PackedRhs {
    form: Packed,
    k: usize,
    n: usize,
}

enum Packed {
    Tiles(Vec<u16>),
    /// The operand's reachable values rounded, with its row and column strides.
    Rounded(Vec<f32>, usize, usize),
}

impl PackedRhs {
    /// `rhs` (`k x n`) prepared for [`matmul_bf16`]'s products with it.
    pub fn new(rhs: Operand, k: usize, n: usize) -> Self {
        assert!(k * n == 0 || (k - 1) * rhs.1 + (n.max(1) - 1) * rhs.2 < rhs.0.len());
        let form = if cfg!(target_arch = "x86_64") && amx_available() && k >= 2 * TK {
            let mut tiles = Vec::new();
            pack_rhs(rhs, k, n, &mut tiles);
            Packed::Tiles(tiles)
        } else {
            Packed::Rounded(rounded(rhs, k, n), rhs.1, rhs.2)
        };
        Self { form, k, n }
    }
}

/// The values of `rows x cols` operand `v` reaches, rounded to bf16, for the same strides.
fn rounded((v, rs, cs): Operand, rows: usize, cols: usize) -> Vec<f32> {
    let last = (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs;
    let mut out = v[..(last + 1).min(v.len())].to_vec();
    round_all(&mut out);
    out
}

/// [`matmul_bf16`] with its right operand packed already (`m x k` times `rhs`'s `k x n`).
pub fn matmul_bf16_packed(
    m: usize,
    dst: (&mut [f32], usize),
    lhs: Operand,
    rhs: &PackedRhs,
    accumulate: bool,
) {
    crate::precision::count_low_precision_product();
    let (n, k) = (rhs.n, rhs.k);
    if m * n == 0 {
        return;
    }
    assert!((m - 1) * dst.1 + n - 1 < dst.0.len() && dst.1 >= n);
    assert!(k == 0 || (m - 1) * lhs.1 + (k - 1) * lhs.2 < lhs.0.len());
    match &rhs.form {
        #[cfg(target_arch = "x86_64")]
        Packed::Tiles(tiles) => tiles_product(lhs, tiles, (m, n, k), dst, accumulate),
        #[cfg(not(target_arch = "x86_64"))]
        Packed::Tiles(_) => unreachable!("tiles are packed on x86-64 alone"),
        Packed::Rounded(values, rs, cs) => {
            let a = rounded(lhs, m, k);
            let (a, b) = ((&a[..], lhs.1, lhs.2), (&values[..], *rs, *cs));
            crate::kernel::matmul_f32((m, n, k), dst, a, b, accumulate);
        }
    }
}

/// [`matmul_bf16`] on AMX tiles (`tiles`, which the caller checked the CPU has) or by the
/// rounded operands' f32 product.
fn product(
    tiles: bool,
    (m, n, k): (usize, usize, usize),
    dst: (&mut [f32], usize),
    lhs: Operand,
    rhs: Operand,
    accumulate: bool,
) {
    if m * n == 0 {
        return;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| {
        (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs
    };
    // Every element each operand's strides reach lies inside its slice (the tile kernel's
    // stores rely on `dst`'s).
    assert!(last(m, n, dst.1, 1) < dst.0.len() && dst.1 >= n);
    assert!(m * k == 0 || last(m, k, lhs.1, lhs.2) < lhs.0.len());
    assert!(k * n == 0 || last(k, n, rhs.1, rhs.2) < rhs.0.len());
    if !tiles || cfg!(not(target_arch = "x86_64")) {
        // The operands' reachable values rounded, read with their own strides.
        let (a, b) = (rounded(lhs, m, k), rounded(rhs, k, n));
        let (a, b) = ((&a[..], lhs.1, lhs.2), (&b[..], rhs.1, rhs.2));
        crate::kernel::matmul_f32((m, n, k), dst, a, b, accumulate);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let mut b = SCRATCH_RHS.with(|c| c.take());
        pack_rhs(rhs, k, n, &mut b);
        if k == 0 {
            if !accumulate {
                for r in 0..m {
                    dst.0[r * dst.1..r * dst.1 + n].fill(0.0);
                }
            }
            return;
        }
        tiles_product(lhs, &b, (m, n, k), dst, accumulate);
        SCRATCH_RHS.with(|c| c.replace(b));
    }
}

std::thread_local! {
    /// The packed right operand's buffer, kept between products on each thread, so that a
    /// training step does not fault in fresh pages for it.
    static SCRATCH_RHS: std::cell::RefCell<Vec<u16>> = const { std::cell::RefCell::new(Vec::new()) };
}

crate::vectorised!(
    /// Rounds every value to the nearest bf16 (as [`round_bf16`], branch-free so that it
    /// vectorises).
    pub(crate) round_all(v: &mut [f32]) {
        v.iter_mut().for_each(|x| {
            let bits = x.to_bits();
            let rounded = (bits.wrapping_add(0x7FFF + ((bits >> 16) & 1))) & 0xFFFF_0000;
            let nan = (bits & 0x7FFF_FFFF) > 0x7F80_0000;
            *x = f32::from_bits(if nan { bits | 0x0040_0000 } else { rounded } & 0xFFFF_0000);
        });
    }
);

/// Blocks of `T` rows (or columns), rounded up to an even count (the kernel works on 2 x 2
/// blocks of tiles).
fn blocks(len: usize) -> usize {
    len.div_ceil(T).next_multiple_of(2)
}

/// Rows `first..first + 2 * T` of `lhs` (`m x k`) as two row blocks of tiles into `out`: row
/// block `i` (0 or 1), k block `p` at `(i * kb + p) * TILE`, each 16 rows of 32 bf16; zeros
/// past the matrix.
fn pack_lhs((v, rs, cs): Operand, (m, k): (usize, usize), first: usize, out: &mut [u16]) {
    let kb = k.div_ceil(TK);
    let rows = first..m.min(first + 2 * T);
    out.fill(0);
    let at = |r: usize, c: usize| ((r - first) / T * kb + c / TK) * TILE + (r % T) * TK + c % TK;
    if cs == 1 {
        // Rows contiguous: 32 values of a row at a time.
        for r in rows {
            for (p, chunk) in v[r * rs..r * rs + k].chunks(TK).enumerate() {
                let to = at(r, p * TK);
                convert(chunk, &mut out[to..to + chunk.len()]);
            }
        }
    } else if rs == 1 {
        // Columns contiguous (a transposed matrix): the block's rows of each column converted
        // together, then each value to its row.
        let mut column = [0u16; 2 * T];
        let n_rows = rows.len();
        for c in 0..k {
            let src = &v[c * cs + first..c * cs + first + n_rows];
            convert(src, &mut column[..n_rows]);
            for (r, &value) in rows.clone().zip(&column[..n_rows]) {
                out[at(r, c)] = value;
            }
        }
    } else {
        for r in rows {
            for c in 0..k {
                out[at(r, c)] = to_bf16(v[r * rs + c * cs]);
            }
        }
    }
}

/// `rhs` (`k x n`) as tiles in AMX's pair layout into `out`: column block `j`, k block `p` at
/// `(j * kb + p) * TILE`, row `q` of a tile holding k `2q` and `2q + 1` of each of its 16
/// columns, interleaved; zeros past the matrix.
fn pack_rhs((v, rs, cs): Operand, k: usize, n: usize, out: &mut Vec<u16>) {
    let (nb, kb) = (blocks(n), k.div_ceil(TK));
    out.clear();
    out.resize(nb * kb * TILE, 0);
    // Where value (row r, column c) goes.
    let at =
        |r: usize, c: usize| (c / T * kb + r / TK) * TILE + (r % TK) / 2 * TK + (c % T) * 2 + r % 2;
    if cs == 1 {
        // Rows contiguous: two rows at a time, 16 columns interleaved.
        let zeros = vec![0f32; n];
        for pair in 0..k.div_ceil(2) {
            let r = 2 * pair;
            let even = &v[r * rs..r * rs + n];
            let odd = match r + 1 < k {
                true => &v[(r + 1) * rs..(r + 1) * rs + n],
                false => &zeros[..],
            };
            for j in 0..n.div_ceil(T) {
                let cols = T.min(n - j * T);
                let to = at(r, j * T);
                interleave(
                    &even[j * T..j * T + cols],
                    &odd[j * T..j * T + cols],
                    &mut out[to..to + 2 * cols],
                );
            }
        }
    } else if rs == 1 {
        // Columns contiguous (a transposed matrix): a column's k values are already pairs;
        // 32 at a time converted, each pair to its tile row.
        let mut chunk = [0u16; TK];
        for c in 0..n {
            for (p, src) in v[c * cs..c * cs + k].chunks(TK).enumerate() {
                convert(src, &mut chunk[..src.len()]);
                let base = at(p * TK, c);
                for (i, &value) in chunk[..src.len()].iter().enumerate() {
                    // Row i: tile row i / 2, the pair's element i % 2.
                    out[base + i / 2 * TK + i % 2] = value;
                }
            }
        }
    } else {
        for r in 0..k {
            for c in 0..n {
                out[at(r, c)] = to_bf16(v[r * rs + c * cs]);
            }
        }
    }
}

/// `out[i] = bf16(src[i])`.
fn convert(src: &[f32], out: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if src.len() == TK && avx512_bf16() {
        // SAFETY: the CPU has AVX-512 BF16 (checked); `src` holds 32 f32 and `out` 32 u16
        // (the lengths checked), read and written unaligned.
        unsafe { convert32(src, out) };
        return;
    }
    out.iter_mut().zip(src).for_each(|(o, &x)| *o = to_bf16(x));
}

/// `out[2c] = bf16(even[c])`, `out[2c + 1] = bf16(odd[c])`.
fn interleave(even: &[f32], odd: &[f32], out: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if even.len() == T && avx512_bf16() {
        // SAFETY: the CPU has AVX-512 BF16 (checked); `even` and `odd` hold 16 f32 and `out`
        // 32 u16 (the callers' lengths), read and written unaligned.
        unsafe { interleave16(even, odd, out) };
        return;
    }
    for (c, (&e, &o)) in even.iter().zip(odd).enumerate() {
        out[2 * c] = to_bf16(e);
        out[2 * c + 1] = to_bf16(o);
    }
}

#[cfg(target_arch = "x86_64")]
fn avx512_bf16() -> bool {
    std::arch::is_x86_feature_detected!("avx512bf16")
        && std::arch::is_x86_feature_detected!("avx512bw")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn convert32(src: &[f32], out: &mut [u16]) {
    use std::arch::x86_64::*;
    debug_assert!(src.len() == TK && out.len() == TK);
    // SAFETY: (the caller's) 32 f32 read, 32 u16 written, unaligned.
    unsafe {
        let lo = _mm512_loadu_ps(src.as_ptr());
        let hi = _mm512_loadu_ps(src.as_ptr().add(16));
        // Rounds to nearest even, as `to_bf16`; the second argument is the low half.
        let packed = _mm512_cvtne2ps_pbh(hi, lo);
        _mm512_storeu_si512(
            out.as_mut_ptr().cast(),
            std::mem::transmute::<__m512bh, __m512i>(packed),
        );
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn interleave16(even: &[f32], odd: &[f32], out: &mut [u16]) {
    use std::arch::x86_64::*;
    debug_assert!(even.len() == T && odd.len() == T && out.len() == 2 * T);
    // SAFETY: (the caller's) 16 + 16 f32 read, 32 u16 written, unaligned.
    unsafe {
        let e = _mm512_cvtepu16_epi32(std::mem::transmute::<__m256bh, __m256i>(
            _mm512_cvtneps_pbh(_mm512_loadu_ps(even.as_ptr())),
        ));
        let o = _mm512_cvtepu16_epi32(std::mem::transmute::<__m256bh, __m256i>(
            _mm512_cvtneps_pbh(_mm512_loadu_ps(odd.as_ptr())),
        ));
        let pairs = _mm512_or_si512(e, _mm512_slli_epi32(o, 16));
        _mm512_storeu_si512(out.as_mut_ptr().cast(), pairs);
    }
}

/// The palette-1 configuration of eight 16 x 64-byte tiles.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    fn new() -> Self {
        let mut c = [0u8; 64];
        c[0] = 1;
        for t in 0..8 {
            c[16 + 2 * t] = 64; // bytes a row
            c[48 + t] = T as u8; // rows
        }
        Self(c)
    }
}

/// The product of `a` (`m x k`) and packed `b` into `dst`: every 32 x 32 block of
/// the result as four tiles summed over the k blocks, 32 rows of `a` packed at a time; split
/// over rayon's threads by 32 rows when large (each thread configures its own tiles).
#[cfg(target_arch = "x86_64")]
fn tiles_product(
    a: Operand,
    b: &[u16],
    (m, n, k): (usize, usize, usize),
    (dst, stride): (&mut [f32], usize),
    accumulate: bool,
) {
    use rayon::prelude::*;
    let (nb, kb) = (blocks(n), k.div_ceil(TK));
    let row_pairs = blocks(m) / 2;
    let rows_per_task = 2 * T * stride;
    let task = |(pair, out): (usize, &mut [f32])| {
        let config = TileConfig::new();
        let mut packed = vec![0u16; 2 * kb * TILE];
        pack_lhs(a, (m, k), 2 * pair * T, &mut packed);
        let mut block = [0f32; 4 * T * T];
        // Whole 32-row blocks are read and written in place; the last, partial one through
        // `block`.
        let whole_rows = (2 * pair + 2) * T <= m;
        // SAFETY: `config` is a valid palette-1 configuration (64-byte aligned, 8 tiles of
        // 16 rows x 64 bytes); the tiles are released below on the same thread.
        unsafe { asm!("ldtilecfg [{0}]", in(reg) config.0.as_ptr(), options(nostack)) };
        for jp in 0..nb / 2 {
            let in_place = whole_rows && (2 * jp + 2) * T <= n;
            let (c, c_stride) = match in_place {
                true => (out[2 * jp * T..].as_mut_ptr(), stride),
                false => (block.as_mut_ptr(), 2 * T),
            };
            // The four result tiles: rows 0-15 and 16-31, columns 0-15 and 16-31 of the block.
            let c_at = |t: usize| (t / 2) * T * c_stride + (t % 2) * T;
            let a0 = packed.as_ptr();
            // SAFETY: offset within `packed` (2 * kb tiles).
            let a1 = unsafe { a0.add(kb * TILE) };
            let b0 = b[(2 * jp) * kb * TILE..].as_ptr();
            let b1 = b[(2 * jp + 1) * kb * TILE..].as_ptr();
            // SAFETY: tmm0-3 hold the four result tiles, loaded from (or stored to) `c`: in
            // place, 32 rows x 32 columns of `out` inside the matrix (`whole_rows`, the
            // columns checked), rows `stride` floats apart; otherwise `block` (32 x 32 f32,
            // rows 32 floats apart). Each k block loads two tiles of `a` (tmm4, tmm5)
            // and two of `b` (tmm6, tmm7), each 16 rows of 64 bytes at offset p * TILE of a
            // row block of kb such tiles (the packings' lengths).
            unsafe {
                if in_place && accumulate {
                    asm!(
                        "tileloadd tmm0, [{c0} + {s}]",
                        "tileloadd tmm1, [{c1} + {s}]",
                        "tileloadd tmm2, [{c2} + {s}]",
                        "tileloadd tmm3, [{c3} + {s}]",
                        c0 = in(reg) c.add(c_at(0)),
                        c1 = in(reg) c.add(c_at(1)),
                        c2 = in(reg) c.add(c_at(2)),
                        c3 = in(reg) c.add(c_at(3)),
                        s = in(reg) 4 * c_stride,
                        options(nostack),
                    );
                } else {
                    asm!(
                        "tilezero tmm0",
                        "tilezero tmm1",
                        "tilezero tmm2",
                        "tilezero tmm3",
                        options(nostack)
                    );
                }
                for p in 0..kb {
                    asm!(
                        "tileloadd tmm4, [{a0} + {s}]",
                        "tileloadd tmm5, [{a1} + {s}]",
                        "tileloadd tmm6, [{b0} + {s}]",
                        "tileloadd tmm7, [{b1} + {s}]",
                        "tdpbf16ps tmm0, tmm4, tmm6",
                        "tdpbf16ps tmm1, tmm4, tmm7",
                        "tdpbf16ps tmm2, tmm5, tmm6",
                        "tdpbf16ps tmm3, tmm5, tmm7",
                        a0 = in(reg) a0.add(p * TILE),
                        a1 = in(reg) a1.add(p * TILE),
                        b0 = in(reg) b0.add(p * TILE),
                        b1 = in(reg) b1.add(p * TILE),
                        s = in(reg) 2 * TK,
                        options(nostack),
                    );
                }
                asm!(
                    "tilestored [{c0} + {s}], tmm0",
                    "tilestored [{c1} + {s}], tmm1",
                    "tilestored [{c2} + {s}], tmm2",
                    "tilestored [{c3} + {s}], tmm3",
                    c0 = in(reg) c.add(c_at(0)),
                    c1 = in(reg) c.add(c_at(1)),
                    c2 = in(reg) c.add(c_at(2)),
                    c3 = in(reg) c.add(c_at(3)),
                    s = in(reg) 4 * c_stride,
                    options(nostack),
                );
            }
            if in_place {
                continue;
            }
            for r in 0..(2 * T).min(m - 2 * pair * T) {
                let c0 = 2 * jp * T;
                let cols = (2 * T).min(n.saturating_sub(c0));
                if cols == 0 {
                    break;
                }
                let row = &mut out[r * stride + c0..r * stride + c0 + cols];
                let sums = block[r * 2 * T..r * 2 * T + cols].iter().copied();
                match accumulate {
                    true => row.iter_mut().zip(sums).for_each(|(d, s)| *d += s),
                    false => row.iter_mut().zip(sums).for_each(|(d, s)| *d = s),
                }
            }
        }
        // SAFETY: releases this thread's tile state configured above.
        unsafe { asm!("tilerelease", options(nostack)) };
    };
    // Split over the cores only when each gets several row blocks: waking rayon's threads for
    // two tasks (a batch of 64 rows) made an MLP's step slower than one thread.
    let big = m >= 8 * T && m * n * k >= 128 * 128 * 128 && rayon::current_thread_index().is_none();
    if big {
        dst.par_chunks_mut(rows_per_task)
            .enumerate()
            .take(row_pairs)
            .for_each(task);
    } else {
        dst.chunks_mut(rows_per_task)
            .enumerate()
            .take(row_pairs)
            .for_each(task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `rows x cols` operand held in `v` row by row, or (`transposed`) column by column.
    fn strided(v: &[f32], rows: usize, cols: usize, transposed: bool) -> Operand<'_> {
        match transposed {
            true => (v, 1, rows),
            false => (v, cols, 1),
        }
    }

    /// Pseudo-random values in [-1, 1).
    fn values(n: usize, seed: usize) -> Vec<f32> {
        let mut state = (seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// Both paths against the definition (the rounded operands' products summed in f64), for
    /// shapes with partial tiles and blocks, one row or column, transposed operands, written
    /// over and accumulated onto, on one thread and above the threshold on every core.
    #[test]
    fn both_paths_compute_the_rounded_operands_product() {
        let paths: &[bool] = match amx_available() {
            true => &[true, false],
            false => {
                eprintln!("no AMX on this CPU: only the rounding path is checked");
                &[false]
            }
        };
        for &tiles in paths {
            for (m, n, k, lhs_t, rhs_t, accumulate) in [
                (1, 1, 1, false, false, true),
                (7, 13, 5, false, true, false),
                (64, 128, 784, false, false, true),
                (64, 128, 784, false, false, false),
                (33, 511, 129, true, false, true),
                (200, 200, 200, true, true, false),
                (50, 17, 70, false, false, true),
                (12, 40, 0, false, false, false),
            ] {
                let (lhs, rhs) = (values(m * k, 1), values(k * n, 2));
                let (l, r) = (strided(&lhs, m, k, lhs_t), strided(&rhs, k, n, rhs_t));
                // dst rows 3 wider than the product: those columns stay untouched.
                let stride = n + 3;
                let mut dst = values(m * stride, 3);
                let before = dst.clone();
                product(tiles, (m, n, k), (&mut dst, stride), l, r, accumulate);
                for i in 0..m {
                    for j in 0..stride {
                        let got = dst[i * stride + j];
                        if j >= n {
                            assert_eq!(got, before[i * stride + j], "outside the product");
                            continue;
                        }
                        let start = if accumulate {
                            before[i * stride + j] as f64
                        } else {
                            0.0
                        };
                        let want = start
                            + (0..k)
                                .map(|p| {
                                    round_bf16(l.0[i * l.1 + p * l.2]) as f64
                                        * round_bf16(r.0[p * r.1 + j * r.2]) as f64
                                })
                                .sum::<f64>();
                        assert!(
                            (got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
                            "tiles {tiles}, [{m}x{k}]·[{k}x{n}] at ({i}, {j}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    /// A prepared right operand gives the products `matmul_bf16` gives, bit for bit: on tiles
    /// (130 deep, where the CPU has AMX) and rounded once (32 deep, or no AMX), either operand
    /// transposed.
    #[test]
    fn a_packed_right_operand_gives_the_same_products() {
        for (m, n, k) in [(40, 70, 130), (40, 70, 32), (3, 5, 1)] {
            let (lhs, rhs) = (values(m * k, 4), values(k * n, 5));
            for (lhs_t, rhs_t) in [(false, false), (true, true)] {
                let (l, r) = (strided(&lhs, m, k, lhs_t), strided(&rhs, k, n, rhs_t));
                let packed = PackedRhs::new(r, k, n);
                let mut want = values(m * n, 6);
                let mut got = want.clone();
                matmul_bf16((m, n, k), (&mut want, n), l, r, true);
                matmul_bf16_packed(m, (&mut got, n), l, &packed, true);
                assert_eq!(got, want, "[{m}x{k}]·[{k}x{n}], transposed {lhs_t}");
            }
        }
    }

    #[test]
    fn rounding_is_to_nearest_even_and_keeps_nan_and_infinity() {
        assert_eq!(round_bf16(1.0), 1.0);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: to the even one, 1.
        assert_eq!(round_bf16(1.0 + 2f32.powi(-8)), 1.0);
        assert_eq!(round_bf16(1.0 + 3.0 * 2f32.powi(-8)), 1.0 + 2f32.powi(-6));
        assert_eq!(round_bf16(f32::INFINITY), f32::INFINITY);
        assert!(round_bf16(f32::NAN).is_nan());
        // A NaN whose payload is in the low bits only stays NaN, not infinity.
        assert!(round_bf16(f32::from_bits(0x7F80_0001)).is_nan());
        // The branch-free loop rounds as the scalar function.
        let mut edge = vec![
            1.0 + 2f32.powi(-8),
            1.0 + 3.0 * 2f32.powi(-8),
            -2.5e-3,
            f32::MAX,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::from_bits(0x7F80_0001),
            f32::NAN,
            1e-40,
            0.0,
        ];
        let want: Vec<u32> = edge.iter().map(|&x| round_bf16(x).to_bits()).collect();
        round_all(&mut edge);
        for (got, want) in edge.iter().zip(&want) {
            match f32::from_bits(*want).is_nan() {
                true => assert!(got.is_nan()),
                false => assert_eq!(got.to_bits(), *want, "{got}"),
            }
        }
        // The vector conversion rounds as the scalar one.
        let src: Vec<f32> = (0..TK).map(|i| 1.0 + i as f32 * 2f32.powi(-9)).collect();
        let mut fast = vec![0u16; TK];
        convert(&src, &mut fast);
        let slow: Vec<u16> = src.iter().map(|&x| to_bf16(x)).collect();
        assert_eq!(fast, slow);
        let (even, odd) = (&src[..T], &src[T..]);
        let mut pairs = vec![0u16; 2 * T];
        interleave(even, odd, &mut pairs);
        for c in 0..T {
            assert_eq!(
                [pairs[2 * c], pairs[2 * c + 1]],
                [to_bf16(even[c]), to_bf16(odd[c])]
            );
        }
    }
}
