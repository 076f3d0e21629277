//! Weight rows interleaved sixteen at a time, and the AVX-512 VNNI kernels that multiply such a group with several
//! tokens at once: the multi-token (prefill) matmul of Q4_K, Q6_K, Q4_1 and Q8_0 weights.
//!
//! The one-row kernels (`int8.rs`) unpack a row's block and finish every (block, token) pair on its own: eight i32
//! lanes of one row, a float epilogue, and a horizontal sum at the row's end. Here the sixteen rows of a group sit in
//! the sixteen lanes of one vector instead: `vpdpbusd` multiplies four levels of each of the sixteen rows with the
//! same four activation bytes (broadcast), so every instruction of the epilogue (sub-block scales, super-block
//! scales, the minimums or offsets) serves sixteen outputs, and nothing is ever summed across lanes. A group's weights
//! are rearranged once into [`KGroupBlock`]s — levels a byte each, scales decoded — and then reused for every token.
//!
//! Both formats are "levels times a scale per sub-block, minus a correction from the activations' 16-element sums":
//! Q4_K has 8 sub-blocks of 32 with a minimum each (`- dmin · Σ_j min_j · sum_j`); Q6_K has 16 of 16 with levels
//! offset by 32 (`- 32·d · Σ_g scale_g · sum_g`). The arithmetic of one output is fixed — the same for every token
//! whatever the tile it falls in — so a prompt's logits do not depend on how its tokens are batched:
//! - per sub-block `s`: the exact integer `Σ level · y`;
//! - per block: `main = Σ_s (Σ level · y) · scale_s` in f32, fused multiply-adds in sub-block order (exact while it
//!   stays below 2^24); the exact integer `corr = Σ_g weight_g · sum_g` over the sixteen 16-element sums;
//! - `acc += main · (d · y.d)` and `acc_corr += corr · (corr_scale · y.d)`, both fused, block after block;
//! - the output `acc - acc_corr`.
//!
//! For Q4_K this is what llama.cpp's row-interleaved x86 kernels compute (their main sum is an i32, which the f32 sum
//! here equals exactly while below 2^24), which keeps hearth's greedy continuations close to llama.cpp's.
//!
//! Q4_1 (32-element blocks, `d · level + m`, against Q8_1) has a kernel of its own over [`LegacyGroupBlock`]s: per block
//! the exact integer `Σ level · y`, then `acc += Σ · (d · y.d)` and `acc += m · y.s`, both fused into one accumulator
//! in the scalar reference's order. Q8_0 (signed levels, against Q8_0) is the same loop with the activations made
//! unsigned by an offset of 128 that a per-row integer takes back out.

use core::arch::x86_64::*;

use bytemuck::{Pod, Zeroable};

use super::Avx512;
use super::avx512::f16_to_f32;
use crate::quant::kquant::unpack_scale_mins;
use crate::quant::{BlockQ4_1, BlockQ4_K, BlockQ6_K, BlockQ8_0, BlockQ8_1, BlockQ8_K};

/// Rows in a group: one per i32 lane of a 512-bit vector.
pub const GROUP_ROWS: usize = 16;

/// Four-level quads in a 256-element block.
const QUADS: usize = 64;

/// One 256-element block of a group of sixteen rows with `SUBS` scaled sub-blocks, laid out for the kernel.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Zeroable)]
pub struct KGroupBlock<const SUBS: usize> {
    /// `levels[k][r]`: elements `4k..4k+4` of row `r` (unsigned levels, at most 63), a byte each, little-endian.
    levels: [[u32; GROUP_ROWS]; QUADS],
    /// `scales[s][r]`: row `r`'s scale of sub-block `s`.
    scales: [[f32; GROUP_ROWS]; SUBS],
    /// `corr_weights[k][r]`: row `r`'s weights of the activation sums `2k` and `2k + 1` (16 elements each) in the
    /// correction, as an i16 pair.
    corr_weights: [[[i16; 2]; GROUP_ROWS]; 8],
    /// Row `r`'s super-block scale.
    d: [f32; GROUP_ROWS],
    /// Row `r`'s scale of the correction.
    corr_scale: [f32; GROUP_ROWS],
}

/// A weight block type whose rows interleave sixteen at a time, with its kernel.
pub trait Interleave: Sized {
    /// One block of each of sixteen rows, rearranged for the kernel.
    type Group: Copy + Zeroable + Send + Sync;
    /// The activation block type the kernel takes.
    type Act;

    /// Writes `block` as row `r` of `group`.
    fn write_row(block: &Self, r: usize, group: &mut Self::Group);

    /// The sixteen rows of a group (its blocks `group`) against `T` activation rows with as many blocks: `out[t][r]`,
    /// the dot product of row `r` with activation row `t`.
    fn dots<const T: usize>(token: Avx512, group: &[Self::Group], y: [&[Self::Act]; T]) -> [[f32; GROUP_ROWS]; T];
}

impl Interleave for BlockQ4_K {
    type Group = KGroupBlock<8>;
    type Act = BlockQ8_K;

    fn write_row(block: &Self, r: usize, group: &mut Self::Group) {
        // Word `q` of chunk `c` holds, a nibble per byte, elements 4q..4q+4 of sub-block 2c (low nibbles) and of
        // sub-block 2c + 1 (high nibbles).
        let words: &[[[u8; 4]; 8]; 4] = bytemuck::cast_ref(&block.qs);
        for (c, words) in words.iter().enumerate() {
            for (q, &word) in words.iter().enumerate() {
                let word = u32::from_le_bytes(word);
                group.levels[16 * c + q][r] = (word & 0x0f0f_0f0f).to_le();
                group.levels[16 * c + 8 + q][r] = ((word >> 4) & 0x0f0f_0f0f).to_le();
            }
        }
        let (scales, mins) = unpack_scale_mins(&block.scales);
        for j in 0..8 {
            group.scales[j][r] = f32::from(scales[j]);
            group.corr_weights[j][r] = [i16::from(mins[j]); 2];
        }
        group.d[r] = block.d.to_f32();
        group.corr_scale[r] = block.dmin.to_f32();
    }

    fn dots<const T: usize>(token: Avx512, group: &[Self::Group], y: [&[BlockQ8_K]; T]) -> [[f32; GROUP_ROWS]; T] {
        k_group_dots(token, group, y)
    }
}

impl Interleave for BlockQ6_K {
    type Group = KGroupBlock<16>;
    type Act = BlockQ8_K;

    fn write_row(block: &Self, r: usize, group: &mut Self::Group) {
        // Half h: word q of `ql[64h..]` holds elements 128h + 4q.. (low nibbles) and 128h + 64 + 4q.. (high), word q
        // of `ql[64h + 32..]` the same 32 elements later; word q of `qh[32h..]` their top two bits, in bit pairs
        // 0-1, 2-3, 4-5, 6-7 of each byte for those four quads in element order.
        // (Byte arrays: a block in a model file may sit at any even address.)
        let ql: &[[[u8; 4]; 8]; 4] = bytemuck::cast_ref(&block.ql);
        let qh: &[[[u8; 4]; 8]; 2] = bytemuck::cast_ref(&block.qh);
        for h in 0..2 {
            for q in 0..8 {
                let (low, low_next, high) = (
                    u32::from_le_bytes(ql[2 * h][q]),
                    u32::from_le_bytes(ql[2 * h + 1][q]),
                    u32::from_le_bytes(qh[h][q]),
                );
                let nibbles = [low, low_next, low >> 4, low_next >> 4];
                for (k, nibbles) in nibbles.into_iter().enumerate() {
                    let top = (high >> (2 * k)) & 0x0303_0303;
                    group.levels[32 * h + 8 * k + q][r] = ((nibbles & 0x0f0f_0f0f) | (top << 4)).to_le();
                }
            }
        }
        for g in 0..16 {
            group.scales[g][r] = f32::from(block.scales[g]);
        }
        for k in 0..8 {
            group.corr_weights[k][r] = [i16::from(block.scales[2 * k]), i16::from(block.scales[2 * k + 1])];
        }
        let d = block.d.to_f32();
        group.d[r] = d;
        // The levels are stored offset by 32: `Σ scale·(level - 32)·y = main - 32 · Σ_g scale_g · sum_g`.
        group.corr_scale[r] = 32.0 * d;
    }

    fn dots<const T: usize>(token: Avx512, group: &[Self::Group], y: [&[BlockQ8_K]; T]) -> [[f32; GROUP_ROWS]; T] {
        k_group_dots(token, group, y)
    }
}

/// One 32-element block of a group of sixteen Q4_1 or Q8_0 rows, laid out for the kernel.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Zeroable)]
pub struct LegacyGroupBlock<E> {
    /// `levels[k][r]`: elements `4k..4k+4` of row `r`, a byte each, little-endian (Q4_1: levels 0..16; Q8_0: signed).
    levels: [[u32; GROUP_ROWS]; 8],
    /// Row `r`'s scale.
    d: [f32; GROUP_ROWS],
    /// Row `r`'s term outside the levels' products: Q4_1's minimum; Q8_0's `128 · Σ level`, which the kernel's
    /// unsigned activations (`y + 128`) add to the block's sum.
    extra: [E; GROUP_ROWS],
}

impl Interleave for BlockQ4_1 {
    type Group = LegacyGroupBlock<f32>;
    type Act = BlockQ8_1;

    fn write_row(block: &Self, r: usize, group: &mut Self::Group) {
        // Word `j` holds, a nibble per byte, elements 4j..4j+4 (low nibbles) and 16 + 4j.. (high nibbles).
        let words: &[[u8; 4]; 4] = bytemuck::cast_ref(&block.qs);
        for (j, &word) in words.iter().enumerate() {
            let word = u32::from_le_bytes(word);
            group.levels[j][r] = (word & 0x0f0f_0f0f).to_le();
            group.levels[4 + j][r] = ((word >> 4) & 0x0f0f_0f0f).to_le();
        }
        group.d[r] = block.d.to_f32();
        group.extra[r] = block.m.to_f32();
    }

    fn dots<const T: usize>(_: Avx512, group: &[Self::Group], y: [&[BlockQ8_1]; T]) -> [[f32; GROUP_ROWS]; T] {
        // SAFETY: an `Avx512` token exists only after the CPU features the kernel is compiled for were detected.
        unsafe { q4_1_tile(group, y) }
    }
}

impl Interleave for BlockQ8_0 {
    type Group = LegacyGroupBlock<i32>;
    type Act = BlockQ8_0;

    fn write_row(block: &Self, r: usize, group: &mut Self::Group) {
        let words: &[[u8; 4]; 8] = bytemuck::cast_ref(&block.qs);
        for (k, &word) in words.iter().enumerate() {
            group.levels[k][r] = u32::from_le_bytes(word).to_le();
        }
        group.d[r] = block.d.to_f32();
        group.extra[r] = 128 * block.qs.iter().map(|&q| i32::from(q)).sum::<i32>();
    }

    fn dots<const T: usize>(_: Avx512, group: &[Self::Group], y: [&[BlockQ8_0]; T]) -> [[f32; GROUP_ROWS]; T] {
        // SAFETY: an `Avx512` token exists only after the CPU features the kernel is compiled for were detected.
        unsafe { q8_0_tile(group, y) }
    }
}

/// Rearranges up to sixteen rows of equal length into `out` (one group block per block of a row). Rows missing from
/// a short last group are zeros: their outputs are zero, and ignored.
pub fn interleave<W: Interleave>(rows: &[&[W]], out: &mut [W::Group]) {
    debug_assert!(rows.len() <= GROUP_ROWS && rows.iter().all(|row| row.len() == out.len()));
    for (b, group) in out.iter_mut().enumerate() {
        if rows.len() < GROUP_ROWS {
            *group = W::Group::zeroed();
        }
        for (r, row) in rows.iter().enumerate() {
            W::write_row(&row[b], r, group);
        }
    }
}

/// [`Interleave::dots`] of the K-quants.
fn k_group_dots<const SUBS: usize, const T: usize>(
    _: Avx512,
    group: &[KGroupBlock<SUBS>],
    y: [&[BlockQ8_K]; T],
) -> [[f32; GROUP_ROWS]; T] {
    // SAFETY: an `Avx512` token exists only after the CPU features the kernel is compiled for were detected.
    unsafe { k_tile(group, y) }
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

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn k_tile<const SUBS: usize, const T: usize>(
    group: &[KGroupBlock<SUBS>],
    y: [&[BlockQ8_K]; T],
) -> [[f32; GROUP_ROWS]; T] {
    let quads_per_sub = QUADS / SUBS;
    let mut y = y;
    for row in &mut y {
        *row = &row[..group.len()];
    }
    let mut acc = [_mm512_setzero_ps(); T];
    let mut acc_corr = [_mm512_setzero_ps(); T];
    for (b, g) in group.iter().enumerate() {
        // Four activation bytes at a time, as the i32 `vpdpbusd` broadcasts; the 16-element sums two at a time.
        let mut quads: [&[[u8; 4]; QUADS]; T] = [bytemuck::cast_ref(&y[0][b].qs); T];
        let mut sum_pairs: [&[[i16; 2]; 8]; T] = [bytemuck::cast_ref(&y[0][b].bsums); T];
        for t in 1..T {
            quads[t] = bytemuck::cast_ref(&y[t][b].qs);
            sum_pairs[t] = bytemuck::cast_ref(&y[t][b].bsums);
        }
        let mut main = [_mm512_setzero_ps(); T];
        for s in 0..SUBS {
            let mut sums = [_mm512_setzero_si512(); T];
            let first = s * quads_per_sub;
            for (k, levels) in (first..).zip(&g.levels[first..first + quads_per_sub]) {
                let levels = load(levels);
                for t in 0..T {
                    // Levels <= 63 and |y| <= 127: no i32 sum over a block can overflow.
                    let y4 = _mm512_set1_epi32(i32::from_le_bytes(quads[t][k]));
                    sums[t] = _mm512_dpbusd_epi32(sums[t], levels, y4);
                }
            }
            let scales = _mm512_castsi512_ps(load(&g.scales[s]));
            for t in 0..T {
                main[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[t]), scales, main[t]);
            }
        }
        let mut corr = [_mm512_setzero_si512(); T];
        for (k, weights) in g.corr_weights.iter().enumerate() {
            let weights = load(weights);
            for t in 0..T {
                let [lo, hi] = sum_pairs[t][k];
                let pair = i32::from(lo as u16) | (i32::from(hi as u16) << 16);
                // |weight| <= 128 and |sum| <= 2032: no pair sum overflows.
                corr[t] = _mm512_dpwssd_epi32(corr[t], weights, _mm512_set1_epi32(pair));
            }
        }
        let d = _mm512_castsi512_ps(load(&g.d));
        let corr_scale = _mm512_castsi512_ps(load(&g.corr_scale));
        for t in 0..T {
            let y_d = _mm512_set1_ps(y[t][b].d);
            acc[t] = _mm512_fmadd_ps(main[t], _mm512_mul_ps(d, y_d), acc[t]);
            acc_corr[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(corr[t]), _mm512_mul_ps(corr_scale, y_d), acc_corr[t]);
        }
    }
    for t in 0..T {
        acc[t] = _mm512_sub_ps(acc[t], acc_corr[t]);
    }
    store(acc)
}

/// `Σ level · y` of one 32-element block of each of the sixteen rows (`levels`) against `T` activation blocks
/// (`quads`: their 4-byte groups, signed). `vpdpbusd` multiplies unsigned by signed bytes: unsigned levels (Q4_1) are
/// its unsigned operand; with `SIGNED_LEVELS` (Q8_0) the levels are the signed operand and the activations, their top
/// bits flipped, the unsigned one — `y + 128`, so the sums exceed `Σ level · y` by `128 · Σ level`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn block_sums<const T: usize, const SIGNED_LEVELS: bool>(
    levels: &[[u32; GROUP_ROWS]; 8],
    quads: [&[[u8; 4]; 8]; T],
) -> [__m512i; T] {
    let mut sums = [_mm512_setzero_si512(); T];
    for (k, levels) in levels.iter().enumerate() {
        let levels = load(levels);
        for t in 0..T {
            let y4 = u32::from_le_bytes(quads[t][k]);
            sums[t] = if SIGNED_LEVELS {
                _mm512_dpbusd_epi32(sums[t], _mm512_set1_epi32((y4 ^ 0x8080_8080) as i32), levels)
            } else {
                _mm512_dpbusd_epi32(sums[t], levels, _mm512_set1_epi32(y4 as i32))
            };
        }
    }
    sums
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q4_1_tile<const T: usize>(group: &[LegacyGroupBlock<f32>], y: [&[BlockQ8_1]; T]) -> [[f32; GROUP_ROWS]; T] {
    let y = y.map(|row| &row[..group.len()]);
    let mut acc = [_mm512_setzero_ps(); T];
    for (b, g) in group.iter().enumerate() {
        let sums = block_sums::<T, false>(&g.levels, y.map(|row| bytemuck::cast_ref(&row[b].qs)));
        let d = _mm512_castsi512_ps(load(&g.d));
        let m = _mm512_castsi512_ps(load(&g.extra));
        for t in 0..T {
            let y_d = _mm512_set1_ps(f16_to_f32(y[t][b].d));
            let y_s = _mm512_set1_ps(f16_to_f32(y[t][b].s));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[t]), _mm512_mul_ps(d, y_d), acc[t]);
            acc[t] = _mm512_fmadd_ps(m, y_s, acc[t]);
        }
    }
    store(acc)
}

/// Q8_0's sums carry `128 · Σ level` from the unsigned activations ([`block_sums`]); each row's is subtracted before
/// scaling, in exact integers.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q8_0_tile<const T: usize>(group: &[LegacyGroupBlock<i32>], y: [&[BlockQ8_0]; T]) -> [[f32; GROUP_ROWS]; T] {
    let y = y.map(|row| &row[..group.len()]);
    let mut acc = [_mm512_setzero_ps(); T];
    for (b, g) in group.iter().enumerate() {
        let sums = block_sums::<T, true>(&g.levels, y.map(|row| bytemuck::cast_ref(&row[b].qs)));
        let d = _mm512_castsi512_ps(load(&g.d));
        let offset = load(&g.extra);
        for t in 0..T {
            let y_d = _mm512_set1_ps(f16_to_f32(y[t][b].d));
            let dot = _mm512_sub_epi32(sums[t], offset);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(d, y_d), acc[t]);
        }
    }
    store(acc)
}
