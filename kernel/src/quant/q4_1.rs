//! Q4_1: 32 4-bit values with an f16 scale and an f16 minimum. Nibble layout as Q4_0; value `i` is `d * q_i + m`.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::legacy::{dequantize_with_min, dot_with_min, min_max};
use super::{BlockQ8_1, QuantBlock, Quantize, WeightBlock};
use crate::GgmlType;

/// One Q4_1 block (20 bytes).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: f16,
    /// Minimum (value of level 0).
    pub m: f16,
    /// Nibbles: low = values 0..16, high = values 16..32.
    pub qs: [u8; 16],
}
const _: () = assert!(size_of::<BlockQ4_1>() == 20);

impl BlockQ4_1 {
    /// The 32 unsigned levels (0..=15).
    #[inline]
    pub fn levels(&self) -> [u8; 32] {
        core::array::from_fn(|i| if i < 16 { self.qs[i] & 0xf } else { self.qs[i - 16] >> 4 })
    }
}

impl QuantBlock for BlockQ4_1 {
    const DTYPE: GgmlType = GgmlType::Q4_1;

    fn dequantize(&self, out: &mut [f32]) {
        dequantize_with_min(self.d, self.m, &self.levels(), out);
    }
}

impl Quantize for BlockQ4_1 {
    /// `m = min(x)`, `d = (max - min) / 15`.
    fn quantize(x: &[f32]) -> Self {
        let (min, max) = min_max(&x[..32]);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let level = |v: f32| (((v - min) * id + 0.5) as i8 as u8).min(15);
        BlockQ4_1 {
            d: f16::from_f32(d),
            m: f16::from_f32(min),
            qs: core::array::from_fn(|j| level(x[j]) | (level(x[j + 16]) << 4)),
        }
    }
}

impl WeightBlock for BlockQ4_1 {
    type Act = BlockQ8_1;

    /// `Σ (d q_i + m) a_i · da = d·da Σ q_i a_i + m·da Σ a_i`.
    fn vec_dot_ref(w: &[Self], a: &[BlockQ8_1]) -> f32 {
        w.iter()
            .zip(a)
            .map(|(w, a)| dot_with_min(w.d, w.m, &w.levels(), a))
            .sum()
    }
}
