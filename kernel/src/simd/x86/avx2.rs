//! AVX2 + FMA integer dot products: the shared kernels of `int8_kernels!` (in `int8.rs`) over `maddubs`/`madd`
//! products.

use core::arch::x86_64::*;

use super::Avx2;

int8_kernels!(Avx2, "avx2,fma,f16c");

/// Σ of i8 × i8 products in 8 i32 lanes. Requires |x|, |y| <= 127 or one of them > -128 so pairs fit i16.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_i8(x: SignedLevels, y: __m256i) -> __m256i {
    // |x| · (y with x's sign): u8 × i8 for maddubs, same products.
    let products = _mm256_maddubs_epi16(x.abs, _mm256_sign_epi8(y, x.levels));
    _mm256_madd_epi16(products, _mm256_set1_epi16(1))
}

/// Σ of u8 × i8 products in 8 i32 lanes (u8 <= 63 keeps the i16 pairs from saturating).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_u8_i8(x: __m256i, y: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1))
}

/// A K-quant block's 8 chunks of 32 levels (unsigned, at most 63) and each chunk's scales in i16 lanes (one scale
/// for a Q4_K/Q5_K sub-block; Q6_K's two 16-element groups in the low and high 128 bits).
#[derive(Clone, Copy)]
struct KChunks {
    levels: [__m256i; 8],
    scales: [__m256i; 8],
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn k_chunks(levels: [__m256i; 8], scales: [__m256i; 8]) -> KChunks {
    KChunks { levels, scales }
}

/// `Σ_c scales_c · levels_c · y_c` in 8 i32 lanes (lane i: elements 4i..4i+4 of every chunk).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn k_chunks_dot(q: KChunks, y: &[i8; 256]) -> __m256i {
    let mut sum = _mm256_setzero_si256();
    for ((levels, scales), y) in q.levels.iter().zip(&q.scales).zip(chunks32(y)) {
        // Levels <= 63 and |y| <= 127: each i16 pair is at most 16002.
        let pairs = _mm256_maddubs_epi16(*levels, load32(y));
        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(pairs, *scales));
    }
    sum
}
