//! Q4_K: a 256-element super-block of eight 32-element sub-blocks, 4-bit levels, a 6-bit scale and 6-bit min per
//! sub-block, and f16 super-scales `d` and `dmin`. Value `i` of sub-block `j` is `d*sc_j * q_i - dmin*m_j`.
//!
//! `qs` holds four 64-element chunks of 32 bytes: byte `l` of chunk `c` has element `64c + l` in its low nibble
//! (sub-block `2c`) and element `64c + 32 + l` in its high nibble (sub-block `2c + 1`).

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::kquant::{QK_K, quantize_scale_min_superblock, unpack_scale_mins};
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
        core::array::from_fn(|e| {
            let byte = self.qs[32 * (e / 64) + e % 32];
            if e % 64 < 32 { byte & 0xf } else { byte >> 4 }
        })
    }
}

impl QuantBlock for BlockQ4_K {
    const DTYPE: GgmlType = GgmlType::Q4_K;

    fn dequantize(&self, out: &mut [f32]) {
        let (scales, mins) = unpack_scale_mins(&self.scales);
        let (d, dmin) = (self.d.to_f32(), self.dmin.to_f32());
        let levels = self.levels();
        for j in 0..8 {
            let (sub_d, sub_m) = (d * scales[j] as f32, dmin * mins[j] as f32);
            for i in 32 * j..32 * j + 32 {
                out[i] = sub_d * levels[i] as f32 - sub_m;
            }
        }
    }
}

impl Quantize for BlockQ4_K {
    fn quantize(x: &[f32]) -> Self {
        let (d, dmin, scales, levels) = quantize_scale_min_superblock(x, 15, -1.0, 20);
        let qs = core::array::from_fn(|b| {
            let e = 64 * (b / 32) + b % 32;
            levels[e] | (levels[e + 32] << 4)
        });
        BlockQ4_K {
            d,
            dmin,
            scales,
            qs,
        }
    }
}

/// `Σ_j sc_j Σ_{i∈j} q_i a_i` and `Σ_j m_j (bsums of j)` for a Q4_K/Q5_K block: the two integer sums of their dot.
#[inline]
pub(super) fn scale_min_sums(levels: &[u8; QK_K], packed: &[u8; 12], a: &BlockQ8_K) -> (i32, i32) {
    let (scales, mins) = unpack_scale_mins(packed);
    let mut sum_q = 0i32;
    let mut sum_m = 0i32;
    for j in 0..8 {
        let sub: i32 = (32 * j..32 * j + 32)
            .map(|i| levels[i] as i32 * a.qs[i] as i32)
            .sum();
        sum_q += scales[j] as i32 * sub;
        sum_m += mins[j] as i32 * (a.bsums[2 * j] as i32 + a.bsums[2 * j + 1] as i32);
    }
    (sum_q, sum_m)
}

impl WeightBlock for BlockQ4_K {
    type Act = BlockQ8_K;

    fn vec_dot_ref(w: &[Self], a: &[BlockQ8_K]) -> f32 {
        w.iter()
            .zip(a)
            .map(|(w, a)| {
                let (sum_q, sum_m) = scale_min_sums(&w.levels(), &w.scales, a);
                w.d.to_f32() * a.d * sum_q as f32 - w.dmin.to_f32() * a.d * sum_m as f32
            })
            .sum()
    }
}
