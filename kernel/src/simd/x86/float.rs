//! AVX2 + FMA + F16C float kernels, bit-identical to [`crate::simd::float::reference`] (which documents each one),
//! and `mad_rows` in AVX-512 too.

use core::arch::x86_64::*;

use half::f16;

use super::{Avx2, Avx512};
use crate::simd::float::Strides;

/// Defines a safe entry point per kernel; the token proves the CPU features were detected.
macro_rules! entry {
    ($($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)?;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(_: Avx2, $($arg: $ty),*) $(-> $ret)? {
                // SAFETY: an `Avx2` token exists only after AVX2, FMA and F16C were detected.
                unsafe { kernels::$name($($arg),*) }
            }
        )*
    };
}

entry! {
    /// `y = f16(x·v + y)`.
    fn mad_f16(y: &mut [f16], x: &[f16], v: f32);
    /// `y = f16(y·v)`.
    fn scale_f16(y: &mut [f16], v: f32);
    /// `y = x·v + y`.
    fn mad_f32(y: &mut [f32], x: &[f32], v: f32);
    /// `out[j] = Σ_d q[d]·kt[d][j]`.
    fn dot_columns(kt: &[f32], q: &[f32], out: &mut [f32]);
    /// `x = exp(x - max)`, returning the sum.
    fn exp_sum(x: &mut [f32], max: f32) -> f64;
    /// `out[j] = Σ_d k[j][d]·q[d]` over f16 rows.
    fn dot_f16_rows(k: &[f16], q: &[f16], out: &mut [f32]);
    /// `out[t][j] = Σ_d rows[j][d]·queries[t][d]`.
    fn dot_rows(width: usize, rows: &[f32], queries: &[f32], out: &mut [f32]);
    /// `dst = f32(src)`.
    fn f16_to_f32(src: &[f16], dst: &mut [f32]);
    /// `gate = silu(gate)·up`.
    fn silu_mul(gate: &mut [f32], up: &[f32]);
}

/// `acc[t][d] += Σ_j w(t, j)·rows[j][d]` for `acc: [T, width]`, `rows: [J, width]`, weights where `strides` say.
pub(crate) fn mad_rows(_: Avx2, width: usize, acc: &mut [f32], rows: &[f32], weights: &[f32], strides: Strides) {
    // SAFETY: an `Avx2` token exists only after AVX2, FMA and F16C were detected.
    unsafe { mad_rows_256::mad_rows(width, acc, rows, weights, strides) }
}

/// [`mad_rows`] in 512-bit vectors: the same fused multiply-add chains, so the same bits.
pub(crate) fn mad_rows_wide(_: Avx512, width: usize, acc: &mut [f32], rows: &[f32], weights: &[f32], strides: Strides) {
    // SAFETY: an `Avx512` token exists only after AVX2, FMA, F16C and AVX-512 F (among others) were detected.
    unsafe { mad_rows_512::mad_rows(width, acc, rows, weights, strides) }
}

mad_rows_kernel!(x86_64, mad_rows_256, "avx2,fma,f16c", __m256, 8, _mm256_setzero_ps, _mm256_loadu_ps,
    _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps, block: 4 x 2, single: 8,
    otherwise: crate::simd::float::reference::mad_strided);
mad_rows_kernel!(x86_64, mad_rows_512, "avx2,fma,f16c,avx512f", __m512, 16, _mm512_setzero_ps, _mm512_loadu_ps,
    _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps, block: 4 x 4, single: 4,
    otherwise: super::mad_rows_256::mad_rows);

mod kernels {
    use super::*;
    use crate::simd::float::{LN2_HI, LN2_LO, LOG2_E, reference};

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn load_f16(x: &[f16; 8]) -> __m256 {
        // SAFETY: `x` is 16 readable bytes; the unaligned load has no alignment requirement.
        _mm256_cvtph_ps(unsafe { _mm_loadu_si128(x.as_ptr().cast()) })
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn store_f16(y: &mut [f16; 8], v: __m256) {
        let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
        // SAFETY: `y` is 16 writable bytes; the unaligned store has no alignment requirement.
        unsafe { _mm_storeu_si128(y.as_mut_ptr().cast(), h) }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn load(x: &[f32; 8]) -> __m256 {
        // SAFETY: `x` is 32 readable bytes; the unaligned load has no alignment requirement.
        unsafe { _mm256_loadu_ps(x.as_ptr()) }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn store(y: &mut [f32; 8], v: __m256) {
        // SAFETY: `y` is 32 writable bytes; the unaligned store has no alignment requirement.
        unsafe { _mm256_storeu_ps(y.as_mut_ptr(), v) }
    }

    /// ggml's `ggml_v_expf` for 8 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn expf8(x: __m256) -> __m256 {
        let r = _mm256_set1_ps(f32::from_bits(0x4b40_0000));
        let z = _mm256_fmadd_ps(x, _mm256_set1_ps(LOG2_E), r);
        let n = _mm256_sub_ps(z, r);
        let b = _mm256_fnmadd_ps(
            n,
            _mm256_set1_ps(LN2_LO),
            _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x),
        );
        let e = _mm256_slli_epi32::<23>(_mm256_castps_si256(z));
        let k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1.0))));
        let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
        let c = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(126.0));
        let u = _mm256_mul_ps(b, b);
        let j = _mm256_fmadd_ps(
            _mm256_fmadd_ps(
                _mm256_fmadd_ps(
                    _mm256_set1_ps(f32::from_bits(0x3c07_2010)),
                    b,
                    _mm256_set1_ps(f32::from_bits(0x3d2b_9f17)),
                ),
                u,
                _mm256_fmadd_ps(
                    _mm256_set1_ps(f32::from_bits(0x3e2a_af33)),
                    b,
                    _mm256_set1_ps(f32::from_bits(0x3eff_fedb)),
                ),
            ),
            u,
            _mm256_mul_ps(_mm256_set1_ps(f32::from_bits(0x3f7f_fff6)), b),
        );
        if _mm256_movemask_ps(c) == 0 {
            return _mm256_fmadd_ps(j, k, k);
        }
        let g = _mm256_and_si256(
            _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LE_OQ>(n, _mm256_setzero_ps())),
            _mm256_set1_epi32(0x8200_0000u32 as i32),
        );
        let s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f00_0000)));
        let s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
        let d = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(192.0));
        _mm256_or_ps(
            _mm256_and_ps(d, _mm256_mul_ps(s1, s1)),
            _mm256_andnot_ps(
                d,
                _mm256_or_ps(
                    _mm256_and_ps(c, _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1)),
                    _mm256_andnot_ps(c, _mm256_fmadd_ps(k, j, k)),
                ),
            ),
        )
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn mad_f16(y: &mut [f16], x: &[f16], v: f32) {
        let vv = _mm256_set1_ps(v);
        let (ys, y_tail) = y.as_chunks_mut::<8>();
        let (xs, x_tail) = x.as_chunks::<8>();
        for (y, x) in ys.iter_mut().zip(xs) {
            store_f16(y, _mm256_fmadd_ps(load_f16(x), vv, load_f16(y)));
        }
        reference::mad_f16(y_tail, x_tail, v);
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn scale_f16(y: &mut [f16], v: f32) {
        let vv = _mm256_set1_ps(v);
        let (ys, tail) = y.as_chunks_mut::<8>();
        for y in ys {
            store_f16(y, _mm256_mul_ps(load_f16(y), vv));
        }
        reference::scale_f16(tail, v);
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn mad_f32(y: &mut [f32], x: &[f32], v: f32) {
        let vv = _mm256_set1_ps(v);
        let (ys, y_tail) = y.as_chunks_mut::<8>();
        let (xs, x_tail) = x.as_chunks::<8>();
        for (y, x) in ys.iter_mut().zip(xs) {
            store(y, _mm256_fmadd_ps(load(x), vv, load(y)));
        }
        reference::mad_f32(y_tail, x_tail, v);
    }

    /// Columns `c0..c0 + 8N` of [`dot_columns`] (of `out.len()` columns): `N` vectors whose chains over `d` run side
    /// by side.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_columns_span<const N: usize>(kt: &[f32], q: &[f32], c0: usize, out: &mut [f32]) {
        let mut acc = [_mm256_setzero_ps(); N];
        for (&qd, row) in q.iter().zip(kt.chunks_exact(out.len())) {
            let row = row[c0..][..8 * N].as_chunks::<8>().0;
            let qd = _mm256_set1_ps(qd);
            for (acc, k) in acc.iter_mut().zip(row) {
                *acc = _mm256_fmadd_ps(load(k), qd, *acc);
            }
        }
        for (o, acc) in out[c0..][..8 * N].as_chunks_mut::<8>().0.iter_mut().zip(acc) {
            store(o, acc);
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn dot_columns(kt: &[f32], q: &[f32], out: &mut [f32]) {
        let n = out.len();
        let whole = n / 8 * 8;
        // Each lane is its own chain over d (the same order as the reference): 64 columns at a time, so that eight
        // chains overlap, then 8 at a time, then the tail.
        let spans = n / 64 * 64;
        for c0 in (0..spans).step_by(64) {
            dot_columns_span::<8>(kt, q, c0, out);
        }
        for c0 in (spans..whole).step_by(8) {
            dot_columns_span::<1>(kt, q, c0, out);
        }
        if whole < n {
            let mut tail = [0f32; 8];
            let tail = &mut tail[..n - whole];
            for (&qd, row) in q.iter().zip(kt.chunks_exact(n)) {
                for (o, &k) in tail.iter_mut().zip(&row[whole..]) {
                    *o = libm::fmaf(k, qd, *o);
                }
            }
            out[whole..].copy_from_slice(tail);
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn exp_sum(x: &mut [f32], max: f32) -> f64 {
        let vmax = _mm256_set1_ps(max);
        let (body, tail) = x.as_chunks_mut::<8>();
        let mut sum = 0f64;
        for lanes in body {
            let v = expf8(_mm256_sub_ps(load(lanes), vmax));
            store(lanes, v);
            let s = _mm_add_ps(_mm256_extractf128_ps::<1>(v), _mm256_castps256_ps128(v));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_movehdup_ps(s));
            sum += f64::from(_mm_cvtss_f32(s));
        }
        sum + reference::exp_sum(tail, max)
    }

    /// The bits of 87.33, from which on (and for NaN) libm's `expf` takes its overflow and subnormal paths.
    const LIBM_EXPF_PLAIN_BELOW: i32 = 0x42ae_ac50;

    /// libm's `expf` (FreeBSD's algorithm, all in f32 and unfused) for 8 lanes whose magnitude is below 87.33 (no
    /// overflow, no subnormal results; lanes beyond that come out wrong and are for the caller to redo).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn libm_expf8(x: __m256) -> __m256 {
        let set = _mm256_set1_ps;
        let abs_bits = _mm256_and_si256(_mm256_castps_si256(x), _mm256_set1_epi32(0x7fff_ffff));
        let above = |bits: i32| _mm256_cmpgt_epi32(abs_bits, _mm256_set1_epi32(bits));
        // k = round(x / ln2) beyond 1.5 ln2, ±1 beyond 0.5 ln2, else 0 (then the reduction below leaves x as it is).
        let sign = _mm256_and_ps(x, set(-0.0));
        let rounded = _mm256_cvttps_epi32(_mm256_add_ps(
            _mm256_mul_ps(set(LOG2_E), x),
            _mm256_or_ps(set(0.5), sign),
        ));
        let unit = _mm256_cvttps_epi32(_mm256_or_ps(set(1.0), sign));
        let k = _mm256_blendv_epi8(_mm256_and_si256(unit, above(0x3eb1_7218)), rounded, above(0x3f85_1592));
        let kf = _mm256_cvtepi32_ps(k);
        let hi = _mm256_sub_ps(x, _mm256_mul_ps(kf, set(LN2_HI)));
        let lo = _mm256_mul_ps(kf, set(LN2_LO));
        let r = _mm256_sub_ps(hi, lo);
        let rr = _mm256_mul_ps(r, r);
        let poly = _mm256_add_ps(
            set(f32::from_bits(0x3e2a_aa8f)),
            _mm256_mul_ps(rr, set(f32::from_bits(0xbb35_5215))),
        );
        let c = _mm256_sub_ps(r, _mm256_mul_ps(rr, poly));
        let q = _mm256_div_ps(_mm256_mul_ps(r, c), _mm256_sub_ps(set(2.0), c));
        let y = _mm256_add_ps(set(1.0), _mm256_add_ps(_mm256_sub_ps(q, lo), hi));
        let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(k, _mm256_set1_epi32(127))));
        let y = _mm256_mul_ps(y, scale);
        // Below 2^-14 libm returns 1 + x.
        _mm256_blendv_ps(_mm256_add_ps(set(1.0), x), y, _mm256_castsi256_ps(above(0x3900_0000)))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn silu_mul(gate: &mut [f32], up: &[f32]) {
        let (gates, gate_tail) = gate.as_chunks_mut::<8>();
        let (ups, up_tail) = up.as_chunks::<8>();
        for (gate, up) in gates.iter_mut().zip(ups) {
            let g = load(gate);
            // |g| >= 87.33 or NaN in some lane (rare): libm's overflow and subnormal paths, by the reference.
            let beyond = _mm256_cmpgt_epi32(
                _mm256_and_si256(_mm256_castps_si256(g), _mm256_set1_epi32(0x7fff_ffff)),
                _mm256_set1_epi32(LIBM_EXPF_PLAIN_BELOW - 1),
            );
            if _mm256_movemask_ps(_mm256_castsi256_ps(beyond)) != 0 {
                reference::silu_mul(gate, up);
                continue;
            }
            let exp = libm_expf8(_mm256_xor_ps(g, _mm256_set1_ps(-0.0)));
            let silu = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0), exp));
            store(gate, _mm256_mul_ps(silu, load(up)));
        }
        reference::silu_mul(gate_tail, up_tail);
    }

    /// Transposes 8 rows of 8 lanes: lane `l` of output `i` is lane `i` of input `l`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        // Lanes 0-3 / 4-7 of each half: dimensions (0, 4), (1, 5), (2, 6), (3, 7) of rows 0-3 and 4-7.
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xee>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xee>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xee>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xee>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ]
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn dot_f16_rows(k: &[f16], q: &[f16], out: &mut [f32]) {
        let hd = q.len();
        if !hd.is_multiple_of(8) {
            return reference::dot_f16_rows(k, q, out);
        }
        // Eight rows at a time, one per lane: each lane sums its row's products in d order, unfused, exactly as the
        // reference does; blocks of 8×8 are loaded row-wise and transposed to dimension-wise.
        let (out_blocks, out_tail) = out.as_chunks_mut::<8>();
        for (block, out8) in out_blocks.iter_mut().enumerate() {
            let rows = &k[block * 8 * hd..][..8 * hd];
            let mut acc = _mm256_setzero_ps();
            for d in (0..hd).step_by(8) {
                // A loop, not `core::array::from_fn`, whose closure would not inline here (see `mad_rows_kernel!`).
                let mut r = [_mm256_setzero_ps(); 8];
                for (l, r) in r.iter_mut().enumerate() {
                    let x: &[f16; 8] = rows[l * hd + d..][..8].try_into().expect("8 lanes");
                    *r = load_f16(x);
                }
                let qs: &[f16; 8] = q[d..d + 8].try_into().expect("8 lanes");
                let mut qv = [0f32; 8];
                store(&mut qv, load_f16(qs));
                for (column, &qd) in transpose8(r).iter().zip(&qv) {
                    acc = _mm256_add_ps(acc, _mm256_mul_ps(*column, _mm256_set1_ps(qd)));
                }
            }
            store(out8, acc);
        }
        let done = out_blocks.len() * 8;
        reference::dot_f16_rows(&k[done * hd..], q, out_tail);
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn dot_rows(width: usize, rows: &[f32], queries: &[f32], out: &mut [f32]) {
        if rows.is_empty() || !width.is_multiple_of(8) {
            return reference::dot_rows(width, rows, queries, out);
        }
        let n_rows = rows.len() / width;
        let (rows, queries) = (rows.as_chunks::<8>().0, queries.as_chunks::<8>().0);
        let vectors = width / 8;
        let mut outs = out.chunks_exact_mut(2 * n_rows);
        let mut pairs = queries.chunks_exact(2 * vectors);
        for (out, queries) in outs.by_ref().zip(pairs.by_ref()) {
            let (q0, q1) = queries.split_at(vectors);
            let (out0, out1) = out.split_at_mut(n_rows);
            dot_rows_of::<2>(vectors, rows, [q0, q1], [out0, out1]);
        }
        let out = outs.into_remainder();
        if !out.is_empty() {
            dot_rows_of::<1>(vectors, rows, [pairs.remainder()], [out]);
        }
    }

    /// [`dot_rows`] for `Q` queries at once, against four rows at a time: `4·Q` chains of fused multiply-adds in
    /// flight (one query's four would wait on the FMA latency), each row vector loaded once for all `Q`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_rows_of<const Q: usize>(
        vectors: usize,
        rows: &[[f32; 8]],
        queries: [&[[f32; 8]]; Q],
        mut out: [&mut [f32]; Q],
    ) {
        for (quad, rows4) in rows.chunks_exact(4 * vectors).enumerate() {
            let mut acc = [[_mm256_setzero_ps(); 4]; Q];
            for c in 0..vectors {
                let mut q = [_mm256_setzero_ps(); Q];
                for (q, query) in q.iter_mut().zip(queries) {
                    *q = load(&query[c]);
                }
                for r in 0..4 {
                    let row = load(&rows4[r * vectors + c]);
                    for (acc, &q) in acc.iter_mut().zip(&q) {
                        acc[r] = _mm256_fmadd_ps(row, q, acc[r]);
                    }
                }
            }
            for (out, acc) in out.iter_mut().zip(acc) {
                store_lane_sums(out[quad * 4..].first_chunk_mut().expect("four sums"), acc);
            }
        }
        let done = rows.len() / vectors / 4 * 4;
        for (out, query) in out.into_iter().zip(queries) {
            reference::dot_rows(
                vectors * 8,
                rows[done * vectors..].as_flattened(),
                query.as_flattened(),
                &mut out[done..],
            );
        }
    }

    /// Each of four accumulators' eight lanes summed in adjacent pairs (the reference's tree) by two rounds of `hadd`
    /// and a half-add, the four sums stored side by side.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn store_lane_sums(out: &mut [f32; 4], acc: [__m256; 4]) {
        let pairs = _mm256_hadd_ps(_mm256_hadd_ps(acc[0], acc[1]), _mm256_hadd_ps(acc[2], acc[3]));
        let sums = _mm_add_ps(_mm256_castps256_ps128(pairs), _mm256_extractf128_ps::<1>(pairs));
        // SAFETY: `out` is 16 writable bytes; the unaligned store has no alignment requirement.
        unsafe { _mm_storeu_ps(out.as_mut_ptr(), sums) };
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
        let (ds, d_tail) = dst.as_chunks_mut::<8>();
        let (ss, s_tail) = src.as_chunks::<8>();
        for (d, s) in ds.iter_mut().zip(ss) {
            store(d, load_f16(s));
        }
        reference::f16_to_f32(s_tail, d_tail);
    }
}
