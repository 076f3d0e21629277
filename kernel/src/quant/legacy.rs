//! Shared arithmetic of the 32-element formats: symmetric ones (Q8_0, Q4_0, Q5_0: `d · q`) and ones with a minimum
//! (Q4_1, Q5_1: `d · q + m`), dotted with Q8_0 and Q8_1 activation blocks respectively.

use half::f16;

use super::{BlockQ8_0, BlockQ8_1};

/// `out[i] = d · q[i]`.
#[inline]
pub(super) fn dequantize_symmetric(d: f16, levels: &[i8; 32], out: &mut [f32]) {
    let d = d.to_f32();
    for (o, &q) in out.iter_mut().zip(levels) {
        *o = d * q as f32;
    }
}

/// `out[i] = d · q[i] + m`.
#[inline]
pub(super) fn dequantize_with_min(d: f16, m: f16, levels: &[u8; 32], out: &mut [f32]) {
    let (d, m) = (d.to_f32(), m.to_f32());
    for (o, &q) in out.iter_mut().zip(levels) {
        *o = d * q as f32 + m;
    }
}

/// `Σ d·q_i · da·a_i` with the integer sum taken first.
#[inline]
pub(super) fn dot_symmetric(d: f16, levels: &[i8; 32], a: &BlockQ8_0) -> f32 {
    let sum: i32 = levels.iter().zip(&a.qs).map(|(&x, &y)| x as i32 * y as i32).sum();
    sum as f32 * (d.to_f32() * a.d.to_f32())
}

/// `Σ (d·q_i + m) · da·a_i = d·da Σ q_i a_i + m · s`, with the activation block's `s = da Σ a_i`.
#[inline]
pub(super) fn dot_with_min(d: f16, m: f16, levels: &[u8; 32], a: &BlockQ8_1) -> f32 {
    let dot: i32 = levels.iter().zip(&a.qs).map(|(&x, &y)| x as i32 * y as i32).sum();
    dot as f32 * (d.to_f32() * a.d.to_f32()) + m.to_f32() * a.s.to_f32()
}

/// The value of largest magnitude, with its sign (the first one on ties), or 0.
#[inline]
pub(super) fn signed_absmax(x: &[f32]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// `(min, max)` of `x`.
#[inline]
pub(super) fn min_max(x: &[f32]) -> (f32, f32) {
    x.iter().fold((f32::MAX, -f32::MAX), |(lo, hi), &v| {
        (if v < lo { v } else { lo }, if v > hi { v } else { hi })
    })
}
