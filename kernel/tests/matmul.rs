//! Matmul against a naive f64 product of the dequantized weights and dequantized (quantized) activations, for every
//! weight type, ISA, and token count (one token, a few, and more than a tile).

use hearth_kernel::GgmlType;
use hearth_kernel::ops::OpError;
use hearth_kernel::ops::matmul::{MatmulScratch, Weights, matmul, tile_matmul};
use hearth_kernel::quant::grouped::{group_rows, grouped_len};
use hearth_kernel::quant::tiles::{self, TileMatrix, TileRows};
use hearth_kernel::quant::{self, BlockQ8_0, BlockQ8_1, BlockQ8_K, QuantBlock, Quantize};
use hearth_kernel::simd::Isa;

fn signal(seed: u32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f32 * 0.37 + seed as f32).sin() + 0.3 * ((i * 7 + 3) as f32).cos()) * 0.5)
        .collect()
}

/// What the integer kernels actually see: the activations after the matmul's own quantization to the partner type.
fn as_seen(weight: GgmlType, x: &[f32]) -> Vec<f32> {
    fn round_trip<B: QuantBlock>(x: &[f32], quantize: fn(&[f32]) -> B) -> Vec<f32> {
        let blocks: Vec<B> = x.chunks(B::LEN).map(quantize).collect();
        let mut out = vec![0f32; x.len()];
        quant::dequantize_blocks(&blocks, &mut out);
        out
    }
    match weight {
        GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => round_trip(x, BlockQ8_K::quantize),
        GgmlType::Q4_1 | GgmlType::Q5_1 => round_trip(x, BlockQ8_1::quantize_activation),
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => x.to_vec(),
        _ => round_trip(x, BlockQ8_0::quantize_activation),
    }
}

/// `rows` (an `n_out × n_in` matrix of `dtype`) grouped sixteen rows at a time, in u32s for the groups' alignment.
fn grouped(dtype: GgmlType, n_in: usize, n_out: usize, rows: &[u8]) -> Vec<u32> {
    let mut groups = vec![0u32; grouped_len(dtype, n_in, n_out).unwrap() / 4];
    group_rows(dtype, n_in, rows, bytemuck::cast_slice_mut(&mut groups)).unwrap();
    groups
}

fn check(dtype: GgmlType, n_in: usize, n_out: usize) {
    let wf = signal(1, n_in * n_out);
    let mut bytes = vec![0u8; dtype.bytes_for((n_in * n_out) as u64).unwrap() as usize];
    quant::quantize(dtype, &wf, &mut bytes).unwrap();
    let mut w_deq = vec![0f32; n_in * n_out];
    quant::dequantize(dtype, &bytes, &mut w_deq).unwrap();
    let w = Weights::new(dtype, n_in, n_out, &bytes).unwrap();
    // Types with a grouped layout are checked with it too.
    let groups = grouped_len(dtype, n_in, n_out).map(|_| grouped(dtype, n_in, n_out, &bytes));
    let with_groups = groups
        .as_ref()
        .map(|g| w.with_grouped(bytemuck::cast_slice(g)).unwrap());
    let mut scratch = MatmulScratch::default();
    for n_tokens in [1, 3, 40] {
        let x = signal(2, n_tokens * n_in);
        let seen: Vec<f32> = x.chunks(n_in).flat_map(|row| as_seen(dtype, row)).collect();
        for (isa, w) in Isa::available()
            .into_iter()
            .flat_map(|isa| [Some(w), with_groups].map(|w| (isa, w)))
        {
            let Some(w) = w else { continue };
            let mut out = vec![f32::NAN; n_tokens * n_out];
            matmul(isa, &w, &x, &mut out, &mut scratch).unwrap();
            for t in 0..n_tokens {
                for r in 0..n_out {
                    let terms = w_deq[r * n_in..][..n_in].iter().zip(&seen[t * n_in..][..n_in]);
                    let (exact, magnitude) = terms.fold((0f64, 0f64), |(s, m), (a, b)| {
                        let p = *a as f64 * *b as f64;
                        (s + p, m + p.abs())
                    });
                    let got = out[t * n_out + r] as f64;
                    // Q4_1/Q5_1 take their minimum term from Q8_1's f16 activation sum, as ggml does: f16 precision.
                    let relative = if matches!(dtype, GgmlType::Q4_1 | GgmlType::Q5_1) {
                        1e-3
                    } else {
                        1e-5
                    };
                    assert!(
                        (got - exact).abs() <= relative * magnitude + 1e-6,
                        "{dtype} {isa} tokens={n_tokens} grouped={} out[{t}][{r}] = {got}, expected {exact}",
                        w.grouped.is_some()
                    );
                }
            }
        }
    }
}

#[test]
fn legacy_types_match_the_naive_product() {
    for dtype in [
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
    ] {
        check(dtype, 96, 13);
    }
}

#[test]
fn k_quants_match_the_naive_product() {
    for dtype in [GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K] {
        check(dtype, 512, 11);
    }
}

/// A prompt's logits must not depend on how its tokens are batched (a stopped prefill resumes in other batches):
/// each token's outputs are the same bits whether it is computed among 40 tokens, or among 17 or 23, at other offsets
/// within the kernels' token tiles (all three counts large enough for the interleaved AVX-512 kernels).
#[test]
fn a_tokens_outputs_do_not_depend_on_its_batch() {
    let (n_in, n_out, n_tokens, split) = (512, 37, 40, 17);
    for dtype in [GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0, GgmlType::Q4_1] {
        let mut bytes = vec![0u8; dtype.bytes_for((n_in * n_out) as u64).unwrap() as usize];
        quant::quantize(dtype, &signal(3, n_in * n_out), &mut bytes).unwrap();
        let w = Weights::new(dtype, n_in, n_out, &bytes).unwrap();
        let x = signal(4, n_tokens * n_in);
        let mut scratch = MatmulScratch::default();
        for isa in Isa::available() {
            let mut whole = vec![0f32; n_tokens * n_out];
            matmul(isa, &w, &x, &mut whole, &mut scratch).unwrap();
            let mut parts = vec![0f32; n_tokens * n_out];
            let (first, rest) = parts.split_at_mut(split * n_out);
            matmul(isa, &w, &x[..split * n_in], first, &mut scratch).unwrap();
            matmul(isa, &w, &x[split * n_in..], rest, &mut scratch).unwrap();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&whole), bits(&parts), "{dtype} {isa}");
        }
    }
}

/// With its rows grouped ahead of time (hearth's weight cache), a matrix gives each token alone — a decode step —
/// the same bits as among 40 tokens grouped on the fly (a prefill), on every ISA: a prompt resumed from the KV cache
/// then continues exactly as the same prompt run afresh.
#[test]
fn a_token_alone_on_grouped_weights_gets_its_batched_bits() {
    let (n_in, n_out, n_tokens) = (512, 37, 40);
    for dtype in [GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0, GgmlType::Q4_1] {
        let mut bytes = vec![0u8; dtype.bytes_for((n_in * n_out) as u64).unwrap() as usize];
        quant::quantize(dtype, &signal(5, n_in * n_out), &mut bytes).unwrap();
        let w = Weights::new(dtype, n_in, n_out, &bytes).unwrap();
        let groups = grouped(dtype, n_in, n_out, &bytes);
        let with_groups = w.with_grouped(bytemuck::cast_slice(&groups)).unwrap();
        let x = signal(6, n_tokens * n_in);
        let mut scratch = MatmulScratch::default();
        for isa in Isa::available() {
            let mut batched = vec![0f32; n_tokens * n_out];
            matmul(isa, &w, &x, &mut batched, &mut scratch).unwrap();
            for (t, expected) in batched.chunks(n_out).enumerate() {
                let mut alone = vec![0f32; n_out];
                matmul(isa, &with_groups, &x[t * n_in..][..n_in], &mut alone, &mut scratch).unwrap();
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&alone), bits(expected), "{dtype} {isa} token {t}");
            }
        }
    }
}

/// Weights given only as groups multiply as the same weights with their rows do (enough tokens that those are grouped
/// too: the same bits), on an ISA that reads groups; other ISAs refuse them rather than read rows that are not there.
#[test]
fn grouped_only_weights_multiply_where_groups_are_read_and_are_refused_elsewhere() {
    let (n_in, n_out, n_tokens) = (256, 40, 20);
    let mut bytes = vec![0u8; GgmlType::Q8_0.bytes_for((n_in * n_out) as u64).unwrap() as usize];
    quant::quantize(GgmlType::Q8_0, &signal(7, n_in * n_out), &mut bytes).unwrap();
    let w = Weights::new(GgmlType::Q8_0, n_in, n_out, &bytes).unwrap();
    let groups = grouped(GgmlType::Q8_0, n_in, n_out, &bytes);
    let only = Weights::grouped_only(GgmlType::Q8_0, n_in, n_out, bytemuck::cast_slice(&groups)).unwrap();
    let x = signal(8, n_tokens * n_in);
    let mut scratch = MatmulScratch::default();
    for isa in Isa::available() {
        let mut out = vec![0f32; n_tokens * n_out];
        let result = matmul(isa, &only, &x, &mut out, &mut scratch);
        if isa.reads_grouped_weights() {
            result.unwrap();
            let mut expected = vec![0f32; n_tokens * n_out];
            matmul(isa, &w, &x, &mut expected, &mut scratch).unwrap();
            assert_eq!(out, expected, "{isa}");
        } else {
            let error = result.unwrap_err().to_string();
            assert!(error.contains("grouped only"), "{isa}: {error}");
        }
    }
    assert!(only.dequantize_row(0, &mut vec![0.0; n_in]).is_err());
}

#[test]
fn grouped_weights_of_the_wrong_size_or_type_are_errors() {
    let bytes = vec![0u8; 144 * 2];
    let w = Weights::new(GgmlType::Q4_K, 256, 2, &bytes).unwrap();
    let groups = vec![0u8; grouped_len(GgmlType::Q4_K, 256, 2).unwrap()];
    assert!(w.with_grouped(&groups[1..]).is_err());
    let f32_rows = vec![0u8; 4 * 256];
    let f32_weights = Weights::new(GgmlType::F32, 256, 1, &f32_rows).unwrap();
    assert!(f32_weights.with_grouped(&groups).is_err());
}

#[test]
fn plain_float_weights_match_the_naive_product() {
    for dtype in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
        check(dtype, 40, 7);
    }
}

#[test]
fn shape_mismatches_are_errors() {
    let bytes = vec![0u8; 144 * 2];
    assert!(Weights::new(GgmlType::Q4_K, 256, 3, &bytes).is_err());
    assert!(Weights::new(GgmlType::Q4_K, 100, 2, &bytes).is_err());
    let w = Weights::new(GgmlType::Q4_K, 256, 2, &bytes).unwrap();
    let mut scratch = MatmulScratch::default();
    let err = matmul(Isa::Scalar, &w, &[0.0; 255], &mut [0.0; 2], &mut scratch).unwrap_err();
    assert!(
        matches!(
            err,
            OpError::Shape {
                what: "activations",
                ..
            }
        ),
        "{err}"
    );
    let err = matmul(Isa::Scalar, &w, &[0.0; 256], &mut [0.0; 3], &mut scratch).unwrap_err();
    assert!(matches!(err, OpError::Shape { what: "output", .. }), "{err}");
    let iq = vec![0u8; 66];
    let w = Weights::new(GgmlType::IQ2_XXS, 256, 1, &iq).unwrap();
    assert!(matmul(Isa::Scalar, &w, &[0.0; 256], &mut [0.0; 1], &mut scratch).is_err());
}

#[test]
fn tile_matmul_gives_the_references_bits_on_every_isa() {
    // 72 rows: four panels and a half-full one, split over tasks; 200 columns: six whole K blocks and a partial one
    // (the AMX kernel alternates two sets of tiles by K block); then a single K block and panel. Token counts: one,
    // fewer than a tile, and more than two tiles.
    let mut scratch = MatmulScratch::default();
    for (n_in, n_out) in [(200, 72), (20, 16)] {
        let values = signal(3, n_in * n_out);
        let mut w = TileMatrix::zeros(n_in, n_out);
        w.pack(0..w.panels(), 0..w.k_blocks(), |rows, columns, out| {
            for (r, out) in rows.zip(out.chunks_exact_mut(columns.len())) {
                out.copy_from_slice(&values[r * n_in..][columns.clone()]);
            }
        });
        for n_tokens in [1, 7, 45] {
            let x = signal(4, n_tokens * n_in);
            let mut rows = TileRows::default();
            rows.quantize(n_in, &x);
            let reference: Vec<f32> = (0..n_tokens * n_out)
                .map(|i| tiles::dot(&rows, i / n_out, &w, i % n_out))
                .collect();
            for isa in Isa::available() {
                let mut out = vec![f32::NAN; n_tokens * n_out];
                tile_matmul(isa, &w, &x, &mut out, &mut scratch).unwrap();
                assert!(
                    out.iter().zip(&reference).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{isa} (tiles on AMX: {}), {n_tokens} × {n_in} × {n_out}",
                    isa.multiplies_tiles()
                );
            }
        }
    }
    // Activations that are not whole rows are refused.
    let w = TileMatrix::zeros(200, 72);
    assert!(tile_matmul(Isa::best(), &w, &[0.0; 199], &mut [0.0; 72], &mut scratch).is_err());
}
