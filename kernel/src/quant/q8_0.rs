//! Q8_0: 32 signed 8-bit values with one f16 scale. Value `i` is `d * qs[i]`. Also the activation partner of the
//! legacy 32-element weight formats.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::kquant::nearest_int;
use super::legacy::{dequantize_symmetric, dot_symmetric};
use super::{QuantBlock, Quantize, WeightBlock};
use crate::GgmlType;

/// One Q8_0 block (34 bytes).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: f16,
    /// Quantized values.
    pub qs: [i8; 32],
}
const _: () = assert!(size_of::<BlockQ8_0>() == 34);

impl QuantBlock for BlockQ8_0 {
    const DTYPE: GgmlType = GgmlType::Q8_0;

    fn dequantize(&self, out: &mut [f32]) {
        dequantize_symmetric(self.d, &self.qs, out);
    }
}

impl Quantize for BlockQ8_0 {
    /// `d = max|x| / 127`, values rounded half away from zero (C `roundf`; libm keeps it available without std).
    fn quantize(x: &[f32]) -> Self {
        let amax = x[..32]
            .iter()
            .fold(0.0f32, |m, v| if m > v.abs() { m } else { v.abs() });
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        BlockQ8_0 {
            d: f16::from_f32(d),
            qs: core::array::from_fn(|i| libm::roundf(x[i] * id) as i8),
        }
    }
}

impl BlockQ8_0 {
    /// Quantizes activations the way ggml's x86 CPU backend does (`id = 127 / max|x|`, rounding half to even), so
    /// dot products see the same integers as llama.cpp's. Model files use [`Quantize::quantize`], the reference.
    pub fn quantize_activation(x: &[f32]) -> Self {
        let amax = x[..32].iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        BlockQ8_0 {
            d: f16::from_f32(amax / 127.0),
            // |x · id| <= 127, where `nearest_int` is exact (and, like `rintf`, takes NaN to 0).
            qs: core::array::from_fn(|i| nearest_int(x[i] * id) as i8),
        }
    }
}

/// Q8_0 activations with the sum of their levels (36 bytes): the partner of the grouped AVX-512 Q8_0 kernel, which
/// multiplies weight levels offset to unsigned (`w + 128`) by these and takes `128 · sum` back off, in exact integers,
/// so its dot products are those of [`BlockQ8_0`] activations.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ8_0Sum {
    /// Scale.
    pub d: f16,
    /// `Σ qs` (at most 32 · 127 in magnitude).
    pub sum: i16,
    /// Quantized values.
    pub qs: [i8; 32],
}
const _: () = assert!(size_of::<BlockQ8_0Sum>() == 36);

impl From<BlockQ8_0> for BlockQ8_0Sum {
    fn from(b: BlockQ8_0) -> Self {
        BlockQ8_0Sum {
            d: b.d,
            sum: b.qs.iter().map(|&q| i16::from(q)).sum(),
            qs: b.qs,
        }
    }
}

impl QuantBlock for BlockQ8_0Sum {
    const DTYPE: GgmlType = GgmlType::Q8_0;

    fn dequantize(&self, out: &mut [f32]) {
        dequantize_symmetric(self.d, &self.qs, out);
    }
}

impl Quantize for BlockQ8_0Sum {
    fn quantize(x: &[f32]) -> Self {
        BlockQ8_0::quantize(x).into()
    }
}

impl WeightBlock for BlockQ8_0 {
    type Act = BlockQ8_0;

    fn vec_dot_ref(w: &[Self], a: &[Self::Act]) -> f32 {
        w.iter().zip(a).map(|(w, a)| dot_symmetric(w.d, &w.qs, a)).sum()
    }
}
