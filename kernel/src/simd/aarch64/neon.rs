//! NEON dot products of weight rows with quantized activation rows.
//!
//! Integer products use widening multiplies (`vmull_s8`: i8 × i8 → i16, at most 128² = 16384) pairwise-accumulated
//! into i32 lanes, so no intermediate can saturate. Every weight level is at most 63, so unsigned levels are
//! reinterpreted as signed bytes without change.

use core::arch::aarch64::*;

use super::Neon;
use crate::quant::kquant::{min_term, unpack_scale_mins};
use crate::quant::{
    BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_1, BlockQ5_K, BlockQ6_K, BlockQ8_0, BlockQ8_1, BlockQ8_K,
};

entry_points!(Neon, per_token);

#[inline]
#[target_feature(enable = "neon")]
fn load_u8(v: &[u8; 16]) -> uint8x16_t {
    // SAFETY: `v` is 16 readable bytes; vld1q has no alignment requirement.
    unsafe { vld1q_u8(v.as_ptr()) }
}

#[inline]
#[target_feature(enable = "neon")]
fn load_i8(v: &[i8; 16]) -> int8x16_t {
    // SAFETY: `v` is 16 readable bytes; vld1q has no alignment requirement.
    unsafe { vld1q_s8(v.as_ptr()) }
}

/// 16-element pieces of a slice.
#[inline]
fn chunks16<T>(v: &[T]) -> &[[T; 16]] {
    v.as_chunks::<16>().0
}

/// Σ x_i y_i over 16 signed bytes, as four i32 lanes.
#[inline]
#[target_feature(enable = "neon")]
fn dot16(x: int8x16_t, y: int8x16_t) -> int32x4_t {
    let low = vmull_s8(vget_low_s8(x), vget_low_s8(y));
    vpadalq_s16(vpaddlq_s16(low), vmull_high_s8(x, y))
}

/// Σ over 32 elements given as two 16-byte halves, as a scalar.
#[inline]
#[target_feature(enable = "neon")]
fn dot32(x: (int8x16_t, int8x16_t), y: (int8x16_t, int8x16_t)) -> i32 {
    vaddvq_s32(vaddq_s32(dot16(x.0, y.0), dot16(x.1, y.1)))
}

/// A legacy block's nibbles: (values 0..16, values 16..32).
#[inline]
#[target_feature(enable = "neon")]
fn nibbles(qs: &[u8; 16]) -> (uint8x16_t, uint8x16_t) {
    let bytes = load_u8(qs);
    (vandq_u8(bytes, vdupq_n_u8(0x0f)), vshrq_n_u8::<4>(bytes))
}

/// 0x10 in each byte whose bit is set in `qh` (little-endian u32, bit i for value i): (values 0..16, 16..32).
#[inline]
#[target_feature(enable = "neon")]
fn fifth_bits(qh: [u8; 4]) -> (uint8x16_t, uint8x16_t) {
    const BITS: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    let bits = load_u8(&BITS);
    let spread = |a: u8, b: u8| {
        let set = vtstq_u8(vcombine_u8(vdup_n_u8(a), vdup_n_u8(b)), bits);
        vandq_u8(set, vdupq_n_u8(0x10))
    };
    (spread(qh[0], qh[1]), spread(qh[2], qh[3]))
}

/// The activation block's 32 values as two 16-byte halves.
#[inline]
#[target_feature(enable = "neon")]
fn q8_0_halves(a: &BlockQ8_0) -> (int8x16_t, int8x16_t) {
    let y = chunks16(&a.qs);
    (load_i8(&y[0]), load_i8(&y[1]))
}

#[inline]
#[target_feature(enable = "neon")]
fn signed(v: (uint8x16_t, uint8x16_t)) -> (int8x16_t, int8x16_t) {
    (vreinterpretq_s8_u8(v.0), vreinterpretq_s8_u8(v.1))
}

#[target_feature(enable = "neon")]
fn q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    let mut acc = 0.0f32;
    for (w, a) in w.iter().zip(a) {
        acc += dot32(q8_0_halves(w), q8_0_halves(a)) as f32 * (w.d.to_f32() * a.d.to_f32());
    }
    acc
}

#[target_feature(enable = "neon")]
fn q4_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    let eight = vdupq_n_s8(8);
    let mut acc = 0.0f32;
    for (w, a) in w.iter().zip(a) {
        let (lo, hi) = signed(nibbles(&w.qs));
        let q = (vsubq_s8(lo, eight), vsubq_s8(hi, eight));
        acc += dot32(q, q8_0_halves(a)) as f32 * (w.d.to_f32() * a.d.to_f32());
    }
    acc
}

#[target_feature(enable = "neon")]
fn q5_0(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    let sixteen = vdupq_n_s8(16);
    let mut acc = 0.0f32;
    for (w, a) in w.iter().zip(a) {
        let (lo, hi) = nibbles(&w.qs);
        let (h_lo, h_hi) = fifth_bits(w.qh);
        let (lo, hi) = signed((vorrq_u8(lo, h_lo), vorrq_u8(hi, h_hi)));
        let q = (vsubq_s8(lo, sixteen), vsubq_s8(hi, sixteen));
        acc += dot32(q, q8_0_halves(a)) as f32 * (w.d.to_f32() * a.d.to_f32());
    }
    acc
}

/// Shared by Q4_1 and Q5_1: unsigned levels with scale `d` and minimum `m` against one Q8_0 block (the minimum
/// term as `legacy::dot_with_min` computes it).
#[inline]
#[target_feature(enable = "neon")]
fn with_min(q: (uint8x16_t, uint8x16_t), d: f32, m: f32, a: &BlockQ8_1) -> f32 {
    let y = chunks16(&a.qs);
    dot32(signed(q), (load_i8(&y[0]), load_i8(&y[1]))) as f32 * (d * a.d.to_f32()) + m * a.s.to_f32()
}

#[target_feature(enable = "neon")]
fn q4_1(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    w.iter()
        .zip(a)
        .map(|(w, a)| with_min(nibbles(&w.qs), w.d.to_f32(), w.m.to_f32(), a))
        .sum()
}

#[target_feature(enable = "neon")]
fn q5_1(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    let mut acc = 0.0f32;
    for (w, a) in w.iter().zip(a) {
        let (lo, hi) = nibbles(&w.qs);
        let (h_lo, h_hi) = fifth_bits(w.qh);
        acc += with_min((vorrq_u8(lo, h_lo), vorrq_u8(hi, h_hi)), w.d.to_f32(), w.m.to_f32(), a);
    }
    acc
}

/// Q4_K and Q5_K differ only in how sub-block `j`'s 32 levels are formed; `levels(j)` returns them as two halves.
#[inline]
#[target_feature(enable = "neon")]
fn scale_min_block(
    d: f32,
    dmin: f32,
    packed: &[u8; 12],
    a: &BlockQ8_K,
    levels: impl Fn(usize) -> (uint8x16_t, uint8x16_t),
) -> f32 {
    let (scales, mins) = unpack_scale_mins(packed);
    let y = chunks16(&a.qs);
    let mut sum = 0i32;
    for j in 0..8 {
        let ys = (load_i8(&y[2 * j]), load_i8(&y[2 * j + 1]));
        sum += i32::from(scales[j]) * dot32(signed(levels(j)), ys);
    }
    d * a.d * sum as f32 - dmin * a.d * min_term(&mins, a) as f32
}

#[target_feature(enable = "neon")]
fn q4_k(w: &[BlockQ4_K], a: &[BlockQ8_K]) -> f32 {
    let m4 = vdupq_n_u8(0x0f);
    let mut acc = 0.0f32;
    for (w, a) in w.iter().zip(a) {
        let qs = chunks16(&w.qs);
        acc += scale_min_block(w.d.to_f32(), w.dmin.to_f32(), &w.scales, a, |j| {
            // Sub-block j lives in the low (even j) or high (odd j) nibbles of chunk j/2's 32 bytes.
            let (b0, b1) = (load_u8(&qs[2 * (j / 2)]), load_u8(&qs[2 * (j / 2) + 1]));
            if j % 2 == 0 {
                (vandq_u8(b0, m4), vandq_u8(b1, m4))
            } else {
                (vshrq_n_u8::<4>(b0), vshrq_n_u8::<4>(b1))
            }
        });
    }
    acc
}

#[target_feature(enable = "neon")]
fn q5_k(w: &[BlockQ5_K], a: &[BlockQ8_K]) -> f32 {
    let m4 = vdupq_n_u8(0x0f);
    let one = vdupq_n_u8(1);
    let mut acc = 0.0f32;
    for (w, a) in w.iter().zip(a) {
        let qs = chunks16(&w.qs);
        let qh = chunks16(&w.qh);
        let (h0, h1) = (load_u8(&qh[0]), load_u8(&qh[1]));
        acc += scale_min_block(w.d.to_f32(), w.dmin.to_f32(), &w.scales, a, |j| {
            let (b0, b1) = (load_u8(&qs[2 * (j / 2)]), load_u8(&qs[2 * (j / 2) + 1]));
            let (lo, hi) = if j % 2 == 0 {
                (vandq_u8(b0, m4), vandq_u8(b1, m4))
            } else {
                (vshrq_n_u8::<4>(b0), vshrq_n_u8::<4>(b1))
            };
            // Bit j of qh[l] is the fifth bit of element l: shift right by j (a negative left shift), keep bit 0.
            let shift = vdupq_n_s8(-(j as i8));
            let fifth = |h: uint8x16_t| vshlq_n_u8::<4>(vandq_u8(vshlq_u8(h, shift), one));
            (vorrq_u8(lo, fifth(h0)), vorrq_u8(hi, fifth(h1)))
        });
    }
    acc
}

#[target_feature(enable = "neon")]
fn q6_k(w: &[BlockQ6_K], a: &[BlockQ8_K]) -> f32 {
    let m4 = vdupq_n_u8(0x0f);
    let m2 = vdupq_n_u8(0x03);
    let thirty_two = vdupq_n_s8(32);
    let mut acc = 0.0f32;
    for (w, a) in w.iter().zip(a) {
        let ql = chunks16(&w.ql);
        let qh = chunks16(&w.qh);
        let y = chunks16(&a.qs);
        let mut sum = 0i32;
        for h in 0..2 {
            for k in 0..4 {
                // Elements 128h + 32k + (0..32) in two halves of 16 (groups 8h+2k and 8h+2k+1).
                for half in 0..2 {
                    let low = load_u8(&ql[4 * h + 2 * (k % 2) + half]);
                    let low = if k < 2 { vandq_u8(low, m4) } else { vshrq_n_u8::<4>(low) };
                    let high = vandq_u8(vshlq_u8(load_u8(&qh[2 * h + half]), vdupq_n_s8(-2 * k as i8)), m2);
                    let q = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(low, vshlq_n_u8::<4>(high))), thirty_two);
                    let g = 8 * h + 2 * k + half;
                    sum += i32::from(w.scales[g]) * vaddvq_s32(dot16(q, load_i8(&y[g])));
                }
            }
        }
        acc += w.d.to_f32() * a.d * sum as f32;
    }
    acc
}
