//! Quantized matmul per weight type × ISA × Qwen2.5-Coder-1.5B shape, for one token (decode: reported as weight
//! bytes read per second) and 512 tokens (prefill: reported as elements/s where one element is one multiply-add
//! pair, i.e. 2 ops).
//!
//!     cargo bench -p hearth-benches --bench matmul -- 'Q4_K/avx2'     # a filter keeps runs short
//!
//! Weights are random values quantized once per type; `HEARTH_ISA` does not apply (every available ISA is measured).
//! Types with a grouped layout are also measured with their rows grouped ahead of time (`<isa>-grouped`, as hearth's
//! grouped-weights cache gives them to the AVX-512 kernels; other ISAs ignore the groups).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hearth_kernel::GgmlType;
use hearth_kernel::ops::matmul::{MatmulScratch, Weights, matmul};
use hearth_kernel::quant;
use hearth_kernel::quant::grouped::{group_rows, grouped_len};
use hearth_kernel::simd::Isa;

/// (n_out, n_in): attention q/o, k/v, ffn gate/up, ffn down, output head.
const SHAPES: [(usize, usize); 5] = [(1536, 1536), (256, 1536), (8960, 1536), (1536, 8960), (151_936, 1536)];
const TYPES: [GgmlType; 6] = [
    GgmlType::Q4_K,
    GgmlType::Q6_K,
    GgmlType::Q8_0,
    GgmlType::Q5_0,
    GgmlType::Q4_1,
    GgmlType::Q4_0,
];
const PREFILL_TOKENS: usize = 512;

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32 / (1 << 24) as f32 - 0.5)
        .collect()
}

fn bench(c: &mut Criterion) {
    for dtype in TYPES {
        let mut group = c.benchmark_group(dtype.name());
        group.sample_size(10);
        for (n_out, n_in) in SHAPES {
            let mut bytes = vec![0u8; dtype.bytes_for((n_out * n_in) as u64).unwrap() as usize];
            quant::quantize(dtype, &values(n_out * n_in, 1), &mut bytes).unwrap();
            let w = Weights::new(dtype, n_in, n_out, &bytes).unwrap();
            let groups = grouped_len(dtype, n_in, n_out).map(|len| {
                let mut groups = vec![0u32; len / 4];
                group_rows(dtype, n_in, &bytes, bytemuck::cast_slice_mut(&mut groups)).unwrap();
                groups
            });
            let with_groups = groups
                .as_ref()
                .map(|g| w.with_grouped(bytemuck::cast_slice(g)).unwrap());
            // The output head only ever runs for the last token, so it has no prefill case.
            let token_counts: &[usize] = if n_out > 100_000 { &[1] } else { &[1, PREFILL_TOKENS] };
            for &n_tokens in token_counts {
                let x = values(n_tokens * n_in, 2);
                let mut out = vec![0f32; n_tokens * n_out];
                let mut scratch = MatmulScratch::default();
                group.throughput(if n_tokens == 1 {
                    Throughput::Bytes(bytes.len() as u64)
                } else {
                    Throughput::Elements((n_out * n_in * n_tokens) as u64)
                });
                for isa in Isa::available() {
                    let variants = [
                        (Some(w), ""),
                        (with_groups.filter(|_| isa.reads_grouped_weights()), "-grouped"),
                    ];
                    for (w, suffix) in variants.iter().filter_map(|(w, suffix)| Some((w.as_ref()?, suffix))) {
                        let id = BenchmarkId::new(format!("{isa}{suffix}/t{n_tokens}"), format!("{n_out}x{n_in}"));
                        group.bench_function(id, |b| b.iter(|| matmul(isa, w, &x, &mut out, &mut scratch).unwrap()));
                    }
                }
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
