//! Q6_K: a 256-element super-block of sixteen 16-element groups, 6-bit levels, a signed 8-bit scale per group and an
//! f16 super-scale. Value `i` is `d * scales[i/16] * (q_i - 32)`.
//!
//! Each 128-element half `h` uses `ql[64h..64h+64]` and `qh[32h..32h+32]`: element `128h + 32k + l` (k = 0..4) takes
//! its low 4 bits from `ql[64h + l + 32(k%2)]` (low nibble for k < 2, high for k >= 2) and its high 2 bits from bits
//! `2k..2k+2` of `qh[32h + l]`.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::kquant::{GROUP_MAX_EPS, QK_K, fit_symmetric_scale, nearest_int};
use super::{BlockQ8_K, QuantBlock, Quantize, WeightBlock};
use crate::GgmlType;

/// One Q6_K block (210 bytes).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ6_K {
    /// Low 4 bits of the levels.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits of the levels.
    pub qh: [u8; QK_K / 4],
    /// Scale of each 16-element group.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale.
    pub d: f16,
}
const _: () = assert!(size_of::<BlockQ6_K>() == 210);

impl BlockQ6_K {
    /// The 256 signed levels (-32..=31), in element order.
    #[inline]
    pub fn levels(&self) -> [i8; QK_K] {
        // Element 128h + 32k + l: the low nibble (k < 2) or high nibble of `ql[64h + 32(k % 2) + l]`, and bits 2k..2k+2
        // of `qh[32h + l]` — loops over `l` innermost, which the compiler vectorizes.
        let mut levels = [0i8; QK_K];
        for (h, (ql, qh)) in self.ql.chunks_exact(64).zip(self.qh.chunks_exact(32)).enumerate() {
            for (k, out) in levels[128 * h..][..128].chunks_exact_mut(32).enumerate() {
                let low = &ql[32 * (k % 2)..][..32];
                for ((out, &byte), &high) in out.iter_mut().zip(low).zip(qh) {
                    let low = if k < 2 { byte & 0xf } else { byte >> 4 };
                    *out = (low | (((high >> (2 * k)) & 3) << 4)) as i8 - 32;
                }
            }
        }
        levels
    }
}

impl QuantBlock for BlockQ6_K {
    const DTYPE: GgmlType = GgmlType::Q6_K;

    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        let levels = self.levels();
        for g in 0..16 {
            let group_d = d * self.scales[g] as f32;
            for i in 16 * g..16 * g + 16 {
                out[i] = group_d * levels[i] as f32;
            }
        }
    }
}

impl Quantize for BlockQ6_K {
    fn quantize(x: &[f32]) -> Self {
        let mut levels = [0u8; QK_K];
        let mut group_scales = [0f32; 16];
        let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
        for g in 0..16 {
            let scale = fit_symmetric_scale(32, &x[16 * g..16 * g + 16], &mut levels[16 * g..16 * g + 16]);
            group_scales[g] = scale;
            if scale.abs() > max_abs_scale {
                max_abs_scale = scale.abs();
                max_scale = scale;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            return Self::zeroed();
        }
        let iscale = -128.0 / max_scale;
        let d = f16::from_f32(1.0 / iscale);
        let scales: [i8; 16] = core::array::from_fn(|g| nearest_int(iscale * group_scales[g]).min(127) as i8);
        for (g, &scale) in scales.iter().enumerate() {
            let group_d = d.to_f32() * scale as f32;
            if group_d == 0.0 {
                continue;
            }
            for i in 16 * g..16 * g + 16 {
                levels[i] = (nearest_int(x[i] / group_d).clamp(-32, 31) + 32) as u8;
            }
        }
        let mut block = BlockQ6_K {
            ql: [0; QK_K / 2],
            qh: [0; QK_K / 4],
            scales,
            d,
        };
        for h in 0..2 {
            for l in 0..32 {
                let q = |k: usize| levels[128 * h + 32 * k + l];
                block.ql[64 * h + l] = (q(0) & 0xf) | ((q(2) & 0xf) << 4);
                block.ql[64 * h + l + 32] = (q(1) & 0xf) | ((q(3) & 0xf) << 4);
                block.qh[32 * h + l] = (q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6);
            }
        }
        block
    }
}

impl WeightBlock for BlockQ6_K {
    type Act = BlockQ8_K;

    fn vec_dot_ref(w: &[Self], a: &[BlockQ8_K]) -> f32 {
        w.iter()
            .zip(a)
            .map(|(w, a)| {
                let levels = w.levels();
                let sum: i32 = (0..16)
                    .map(|g| {
                        let group: i32 = (16 * g..16 * g + 16).map(|i| levels[i] as i32 * a.qs[i] as i32).sum();
                        w.scales[g] as i32 * group
                    })
                    .sum();
                w.d.to_f32() * a.d * sum as f32
            })
            .sum()
    }
}
