//! NEON float kernels, bit-identical to [`crate::simd::float::reference`]: `mad_rows` (each element one chain of fused
//! multiply-adds, `vfmaq_f32`). The other float primitives run the reference on AArch64.

use core::arch::aarch64::*;

use super::Neon;
use crate::simd::float::Strides;

/// `acc[t][d] += Σ_j w(t, j)·rows[j][d]` for `acc: [T, width]`, `rows: [J, width]`, weights where `strides` say.
pub(crate) fn mad_rows(_: Neon, width: usize, acc: &mut [f32], rows: &[f32], weights: &[f32], strides: Strides) {
    // SAFETY: a `Neon` token exists only after NEON was detected.
    unsafe { mad_rows_128::mad_rows(width, acc, rows, weights, strides) }
}

/// Zero in every lane.
#[inline]
#[target_feature(enable = "neon")]
fn zero() -> float32x4_t {
    vdupq_n_f32(0.0)
}

/// `a·b + c`, fused (the operand order `mad_rows_kernel!` is written in).
#[inline]
#[target_feature(enable = "neon")]
fn fmadd(a: float32x4_t, b: float32x4_t, c: float32x4_t) -> float32x4_t {
    vfmaq_f32(c, a, b)
}

mad_rows_kernel!(aarch64, mad_rows_128, "neon", float32x4_t, 4, super::zero, vld1q_f32, vst1q_f32, vdupq_n_f32,
    super::fmadd, block: 4 x 4, single: 8, otherwise: crate::simd::float::reference::mad_strided);
