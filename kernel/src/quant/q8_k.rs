//! Q8_K: 256 signed 8-bit values with an f32 scale and the sums of each 16 values: the activation partner of the
//! K-quants (the sums let Q4_K/Q5_K apply their per-sub-block minimums without touching the values again).

use bytemuck::{Pod, Zeroable};

use super::kquant::{QK_K, nearest_int};
use super::{QuantBlock, Quantize};
use crate::GgmlType;

/// One Q8_K block (292 bytes).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ8_K {
    /// Scale.
    pub d: f32,
    /// Quantized values.
    pub qs: [i8; QK_K],
    /// `bsums[g]` = sum of `qs[16g..16g+16]`.
    pub bsums: [i16; QK_K / 16],
}
const _: () = assert!(size_of::<BlockQ8_K>() == 292);

impl QuantBlock for BlockQ8_K {
    const DTYPE: GgmlType = GgmlType::Q8_K;

    fn dequantize(&self, out: &mut [f32]) {
        for (o, &q) in out.iter_mut().zip(&self.qs) {
            *o = self.d * q as f32;
        }
    }
}

impl Quantize for BlockQ8_K {
    /// The value of largest magnitude maps to -127 (a symmetric range keeps the SIMD dot products simple).
    fn quantize(x: &[f32]) -> Self {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in &x[..QK_K] {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            return Self::zeroed();
        }
        let iscale = -127.0 / max;
        let qs: [i8; QK_K] = core::array::from_fn(|i| nearest_int(iscale * x[i]).min(127) as i8);
        let bsums = core::array::from_fn(|g| qs[16 * g..16 * g + 16].iter().map(|&q| q as i16).sum());
        BlockQ8_K {
            d: 1.0 / iscale,
            qs,
            bsums,
        }
    }
}
