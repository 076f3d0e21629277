//! Every SIMD path this machine has against the scalar reference, for every weight type: random rows of several
//! lengths (including odd block counts), rows of arbitrary and of extreme levels and scales.

use hearth_kernel::quant::{
    self, BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_1, BlockQ5_K, BlockQ6_K, BlockQ8_0, QuantBlock, Quantize,
};
use hearth_kernel::simd::{Isa, SimdDot};

/// xorshift64*: deterministic test data without a dependency.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn bytes(&mut self, out: &mut [u8]) {
        for b in out {
            *b = self.next_u64() as u8;
        }
    }
}

/// Values with a spread of magnitudes, like real activations (a few large outliers among small values).
fn signal(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| rng.unit() * if i % 37 == 0 { 20.0 } else { 1.0 })
        .collect()
}

fn assert_close<W: SimdDot>(name: &str, w: &[W], a: &[W::Act]) {
    let reference = Isa::Scalar.vec_dot(w, a) as f64;
    // The tolerance scales with Σ|w_i a_i| (from the dequantized rows), since accumulation order differs.
    let n = w.len() * W::LEN;
    let (mut wf, mut af) = (vec![0f32; n], vec![0f32; n]);
    quant::dequantize_blocks(w, &mut wf);
    quant::dequantize_blocks(a, &mut af);
    let magnitude: f64 = wf.iter().zip(&af).map(|(x, y)| (*x as f64 * *y as f64).abs()).sum();
    // A second activation row for the multi-row kernels: the same blocks in reverse order.
    let reversed: Vec<W::Act> = a.iter().rev().copied().collect();
    for isa in Isa::available() {
        let got = isa.vec_dot(w, a) as f64;
        assert!(
            (got - reference).abs() <= 1e-5 * magnitude + 1e-30,
            "{name} on {isa} with {} blocks: {got} vs scalar {reference} (magnitude {magnitude})",
            w.len()
        );
        // Several rows at once compute each row exactly as alone.
        let alone = [a, &reversed[..]].map(|a| isa.vec_dot(w, a).to_bits());
        let together = isa.vec_dots(w, [a, &reversed, &reversed, a]).map(f32::to_bits);
        assert_eq!(
            together,
            [alone[0], alone[1], alone[1], alone[0]],
            "{name} on {isa}, 4 rows"
        );
    }
    // The x86 ISAs run one set of kernels whose instructions differ only in how they form the same integers: the same
    // bits, for one row (decode) and for a full tile of 8 rows (prefill).
    let tile = [a, &reversed, a, a, &reversed, a, &reversed, &reversed];
    let x86: Vec<_> = Isa::available()
        .into_iter()
        .filter(|isa| ["avx2", "avx512"].contains(&isa.name()))
        .map(|isa| {
            (
                isa,
                isa.vec_dot(w, a).to_bits(),
                isa.vec_dots(w, tile).map(f32::to_bits),
            )
        })
        .collect();
    for pair in x86.windows(2) {
        let ((x, x_one, x_tile), (y, y_one, y_tile)) = (pair[0], pair[1]);
        assert_eq!(
            (x_one, x_tile),
            (y_one, y_tile),
            "{name}: {x} and {y} with {} blocks",
            w.len()
        );
    }
}

fn quantized<B: Quantize>(x: &[f32]) -> Vec<B> {
    let mut blocks = vec![B::zeroed(); x.len() / B::LEN];
    quant::quantize_blocks(x, &mut blocks);
    blocks
}

/// Random raw bytes for every field, then `fix` makes the scales finite and sane.
fn raw_blocks<B: QuantBlock>(rng: &mut Rng, n: usize, fix: impl Fn(&mut B, &mut Rng)) -> Vec<B> {
    let mut blocks = vec![B::zeroed(); n];
    rng.bytes(bytemuck::cast_slice_mut(&mut blocks));
    for b in &mut blocks {
        fix(b, rng);
    }
    blocks
}

fn small_f16(rng: &mut Rng) -> half::f16 {
    half::f16::from_f32(rng.unit() * 0.1)
}

/// Runs `check(blocks_per_row)` for row lengths that exercise odd counts and long rows.
fn for_row_lengths(mut check: impl FnMut(usize)) {
    for blocks in [1, 2, 3, 7, 37] {
        check(blocks);
    }
}

fn check_type<W: SimdDot + Quantize>(name: &str, fix: impl Fn(&mut W, &mut Rng) + Copy) {
    let mut rng = Rng(0x1234_5678_9abc_def1 ^ W::LEN as u64 ^ name.len() as u64);
    for_row_lengths(|blocks| {
        let n = blocks * W::LEN;
        // Quantized smooth data.
        let w = quantized::<W>(&signal(&mut rng, n));
        let a = quantized::<W::Act>(&signal(&mut rng, n));
        assert_close(name, &w, &a);
        // Arbitrary bit patterns in every level field.
        let w = raw_blocks::<W>(&mut rng, blocks, fix);
        assert_close(name, &w, &a);
    });
    // Extremes: every level bit set, activations at ±127 (the i16-saturation edge of the integer kernels).
    let mut w = raw_blocks::<W>(&mut rng, 8, fix);
    for b in &mut w {
        let bytes: &mut [u8] = bytemuck::bytes_of_mut(b);
        bytes.fill(0xff);
    }
    let w: Vec<W> = w
        .into_iter()
        .map(|mut b| {
            fix(&mut b, &mut rng);
            b
        })
        .collect();
    let extreme: Vec<f32> = (0..8 * W::LEN).map(|i| if i % 3 == 0 { -1.0 } else { 1.0 }).collect();
    assert_close(name, &w, &quantized::<W::Act>(&extreme));
}

#[test]
fn q8_0_matches_scalar() {
    check_type::<BlockQ8_0>("Q8_0", |b, rng| {
        b.d = small_f16(rng);
        for q in &mut b.qs {
            *q = (*q).max(-127); // -128 never comes out of a quantizer
        }
    });
}

#[test]
fn q4_0_matches_scalar() {
    check_type::<BlockQ4_0>("Q4_0", |b, rng| b.d = small_f16(rng));
}

#[test]
fn q4_1_matches_scalar() {
    check_type::<BlockQ4_1>("Q4_1", |b, rng| {
        b.d = small_f16(rng);
        b.m = small_f16(rng);
    });
}

#[test]
fn q5_0_matches_scalar() {
    check_type::<BlockQ5_0>("Q5_0", |b, rng| b.d = small_f16(rng));
}

#[test]
fn q5_1_matches_scalar() {
    check_type::<BlockQ5_1>("Q5_1", |b, rng| {
        b.d = small_f16(rng);
        b.m = small_f16(rng);
    });
}

#[test]
fn q4_k_matches_scalar() {
    check_type::<BlockQ4_K>("Q4_K", |b, rng| {
        b.d = small_f16(rng);
        b.dmin = small_f16(rng);
    });
}

#[test]
fn q5_k_matches_scalar() {
    check_type::<BlockQ5_K>("Q5_K", |b, rng| {
        b.d = small_f16(rng);
        b.dmin = small_f16(rng);
    });
}

#[test]
fn q6_k_matches_scalar() {
    check_type::<BlockQ6_K>("Q6_K", |b, rng| b.d = small_f16(rng));
}

#[test]
fn isa_names_round_trip() {
    for isa in Isa::available() {
        assert_eq!(Isa::by_name(isa.name()), Some(isa));
    }
    assert_eq!(Isa::available()[0], Isa::Scalar);
    assert_eq!(Isa::by_name("no-such-isa"), None);
}

/// The float primitives of every ISA against the scalar reference, bit for bit (they mirror ggml's arithmetic, so
/// "close" is not enough), for lengths with and without ragged tails.
#[test]
fn mad_rows_of_nothing_adds_nothing() {
    for isa in Isa::available() {
        // Zero-width rows, and rows of a real width but none of them (no weights).
        isa.mad_rows(0, &mut [], &[], &[]);
        let mut acc = vec![1.5f32; 2 * 16];
        isa.mad_rows(16, &mut acc, &[], &[]);
        assert!(acc.iter().all(|&a| a == 1.5), "{isa}");
    }
}

#[test]
fn float_primitives_are_bit_identical_to_the_reference() {
    use half::f16;
    use hearth_kernel::simd::float::reference;
    let mut rng = Rng(7);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let bits16 = |v: &[f16]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for isa in Isa::available() {
        for n in [1, 7, 8, 31, 32, 64, 100, 128, 259] {
            let x: Vec<f16> = signal(&mut rng, n).iter().map(|&v| f16::from_f32(v)).collect();
            let y: Vec<f16> = signal(&mut rng, n).iter().map(|&v| f16::from_f32(v)).collect();

            let (mut a, mut b) = (y.clone(), y.clone());
            isa.mad_f16(&mut a, &x, 0.37);
            reference::mad_f16(&mut b, &x, 0.37);
            assert_eq!(bits16(&a), bits16(&b), "{isa} mad_f16 n={n}");
            isa.scale_f16(&mut a, 0.61);
            reference::scale_f16(&mut b, 0.61);
            assert_eq!(bits16(&a), bits16(&b), "{isa} scale_f16 n={n}");

            let xf = signal(&mut rng, n);
            let (mut a, mut b) = (signal(&mut rng, n), Vec::new());
            b.clone_from(&a);
            isa.mad_f32(&mut a, &xf, -1.3);
            reference::mad_f32(&mut b, &xf, -1.3);
            assert_eq!(bits(&a), bits(&b), "{isa} mad_f32 n={n}");

            let scores: Vec<f32> = signal(&mut rng, n).iter().map(|v| v * 60.0).collect();
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let (mut a, mut b) = (scores.clone(), scores);
            a[0] = f32::NEG_INFINITY;
            b[0] = f32::NEG_INFINITY;
            let (sa, sb) = (isa.exp_sum(&mut a, max), reference::exp_sum(&mut b, max));
            assert_eq!(bits(&a), bits(&b), "{isa} exp_sum values n={n}");
            assert_eq!(sa.to_bits(), sb.to_bits(), "{isa} exp_sum n={n}");

            let q = signal(&mut rng, 64);
            let kt = signal(&mut rng, 64 * n);
            let (mut a, mut b) = (vec![f32::NAN; n], vec![f32::NAN; n]);
            isa.dot_columns(&kt, &q, &mut a);
            reference::dot_columns(&kt, &q, &mut b);
            assert_eq!(bits(&a), bits(&b), "{isa} dot_columns n={n}");

            for hd in [8, 64, 128, 12] {
                let k: Vec<f16> = signal(&mut rng, n * hd).iter().map(|&v| f16::from_f32(v)).collect();
                let q: Vec<f16> = signal(&mut rng, hd).iter().map(|&v| f16::from_f32(v)).collect();
                let (mut a, mut b) = (vec![f32::NAN; n], vec![f32::NAN; n]);
                isa.dot_f16_rows(&k, &q, &mut a);
                reference::dot_f16_rows(&k, &q, &mut b);
                assert_eq!(bits(&a), bits(&b), "{isa} dot_f16_rows n={n} hd={hd}");
            }
            for hd in [8, 64, 128, 12, 72, 24, 80, 208] {
                let rows = signal(&mut rng, n * hd);
                // One query (attention's scores), and pairs of them with an odd one left (a LoRA pair's `x·Aᵀ`).
                for queries in [1, 2, 5] {
                    let q = signal(&mut rng, queries * hd);
                    let (mut a, mut b) = (vec![f32::NAN; queries * n], vec![f32::NAN; queries * n]);
                    isa.dot_rows(hd, &rows, &q, &mut a);
                    reference::dot_rows(hd, &rows, &q, &mut b);
                    assert_eq!(bits(&a), bits(&b), "{isa} dot_rows n={n} hd={hd} queries={queries}");
                }

                // One accumulator row (attention's value sums), and blocks of them with leftovers (training's
                // input gradients).
                for tokens in [1, 3, 4, 9] {
                    let weights = signal(&mut rng, tokens * n);
                    let mut acc = signal(&mut rng, tokens * hd);
                    let (mut a, mut b) = (acc.clone(), acc.clone());
                    isa.mad_rows(hd, &mut a, &rows, &weights);
                    reference::mad_rows(hd, &mut b, &rows, &weights);
                    assert_eq!(bits(&a), bits(&b), "{isa} mad_rows n={n} hd={hd} tokens={tokens}");
                    // The same weights transposed, as the first columns of a wider matrix: the same sums.
                    let stride = tokens + 3;
                    let mut columns = signal(&mut rng, n * stride);
                    for (t, weights) in weights.chunks_exact(n).enumerate() {
                        for (j, &w) in weights.iter().enumerate() {
                            columns[j * stride + t] = w;
                        }
                    }
                    let mut c = acc.clone();
                    isa.mad_columns(hd, &mut c, &rows, &columns, stride);
                    assert_eq!(bits(&c), bits(&b), "{isa} mad_columns n={n} hd={hd} tokens={tokens}");
                    reference::mad_columns(hd, &mut acc, &rows, &columns, stride);
                    assert_eq!(
                        bits(&acc),
                        bits(&b),
                        "reference mad_columns n={n} hd={hd} tokens={tokens}"
                    );
                }
            }
            let (mut a, mut b) = (vec![f32::NAN; n], vec![f32::NAN; n]);
            isa.f16_to_f32(&x, &mut a);
            reference::f16_to_f32(&x, &mut b);
            assert_eq!(bits(&a), bits(&b), "{isa} f16_to_f32 n={n}");
        }
    }
}

#[test]
fn silu_mul_gives_libms_bits() {
    use hearth_kernel::simd::float::reference;
    // A sweep of every exponent and many mantissas, both signs, plus the edges of libm's `expf` branches (|x| around
    // 2^-14, ln2/2, 1.5 ln2, 87.33, 88.72, 103.97) and the specials.
    let mut gates: Vec<f32> = (0..u32::MAX).step_by(997).map(f32::from_bits).collect();
    for edge in [
        0x3900_0000u32,
        0x3eb1_7218,
        0x3f85_1592,
        0x42ae_ac50,
        0x42b1_7218,
        0x42cf_f1b5,
    ] {
        for bits in edge - 3..=edge + 3 {
            gates.extend([f32::from_bits(bits), -f32::from_bits(bits)]);
        }
    }
    gates.extend([0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, f32::MIN_POSITIVE]);
    // A length that is not a multiple of 8, so the kernels' tails run too.
    gates.push(1.5);
    let mut rng = Rng(11);
    let up = signal(&mut rng, gates.len());
    let mut expected = gates.clone();
    reference::silu_mul(&mut expected, &up);
    for isa in Isa::available() {
        let mut got = gates.clone();
        isa.silu_mul(&mut got, &up);
        for ((g, e), x) in got.iter().zip(&expected).zip(&gates) {
            assert_eq!(g.to_bits(), e.to_bits(), "{isa} silu_mul({x:e}): {g:e} vs {e:e}");
        }
    }
}
