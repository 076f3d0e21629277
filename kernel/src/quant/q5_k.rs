//! Q5_K: Q4_K's layout plus a fifth bit per value: bit `j` of `qh[l]` is the high bit of element `32j + l`.
//! Value `i` of sub-block `j` is `d*sc_j * q_i - dmin*m_j` with `q_i` in 0..=31.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::kquant::{
    QK_K, dequantize_scale_min, dot_scale_min, pack_nibbles_k, quantize_scale_min_superblock, unpack_nibbles_k,
};
use super::{BlockQ8_K, QuantBlock, Quantize, WeightBlock};
use crate::GgmlType;

/// One Q5_K block (176 bytes).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ5_K {
    /// Super-block scale of the sub-block scales.
    pub d: f16,
    /// Super-block scale of the sub-block mins.
    pub dmin: f16,
    /// Eight 6-bit scales and eight 6-bit mins, packed as in Q4_K.
    pub scales: [u8; 12],
    /// High bits: bit `j` of byte `l` belongs to element `32j + l`.
    pub qh: [u8; QK_K / 8],
    /// Low 4 bits, laid out as Q4_K's `qs`.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockQ5_K>() == 176);

impl BlockQ5_K {
    /// The 256 levels (0..=31), in element order.
    #[inline]
    pub fn levels(&self) -> [u8; QK_K] {
        let low = unpack_nibbles_k(&self.qs);
        core::array::from_fn(|e| low[e] | (((self.qh[e % 32] >> (e / 32)) & 1) << 4))
    }
}

impl QuantBlock for BlockQ5_K {
    const DTYPE: GgmlType = GgmlType::Q5_K;

    fn dequantize(&self, out: &mut [f32]) {
        dequantize_scale_min(self.d, self.dmin, &self.scales, &self.levels(), out);
    }
}

impl Quantize for BlockQ5_K {
    fn quantize(x: &[f32]) -> Self {
        let (d, dmin, scales, levels) = quantize_scale_min_superblock(x, 31, -0.5, 15);
        let qs = pack_nibbles_k(&levels);
        let qh = core::array::from_fn(|l| (0..8).fold(0u8, |h, j| h | ((levels[32 * j + l] >> 4) << j)));
        BlockQ5_K {
            d,
            dmin,
            scales,
            qh,
            qs,
        }
    }
}

impl WeightBlock for BlockQ5_K {
    type Act = BlockQ8_K;

    fn vec_dot_ref(w: &[Self], a: &[BlockQ8_K]) -> f32 {
        w.iter()
            .zip(a)
            .map(|(w, a)| dot_scale_min(w.d, w.dmin, &w.scales, &w.levels(), a))
            .sum()
    }
}
