//! Q5_1: 32 5-bit values with an f16 scale and an f16 minimum; bit layout as Q5_0. Value `i` is `d * q_i + m`.
//! (Dequantization and dot product only: no preset quantizes to it.)

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::q5_0::levels5;
use super::{BlockQ8_0, QuantBlock, WeightBlock};
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
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        for (o, q) in out.iter_mut().zip(self.levels()) {
            *o = d * q as f32 + m;
        }
    }
}

impl WeightBlock for BlockQ5_1 {
    type Act = BlockQ8_0;

    fn vec_dot_ref(w: &[Self], a: &[BlockQ8_0]) -> f32 {
        w.iter()
            .zip(a)
            .map(|(w, a)| {
                let dot: i32 = w
                    .levels()
                    .iter()
                    .zip(&a.qs)
                    .map(|(&x, &y)| x as i32 * y as i32)
                    .sum();
                let sum_a: i32 = a.qs.iter().map(|&y| y as i32).sum();
                let da = a.d.to_f32();
                dot as f32 * (w.d.to_f32() * da) + sum_a as f32 * (w.m.to_f32() * da)
            })
            .sum()
    }
}
