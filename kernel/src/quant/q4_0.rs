//! Q4_0: 32 4-bit values with one f16 scale. Byte `j` holds value `j` (low nibble) and `j + 16` (high nibble); value
//! `i` is `d * (q_i - 8)`.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::legacy::{dequantize_symmetric, dot_symmetric, signed_absmax};
use super::{BlockQ8_0, QuantBlock, Quantize, WeightBlock};
use crate::GgmlType;

/// One Q4_0 block (18 bytes).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: f16,
    /// Nibbles: low = values 0..16, high = values 16..32.
    pub qs: [u8; 16],
}
const _: () = assert!(size_of::<BlockQ4_0>() == 18);

impl BlockQ4_0 {
    /// The 32 signed levels (-8..=7).
    #[inline]
    pub fn levels(&self) -> [i8; 32] {
        core::array::from_fn(|i| {
            let byte = self.qs[i % 16];
            let nibble = if i < 16 { byte & 0xf } else { byte >> 4 };
            nibble as i8 - 8
        })
    }
}

impl QuantBlock for BlockQ4_0 {
    const DTYPE: GgmlType = GgmlType::Q4_0;

    fn dequantize(&self, out: &mut [f32]) {
        dequantize_symmetric(self.d, &self.levels(), out);
    }
}

impl Quantize for BlockQ4_0 {
    /// `d = -max / 8` where `max` is the value of largest magnitude (so it maps to level 0, i.e. -8).
    fn quantize(x: &[f32]) -> Self {
        let max = signed_absmax(&x[..32]);
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        // C converts to int8_t (truncating toward zero) before clamping to 15.
        let level = |v: f32| ((v * id + 8.5) as i8 as u8).min(15);
        BlockQ4_0 {
            d: f16::from_f32(d),
            qs: core::array::from_fn(|j| level(x[j]) | (level(x[j + 16]) << 4)),
        }
    }
}

impl WeightBlock for BlockQ4_0 {
    type Act = BlockQ8_0;

    fn vec_dot_ref(w: &[Self], a: &[BlockQ8_0]) -> f32 {
        w.iter().zip(a).map(|(w, a)| dot_symmetric(w.d, &w.levels(), a)).sum()
    }
}
