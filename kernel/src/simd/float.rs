//! Float vector primitives for attention, with the arithmetic of ggml's CPU backend on x86 (its summation trees,
//! fused multiply-adds and f16 roundings), so hearth's outputs match llama.cpp's token for token; and SwiGLU, with
//! libm's exponential (which agrees with llama.cpp more often than ggml's own, measured on greedy outputs).
//!
//! The scalar functions here are the reference: they spell out lane by lane what the AVX2 kernels compute, and are
//! bit-identical to them. ISAs without kernels of their own for these operations use the reference (NEON has `mad_rows`, for training).

use half::f16;

use super::Isa;

/// Lanes of the AVX2 accumulators whose summation order the reference mirrors.
const LANES: usize = 8;

/// Where the `mad_rows` kernels read weight `(t, j)` (of accumulator row `t`, for summed row `j`): at
/// `t · token + j · row` of their weights.
#[derive(Clone, Copy)]
pub(crate) struct Strides {
    pub(crate) token: usize,
    pub(crate) row: usize,
}

impl Strides {
    /// Row-major `[T, J]` weights for `rows: [J, width]`.
    fn rows(width: usize, rows: &[f32]) -> Strides {
        Strides {
            token: rows.len().checked_div(width).unwrap_or(0),
            row: 1,
        }
    }

    /// The first `T` columns of a `[J, stride]` matrix.
    fn columns(stride: usize) -> Strides {
        Strides { token: 1, row: stride }
    }
}

#[inline]
fn fma(a: f32, b: f32, c: f32) -> f32 {
    libm::fmaf(a, b, c)
}

/// Horizontal sum of 8 lanes in the order of ggml's softmax (`movehl` then `movehdup`).
#[inline]
fn movehl_tree(v: &[f32; LANES]) -> f32 {
    let t: [f32; 4] = core::array::from_fn(|i| v[i] + v[i + 4]);
    (t[0] + t[2]) + (t[1] + t[3])
}

/// Horizontal sum of 8 lanes in adjacent pairs (the order of two rounds of AVX's `hadd` and a half-add).
#[inline]
fn pair_tree(v: &[f32; LANES]) -> f32 {
    ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]))
}

/// log2(e), and ln 2 split into a high part with trailing zero bits (so `k · LN2_HI` is exact for the `k` of an
/// exponential's range reduction) and the rest: the constants both exponentials (ggml's and libm's) reduce with.
pub(crate) const LOG2_E: f32 = f32::from_bits(0x3fb8_aa3b);
pub(crate) const LN2_HI: f32 = f32::from_bits(0x3f31_7200);
pub(crate) const LN2_LO: f32 = f32::from_bits(0x35bf_be8e);

/// `exp(x)` as ggml's vectorised `ggml_v_expf` computes it for one lane (within 1.5 ULP of the true value; the same
/// bits as the SIMD versions).
pub fn expf(x: f32) -> f32 {
    let r = f32::from_bits(0x4b40_0000); // 0x1.8p23
    let z = fma(x, LOG2_E, r);
    let n = z - r;
    let b = fma(-n, LN2_LO, fma(-n, LN2_HI, x));
    let e = z.to_bits() << 23;
    let k = f32::from_bits(e.wrapping_add(1.0f32.to_bits()));
    let u = b * b;
    let j = fma(
        fma(
            fma(f32::from_bits(0x3c07_2010), b, f32::from_bits(0x3d2b_9f17)),
            u,
            fma(f32::from_bits(0x3e2a_af33), b, f32::from_bits(0x3eff_fedb)),
        ),
        u,
        f32::from_bits(0x3f7f_fff6) * b,
    );
    // `partial_cmp` so NaN takes the same branches as the vector code's ordered compares (false for NaN).
    let beyond = |limit: f32| n.abs().partial_cmp(&limit) == Some(core::cmp::Ordering::Greater);
    if !beyond(126.0) {
        return fma(j, k, k);
    }
    let g = if n <= 0.0 { 0x8200_0000u32 } else { 0 };
    let s1 = f32::from_bits(g.wrapping_add(0x7f00_0000));
    let s2 = f32::from_bits(e.wrapping_sub(g));
    if beyond(192.0) { s1 * s1 } else { fma(s2, j, s2) * s1 }
}

/// Reference kernels (see the module docs).
pub mod reference {
    use super::*;

    /// `y = f16(x·v + y)`, fused, element-wise (ggml's `ggml_vec_mad_f16`).
    pub fn mad_f16(y: &mut [f16], x: &[f16], v: f32) {
        for (y, x) in y.iter_mut().zip(x) {
            *y = f16::from_f32(fma(x.to_f32(), v, y.to_f32()));
        }
    }

    /// `y = f16(y·v)` element-wise.
    pub fn scale_f16(y: &mut [f16], v: f32) {
        for y in y {
            *y = f16::from_f32(y.to_f32() * v);
        }
    }

    /// `y = x·v + y`, fused, element-wise (ggml's `ggml_vec_mad_f32`).
    pub fn mad_f32(y: &mut [f32], x: &[f32], v: f32) {
        for (y, x) in y.iter_mut().zip(x) {
            *y = fma(*x, v, *y);
        }
    }

    /// `out[j] = Σ_d q[d]·kt[d][j]` for `kt: [q.len(), out.len()]`, each sum a chain of fused multiply-adds in `d`
    /// order starting from 0 (the order of ggml's tiled attention GEMM).
    pub fn dot_columns(kt: &[f32], q: &[f32], out: &mut [f32]) {
        out.fill(0.0);
        let n = out.len();
        for (&qd, row) in q.iter().zip(kt.chunks_exact(n)) {
            for (o, &k) in out.iter_mut().zip(row) {
                *o = fma(k, qd, *o);
            }
        }
    }

    /// `out[j] = Σ_d k[j][d]·q[d]` for `k: [out.len(), q.len()]` in f16: each product rounded to f32 and added in
    /// `d` order from 0, unfused (the per-position score of the decode path). ggml's f16 dot product sums in four
    /// 8-lane FMA accumulators instead; mirroring that measured worse greedy agreement with llama.cpp on
    /// Qwen2.5-Coder than this plain sum, for reasons not yet found.
    pub fn dot_f16_rows(k: &[f16], q: &[f16], out: &mut [f32]) {
        for (o, row) in out.iter_mut().zip(k.chunks_exact(q.len())) {
            *o = row.iter().zip(q).fold(0.0, |sum, (k, q)| sum + k.to_f32() * q.to_f32());
        }
    }

    /// `out[t][j] = Σ_d rows[j][d]·queries[t][d]` for `rows: [J, width]`, `queries: [T, width]`, `out: [T, J]` (the
    /// scores of the long-range attention path, one query at a time; `x·Aᵀ` of a LoRA pair, many tokens at once),
    /// in hearth's own order: lane `l` of eight accumulates `d ≡ l (mod 8)` by fused multiply-adds in `d` order, the
    /// lanes are summed in adjacent pairs, then the last `width % 8` products are fused on in order.
    pub fn dot_rows(width: usize, rows: &[f32], queries: &[f32], out: &mut [f32]) {
        if width == 0 || rows.is_empty() {
            out.fill(0.0);
            return;
        }
        let body = width / LANES * LANES;
        for (out, q) in out
            .chunks_exact_mut(rows.len() / width)
            .zip(queries.chunks_exact(width))
        {
            for (o, row) in out.iter_mut().zip(rows.chunks_exact(width)) {
                let mut lanes = [0f32; LANES];
                for (x, y) in row[..body]
                    .as_chunks::<LANES>()
                    .0
                    .iter()
                    .zip(q[..body].as_chunks::<LANES>().0)
                {
                    for l in 0..LANES {
                        lanes[l] = fma(x[l], y[l], lanes[l]);
                    }
                }
                *o = row[body..]
                    .iter()
                    .zip(&q[body..])
                    .fold(pair_tree(&lanes), |sum, (x, y)| fma(*x, *y, sum));
            }
        }
    }

    /// `acc[t][d] += Σ_j weights[t][j]·rows[j][d]` for `acc: [T, width]`, `rows: [J, width]`, `weights: [T, J]`:
    /// each element a chain of fused multiply-adds in `j` order (with `T = 1`, the value sums of the long-range
    /// attention path; with many, the input gradient of a frozen linear layer in training).
    pub fn mad_rows(width: usize, acc: &mut [f32], rows: &[f32], weights: &[f32]) {
        mad_strided(width, acc, rows, weights, Strides::rows(width, rows))
    }

    /// [`mad_rows`] with the weights transposed: `acc[t][d] += Σ_j weights[j][t]·rows[j][d]`, the weights the first
    /// `T` columns of a `[J, stride]` matrix (a block of attention probabilities read in place, for instance).
    pub fn mad_columns(width: usize, acc: &mut [f32], rows: &[f32], weights: &[f32], stride: usize) {
        mad_strided(width, acc, rows, weights, Strides::columns(stride))
    }

    /// Both of the above: weight `(t, j)` at `t · strides.token + j · strides.row`.
    pub(crate) fn mad_strided(width: usize, acc: &mut [f32], rows: &[f32], weights: &[f32], strides: Strides) {
        if width == 0 {
            return;
        }
        for (t, acc) in acc.chunks_exact_mut(width).enumerate() {
            for (j, row) in rows.chunks_exact(width).enumerate() {
                let w = weights[t * strides.token + j * strides.row];
                for (a, &x) in acc.iter_mut().zip(row) {
                    *a = fma(x, w, *a);
                }
            }
        }
    }

    /// `dst[i] = f32(src[i])` (exact).
    pub fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s.to_f32();
        }
    }

    /// `gate[i] = silu(gate[i]) · up[i]` with `silu(g) = g / (1 + exp(-g))` and libm's `expf` (SwiGLU).
    pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
        for (g, u) in gate.iter_mut().zip(up) {
            *g = *g / (1.0 + libm::expf(-*g)) * u;
        }
    }

    /// `x[i] = exp(x[i] - max)` with [`expf`], returning `Σ x[i]` summed per 8 lanes into an f64
    /// (ggml's `ggml_vec_soft_max_f32`; a tail of fewer than 8 uses libm's `expf`).
    pub fn exp_sum(x: &mut [f32], max: f32) -> f64 {
        let mut sum = 0f64;
        let (body, tail) = x.as_chunks_mut::<LANES>();
        for lanes in body {
            for v in lanes.iter_mut() {
                *v = super::expf(*v - max);
            }
            sum += f64::from(movehl_tree(lanes));
        }
        for v in tail {
            *v = libm::expf(*v - max);
            sum += f64::from(*v);
        }
        sum
    }
}

impl Isa {
    /// The token of the x86 float kernels, if this ISA runs them (AVX-512 runs AVX2's).
    #[cfg(hearth_x86_simd)]
    fn x86_float(self) -> Option<super::x86::Avx2> {
        match self {
            Isa::Avx2(token) => Some(token),
            Isa::Avx512(token) => Some(token.avx2()),
            _ => None,
        }
    }

    /// `y = f16(x·v + y)` ([`reference::mad_f16`]).
    #[inline]
    pub fn mad_f16(self, y: &mut [f16], x: &[f16], v: f32) {
        debug_assert_eq!(x.len(), y.len());
        #[cfg(hearth_x86_simd)]
        if let Some(token) = self.x86_float() {
            return super::x86::float::mad_f16(token, y, x, v);
        }
        reference::mad_f16(y, x, v)
    }

    /// `y = f16(y·v)` ([`reference::scale_f16`]).
    #[inline]
    pub fn scale_f16(self, y: &mut [f16], v: f32) {
        #[cfg(hearth_x86_simd)]
        if let Some(token) = self.x86_float() {
            return super::x86::float::scale_f16(token, y, v);
        }
        reference::scale_f16(y, v)
    }

    /// `y = x·v + y` ([`reference::mad_f32`]).
    #[inline]
    pub fn mad_f32(self, y: &mut [f32], x: &[f32], v: f32) {
        debug_assert_eq!(x.len(), y.len());
        #[cfg(hearth_x86_simd)]
        if let Some(token) = self.x86_float() {
            return super::x86::float::mad_f32(token, y, x, v);
        }
        reference::mad_f32(y, x, v)
    }

    /// `out[j] = Σ_d q[d]·kt[d][j]` ([`reference::dot_columns`]).
    #[inline]
    pub fn dot_columns(self, kt: &[f32], q: &[f32], out: &mut [f32]) {
        debug_assert_eq!(kt.len(), q.len() * out.len());
        #[cfg(hearth_x86_simd)]
        if let Some(token) = self.x86_float() {
            return super::x86::float::dot_columns(token, kt, q, out);
        }
        reference::dot_columns(kt, q, out)
    }

    /// `out[j] = Σ_d k[j][d]·q[d]` over f16 rows ([`reference::dot_f16_rows`]).
    #[inline]
    pub fn dot_f16_rows(self, k: &[f16], q: &[f16], out: &mut [f32]) {
        debug_assert_eq!(k.len(), q.len() * out.len());
        #[cfg(hearth_x86_simd)]
        if let Some(token) = self.x86_float() {
            return super::x86::float::dot_f16_rows(token, k, q, out);
        }
        reference::dot_f16_rows(k, q, out)
    }

    /// `out[t][j] = Σ_d rows[j][d]·queries[t][d]` for `rows: [J, width]`, `queries: [T, width]`, `out: [T, J]`
    /// ([`reference::dot_rows`]).
    #[inline]
    pub fn dot_rows(self, width: usize, rows: &[f32], queries: &[f32], out: &mut [f32]) {
        debug_assert!(
            width == 0
                || (rows.len().is_multiple_of(width)
                    && queries.len().is_multiple_of(width)
                    && out.len() == queries.len() / width * (rows.len() / width))
        );
        #[cfg(hearth_x86_simd)]
        if let Some(token) = self.x86_float() {
            return super::x86::float::dot_rows(token, width, rows, queries, out);
        }
        reference::dot_rows(width, rows, queries, out)
    }

    /// `acc[t][d] += Σ_j weights[t][j]·rows[j][d]` for `acc: [T, width]`, `rows: [J, width]`, `weights: [T, J]`
    /// ([`reference::mad_rows`]; AVX-512 and NEON have kernels of their own here, with the same bits).
    #[inline]
    pub fn mad_rows(self, width: usize, acc: &mut [f32], rows: &[f32], weights: &[f32]) {
        debug_assert!(
            width == 0
                || (acc.len().is_multiple_of(width)
                    && rows.len().is_multiple_of(width)
                    && weights.len() == acc.len() / width * (rows.len() / width))
        );
        self.mad_strided(width, acc, rows, weights, Strides::rows(width, rows))
    }

    /// `acc[t][d] += Σ_j weights[j][t]·rows[j][d]` for `acc: [T, width]`, `rows: [J, width]` and the weights the first
    /// `T` columns of a `[J, stride]` matrix ([`reference::mad_columns`]; the same bits as [`Isa::mad_rows`] with
    /// those weights transposed).
    #[inline]
    pub fn mad_columns(self, width: usize, acc: &mut [f32], rows: &[f32], weights: &[f32], stride: usize) {
        debug_assert!(
            width == 0
                || (acc.len().is_multiple_of(width)
                    && rows.len().is_multiple_of(width)
                    && acc.len() / width <= stride
                    && (rows.is_empty() || weights.len() >= (rows.len() / width - 1) * stride + acc.len() / width))
        );
        self.mad_strided(width, acc, rows, weights, Strides::columns(stride))
    }

    #[inline]
    fn mad_strided(self, width: usize, acc: &mut [f32], rows: &[f32], weights: &[f32], strides: Strides) {
        // (Zero-width rows have nothing to add; every kernel hands them to the reference, which returns.)
        #[cfg(hearth_x86_simd)]
        match self {
            Isa::Avx512(token) => return super::x86::float::mad_rows_wide(token, width, acc, rows, weights, strides),
            Isa::Avx2(token) => return super::x86::float::mad_rows(token, width, acc, rows, weights, strides),
            _ => {}
        }
        #[cfg(target_arch = "aarch64")]
        if let Isa::Neon(token) = self {
            return super::aarch64::float::mad_rows(token, width, acc, rows, weights, strides);
        }
        reference::mad_strided(width, acc, rows, weights, strides)
    }

    /// `dst = f32(src)` ([`reference::f16_to_f32`]).
    #[inline]
    pub fn f16_to_f32(self, src: &[f16], dst: &mut [f32]) {
        debug_assert_eq!(src.len(), dst.len());
        #[cfg(hearth_x86_simd)]
        if let Some(token) = self.x86_float() {
            return super::x86::float::f16_to_f32(token, src, dst);
        }
        reference::f16_to_f32(src, dst)
    }

    /// `gate = silu(gate)·up` ([`reference::silu_mul`]).
    #[inline]
    pub fn silu_mul(self, gate: &mut [f32], up: &[f32]) {
        debug_assert_eq!(gate.len(), up.len());
        #[cfg(hearth_x86_simd)]
        if let Some(token) = self.x86_float() {
            return super::x86::float::silu_mul(token, gate, up);
        }
        reference::silu_mul(gate, up)
    }

    /// `x = exp(x - max)`, returning the sum ([`reference::exp_sum`]).
    #[inline]
    pub fn exp_sum(self, x: &mut [f32], max: f32) -> f64 {
        #[cfg(hearth_x86_simd)]
        if let Some(token) = self.x86_float() {
            return super::x86::float::exp_sum(token, x, max);
        }
        reference::exp_sum(x, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expf_is_close_to_libm() {
        // Results in the normal range (subnormals carry fewer significant bits).
        for i in -1740..=1760 {
            let x = i as f32 * 0.05;
            let (ours, exact) = (expf(x), libm::exp(f64::from(x)));
            assert!(
                ((f64::from(ours) - exact) / exact).abs() < 3e-7,
                "exp({x}) = {ours}, want {exact}"
            );
        }
        assert_eq!(expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf(-200.0), 0.0);
        assert_eq!(expf(0.0), 1.0);
        assert!(expf(100.0).is_infinite());
    }
}
