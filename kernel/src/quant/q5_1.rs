//! Q5_1: 32 5-bit values with an f16 scale and an f16 minimum; bit layout as Q5_0. Value `i` is `d * q_i + m`.
//! (Presets use it as the fallback for Q5_K tensors whose rows are not a multiple of 256.)

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::legacy::{dequantize_with_min, dot_with_min, min_max};
use super::q5_0::{levels5, pack5};
use super::{BlockQ8_1, QuantBlock, Quantize, WeightBlock};
use crate::GgmlType;

/// One Q5_1 block (24 bytes).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ5_1 {
    /// Scale.
    pub d: f16,
    /// Minimum (value of level 0).
    pub m: f16,
    /// Fifth bits, value `i` at bit `i` (little-endian u32).
    pub qh: [u8; 4],
    /// Low nibbles: low = values 0..16, high = values 16..32.
    pub qs: [u8; 16],
}
const _: () = assert!(size_of::<BlockQ5_1>() == 24);

impl BlockQ5_1 {
    /// The 32 unsigned levels (0..=31).
    #[inline]
    pub fn levels(&self) -> [u8; 32] {
        levels5(self.qh, &self.qs)
    }
}

impl QuantBlock for BlockQ5_1 {
    const DTYPE: GgmlType = GgmlType::Q5_1;

    fn dequantize(&self, out: &mut [f32]) {
        dequantize_with_min(self.d, self.m, &self.levels(), out);
    }
}

impl Quantize for BlockQ5_1 {
    /// `m = min(x)`, `d = (max - min) / 31`.
    fn quantize(x: &[f32]) -> Self {
        let (min, max) = min_max(&x[..32]);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        // (x - min) · id + 0.5 <= 31.5, so the truncating conversion needs no clamp (the reference has none).
        let levels: [u8; 32] = core::array::from_fn(|i| ((x[i] - min) * id + 0.5) as u8);
        let (qh, qs) = pack5(&levels);
        BlockQ5_1 {
            d: f16::from_f32(d),
            m: f16::from_f32(min),
            qh,
            qs,
        }
    }
}

impl WeightBlock for BlockQ5_1 {
    type Act = BlockQ8_1;

    fn vec_dot_ref(w: &[Self], a: &[BlockQ8_1]) -> f32 {
        w.iter()
            .zip(a)
            .map(|(w, a)| dot_with_min(w.d, w.m, &w.levels(), a))
            .sum()
    }
}
