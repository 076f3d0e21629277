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
    /// The value of largest magnitude maps to -127 (a symmetric range keeps the SIMD dot products simple). Written as
    /// loops over fixed lanes so that the compiler vectorises them: a prompt's activations are quantized on every
    /// matmul.
    fn quantize(x: &[f32]) -> Self {
        let x = &x[..QK_K];
        // The largest magnitude, eight lanes at a time (NaNs are skipped, as ggml's comparison skips them).
        let mut lanes = [0.0f32; 8];
        for chunk in x.as_chunks::<8>().0 {
            for (lane, v) in lanes.iter_mut().zip(chunk) {
                *lane = lane.max(v.abs());
            }
        }
        let amax = lanes.into_iter().fold(0.0f32, f32::max);
        if amax == 0.0 {
            return Self::zeroed();
        }
        // The first value of that magnitude, with its sign.
        let max = x.iter().copied().find(|v| v.abs() == amax).unwrap_or(amax);
        let iscale = -127.0 / max;
        let mut block = BlockQ8_K {
            d: 1.0 / iscale,
            ..Self::zeroed()
        };
        for (q, &v) in block.qs.iter_mut().zip(x) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for (sum, group) in block.bsums.iter_mut().zip(block.qs.as_chunks::<16>().0) {
            *sum = group.iter().map(|&q| i16::from(q)).sum();
        }
        block
    }
}
