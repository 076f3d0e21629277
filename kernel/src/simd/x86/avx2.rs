//! AVX2 + FMA dot products of weight rows with quantized activation rows.
//!
//! Integer products use `maddubs` (u8 × i8 → pairwise-summed i16): weights are made unsigned (K-quant levels,
//! nibbles) or, for signed pairs, the sign of one operand is moved onto the other. Every bound that keeps the i16
//! pairs from saturating is noted where it matters. Per-block f32 scales multiply the i32 sums with FMA into an
//! 8-lane accumulator that is summed once per row.

use core::arch::x86_64::*;

use half::f16;

use super::Avx2;
use crate::quant::kquant::{min_term, unpack_scale_mins};
use crate::quant::{
    BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_1, BlockQ5_K, BlockQ6_K, BlockQ8_0, BlockQ8_1, BlockQ8_K,
};

entry_points!(Avx2);

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load32<T: bytemuck::Pod>(v: &[T; 32]) -> __m256i {
    const { assert!(size_of::<T>() == 1) };
    // SAFETY: `v` is 32 readable bytes; the unaligned load has no alignment requirement.
    unsafe { _mm256_loadu_si256(v.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load16(v: &[u8; 16]) -> __m128i {
    // SAFETY: `v` is 16 readable bytes; the unaligned load has no alignment requirement.
    unsafe { _mm_loadu_si128(v.as_ptr().cast()) }
}

/// Splits 32 bytes (as in a slice of i8/u8) into 32-element arrays.
#[inline]
fn chunks32<T>(v: &[T]) -> &[[T; 32]] {
    v.as_chunks::<32>().0
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn f16_to_f32(h: f16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h.to_bits()))))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
}

/// Σ of i8 × i8 products in 8 i32 lanes. Requires |x|, |y| <= 127 or one of them > -128 so pairs fit i16.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_i8(x: __m256i, y: __m256i) -> __m256i {
    // |x| · (y with x's sign): u8 × i8 for maddubs, same products.
    let products = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
    _mm256_madd_epi16(products, _mm256_set1_epi16(1))
}

/// Σ of u8 × i8 products in 8 i32 lanes (u8 <= 63 keeps the i16 pairs from saturating).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_u8_i8(x: __m256i, y: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1))
}

/// A legacy block's 16 nibble bytes as 32 bytes: values 0..16 (low nibbles) then 16..32 (high nibbles).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn unpack_nibbles(qs: &[u8; 16]) -> __m256i {
    let bytes = load16(qs);
    let low = _mm_set1_epi8(0x0f);
    _mm256_set_m128i(
        _mm_and_si128(_mm_srli_epi16::<4>(bytes), low),
        _mm_and_si128(bytes, low),
    )
}

/// 0x10 in byte `i` where bit `i` of the little-endian `qh` is set: the fifth bit of Q5_0/Q5_1 values.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn fifth_bits(qh: [u8; 4]) -> __m256i {
    // Byte i takes qh byte i/8, is ORed with every bit but bit i%8 set, and is all-ones exactly when bit i%8 was set.
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(i32::from_le_bytes(qh)),
        _mm256_setr_epi64x(0, 0x0101_0101_0101_0101, 0x0202_0202_0202_0202, 0x0303_0303_0303_0303),
    );
    let others = _mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
    _mm256_and_si256(
        _mm256_cmpeq_epi8(others, _mm256_set1_epi64x(-1)),
        _mm256_set1_epi8(0x10),
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (w, a) in w.iter().zip(a) {
        let d = _mm256_set1_ps(f16_to_f32(w.d) * f16_to_f32(a.d));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(load32(&w.qs), load32(&a.qs))), acc);
    }
    hsum_ps(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q4_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (w, a) in w.iter().zip(a) {
        let d = _mm256_set1_ps(f16_to_f32(w.d) * f16_to_f32(a.d));
        let q = _mm256_sub_epi8(unpack_nibbles(&w.qs), _mm256_set1_epi8(8));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(q, load32(&a.qs))), acc);
    }
    hsum_ps(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q5_0(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (w, a) in w.iter().zip(a) {
        let d = _mm256_set1_ps(f16_to_f32(w.d) * f16_to_f32(a.d));
        let q = _mm256_or_si256(unpack_nibbles(&w.qs), fifth_bits(w.qh));
        let q = _mm256_sub_epi8(q, _mm256_set1_epi8(16));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(q, load32(&a.qs))), acc);
    }
    hsum_ps(acc)
}

/// Shared by Q4_1 and Q5_1: unsigned levels `q` with scale `d` and minimum `m` against one Q8_0 block. Adds the
/// scaled integer dot to `acc` and returns the minimum term `m · s`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn with_min(acc: &mut __m256, q: __m256i, d: f16, m: f16, a: &BlockQ8_1) -> f32 {
    let dot = _mm256_cvtepi32_ps(dot_u8_i8(q, load32(&a.qs)));
    *acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_to_f32(d) * f16_to_f32(a.d)), dot, *acc);
    f16_to_f32(m) * f16_to_f32(a.s)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q4_1(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0.0f32;
    for (w, a) in w.iter().zip(a) {
        mins += with_min(&mut acc, unpack_nibbles(&w.qs), w.d, w.m, a);
    }
    hsum_ps(acc) + mins
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q5_1(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0.0f32;
    for (w, a) in w.iter().zip(a) {
        let q = _mm256_or_si256(unpack_nibbles(&w.qs), fifth_bits(w.qh));
        mins += with_min(&mut acc, q, w.d, w.m, a);
    }
    hsum_ps(acc) + mins
}

/// Q4_K and Q5_K differ only in how the 32 levels of a 64-element chunk's two sub-blocks are formed; `levels(c)`
/// returns them (sub-block 2c, sub-block 2c+1), each at most 31.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scale_min_block(
    d: f16,
    dmin: f16,
    packed: &[u8; 12],
    a: &BlockQ8_K,
    levels: impl Fn(usize) -> (__m256i, __m256i),
) -> (__m256, f32) {
    let (scales, mins) = unpack_scale_mins(packed);
    let y = chunks32(&a.qs);
    let mut sum = _mm256_setzero_si256();
    for c in 0..4 {
        let (lo, hi) = levels(c);
        // Levels <= 31 and |y| <= 127: each i16 pair is at most 7874.
        let p_lo = _mm256_maddubs_epi16(lo, load32(&y[2 * c]));
        let p_hi = _mm256_maddubs_epi16(hi, load32(&y[2 * c + 1]));
        sum = _mm256_add_epi32(
            sum,
            _mm256_madd_epi16(p_lo, _mm256_set1_epi16(i16::from(scales[2 * c]))),
        );
        sum = _mm256_add_epi32(
            sum,
            _mm256_madd_epi16(p_hi, _mm256_set1_epi16(i16::from(scales[2 * c + 1]))),
        );
    }
    let d = _mm256_set1_ps(f16_to_f32(d) * a.d);
    let min = f16_to_f32(dmin) * a.d * min_term(&mins, a) as f32;
    (_mm256_mul_ps(d, _mm256_cvtepi32_ps(sum)), min)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k(w: &[BlockQ4_K], a: &[BlockQ8_K]) -> f32 {
    let m4 = _mm256_set1_epi8(0x0f);
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0.0f32;
    for (w, a) in w.iter().zip(a) {
        let qs = chunks32(&w.qs);
        let (block, min) = scale_min_block(w.d, w.dmin, &w.scales, a, |c| {
            let q = load32(&qs[c]);
            (_mm256_and_si256(q, m4), _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4))
        });
        acc = _mm256_add_ps(acc, block);
        mins += min;
    }
    hsum_ps(acc) - mins
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q5_k(w: &[BlockQ5_K], a: &[BlockQ8_K]) -> f32 {
    let m4 = _mm256_set1_epi8(0x0f);
    let one = _mm256_set1_epi8(1);
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0.0f32;
    for (w, a) in w.iter().zip(a) {
        let qs = chunks32(&w.qs);
        let qh = load32(&w.qh);
        // Bit j of qh[l] is the fifth bit of sub-block j's element l: shift it to bit 0 of each byte (16-bit shifts
        // bring neighbouring bits into the byte's top, which the mask drops), then to bit 4.
        let fifth = |j: usize| {
            let bit = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(j as i32)), one);
            _mm256_slli_epi16::<4>(bit)
        };
        let (block, min) = scale_min_block(w.d, w.dmin, &w.scales, a, |c| {
            let q = load32(&qs[c]);
            let lo = _mm256_or_si256(_mm256_and_si256(q, m4), fifth(2 * c));
            let hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(q), m4), fifth(2 * c + 1));
            (lo, hi)
        });
        acc = _mm256_add_ps(acc, block);
        mins += min;
    }
    hsum_ps(acc) - mins
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k(w: &[BlockQ6_K], a: &[BlockQ8_K]) -> f32 {
    let m4 = _mm256_set1_epi8(0x0f);
    let m2 = _mm256_set1_epi8(0x03);
    let mut acc = _mm256_setzero_ps();
    let mut offsets = 0.0f32;
    for (w, a) in w.iter().zip(a) {
        let ql = chunks32(&w.ql);
        let qh = chunks32(&w.qh);
        let y = chunks32(&a.qs);
        let mut sum = _mm256_setzero_si256();
        for h in 0..2 {
            let high_bits = load32(&qh[h]);
            for k in 0..4 {
                let low = load32(&ql[2 * h + k % 2]);
                let low = if k < 2 {
                    _mm256_and_si256(low, m4)
                } else {
                    _mm256_and_si256(_mm256_srli_epi16::<4>(low), m4)
                };
                let high = _mm256_and_si256(_mm256_srl_epi16(high_bits, _mm_cvtsi32_si128(2 * k as i32)), m2);
                // Unsigned levels 0..=63 (the -32 offset is applied below through the activation sums).
                let q = _mm256_or_si256(low, _mm256_slli_epi16::<4>(high));
                // q <= 63 and |y| <= 127: each i16 pair is at most 16002.
                let products = _mm256_maddubs_epi16(q, load32(&y[4 * h + k]));
                // The low 128 bits hold group 8h+2k, the high 128 bits group 8h+2k+1.
                let g = 8 * h + 2 * k;
                let scales = _mm256_set_m128i(
                    _mm_set1_epi16(i16::from(w.scales[g + 1])),
                    _mm_set1_epi16(i16::from(w.scales[g])),
                );
                sum = _mm256_add_epi32(sum, _mm256_madd_epi16(products, scales));
            }
        }
        let d = f16_to_f32(w.d) * a.d;
        let offset: i32 = (0..16).map(|g| i32::from(w.scales[g]) * i32::from(a.bsums[g])).sum();
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sum), acc);
        offsets += d * (32 * offset) as f32;
    }
    hsum_ps(acc) - offsets
}
