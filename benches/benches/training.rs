//! The float kernel under a training step's input gradients: `mad_rows` adding a tile of dequantized weight rows into
//! a block of tokens' gradients (`frozen_linear_backward`'s task), at Qwen2.5-Coder-1.5B's widths (1536 for the
//! attention and up/gate projections' inputs, 8960 for the down projection's), one thread, per ISA. Both widths are
//! run in the blocks `frozen_linear_backward` picks for 1536-wide rows (64 tokens × 128 rows) and in those it picks
//! for 8960-wide ones (16 × 32). Reported as multiply-adds per second (elements = tokens × rows × width), to read
//! against the core's FMA peak.
//!
//! Then the whole input gradient, `frozen_linear_backward` on all threads, through a Q4_K matrix shaped like Qwen's
//! gate projection (`[8960, 1536]`: 1536-wide gradients) and its down projection (`[1536, 8960]`) for 512 tokens, both
//! ways: int8 (the transposed, requantized weights by the kernel's matmul) and float (`mad_rows` over dequantized
//! tiles). Also in multiply-adds per second.
//!
//! Then a training step's attention, forward and backward, over one 512-token example at SmolLM2-135M's heads (9 query
//! heads on 3 KV heads of 64) and Qwen2.5-Coder-1.5B's (12 on 2 of 128), all threads. In multiply-adds per second
//! (elements = the causal pairs' `heads × d` multiply-adds of each product: two forward, four backward).
//!
//! Then a LoRA pair of rank 8 on 512 tokens, its forward (`x·Aᵀ`, then `B` times that, added to the output) and its
//! backward (`A`'s, `B`'s and the input's gradients), at Qwen2.5-Coder-1.5B's gate projection (`[8960, 1536]`) and
//! SmolLM2-135M's (`[1536, 576]`), all threads. In multiply-adds per second (`tokens × rank × (n_in + n_out)`
//! forward, twice that backward).
//!
//!     cargo bench -p hearth-benches --bench training

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hearth_kernel::GgmlType;
use hearth_kernel::ops::attention::AttentionParams;
use hearth_kernel::ops::matmul::{MatmulScratch, Weights};
use hearth_kernel::simd::Isa;
use hearth_runtime::lora::LoraPair;
use hearth_trainer::ops::attention::{attention_backward, attention_forward};
use hearth_trainer::ops::linear::{Frozen, Transposed, frozen_linear_backward};
use hearth_trainer::ops::lora::lora_backward;

/// `(tokens, rows)` of a block and a tile.
const BLOCKINGS: [(usize, usize); 2] = [(64, 128), (16, 32)];
const WIDTHS: [usize; 2] = [1536, 8960];

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32 / (1 << 24) as f32 - 0.5)
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("mad_rows");
    group.sample_size(20);
    for width in WIDTHS {
        for (tokens, rows) in BLOCKINGS {
            let (tile, weights) = (values(rows * width, 1), values(tokens * rows, 2));
            let mut acc = values(tokens * width, 3);
            group.throughput(Throughput::Elements((tokens * rows * width) as u64));
            for isa in Isa::available() {
                let id = BenchmarkId::new(format!("{isa}/{tokens}x{rows}"), width);
                group.bench_function(id, |b| b.iter(|| isa.mad_rows(width, &mut acc, &tile, &weights)));
            }
        }
    }
    group.finish();
}

/// Tokens of a training example.
const TOKENS: usize = 512;
/// `(n_out, n_in)` of the matrices.
const MATRICES: [(usize, usize); 2] = [(8960, 1536), (1536, 8960)];

fn input_gradient(c: &mut Criterion) {
    let mut group = c.benchmark_group("input_gradient");
    group.sample_size(10);
    let isa = Isa::selected();
    for (n_out, n_in) in MATRICES {
        let mut bytes = vec![0u8; GgmlType::Q4_K.bytes_for((n_out * n_in) as u64).unwrap() as usize];
        hearth_kernel::quant::quantize(GgmlType::Q4_K, &values(n_out * n_in, 4), &mut bytes).unwrap();
        let weights = Weights::new(GgmlType::Q4_K, n_in, n_out, &bytes).unwrap();
        let transposed = Transposed::of(&weights, isa).unwrap();
        let d_out = values(TOKENS * n_out, 5);
        let mut dx = vec![0.0; TOKENS * n_in];
        let mut scratch = MatmulScratch::default();
        group.throughput(Throughput::Elements((TOKENS * n_out * n_in) as u64));
        for (way, transposed) in [("int8", transposed.as_ref()), ("float", None)] {
            let frozen = Frozen {
                weights: &weights,
                tiles: None,
                transposed,
            };
            let id = BenchmarkId::new(format!("{isa}/{way}"), format!("{n_out}x{n_in}"));
            group.bench_function(id, |b| {
                b.iter(|| frozen_linear_backward(isa, frozen, &d_out, &mut dx, &mut scratch).unwrap())
            });
        }
    }
    group.finish();
}

/// `(model, query heads, KV heads, head width)`.
const ATTENTION_SHAPES: [(&str, usize, usize, usize); 2] = [("smollm2", 9, 3, 64), ("qwen2.5", 12, 2, 128)];

fn attention(c: &mut Criterion) {
    let mut group = c.benchmark_group("training_attention");
    group.sample_size(10);
    let isa = Isa::selected();
    for (model, n_heads, n_kv_heads, head_dim) in ATTENTION_SHAPES {
        let p = AttentionParams::global(n_heads, n_kv_heads, head_dim);
        let (q, k, v) = (
            values(TOKENS * n_heads * head_dim, 6),
            values(TOKENS * n_kv_heads * head_dim, 7),
            values(TOKENS * n_kv_heads * head_dim, 8),
        );
        let d_out = values(q.len(), 9);
        let (mut out, mut dq, mut dk, mut dv) = (
            vec![0.0; q.len()],
            vec![0.0; q.len()],
            vec![0.0; k.len()],
            vec![0.0; v.len()],
        );
        let pairs = (TOKENS * (TOKENS + 1) / 2 * n_heads * head_dim) as u64;
        group.throughput(Throughput::Elements(2 * pairs));
        group.bench_function(BenchmarkId::new(format!("{isa}/forward"), model), |b| {
            b.iter(|| attention_forward(isa, &p, &q, &k, &v, &mut out).unwrap())
        });
        let probs = attention_forward(isa, &p, &q, &k, &v, &mut out).unwrap();
        group.throughput(Throughput::Elements(4 * pairs));
        group.bench_function(BenchmarkId::new(format!("{isa}/backward"), model), |b| {
            b.iter(|| attention_backward(isa, &p, &q, &k, &v, &probs, &d_out, &mut dq, &mut dk, &mut dv).unwrap())
        });
    }
    group.finish();
}

/// `(model, n_out, n_in)` of the adapted projections.
const LORA_SHAPES: [(&str, usize, usize); 2] = [("smollm2", 1536, 576), ("qwen2.5", 8960, 1536)];
const LORA_RANK: usize = 8;

fn lora(c: &mut Criterion) {
    let mut group = c.benchmark_group("training_lora");
    group.sample_size(20);
    let isa = Isa::selected();
    for (model, n_out, n_in) in LORA_SHAPES {
        let pair = LoraPair {
            a: values(LORA_RANK * n_in, 10),
            b: values(n_out * LORA_RANK, 11),
            ..LoraPair::zeros(n_in, n_out, LORA_RANK)
        };
        let (x, d_out) = (values(TOKENS * n_in, 12), values(TOKENS * n_out, 13));
        let (mut out, mut dx, mut grad) = (
            vec![0.0; TOKENS * n_out],
            vec![0.0; TOKENS * n_in],
            LoraPair::zeros(n_in, n_out, LORA_RANK),
        );
        let multiply_adds = (TOKENS * LORA_RANK * (n_in + n_out)) as u64;
        group.throughput(Throughput::Elements(multiply_adds));
        group.bench_function(BenchmarkId::new(format!("{isa}/forward"), model), |b| {
            b.iter(|| pair.forward(isa, 2.0, &x, &mut out).unwrap())
        });
        let ax = pair.forward(isa, 2.0, &x, &mut out).unwrap();
        group.throughput(Throughput::Elements(2 * multiply_adds));
        group.bench_function(BenchmarkId::new(format!("{isa}/backward"), model), |b| {
            b.iter(|| lora_backward(isa, &pair, 2.0, &x, &ax, &d_out, &mut grad, &mut dx).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench, input_gradient, attention, lora);
criterion_main!(benches);
