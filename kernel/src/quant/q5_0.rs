//! Q5_0: 32 5-bit values with one f16 scale. Low 4 bits as Q4_0's nibbles; bit `i` of the little-endian `qh` word is
//! the fifth bit of value `i`. Value `i` is `d * (q_i - 16)`.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::legacy::{dequantize_symmetric, dot_symmetric, signed_absmax};
use super::{BlockQ8_0, QuantBlock, Quantize, WeightBlock};
use crate::GgmlType;

/// One Q5_0 block (22 bytes).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ5_0 {
    /// Scale.
    pub d: f16,
    /// Fifth bits, value `i` at bit `i` (little-endian u32).
    pub qh: [u8; 4],
    /// Low nibbles: low = values 0..16, high = values 16..32.
    pub qs: [u8; 16],
}
const _: () = assert!(size_of::<BlockQ5_0>() == 22);

/// The 5-bit levels of a block with Q5_0/Q5_1 bit layout.
#[inline]
pub(super) fn levels5(qh: [u8; 4], qs: &[u8; 16]) -> [u8; 32] {
    let high = u32::from_le_bytes(qh);
    core::array::from_fn(|i| {
        let low = if i < 16 { qs[i] & 0xf } else { qs[i - 16] >> 4 };
        low | ((((high >> i) & 1) as u8) << 4)
    })
}

/// Packs 32 5-bit levels into Q5_0/Q5_1's `(qh, qs)`.
pub(super) fn pack5(levels: &[u8; 32]) -> ([u8; 4], [u8; 16]) {
    let qs = core::array::from_fn(|j| (levels[j] & 0xf) | ((levels[j + 16] & 0xf) << 4));
    let high = levels
        .iter()
        .enumerate()
        .fold(0u32, |h, (i, &l)| h | (u32::from(l >> 4) << i));
    (high.to_le_bytes(), qs)
}

impl BlockQ5_0 {
    /// The 32 signed levels (-16..=15).
    #[inline]
    pub fn levels(&self) -> [i8; 32] {
        levels5(self.qh, &self.qs).map(|q| q as i8 - 16)
    }
}

impl QuantBlock for BlockQ5_0 {
    const DTYPE: GgmlType = GgmlType::Q5_0;

    fn dequantize(&self, out: &mut [f32]) {
        dequantize_symmetric(self.d, &self.levels(), out);
    }
}

impl Quantize for BlockQ5_0 {
    /// `d = -max / 16` where `max` is the value of largest magnitude.
    fn quantize(x: &[f32]) -> Self {
        let max = signed_absmax(&x[..32]);
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let levels: [u8; 32] = core::array::from_fn(|i| ((x[i] * id + 16.5) as i8 as u8).min(31));
        let (qh, qs) = pack5(&levels);
        BlockQ5_0 {
            d: f16::from_f32(d),
            qh,
            qs,
        }
    }
}

impl WeightBlock for BlockQ5_0 {
    type Act = BlockQ8_0;

    fn vec_dot_ref(w: &[Self], a: &[BlockQ8_0]) -> f32 {
        w.iter().zip(a).map(|(w, a)| dot_symmetric(w.d, &w.levels(), a)).sum()
    }
}
