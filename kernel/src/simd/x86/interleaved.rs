//! The AVX-512 VNNI kernels over weight rows grouped sixteen at a time (`quant::grouped`): the matmul of Q4_K, Q6_K,
//! Q4_1 and Q8_0 weights with AVX-512, for one token (a decode step) or several (a prefill).
//!
//! The one-row kernels (`int8.rs`) unpack a row's block and finish every (block, token) pair on its own: eight i32
//! lanes of one row, a float epilogue, and a horizontal sum at the row's end. Here the sixteen rows of a group sit in
//! the sixteen lanes of one vector instead: `vpdpbusd` multiplies four levels of each of the sixteen rows with the
//! same four activation bytes (broadcast), so every instruction of the epilogue (sub-block scales, super-block
//! scales, the minimums or offsets) serves sixteen outputs, and nothing is ever summed across lanes. Levels are
//! unpacked from the group block as they are used, and the group block is read front to back, once per tile of
//! tokens. Whether a decode step also asks for lines ahead depends on the CPU: it measured much faster on an Intel
//! Xeon and much slower on an AMD EPYC (see [`Avx512::prefetches_weights`]); a prefill re-reads each group block from
//! cache for every tile of tokens and asks for none (asking measured 5 % slower).
//!
//! The K-quants are "levels times a scale per sub-block, minus a correction from the activations' 16-element sums":
//! Q4_K has 8 sub-blocks of 32 with a minimum each (`- dmin · Σ_j min_j · sum_j`); Q6_K has 16 of 16 with levels
//! offset by 32 (`- 32·d · Σ_g scale_g · sum_g`). The arithmetic of one output is fixed — the same for every token
//! whatever the number of tokens and the tile it falls in — so a prompt's logits do not depend on how its tokens are
//! batched, and a decode step computes what a prefill of the same token would:
//! - per sub-block `s`: the exact integer `Σ level · y`;
//! - per block: `main = Σ_s (Σ level · y) · scale_s` in f32, fused multiply-adds in sub-block order (exact while it
//!   stays below 2^24); the exact integer `corr = Σ_g weight_g · sum_g` over the sixteen 16-element sums;
//! - `acc += main · (d · y.d)` and `acc_corr += corr · (corr_scale · y.d)`, both fused, block after block;
//! - the output `acc - acc_corr`.
//!
//! For Q4_K this is what llama.cpp's row-interleaved x86 kernels compute (their main sum is an i32, which the f32 sum
//! here equals exactly while below 2^24), which keeps hearth's greedy continuations close to llama.cpp's.
//!
//! Q4_1 (32-element blocks, `d · level + m`, against Q8_1): per block the exact integer `Σ level · y`, then
//! `acc += Σ · (d · y.d)` and `acc += m · y.s`, both fused into one accumulator in the scalar reference's order. Q8_0
//! (levels stored offset by 128 to unsigned bytes, against Q8_0 activations with their level sums) is the same loop,
//! each block's exact integer sum less `128 · Σ y`.

use core::arch::x86_64::*;

use bytemuck::Pod;
use half::f16;

use super::Avx512;
use super::avx512::f16_to_f32;
use crate::quant::grouped::{GROUP_ROWS, GroupQ4_1, GroupQ4_K, GroupQ6_K, GroupQ8_0, Grouped};
use crate::quant::{BlockQ4_1, BlockQ4_K, BlockQ6_K, BlockQ8_0, BlockQ8_0Sum, BlockQ8_1, BlockQ8_K};

/// A grouped weight type (`quant::grouped`) with its AVX-512 VNNI kernel.
pub trait GroupDots: Grouped {
    /// The activation block type the kernel takes.
    type Act;

    /// The sixteen rows of a group (its group blocks `group`) against `T` activation rows with as many blocks:
    /// `out[t][r]`, the dot product of row `r` with activation row `t`; each token's the same bits whatever `T`.
    /// `stream`: the group is read from memory this once (a decode step), so the kernel asks for lines ahead.
    fn group_dots<const T: usize>(
        token: Avx512,
        group: &[Self::Group],
        y: [&[Self::Act]; T],
        stream: bool,
    ) -> [[f32; GROUP_ROWS]; T];
}

impl GroupDots for BlockQ4_K {
    type Act = BlockQ8_K;

    fn group_dots<const T: usize>(
        _: Avx512,
        group: &[GroupQ4_K],
        y: [&[BlockQ8_K]; T],
        stream: bool,
    ) -> [[f32; GROUP_ROWS]; T] {
        // SAFETY: an `Avx512` token exists only after the CPU features the kernel is compiled for were detected.
        unsafe { q4_k_grouped(group, y, stream) }
    }
}

impl GroupDots for BlockQ6_K {
    type Act = BlockQ8_K;

    fn group_dots<const T: usize>(
        _: Avx512,
        group: &[GroupQ6_K],
        y: [&[BlockQ8_K]; T],
        stream: bool,
    ) -> [[f32; GROUP_ROWS]; T] {
        // SAFETY: an `Avx512` token exists only after the CPU features the kernel is compiled for were detected.
        unsafe { q6_k_grouped(group, y, stream) }
    }
}

impl GroupDots for BlockQ4_1 {
    type Act = BlockQ8_1;

    fn group_dots<const T: usize>(
        _: Avx512,
        group: &[GroupQ4_1],
        y: [&[BlockQ8_1]; T],
        stream: bool,
    ) -> [[f32; GROUP_ROWS]; T] {
        // SAFETY: an `Avx512` token exists only after the CPU features the kernel is compiled for were detected.
        unsafe { q4_1_grouped(group, y, stream) }
    }
}

impl GroupDots for BlockQ8_0 {
    type Act = BlockQ8_0Sum;

    fn group_dots<const T: usize>(
        _: Avx512,
        group: &[GroupQ8_0],
        y: [&[BlockQ8_0Sum]; T],
        stream: bool,
    ) -> [[f32; GROUP_ROWS]; T] {
        // SAFETY: an `Avx512` token exists only after the CPU features the kernel is compiled for were detected.
        unsafe { q8_0_grouped(group, y, stream) }
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn load<T: Pod>(v: &[T; GROUP_ROWS]) -> __m512i {
    const { assert!(size_of::<[T; GROUP_ROWS]>() == 64) };
    // SAFETY: `v` is 64 readable bytes; the unaligned load has no alignment requirement.
    unsafe { _mm512_loadu_si512(v.as_ptr().cast()) }
}

/// Stores each token's sixteen outputs.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn store<const T: usize>(dots: [__m512; T]) -> [[f32; GROUP_ROWS]; T] {
    let mut out = [[0.0f32; GROUP_ROWS]; T];
    for t in 0..T {
        // SAFETY: `out[t]` is 64 writable bytes; the unaligned store has no alignment requirement.
        unsafe { _mm512_storeu_ps(out[t].as_mut_ptr(), dots[t]) };
    }
    out
}

/// Sixteen f16 values as f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn load_f16(v: &[f16; GROUP_ROWS]) -> __m512 {
    // SAFETY: `v` is 32 readable bytes; the unaligned load has no alignment requirement.
    _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(v.as_ptr().cast()) })
}

/// Sixteen bytes, zero- (`u8`) or sign-extended (`i8`) to i32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn widen<T: Pod>(v: &[T; GROUP_ROWS], signed: bool) -> __m512i {
    const { assert!(size_of::<[T; GROUP_ROWS]>() == 16) };
    // SAFETY: `v` is 16 readable bytes; the unaligned load has no alignment requirement.
    let bytes = unsafe { _mm_loadu_si128(v.as_ptr().cast()) };
    if signed {
        _mm512_cvtepi8_epi32(bytes)
    } else {
        _mm512_cvtepu8_epi32(bytes)
    }
}

/// `Σ level · y` of one quad of each of the sixteen rows, added to `sum`: `levels` unsigned, `y4` four signed
/// activations.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn add_quad(sum: __m512i, levels: __m512i, y4: [u8; 4]) -> __m512i {
    _mm512_dpbusd_epi32(sum, levels, _mm512_set1_epi32(i32::from_le_bytes(y4)))
}

/// How far ahead of the group block being read a streaming call asks for lines (on CPUs whose token says so, see
/// [`Avx512::prefetches_weights`]), in two stages: lines `L1_AHEAD` bytes on into the L1 cache, and lines `L2_AHEAD`
/// bytes on into L2 only, so that more of a core's misses are in flight than its L1 fill buffers alone allow.
/// Qwen2.5-Coder Q4_K_M tg64 on the Intel Xeon, alternated: L1 alone at 1 KiB 18.8–19.0 t/s, 2 KiB 19.6–20.4, 4 KiB
/// 17.3–18.4; then (another day) L1 at 2 KiB 22.3–23.2, with L2 at 4 KiB 24.1–25.0 (6 KiB as fast, 8–16 KiB 23.9–24.6;
/// L2 alone 22.6–23.1; Q8_0 +3 %, SmolLM2 Q4_1 +2 %).
const L1_AHEAD: usize = 2048;
const L2_AHEAD: usize = 4096;

/// Asks for the cache lines `L1_AHEAD` and `L2_AHEAD` bytes after those of `g` (the next group blocks of the same
/// rows, read next).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn prefetch_ahead<G>(g: &G) {
    let here = (g as *const G).cast::<i8>();
    // A prefetch is only a hint: it cannot fault, whatever the address (past the matrix's end included).
    for line in (0..size_of::<G>()).step_by(64) {
        _mm_prefetch::<_MM_HINT_T0>(here.wrapping_add(L1_AHEAD + line));
        _mm_prefetch::<_MM_HINT_T1>(here.wrapping_add(L2_AHEAD + line));
    }
}

/// Block `b` of each activation row.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn column<'y, A, const T: usize>(y: [&'y [A]; T], b: usize) -> [&'y A; T] {
    // A loop, not `array::map`: a closure handed to `map` is compiled without this function's target features and
    // is not inlined into it.
    let mut column = [&y[0][b]; T];
    for t in 1..T {
        column[t] = &y[t][b];
    }
    column
}

/// The K-quants' epilogue of one block, `scales` being `[d, corr_scale]`: `acc[0] += main · (d · y.d)` and
/// `acc[1] += corr · (corr_scale · y.d)`, both fused.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn k_block_end(acc: &mut [__m512; 2], main: __m512, corr: __m512i, scales: [__m512; 2], y_d: f32) {
    let [d, corr_scale] = scales;
    let y_d = _mm512_set1_ps(y_d);
    acc[0] = _mm512_fmadd_ps(main, _mm512_mul_ps(d, y_d), acc[0]);
    acc[1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(corr), _mm512_mul_ps(corr_scale, y_d), acc[1]);
}

/// The K-quants' outputs from their two accumulators: `acc[t][0] - acc[t][1]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn k_outputs<const T: usize>(acc: [[__m512; 2]; T]) -> [[f32; GROUP_ROWS]; T] {
    let mut dots = [_mm512_setzero_ps(); T];
    for t in 0..T {
        dots[t] = _mm512_sub_ps(acc[t][0], acc[t][1]);
    }
    store(dots)
}

/// `Σ_k weights_k · (sum_2k, sum_2k+1)` over a Q8_K block's sixteen 16-element sums, `weights(k)` the sixteen rows'
/// i16 pairs.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn k_corrections<const T: usize>(weights: impl Fn(usize) -> __m512i, y: [&BlockQ8_K; T]) -> [__m512i; T] {
    let mut corr = [_mm512_setzero_si512(); T];
    for k in 0..8 {
        let weights = weights(k);
        for t in 0..T {
            let [lo, hi] = [y[t].bsums[2 * k], y[t].bsums[2 * k + 1]];
            let pair = i32::from(lo as u16) | (i32::from(hi as u16) << 16);
            // |weight| <= 128 and |sum| <= 2032: no pair sum overflows.
            corr[t] = _mm512_dpwssd_epi32(corr[t], weights, _mm512_set1_epi32(pair));
        }
    }
    corr
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q4_k_grouped<const T: usize>(group: &[GroupQ4_K], y: [&[BlockQ8_K]; T], stream: bool) -> [[f32; GROUP_ROWS]; T] {
    let m4 = _mm512_set1_epi8(0x0f);
    let mut acc = [[_mm512_setzero_ps(); 2]; T];
    for (b, g) in group.iter().enumerate() {
        if stream {
            prefetch_ahead(g);
        }
        let yb = column(y, b);
        let mut main = [_mm512_setzero_ps(); T];
        // Sub-blocks 2c (low nibbles) and 2c + 1 (high nibbles) together, then scaled in sub-block order.
        let words: &[[[u32; GROUP_ROWS]; 8]; 4] = bytemuck::cast_ref(&g.qs);
        for (c, words) in words.iter().enumerate() {
            let mut low = [_mm512_setzero_si512(); T];
            let mut high = [_mm512_setzero_si512(); T];
            for (q, words) in words.iter().enumerate() {
                let words = load(words);
                let (lo, hi) = (
                    _mm512_and_si512(words, m4),
                    _mm512_and_si512(_mm512_srli_epi16::<4>(words), m4),
                );
                for t in 0..T {
                    // Quads 16c + q (sub-block 2c) and 16c + 8 + q (sub-block 2c + 1).
                    let y4: &[[[[u8; 4]; 8]; 2]; 4] = bytemuck::cast_ref(&yb[t].qs);
                    // Levels <= 15 and |y| <= 127: no i32 sum over a block can overflow.
                    low[t] = add_quad(low[t], lo, y4[c][0][q]);
                    high[t] = add_quad(high[t], hi, y4[c][1][q]);
                }
            }
            let scale_lo = _mm512_cvtepi32_ps(widen(&g.scales[2 * c], false));
            let scale_hi = _mm512_cvtepi32_ps(widen(&g.scales[2 * c + 1], false));
            for t in 0..T {
                main[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(low[t]), scale_lo, main[t]);
                main[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(high[t]), scale_hi, main[t]);
            }
        }
        // The minimum of sub-block k weighs both of its 16-element sums.
        let corr = k_corrections(
            |k| {
                let min = widen(&g.mins[k], false);
                _mm512_or_si512(min, _mm512_slli_epi32::<16>(min))
            },
            yb,
        );
        let scales = [load_f16(&g.d), load_f16(&g.dmin)];
        for t in 0..T {
            k_block_end(&mut acc[t], main[t], corr[t], scales, yb[t].d);
        }
    }
    k_outputs(acc)
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q6_k_grouped<const T: usize>(group: &[GroupQ6_K], y: [&[BlockQ8_K]; T], stream: bool) -> [[f32; GROUP_ROWS]; T] {
    let (m4, m2) = (_mm512_set1_epi8(0x0f), _mm512_set1_epi8(0x03));
    let mut acc = [[_mm512_setzero_ps(); 2]; T];
    for (b, g) in group.iter().enumerate() {
        if stream {
            prefetch_ahead(g);
        }
        let yb = column(y, b);
        let mut main = [_mm512_setzero_ps(); T];
        let scales: &[[[[i8; GROUP_ROWS]; 2]; 4]; 2] = bytemuck::cast_ref(&g.scales);
        // 16-element group 8h + 2k + j (quads 32h + 8k + 4j..): the low (k < 2) or high nibbles of `ql` words
        // 16h + 8(k%2) + 4j.., and bits 2k..2k + 2 of each byte of `qh` words 8h + 4j...
        for (h, levels) in g.halves.iter().enumerate() {
            for k in 0..4 {
                let nibble_shift = _mm_cvtsi32_si128(if k < 2 { 0 } else { 4 });
                let top_shift = _mm_cvtsi32_si128(2 * k as i32);
                for j in 0..2 {
                    let quarter = &levels.quarters[j];
                    let ql = if k % 2 == 0 { &quarter.ql } else { &levels.ql_next[j] };
                    let mut sums = [_mm512_setzero_si512(); T];
                    for q in 0..4 {
                        let low = _mm512_and_si512(_mm512_srl_epi16(load(&ql[q]), nibble_shift), m4);
                        let top = _mm512_and_si512(_mm512_srl_epi16(load(&quarter.qh[q]), top_shift), m2);
                        let levels = _mm512_or_si512(low, _mm512_slli_epi16::<4>(top));
                        for t in 0..T {
                            let y4: &[[[[[u8; 4]; 4]; 2]; 4]; 2] = bytemuck::cast_ref(&yb[t].qs);
                            // Levels <= 63 and |y| <= 127: no i32 sum over a block can overflow.
                            sums[t] = add_quad(sums[t], levels, y4[h][k][j][q]);
                        }
                    }
                    let scale = _mm512_cvtepi32_ps(widen(&scales[h][k][j], true));
                    for t in 0..T {
                        main[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[t]), scale, main[t]);
                    }
                }
            }
        }
        // The levels are stored offset by 32: `Σ scale·(level - 32)·y = main - 32 · Σ_g scale_g · sum_g`.
        let corr = k_corrections(
            |k| {
                let lo = _mm512_and_si512(widen(&g.scales[2 * k], true), _mm512_set1_epi32(0xffff));
                _mm512_or_si512(lo, _mm512_slli_epi32::<16>(widen(&g.scales[2 * k + 1], true)))
            },
            yb,
        );
        let d = load_f16(&g.d);
        let scales = [d, _mm512_mul_ps(_mm512_set1_ps(32.0), d)];
        for t in 0..T {
            k_block_end(&mut acc[t], main[t], corr[t], scales, yb[t].d);
        }
    }
    k_outputs(acc)
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q4_1_grouped<const T: usize>(group: &[GroupQ4_1], y: [&[BlockQ8_1]; T], stream: bool) -> [[f32; GROUP_ROWS]; T] {
    let m4 = _mm512_set1_epi8(0x0f);
    let mut acc = [_mm512_setzero_ps(); T];
    for (b, g) in group.iter().enumerate() {
        if stream {
            prefetch_ahead(g);
        }
        let yb = column(y, b);
        let mut sums = [_mm512_setzero_si512(); T];
        for (w, words) in g.qs.iter().enumerate() {
            let words = load(words);
            let (lo, hi) = (
                _mm512_and_si512(words, m4),
                _mm512_and_si512(_mm512_srli_epi16::<4>(words), m4),
            );
            for t in 0..T {
                // Quads w (low nibbles) and 4 + w (high nibbles).
                let y4: &[[[u8; 4]; 4]; 2] = bytemuck::cast_ref(&yb[t].qs);
                sums[t] = add_quad(add_quad(sums[t], lo, y4[0][w]), hi, y4[1][w]);
            }
        }
        let (d, m) = (load_f16(&g.d), load_f16(&g.m));
        for t in 0..T {
            let y_d = _mm512_set1_ps(f16_to_f32(yb[t].d));
            let y_s = _mm512_set1_ps(f16_to_f32(yb[t].s));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[t]), _mm512_mul_ps(d, y_d), acc[t]);
            acc[t] = _mm512_fmadd_ps(m, y_s, acc[t]);
        }
    }
    store(acc)
}

/// `vpdpbusd` multiplies unsigned by signed bytes: the weights' levels, stored offset by 128, are its unsigned
/// operand and the activations, broadcast from memory, the signed one — so each sum exceeds `Σ level · y` by
/// `128 · Σ y`, the activations' level sum, which is subtracted before scaling, in exact integers.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q8_0_grouped<const T: usize>(group: &[GroupQ8_0], y: [&[BlockQ8_0Sum]; T], stream: bool) -> [[f32; GROUP_ROWS]; T] {
    let mut acc = [_mm512_setzero_ps(); T];
    for (b, g) in group.iter().enumerate() {
        if stream {
            prefetch_ahead(g);
        }
        let yb = column(y, b);
        let mut sums = [_mm512_setzero_si512(); T];
        for (q, levels) in g.qs.iter().enumerate() {
            let levels = load(levels);
            for t in 0..T {
                let y4: &[[u8; 4]; 8] = bytemuck::cast_ref(&yb[t].qs);
                sums[t] = _mm512_dpbusd_epi32(sums[t], levels, _mm512_set1_epi32(i32::from_le_bytes(y4[q])));
            }
        }
        let d = load_f16(&g.d);
        for t in 0..T {
            let y_d = _mm512_set1_ps(f16_to_f32(yb[t].d));
            let dot = _mm512_sub_epi32(sums[t], _mm512_set1_epi32(i32::from(yb[t].sum) << 7));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(d, y_d), acc[t]);
        }
    }
    store(acc)
}
