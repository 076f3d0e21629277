//! Block codecs against the reference (gguf-py's numpy codecs, testdata/quant/make_reference.py) and against the
//! accuracy limits llama.cpp's own tests (test-quantize-fns) hold its quantizers to.

use std::path::PathBuf;

use bytemuck::Zeroable;
use hearth_kernel::GgmlType;
use hearth_kernel::quant::{
    self, BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_1, BlockQ5_K, BlockQ6_K, BlockQ8_0, QuantBlock, Quantize,
    WeightBlock,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/quant")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

const DEQUANT_TYPES: [GgmlType; 10] = [
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

#[test]
fn dequantization_is_bit_exact_with_the_reference() {
    for dtype in DEQUANT_TYPES {
        let blocks = fixture(&format!("{dtype}.blocks"));
        let expected = f32s(&fixture(&format!("{dtype}.f32")));
        let mut out = vec![0f32; expected.len()];
        quant::dequantize(dtype, &blocks, &mut out).unwrap();
        for (i, (o, e)) in out.iter().zip(&expected).enumerate() {
            assert_eq!(o.to_bits(), e.to_bits(), "{dtype} element {i}: {o} vs reference {e}");
        }
    }
}

#[test]
fn legacy_quantization_is_byte_exact_with_the_reference() {
    for dtype in [
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::BF16,
    ] {
        let x = f32s(&fixture(&format!("{dtype}.quant_in.f32")));
        let expected = fixture(&format!("{dtype}.quant_out"));
        let mut out = vec![0u8; expected.len()];
        quant::quantize(dtype, &x, &mut out).unwrap();
        let first_diff = out.iter().zip(&expected).position(|(a, b)| a != b);
        assert_eq!(first_diff, None, "{dtype}: first differing byte");
    }
}

/// llama.cpp's test signal.
fn test_signal(offset: f32, n: usize) -> Vec<f32> {
    (0..n).map(|i| 0.1 + 2.0 * (i as f32 + offset).cos()).collect()
}

/// llama.cpp's error metric: sqrt(Σ diff²) / n.
fn rmse_over_n(a: &[f32], b: &[f32]) -> f64 {
    let sum: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    sum.sqrt() / a.len() as f64
}

const TEST_SIZE: usize = 32 * 128;

fn round_trip<B: Quantize>(x: &[f32]) -> Vec<f32> {
    let mut blocks = vec![B::zeroed(); x.len() / B::LEN];
    quant::quantize_blocks(x, &mut blocks);
    let mut out = vec![0f32; x.len()];
    quant::dequantize_blocks(&blocks, &mut out);
    out
}

#[test]
fn quantization_error_is_within_the_reference_limits() {
    let x = test_signal(0.0, TEST_SIZE);
    let errors = [
        ("Q8_0", rmse_over_n(&x, &round_trip::<BlockQ8_0>(&x))),
        ("Q4_0", rmse_over_n(&x, &round_trip::<BlockQ4_0>(&x))),
        ("Q4_1", rmse_over_n(&x, &round_trip::<BlockQ4_1>(&x))),
        ("Q5_0", rmse_over_n(&x, &round_trip::<BlockQ5_0>(&x))),
        ("Q5_1", rmse_over_n(&x, &round_trip::<BlockQ5_1>(&x))),
        ("Q4_K", rmse_over_n(&x, &round_trip::<BlockQ4_K>(&x))),
        ("Q5_K", rmse_over_n(&x, &round_trip::<BlockQ5_K>(&x))),
        ("Q6_K", rmse_over_n(&x, &round_trip::<BlockQ6_K>(&x))),
        ("Q8_K", rmse_over_n(&x, &round_trip::<quant::BlockQ8_K>(&x))),
    ];
    for (name, error) in errors {
        assert!(error < 0.002, "{name}: total quantization error {error}");
    }
    // More bits, less error: the K-quant fits must actually be fitting.
    let by_name = |n: &str| errors.iter().find(|e| e.0 == n).unwrap().1;
    assert!(by_name("Q6_K") < by_name("Q5_K") && by_name("Q5_K") < by_name("Q4_K"));
    assert!(by_name("Q4_K") < by_name("Q4_0"));
}

/// The dot product of quantized rows against the exact f32 dot product (llama.cpp's MAX_DOT_PRODUCT_ERROR).
fn dot_error<W: WeightBlock + Quantize>() -> f64 {
    let (x, y) = (test_signal(0.0, TEST_SIZE), test_signal(1.0, TEST_SIZE));
    let mut w = vec![W::zeroed(); TEST_SIZE / W::LEN];
    quant::quantize_blocks(&x, &mut w);
    let mut a = vec![W::Act::zeroed(); TEST_SIZE / W::Act::LEN];
    quant::quantize_blocks(&y, &mut a);
    let exact: f64 = x.iter().zip(&y).map(|(p, q)| *p as f64 * *q as f64).sum();
    (W::vec_dot_ref(&w, &a) as f64 - exact).abs() / TEST_SIZE as f64
}

#[test]
fn dot_product_error_is_within_the_reference_limits() {
    for (name, error) in [
        ("Q8_0", dot_error::<BlockQ8_0>()),
        ("Q4_0", dot_error::<BlockQ4_0>()),
        ("Q4_1", dot_error::<BlockQ4_1>()),
        ("Q5_0", dot_error::<BlockQ5_0>()),
        ("Q5_1", dot_error::<BlockQ5_1>()),
        ("Q4_K", dot_error::<BlockQ4_K>()),
        ("Q5_K", dot_error::<BlockQ5_K>()),
        ("Q6_K", dot_error::<BlockQ6_K>()),
    ] {
        assert!(error < 0.02, "{name}: dot product error {error}");
    }
}

/// The integer dot product must equal the dot product of the dequantized rows (up to f32 rounding): this ties each
/// type's dot-product bit layout to its (reference-checked) dequantization.
fn dot_matches_dequantized<W: WeightBlock>(dtype: GgmlType) {
    let bytes = fixture(&format!("{dtype}.blocks"));
    let w: &[W] = quant::cast_blocks(&bytes).unwrap();
    let n = w.len() * W::LEN;
    let y = test_signal(0.5, n);
    let mut a = vec![W::Act::zeroed(); n / W::Act::LEN];
    quant::quantize_blocks(&y, &mut a);
    let (mut wf, mut af) = (vec![0f32; n], vec![0f32; n]);
    quant::dequantize_blocks(w, &mut wf);
    quant::dequantize_blocks(&a, &mut af);
    let expected: f64 = wf.iter().zip(&af).map(|(p, q)| *p as f64 * *q as f64).sum();
    let scale: f64 = wf.iter().zip(&af).map(|(p, q)| (*p as f64 * *q as f64).abs()).sum();
    let got = W::vec_dot_ref(w, &a) as f64;
    assert!(
        (got - expected).abs() <= 1e-5 * scale,
        "{dtype}: dot {got} vs dequantized {expected} (scale {scale})"
    );
}

#[test]
fn integer_dot_products_agree_with_dequantization() {
    dot_matches_dequantized::<BlockQ8_0>(GgmlType::Q8_0);
    dot_matches_dequantized::<BlockQ4_0>(GgmlType::Q4_0);
    dot_matches_dequantized::<BlockQ4_1>(GgmlType::Q4_1);
    dot_matches_dequantized::<BlockQ5_0>(GgmlType::Q5_0);
    dot_matches_dequantized::<BlockQ5_1>(GgmlType::Q5_1);
    dot_matches_dequantized::<BlockQ4_K>(GgmlType::Q4_K);
    dot_matches_dequantized::<BlockQ5_K>(GgmlType::Q5_K);
    dot_matches_dequantized::<BlockQ6_K>(GgmlType::Q6_K);
}

#[test]
fn wrong_sizes_are_errors_not_panics() {
    let mut out = vec![0f32; 100];
    assert!(quant::dequantize(GgmlType::Q4_K, &[0u8; 144], &mut out).is_err());
    assert!(quant::quantize(GgmlType::Q8_0, &[0f32; 33], &mut [0u8; 34]).is_err());
    assert!(quant::dequantize(GgmlType::IQ2_XXS, &[0u8; 66], &mut [0f32; 256]).is_err());
}
