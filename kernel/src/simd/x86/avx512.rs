//! AVX-512 VNNI integer dot products: the shared kernels of `int8_kernels!` (in `int8.rs`) with `vpdpbusd` for byte
//! products and K-quant chunks two to a 512-bit vector (`vpmaddubsw` + `vpdpwssd`), with AVX-512's 32 vector
//! registers. They compute the same integers in the same lanes as the AVX2 primitives, so the two ISAs give the same
//! bits.

use core::arch::x86_64::*;

use super::Avx512;

int8_kernels!(Avx512, "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni");

/// Σ of i8 × i8 products in 8 i32 lanes. Requires what AVX2's does: the sign move cannot negate -128.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn dot_i8(x: SignedLevels, y: __m256i) -> __m256i {
    // |x| · (y with x's sign): the u8 × i8 form `vpdpbusd` takes, same products.
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), x.abs, _mm256_sign_epi8(y, x.levels))
}

/// Σ of u8 × i8 products in 8 i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn dot_u8_i8(x: __m256i, y: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), x, y)
}

/// A K-quant block's 8 chunks of 32 levels (unsigned, at most 63) and their i16 scales, two chunks per 512-bit
/// vector: chunk 2p in the low 256 bits, chunk 2p+1 in the high.
#[derive(Clone, Copy)]
struct KChunks {
    levels: [__m512i; 4],
    scales: [__m512i; 4],
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn k_chunks(levels: [__m256i; 8], scales: [__m256i; 8]) -> KChunks {
    let mut chunks = KChunks {
        levels: [_mm512_setzero_si512(); 4],
        scales: [_mm512_setzero_si512(); 4],
    };
    for p in 0..4 {
        chunks.levels[p] = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(levels[2 * p]), levels[2 * p + 1]);
        chunks.scales[p] = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(scales[2 * p]), scales[2 * p + 1]);
    }
    chunks
}

/// `Σ_c scales_c · levels_c · y_c` in 8 i32 lanes (lane i: elements 4i..4i+4 of every chunk), the same integers as
/// AVX2's: the two halves of the 512-bit sum hold the even and the odd chunks' lanes, added at the end.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn k_chunks_dot(q: KChunks, y: &[i8; 256]) -> __m256i {
    let mut sum = _mm512_setzero_si512();
    for ((levels, scales), y) in q.levels.iter().zip(&q.scales).zip(y.as_chunks::<64>().0) {
        // SAFETY: `y` is 64 readable bytes; the unaligned load has no alignment requirement.
        let y = unsafe { _mm512_loadu_si512(y.as_ptr().cast()) };
        // Levels <= 63 and |y| <= 127: each i16 pair is at most 16002.
        sum = _mm512_dpwssd_epi32(sum, _mm512_maddubs_epi16(*levels, y), *scales);
    }
    _mm256_add_epi32(_mm512_castsi512_si256(sum), _mm512_extracti64x4_epi64::<1>(sum))
}
