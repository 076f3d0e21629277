//! Q8_1: Q8_0 plus `s = d · Σ q_i` in f16 — the activation partner of Q4_1 and Q5_1, whose minimum term needs the
//! activation sum. (ggml's layout; the f16 rounding of `s` is part of what makes results match llama.cpp's.)

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::kquant::nearest_int;
use super::{QuantBlock, Quantize};
use crate::GgmlType;

/// One Q8_1 block (36 bytes).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ8_1 {
    /// Scale.
    pub d: f16,
    /// `d · Σ qs`, computed with the unrounded scale.
    pub s: f16,
    /// Quantized values.
    pub qs: [i8; 32],
}
const _: () = assert!(size_of::<BlockQ8_1>() == 36);

impl BlockQ8_1 {
    fn with_scale(amax: f32, id: f32, x: &[f32], round: impl Fn(f32) -> i8) -> Self {
        let d = amax / 127.0;
        let qs: [i8; 32] = core::array::from_fn(|i| round(x[i] * id));
        let sum: i32 = qs.iter().map(|&q| i32::from(q)).sum();
        BlockQ8_1 {
            d: f16::from_f32(d),
            s: f16::from_f32(d * sum as f32),
            qs,
        }
    }

    /// Quantizes activations as ggml's x86 CPU backend does (`id = 127 / max|x|`, rounding half to even).
    pub fn quantize_activation(x: &[f32]) -> Self {
        let amax = x[..32].iter().fold(0.0f32, |m, v| m.max(v.abs()));
        // |x · id| <= 127, where `nearest_int` is exact (and, like `rintf`, takes NaN to 0).
        Self::with_scale(amax, if amax != 0.0 { 127.0 / amax } else { 0.0 }, x, |v| {
            nearest_int(v) as i8
        })
    }
}

impl QuantBlock for BlockQ8_1 {
    const DTYPE: GgmlType = GgmlType::Q8_1;

    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (o, &q) in out.iter_mut().zip(&self.qs) {
            *o = q as f32 * d;
        }
    }
}

impl Quantize for BlockQ8_1 {
    /// The reference: `d = max|x| / 127`, `id = 1 / d`, values rounded half away from zero.
    fn quantize(x: &[f32]) -> Self {
        let amax = x[..32]
            .iter()
            .fold(0.0f32, |m, v| if m > v.abs() { m } else { v.abs() });
        let d = amax / 127.0;
        Self::with_scale(amax, if d != 0.0 { 1.0 / d } else { 0.0 }, x, |v| libm::roundf(v) as i8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::BlockQ8_0;
    use alloc::vec;
    use alloc::vec::Vec;

    #[test]
    fn activations_round_half_to_even_like_rintf() {
        // Blocks whose scaled values land on halves (max 127, steps of 0.5), random ones, and non-finite ones.
        let mut state = 0x9e37_79b9_u32;
        let mut blocks: Vec<[f32; 32]> = vec![core::array::from_fn(
            |i| if i == 0 { 127.0 } else { i as f32 * 0.5 - 8.0 },
        )];
        for _ in 0..2000 {
            blocks.push(core::array::from_fn(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1 << 24) as f32 * 6.0 - 3.0
            }));
        }
        blocks.push(core::array::from_fn(|i| if i == 3 { f32::NAN } else { i as f32 }));
        for x in &blocks {
            let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
            let expected: [i8; 32] = core::array::from_fn(|i| libm::rintf(x[i] * id) as i8);
            assert_eq!(BlockQ8_1::quantize_activation(x).qs, expected, "{x:?}");
            assert_eq!(BlockQ8_0::quantize_activation(x).qs, expected, "{x:?}");
        }
    }
}
