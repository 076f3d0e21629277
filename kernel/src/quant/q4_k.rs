//! Q4_K: a 256-element super-block of eight 32-element sub-blocks, 4-bit levels, a 6-bit scale and 6-bit min per
//! sub-block, and f16 super-scales `d` and `dmin`. Value `i` of sub-block `j` is `d*sc_j * q_i - dmin*m_j`.
//!
//! `qs` holds four 64-element chunks of 32 bytes: byte `l` of chunk `c` has element `64c + l` in its low nibble
//! (sub-block `2c`) and element `64c + 32 + l` in its high nibble (sub-block `2c + 1`).

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::kquant::{
    QK_K, dequantize_scale_min, dot_scale_min, pack_nibbles_k, quantize_scale_min_superblock, unpack_nibbles_k,
};
use super::{BlockQ8_K, QuantBlock, Quantize, WeightBlock};
use crate::GgmlType;

/// One Q4_K block (144 bytes).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ4_K {
    /// Super-block scale of the sub-block scales.
    pub d: f16,
    /// Super-block scale of the sub-block mins.
    pub dmin: f16,
    /// Eight 6-bit scales and eight 6-bit mins, packed (see `kquant::unpack_scale_mins`).
    pub scales: [u8; 12],
    /// 4-bit levels.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockQ4_K>() == 144);

impl BlockQ4_K {
    /// The 256 levels (0..=15), in element order.
    #[inline]
    pub fn levels(&self) -> [u8; QK_K] {
        unpack_nibbles_k(&self.qs)
    }
}

impl QuantBlock for BlockQ4_K {
    const DTYPE: GgmlType = GgmlType::Q4_K;

    fn dequantize(&self, out: &mut [f32]) {
        dequantize_scale_min(self.d, self.dmin, &self.scales, &self.levels(), out);
    }
}

impl Quantize for BlockQ4_K {
    fn quantize(x: &[f32]) -> Self {
        let (d, dmin, scales, levels) = quantize_scale_min_superblock(x, 15, -1.0, 20);
        BlockQ4_K {
            d,
            dmin,
            scales,
            qs: pack_nibbles_k(&levels),
        }
    }
}

impl WeightBlock for BlockQ4_K {
    type Act = BlockQ8_K;

    fn vec_dot_ref(w: &[Self], a: &[BlockQ8_K]) -> f32 {
        w.iter()
            .zip(a)
            .map(|(w, a)| dot_scale_min(w.d, w.dmin, &w.scales, &w.levels(), a))
            .sum()
    }
}
