//! Shared pieces of the K-quant formats: GGML's rounding, the scale searches its reference quantizers use, and the
//! 6-bit scale/min packing of Q4_K and Q5_K with the arithmetic those two formats share.
//!
//! The arithmetic is written in the same order as the reference so results are bit-identical (Rust never fuses
//! multiply-adds on its own).

use super::BlockQ8_K;

/// Elements per K-quant super-block.
pub(crate) const QK_K: usize = 256;

/// Scales below this are treated as zero (GGML's `GROUP_MAX_EPS`).
pub(super) const GROUP_MAX_EPS: f32 = 1e-15;

/// Round to nearest with ties to even, via the float-mantissa trick GGML uses (valid for |v| <= 2^22).
#[inline]
pub(super) fn nearest_int(v: f32) -> i32 {
    let shifted = v + 12_582_912.0; // 1.5 * 2^23: the sum's low mantissa bits are round(v) + 2^22
    (shifted.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// Fits `x ≈ scale * L + min` with `L` in `0..=nmax` (`min <= 0`), minimising the weighted squared error over a small
/// grid of candidate scales around `nmax / (max - min)`. Returns `(scale, -min)` and leaves the levels in `levels`.
/// (GGML's `make_qkx2_quants` with squared error.)
#[allow(clippy::too_many_arguments)] // the grid parameters are the reference's, named as it names them
pub(super) fn fit_scale_min(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    levels: &mut [u8],
    scratch: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> (f32, f32) {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        min = if x[i] < min { x[i] } else { min };
        max = if x[i] > max { x[i] } else { max };
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        levels[..n].fill(0);
        return (0.0, -min);
    }
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        levels[i] = l as u8;
        let diff = scale * l as f32 + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    for step in 0..=nstep {
        iscale = (rmin + rdelta * step as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            scratch[i] = l as u8;
            let (w, l) = (weights[i], l as f32);
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * scratch[i] as f32 + this_min - x[i];
                error += weights[i] * (diff * diff);
            }
            if error < best_error {
                levels[..n].copy_from_slice(&scratch[..n]);
                best_error = error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Fits `x ≈ scale * (L - nmax)` with `L` in `0..2*nmax`, weighting each element by `x²` and trying 18 scales
/// around `nmax / max|x|`. Returns the scale and leaves the levels in `levels`. (GGML's `make_qx_quants` with
/// `rmse_type = 1` and no importance weights.)
pub(super) fn fit_symmetric_scale(nmax: i32, x: &[f32], levels: &mut [u8]) -> f32 {
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        levels.fill(0);
        return 0.0;
    }
    let level = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for &v in x {
            let l = level(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let set_levels = |iscale: f32, levels: &mut [u8]| {
        for (out, &v) in levels.iter_mut().zip(x) {
            *out = (level(iscale, v) + nmax) as u8;
        }
    };
    let iscale = -(nmax as f32) / max;
    set_levels(iscale, levels);
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for step in (-9..=9).filter(|&s| s != 0) {
        let iscale = -(nmax as f32 + 0.1 * step as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            set_levels(iscale, levels);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// The low 4 bits of Q4_K/Q5_K levels in element order. `qs` holds four 64-element chunks of 32 bytes: byte `l` of
/// chunk `c` has element `64c + l` in its low nibble and element `64c + 32 + l` in its high nibble.
#[inline]
pub(super) fn unpack_nibbles_k(qs: &[u8; QK_K / 2]) -> [u8; QK_K] {
    core::array::from_fn(|e| {
        let byte = qs[32 * (e / 64) + e % 32];
        if e % 64 < 32 { byte & 0xf } else { byte >> 4 }
    })
}

/// Packs the low 4 bits of 256 levels into the Q4_K/Q5_K `qs` layout: the inverse of [`unpack_nibbles_k`].
pub(super) fn pack_nibbles_k(levels: &[u8; QK_K]) -> [u8; QK_K / 2] {
    core::array::from_fn(|b| {
        let e = 64 * (b / 32) + b % 32;
        (levels[e] & 0xf) | ((levels[e + 32] & 0xf) << 4)
    })
}

/// Unpacks the eight 6-bit (scale, min) pairs of a Q4_K/Q5_K block.
///
/// Bytes 0-3 hold scales 0-3 in their low 6 bits, bytes 4-7 mins 0-3; bytes 8-11 hold the low 4 bits of scales 4-7
/// (low nibble) and mins 4-7 (high nibble), whose top 2 bits sit in the high 2 bits of bytes 0-3 and 4-7.
#[inline]
pub(crate) fn unpack_scale_mins(packed: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let mut scales = [0u8; 8];
    let mut mins = [0u8; 8];
    for j in 0..4 {
        scales[j] = packed[j] & 63;
        mins[j] = packed[j + 4] & 63;
        scales[j + 4] = (packed[j + 8] & 0xf) | ((packed[j] >> 6) << 4);
        mins[j + 4] = (packed[j + 8] >> 4) | ((packed[j + 4] >> 6) << 4);
    }
    (scales, mins)
}

/// Packs eight 6-bit (scale, min) pairs: the inverse of [`unpack_scale_mins`].
pub(super) fn pack_scale_mins(scales: &[u8; 8], mins: &[u8; 8]) -> [u8; 12] {
    let mut packed = [0u8; 12];
    for j in 0..4 {
        packed[j] = scales[j] | ((scales[j + 4] >> 4) << 6);
        packed[j + 4] = mins[j] | ((mins[j + 4] >> 4) << 6);
        packed[j + 8] = (scales[j + 4] & 0xf) | ((mins[j + 4] & 0xf) << 4);
    }
    packed
}

/// The super-block part shared by Q4_K and Q5_K quantization: fits each 32-element sub-block's scale and min with
/// `nmax` levels, quantizes the 8 scales and 8 mins to 6 bits against their maxima, then re-derives each level
/// against the quantized scales. Returns `(d, dmin, packed scales, levels)`.
pub(super) fn quantize_scale_min_superblock(
    x: &[f32],
    nmax: i32,
    rmin: f32,
    nstep: i32,
) -> (half::f16, half::f16, [u8; 12], [u8; QK_K]) {
    let mut levels = [0u8; QK_K];
    let mut scratch = [0u8; 32];
    let mut weights = [0f32; 32];
    let mut sub_scales = [0f32; 8];
    let mut sub_mins = [0f32; 8];
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let sum_x2: f32 = xs.iter().fold(0.0, |acc, v| acc + v * v);
        let av_x = libm::sqrtf(sum_x2 / 32.0);
        for (w, v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        let (scale, min) = fit_scale_min(
            nmax,
            xs,
            &weights,
            &mut levels[32 * j..32 * j + 32],
            &mut scratch,
            rmin,
            0.1,
            nstep,
        );
        sub_scales[j] = scale;
        sub_mins[j] = min;
        max_scale = if scale > max_scale { scale } else { max_scale };
        max_min = if min > max_min { min } else { max_min };
    }
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    // GGML stores nearest_int's result in a uint8_t before clamping: keep that truncation.
    let six_bits = |v: f32| (nearest_int(v) as u8).min(63);
    let scales: [u8; 8] = core::array::from_fn(|j| six_bits(inv_scale * sub_scales[j]));
    let mins: [u8; 8] = core::array::from_fn(|j| six_bits(inv_min * sub_mins[j]));
    let d = half::f16::from_f32(max_scale / 63.0);
    let dmin = half::f16::from_f32(max_min / 63.0);
    for j in 0..8 {
        let sub_d = d.to_f32() * scales[j] as f32;
        if sub_d == 0.0 {
            continue;
        }
        let sub_m = dmin.to_f32() * mins[j] as f32;
        for i in 32 * j..32 * j + 32 {
            levels[i] = nearest_int((x[i] + sub_m) / sub_d).clamp(0, nmax) as u8;
        }
    }
    (d, dmin, pack_scale_mins(&scales, &mins), levels)
}

/// Q4_K/Q5_K values from their levels: `d·sc_j · q_i - dmin·m_j` for element `i` of sub-block `j`.
pub(super) fn dequantize_scale_min(
    d: half::f16,
    dmin: half::f16,
    packed: &[u8; 12],
    levels: &[u8; QK_K],
    out: &mut [f32],
) {
    let (scales, mins) = unpack_scale_mins(packed);
    let (d, dmin) = (d.to_f32(), dmin.to_f32());
    for j in 0..8 {
        let (sub_d, sub_m) = (d * scales[j] as f32, dmin * mins[j] as f32);
        for i in 32 * j..32 * j + 32 {
            out[i] = sub_d * levels[i] as f32 - sub_m;
        }
    }
}

/// Σ_j `mins[j]` · (sum of activation sub-block j): the minimum term of a Q4_K/Q5_K dot product.
#[inline]
pub(crate) fn min_term(mins: &[u8; 8], a: &BlockQ8_K) -> i32 {
    (0..8)
        .map(|j| i32::from(mins[j]) * (i32::from(a.bsums[2 * j]) + i32::from(a.bsums[2 * j + 1])))
        .sum()
}

/// Q4_K/Q5_K dot product of one block with a Q8_K block, from the levels: `d·da Σ_j sc_j Σ_{i∈j} q_i a_i`
/// minus `dmin·da Σ_j m_j (sum of a over j)`, the activation sums coming from `bsums`.
pub(super) fn dot_scale_min(
    d: half::f16,
    dmin: half::f16,
    packed: &[u8; 12],
    levels: &[u8; QK_K],
    a: &BlockQ8_K,
) -> f32 {
    let (scales, mins) = unpack_scale_mins(packed);
    let sum_q: i32 = scales
        .iter()
        .enumerate()
        .map(|(j, &sc)| {
            let sub: i32 = (32 * j..32 * j + 32).map(|i| levels[i] as i32 * a.qs[i] as i32).sum();
            sc as i32 * sub
        })
        .sum();
    d.to_f32() * a.d * sum_q as f32 - dmin.to_f32() * a.d * min_term(&mins, a) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(-2.5), -2);
        assert_eq!(nearest_int(-2.6), -3);
        assert_eq!(nearest_int(4_194_303.0), 4_194_303);
    }

    #[test]
    fn scale_min_packing_round_trips() {
        let scales = [0, 1, 63, 17, 32, 48, 5, 62];
        let mins = [63, 0, 1, 40, 15, 16, 31, 33];
        assert_eq!(unpack_scale_mins(&pack_scale_mins(&scales, &mins)), (scales, mins));
    }
}
