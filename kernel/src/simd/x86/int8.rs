//! The integer dot products of a weight row with `N` quantized activation rows, written once for the x86 ISAs.
//!
//! `int8_kernels!` expands to one ISA's kernels and entry points, every function compiled for that ISA's target
//! features. The invoking module supplies the few primitives whose best instructions differ between ISAs:
//! - `dot_i8`, `dot_u8_i8`: Σ of byte products in 8 i32 lanes (legacy types);
//! - `KChunks`, `k_chunks`, `k_chunks_dot`: a K-quant block's 8 chunks of 32 levels with their scales, laid out for
//!   the ISA, and `Σ scale·level·y` against a Q8_K block in 8 i32 lanes.
//!
//! Each ISA's primitives produce the same integers in the same lanes, and everything after them (the f32 scaling and
//! accumulation) is shared, so the kernels give the same bits on every x86 ISA — which keeps greedy outputs, checked
//! against llama.cpp's, independent of the machine's vector width.
//!
//! The legacy kernels share one loop (`each_block`), the K-quant kernels another (`k_blocks`): a weight block is
//! unpacked once, then dotted with the matching block of each activation row. Weights are made unsigned (K-quant
//! levels, nibbles) or, for signed pairs, the sign of one operand is moved onto the other; every bound that keeps i16
//! pairs from saturating is noted where it matters. Per-block f32 scales multiply the i32 sums into one 8-lane
//! accumulator per activation row, summed once at the end. Unpacking once for several rows is what makes a
//! multi-token matmul cheaper per output than a matrix-vector product.

/// The kernels for the ISA whose token is `$token`, every function compiled with `$features` (the primitives the
/// invoking module defines must be compiled with the same features, so that they inline).
macro_rules! int8_kernels {
    ($token:ty, $features:literal) => {
        use half::f16;

        use $crate::quant::kquant::unpack_scale_mins;
        use $crate::quant::{
            BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_1, BlockQ5_K, BlockQ6_K, BlockQ8_0, BlockQ8_1,
            BlockQ8_K,
        };

        entry_points!($token, batched);

        /// A 32-byte array (levels, quantized activations, 16-element sums) as one vector.
        #[inline]
        #[target_feature(enable = $features)]
        fn load32<T: bytemuck::Pod, const N: usize>(v: &[T; N]) -> __m256i {
            const { assert!(size_of::<[T; N]>() == 32) };
            // SAFETY: `v` is 32 readable bytes; the unaligned load has no alignment requirement.
            unsafe { _mm256_loadu_si256(v.as_ptr().cast()) }
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn load16(v: &[u8; 16]) -> __m128i {
            // SAFETY: `v` is 16 readable bytes; the unaligned load has no alignment requirement.
            unsafe { _mm_loadu_si128(v.as_ptr().cast()) }
        }

        /// Splits 32 bytes (as in a slice of i8/u8) into 32-element arrays.
        #[inline]
        fn chunks32<T>(v: &[T]) -> &[[T; 32]] {
            v.as_chunks::<32>().0
        }

        /// One f16 to f32 with F16C (also used by the interleaved kernels, which share AVX-512's features).
        #[inline]
        #[target_feature(enable = $features)]
        pub(super) fn f16_to_f32(h: f16) -> f32 {
            _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h.to_bits()))))
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn hsum_ps(v: __m256) -> f32 {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
        }

        /// Signed levels prepared for [`dot_i8`]: their absolute values and themselves (whose signs move onto the
        /// partner).
        #[derive(Clone, Copy)]
        struct SignedLevels {
            abs: __m256i,
            levels: __m256i,
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn signed(levels: __m256i) -> SignedLevels {
            SignedLevels {
                abs: _mm256_sign_epi8(levels, levels),
                levels,
            }
        }

        /// A legacy block's 16 nibble bytes as 32 bytes: values 0..16 (low nibbles) then 16..32 (high nibbles).
        #[inline]
        #[target_feature(enable = $features)]
        fn unpack_nibbles(qs: &[u8; 16]) -> __m256i {
            let bytes = load16(qs);
            let low = _mm_set1_epi8(0x0f);
            _mm256_set_m128i(
                _mm_and_si128(_mm_srli_epi16::<4>(bytes), low),
                _mm_and_si128(bytes, low),
            )
        }

        /// 0x10 in byte `i` where bit `i` of the little-endian `qh` is set: the fifth bit of Q5_0/Q5_1 values.
        #[inline]
        #[target_feature(enable = $features)]
        fn fifth_bits(qh: [u8; 4]) -> __m256i {
            // Byte i takes qh byte i/8, is ORed with every bit but bit i%8 set, and is all-ones exactly when bit i%8
            // was set.
            let spread = _mm256_shuffle_epi8(
                _mm256_set1_epi32(i32::from_le_bytes(qh)),
                _mm256_setr_epi64x(
                    0,
                    0x0101_0101_0101_0101,
                    0x0202_0202_0202_0202,
                    0x0303_0303_0303_0303,
                ),
            );
            let others = _mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
            _mm256_and_si256(
                _mm256_cmpeq_epi8(others, _mm256_set1_epi64x(-1)),
                _mm256_set1_epi8(0x10),
            )
        }

        /// One weight block against one activation block: `lanes + extra`.
        struct BlockDot {
            lanes: Lanes,
            extra: f32,
        }

        /// A block's 8 partial sums, and so how they are rounded into the row's accumulator. Each kernel keeps the
        /// rounding of the one-row kernels it grew from (which the greedy-parity goldens were checked with): a
        /// different but equally accurate rounding changes greedy continuations at near-ties.
        #[derive(Clone, Copy)]
        enum Lanes {
            /// `scale · ints`, fused into the accumulator (one rounding).
            Fused { scale: f32, ints: __m256i },
            /// `scale · ints` rounded, then added (Q4_K, Q5_K).
            Rounded { scale: f32, ints: __m256i },
        }

        /// The activation rows cut to the weight row's length, so that indexing them by its block numbers needs no
        /// bounds checks. (Loops rather than closures in here and below: a closure handed to `array::map` or `from_fn`
        /// is not inlined into code without this function's target features, and costs a call per element.)
        #[inline]
        #[target_feature(enable = $features)]
        fn cut_to<A, const N: usize>(mut a: [&[A]; N], len: usize) -> [&[A]; N] {
            for row in &mut a {
                *row = &row[..len];
            }
            a
        }

        /// `acc` plus a block's lanes, rounded as they say.
        #[inline]
        #[target_feature(enable = $features)]
        fn add_lanes(acc: __m256, lanes: Lanes) -> __m256 {
            match lanes {
                Lanes::Fused { scale, ints } => _mm256_fmadd_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(ints), acc),
                Lanes::Rounded { scale, ints } => _mm256_add_ps(
                    acc,
                    _mm256_mul_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(ints)),
                ),
            }
        }

        /// How far ahead of the block being computed its loop prefetches weights: about 24 cache lines, enough for
        /// the lines to arrive before they are needed. Decode stalls on weight loads that the hardware prefetcher
        /// starts too late; measured on Qwen2.5-Coder Q4_K_M tg32 (ten interleaved rounds), every line of the block
        /// 1536 bytes ahead gave +21 % over none, 3072 bytes the same, one line per block only +10 %.
        const PREFETCH_AHEAD: usize = 1536;

        /// Asks for the cache lines of the weight block `PREFETCH_AHEAD` bytes after `w` (in this row or the next
        /// rows, which the thread visits next).
        #[inline]
        #[target_feature(enable = $features)]
        fn prefetch_ahead<W>(w: &W) {
            let ahead = (w as *const W).cast::<i8>().wrapping_add(PREFETCH_AHEAD);
            // A prefetch is only a hint: it cannot fault, whatever the address (past the matrix's end included).
            for line in (0..size_of::<W>()).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line));
            }
        }

        /// The loop of the legacy kernels: for each weight block, `unpack` it once, then add `dot(unpacked, w, a)` for
        /// the matching block of each of the `N` activation rows. Returns the `N` row totals.
        #[inline]
        #[target_feature(enable = $features)]
        fn each_block<W, A, U: Copy, const N: usize>(
            w: &[W],
            a: [&[A]; N],
            unpack: impl Fn(&W) -> U,
            dot: impl Fn(U, &W, &A) -> BlockDot,
        ) -> [f32; N] {
            let a = cut_to(a, w.len());
            let mut acc = [_mm256_setzero_ps(); N];
            let mut extra = [0.0f32; N];
            for (i, w) in w.iter().enumerate() {
                prefetch_ahead(w);
                let levels = unpack(w);
                for n in 0..N {
                    let block = dot(levels, w, &a[n][i]);
                    acc[n] = add_lanes(acc[n], block.lanes);
                    extra[n] += block.extra;
                }
            }
            let mut totals = [0.0f32; N];
            for n in 0..N {
                totals[n] = hsum_ps(acc[n]) + extra[n];
            }
            totals
        }

        /// Signed levels against a Q8_0 block (Q8_0, Q4_0, Q5_0 weights).
        #[inline]
        #[target_feature(enable = $features)]
        fn signed_dot(q: SignedLevels, d: f16, a: &BlockQ8_0) -> BlockDot {
            BlockDot {
                lanes: Lanes::Fused {
                    scale: f16_to_f32(d) * f16_to_f32(a.d),
                    ints: dot_i8(q, load32(&a.qs)),
                },
                extra: 0.0,
            }
        }

        #[target_feature(enable = $features)]
        fn q8_0<const N: usize>(w: &[BlockQ8_0], a: [&[BlockQ8_0]; N]) -> [f32; N] {
            each_block(w, a, |w| signed(load32(&w.qs)), |q, w, a| signed_dot(q, w.d, a))
        }

        #[target_feature(enable = $features)]
        fn q4_0<const N: usize>(w: &[BlockQ4_0], a: [&[BlockQ8_0]; N]) -> [f32; N] {
            let unpack = |w: &BlockQ4_0| signed(_mm256_sub_epi8(unpack_nibbles(&w.qs), _mm256_set1_epi8(8)));
            each_block(w, a, unpack, |q, w, a| signed_dot(q, w.d, a))
        }

        #[target_feature(enable = $features)]
        fn q5_0<const N: usize>(w: &[BlockQ5_0], a: [&[BlockQ8_0]; N]) -> [f32; N] {
            let unpack = |w: &BlockQ5_0| {
                let q = _mm256_or_si256(unpack_nibbles(&w.qs), fifth_bits(w.qh));
                signed(_mm256_sub_epi8(q, _mm256_set1_epi8(16)))
            };
            each_block(w, a, unpack, |q, w, a| signed_dot(q, w.d, a))
        }

        /// Shared by Q4_1 and Q5_1: unsigned levels `q` with scale `d` and minimum `m` against one Q8_1 block (the
        /// minimum term `m · s` comes from the block's sum).
        #[inline]
        #[target_feature(enable = $features)]
        fn with_min(q: __m256i, d: f16, m: f16, a: &BlockQ8_1) -> BlockDot {
            BlockDot {
                lanes: Lanes::Fused {
                    scale: f16_to_f32(d) * f16_to_f32(a.d),
                    ints: dot_u8_i8(q, load32(&a.qs)),
                },
                extra: f16_to_f32(m) * f16_to_f32(a.s),
            }
        }

        #[target_feature(enable = $features)]
        fn q4_1<const N: usize>(w: &[BlockQ4_1], a: [&[BlockQ8_1]; N]) -> [f32; N] {
            each_block(
                w,
                a,
                |w| unpack_nibbles(&w.qs),
                |q, w, a| with_min(q, w.d, w.m, a),
            )
        }

        #[target_feature(enable = $features)]
        fn q5_1<const N: usize>(w: &[BlockQ5_1], a: [&[BlockQ8_1]; N]) -> [f32; N] {
            let unpack = |w: &BlockQ5_1| _mm256_or_si256(unpack_nibbles(&w.qs), fifth_bits(w.qh));
            each_block(w, a, unpack, |q, w, a| with_min(q, w.d, w.m, a))
        }

        /// A K-quant block unpacked: its 8 chunks of 32 levels with their scales, prepared for this ISA's
        /// `k_chunks_dot`; the i16 weights of the activations' 16-element sums in the correction term (Q4_K/Q5_K: the
        /// minimums as pairs `(m_j, m_j)`; Q6_K: the 16 group scales, for the -32 offset of its levels); and the f32
        /// factors of the two terms (`d`, and Q4_K/Q5_K: `dmin`, Q6_K: `d` again).
        #[derive(Clone, Copy)]
        struct KBlock {
            chunks: KChunks,
            sum_weights: __m256i,
            d: f32,
            correction: f32,
        }

        /// `[hsum(v[0]), …, hsum(v[7])]`: eight horizontal sums at once.
        #[inline]
        #[target_feature(enable = $features)]
        fn hsums_epi32(v: [__m256i; 8]) -> __m256i {
            // `quads`: the sums of v[0..4] over their lanes 0-3 in the low half, over lanes 4-7 in the high half;
            // `quads_hi`: the same for v[4..8].
            let quads = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
            let quads_hi = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
            _mm256_add_epi32(
                _mm256_permute2x128_si256::<0x20>(quads, quads_hi),
                _mm256_permute2x128_si256::<0x31>(quads, quads_hi),
            )
        }

        /// The loop of the K-quant kernels: for each weight block, `unpack` it once; for each of the `N <= 8`
        /// activation rows add `d·a.d · Σ scale·level·y` to the row's accumulator (the product rounded before the add
        /// when `rounded`, fused otherwise) and subtract `correction·a.d · offset · Σ sum_weights·bsums` from its
        /// correction — the corrections of all rows at once, row n in lane n.
        #[inline]
        #[target_feature(enable = $features)]
        fn k_blocks<W, const N: usize>(
            w: &[W],
            a: [&[BlockQ8_K]; N],
            unpack: impl Fn(&W) -> KBlock,
            rounded: bool,
            offset: i32,
        ) -> [f32; N] {
            const { assert!(N <= 8) };
            let a = cut_to(a, w.len());
            let mut acc = [_mm256_setzero_ps(); N];
            let mut corrections = _mm256_setzero_ps();
            for (i, w) in w.iter().enumerate() {
                prefetch_ahead(w);
                let block = unpack(w);
                let mut sums = [_mm256_setzero_si256(); 8];
                for n in 0..N {
                    let y = &a[n][i];
                    let scale = block.d * y.d;
                    let ints = k_chunks_dot(block.chunks, &y.qs);
                    let lanes = if rounded {
                        Lanes::Rounded { scale, ints }
                    } else {
                        Lanes::Fused { scale, ints }
                    };
                    acc[n] = add_lanes(acc[n], lanes);
                    // |weights| <= 128 and |16-element sums| <= 2032: the pairwise i32 sums of madd cannot overflow.
                    sums[n] = _mm256_madd_epi16(block.sum_weights, load32(&y.bsums));
                }
                let mut y_d = [0.0f32; 8];
                for n in 0..N {
                    y_d[n] = a[n][i].d;
                }
                let factor = _mm256_mul_ps(_mm256_set1_ps(block.correction), bytemuck::cast(y_d));
                let terms = _mm256_mullo_epi32(hsums_epi32(sums), _mm256_set1_epi32(offset));
                corrections = _mm256_sub_ps(corrections, _mm256_mul_ps(factor, _mm256_cvtepi32_ps(terms)));
            }
            let corrections: [f32; 8] = bytemuck::cast(corrections);
            let mut totals = [0.0f32; N];
            for n in 0..N {
                totals[n] = hsum_ps(acc[n]) + corrections[n];
            }
            totals
        }

        /// Q4_K and Q5_K differ only in how the 32 levels of a 64-element chunk's two sub-blocks are formed;
        /// `levels(c)` returns them (sub-block 2c, sub-block 2c+1), each at most 31.
        #[inline]
        #[target_feature(enable = $features)]
        fn scale_min_levels(
            packed: &[u8; 12],
            d: f16,
            dmin: f16,
            levels: impl Fn(usize) -> (__m256i, __m256i),
        ) -> KBlock {
            let (scales, mins) = unpack_scale_mins(packed);
            let mut all = [_mm256_setzero_si256(); 8];
            for c in 0..4 {
                (all[2 * c], all[2 * c + 1]) = levels(c);
            }
            let mut scale_lanes = [_mm256_setzero_si256(); 8];
            let mut pairs = [0u8; 16];
            for j in 0..8 {
                scale_lanes[j] = _mm256_set1_epi16(i16::from(scales[j]));
                pairs[2 * j..2 * j + 2].fill(mins[j]);
            }
            KBlock {
                chunks: k_chunks(all, scale_lanes),
                sum_weights: _mm256_cvtepu8_epi16(load16(&pairs)),
                d: f16_to_f32(d),
                correction: f16_to_f32(dmin),
            }
        }

        #[target_feature(enable = $features)]
        fn q4_k<const N: usize>(w: &[BlockQ4_K], a: [&[BlockQ8_K]; N]) -> [f32; N] {
            let m4 = _mm256_set1_epi8(0x0f);
            let unpack = |w: &BlockQ4_K| {
                let qs = chunks32(&w.qs);
                scale_min_levels(&w.scales, w.d, w.dmin, |c| {
                    let q = load32(&qs[c]);
                    (
                        _mm256_and_si256(q, m4),
                        _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4),
                    )
                })
            };
            // `d · Σ scale·level·y − dmin · Σ_j m_j · (sum of y over sub-block j)`.
            k_blocks(w, a, unpack, true, 1)
        }

        #[target_feature(enable = $features)]
        fn q5_k<const N: usize>(w: &[BlockQ5_K], a: [&[BlockQ8_K]; N]) -> [f32; N] {
            let m4 = _mm256_set1_epi8(0x0f);
            let one = _mm256_set1_epi8(1);
            let unpack = |w: &BlockQ5_K| {
                let qs = chunks32(&w.qs);
                let qh = load32(&w.qh);
                // Bit j of qh[l] is the fifth bit of sub-block j's element l: shift it to bit 0 of each byte (16-bit
                // shifts bring neighbouring bits into the byte's top, which the mask drops), then to bit 4.
                let fifth = |j: usize| {
                    let bit = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(j as i32)), one);
                    _mm256_slli_epi16::<4>(bit)
                };
                scale_min_levels(&w.scales, w.d, w.dmin, |c| {
                    let q = load32(&qs[c]);
                    let lo = _mm256_or_si256(_mm256_and_si256(q, m4), fifth(2 * c));
                    let hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(q), m4), fifth(2 * c + 1));
                    (lo, hi)
                })
            };
            k_blocks(w, a, unpack, true, 1)
        }

        #[target_feature(enable = $features)]
        fn q6_k<const N: usize>(w: &[BlockQ6_K], a: [&[BlockQ8_K]; N]) -> [f32; N] {
            let m4 = _mm256_set1_epi8(0x0f);
            let m2 = _mm256_set1_epi8(0x03);
            // Chunk 4h+k; the -32 offset of the levels is applied through the activation sums.
            let unpack = |w: &BlockQ6_K| {
                let ql = chunks32(&w.ql);
                let qh = chunks32(&w.qh);
                let mut levels = [_mm256_setzero_si256(); 8];
                for h in 0..2 {
                    let high_bits = load32(&qh[h]);
                    for k in 0..4 {
                        let low = load32(&ql[2 * h + k % 2]);
                        let low = if k < 2 {
                            _mm256_and_si256(low, m4)
                        } else {
                            _mm256_and_si256(_mm256_srli_epi16::<4>(low), m4)
                        };
                        let high = _mm256_and_si256(_mm256_srl_epi16(high_bits, _mm_cvtsi32_si128(2 * k as i32)), m2);
                        levels[4 * h + k] = _mm256_or_si256(low, _mm256_slli_epi16::<4>(high));
                    }
                }
                // Chunk c covers groups 2c (low 128 bits) and 2c+1 (high 128 bits).
                let mut scales = [_mm256_setzero_si256(); 8];
                for (c, scale) in scales.iter_mut().enumerate() {
                    *scale = _mm256_set_m128i(
                        _mm_set1_epi16(i16::from(w.scales[2 * c + 1])),
                        _mm_set1_epi16(i16::from(w.scales[2 * c])),
                    );
                }
                let d = f16_to_f32(w.d);
                KBlock {
                    chunks: k_chunks(levels, scales),
                    sum_weights: _mm256_cvtepi8_epi16(load16(bytemuck::cast_ref(&w.scales))),
                    d,
                    correction: d,
                }
            };
            // Σ_g scale_g · (sum of y over group g) · 32 undoes the offset of the levels.
            k_blocks(w, a, unpack, false, 32)
        }
    };
}
