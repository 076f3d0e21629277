//! The float kernel under a training step's input gradients: `mad_rows` adding a tile of dequantized weight rows into
//! a block of tokens' gradients (`frozen_linear_backward`'s task), at Qwen2.5-Coder-1.5B's widths (1536 for the
//! attention and up/gate projections' inputs, 8960 for the down projection's), one thread, per ISA. Both widths are
//! run in the blocks `frozen_linear_backward` picks for 1536-wide rows (64 tokens × 128 rows) and in those it picks
//! for 8960-wide ones (16 × 32). Reported as multiply-adds per second (elements = tokens × rows × width), to read
//! against the core's FMA peak.
//!
//!     cargo bench -p hearth-benches --bench training

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hearth_kernel::simd::Isa;

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

criterion_group!(benches, bench);
criterion_main!(benches);
