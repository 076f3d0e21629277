//! Attention over an f16 KV cache with Qwen2.5-Coder-1.5B's shape (12 query heads sharing 2 KV heads of 128), per
//! ISA: one token decoding at a depth (the per-row paths: f16 accumulation below 512 visible positions, the segmented
//! long-range path from there), and a 512-token prefill from an empty cache (the tiled path). Reported as KV-cache
//! bytes read per second (each visible key and value row counted once per call).
//!
//!     cargo bench -p hearth-benches --bench attention -- 'decode/avx2'
//!
//! One layer's cache is used, so every figure is cache-resident (a 4096-deep layer is 4 MiB); the model's 28 layers
//! do not fit, which `hearth bench -d` measures.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hearth_kernel::ops::attention::{AttentionParams, attention};
use hearth_kernel::ops::kv::{KvCache, KvType};
use hearth_kernel::simd::Isa;

const PARAMS: AttentionParams = AttentionParams {
    n_heads: 12,
    n_kv_heads: 2,
    head_dim: 128,
    scale: 0.088_388_35, // 1 / sqrt(128)
    window: None,
    softcap: None,
};
const DEPTHS: [usize; 3] = [256, 1024, 4096];
const PREFILL_TOKENS: usize = 512;

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32 / (1 << 24) as f32 - 0.5)
        .collect()
}

/// A one-layer cache holding `positions` positions of random keys and values.
fn filled_cache(positions: usize) -> KvCache {
    let width = PARAMS.n_kv_heads * PARAMS.head_dim;
    let mut cache = KvCache::new(KvType::F16, 1, PARAMS.n_kv_heads, PARAMS.head_dim, positions).unwrap();
    for pos in 0..positions {
        let (k, v) = (values(width, pos as u32), values(width, pos as u32 + 1_000_000));
        cache.store(0, pos, &k, &v).unwrap();
    }
    cache
}

/// Bytes of keys and values `n_tokens` tokens from `first_pos` read (each visible row once per call).
fn kv_bytes(first_pos: usize, n_tokens: usize) -> u64 {
    let row = 2 * PARAMS.n_kv_heads * PARAMS.head_dim * 2;
    (row * (first_pos + n_tokens)) as u64
}

fn bench(c: &mut Criterion) {
    let width = PARAMS.n_heads * PARAMS.head_dim;
    let mut group = c.benchmark_group("attention");
    group.sample_size(20);
    let cases = DEPTHS
        .iter()
        .map(|&depth| ("decode", depth, 1))
        .chain([("prefill", 0, PREFILL_TOKENS)]);
    for (name, first_pos, n_tokens) in cases {
        let cache = filled_cache(first_pos + n_tokens);
        let q = values(n_tokens * width, 7);
        let mut out = vec![0f32; q.len()];
        group.throughput(Throughput::Bytes(kv_bytes(first_pos, n_tokens)));
        for isa in Isa::available() {
            let id = BenchmarkId::new(format!("{name}/{isa}"), format!("d{first_pos}"));
            group.bench_function(id, |b| {
                b.iter(|| attention(isa, &PARAMS, &q, &cache, 0, first_pos, &mut out).unwrap());
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
