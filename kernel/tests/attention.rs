//! Attention over the KV cache, on every ISA, against a naive two-pass reference (materialised scores, softmax,
//! weighted sum) computed in f64 from the values the cache actually holds (f16- or Q8_0-rounded) and from the query
//! as the kernel's path sees it (f16-rounded or Q8_0-quantized on the per-row paths, f32 on the tiled one).

use hearth_kernel::ops::attention::{AttentionParams, LONG_RANGE, TILE, attention};
use hearth_kernel::ops::kv::{KvCache, KvType};
use hearth_kernel::quant;
use hearth_kernel::simd::Isa;

fn signal(seed: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 31 + seed * 17) % 101) as f32 / 50.0 - 1.0) * 1.5)
        .collect()
}

/// What the cache holds for `x` after storing it.
fn stored(kind: KvType, x: &[f32]) -> Vec<f32> {
    match kind {
        KvType::F16 => x.iter().map(|v| half::f16::from_f32(*v).to_f32()).collect(),
        KvType::Q8_0 => {
            let mut bytes = vec![0u8; x.len() / 32 * 34];
            quant::quantize(hearth_kernel::GgmlType::Q8_0, x, &mut bytes).unwrap();
            let mut out = vec![0f32; x.len()];
            quant::dequantize(hearth_kernel::GgmlType::Q8_0, &bytes, &mut out).unwrap();
            out
        }
    }
}

struct Case {
    kind: KvType,
    p: AttentionParams,
    first_pos: usize,
    n_tokens: usize,
}

fn run(case: &Case) {
    let Case {
        kind,
        p,
        first_pos,
        n_tokens,
    } = *case;
    // Which path the kernel takes decides how it rounds the query and how precisely it accumulates (per token: the
    // number of positions it sees decides between the per-row paths).
    let tiled = kind == KvType::F16 && n_tokens >= TILE;
    type QuerySeen = fn(&[f32]) -> Vec<f32>;
    let query_seen: QuerySeen = match kind {
        _ if tiled => |q| q.to_vec(),
        KvType::F16 => |q| stored(KvType::F16, q),
        KvType::Q8_0 => |q| stored(KvType::Q8_0, q),
    };
    let tolerance = |visible: usize| match kind {
        _ if tiled => 2e-5,
        KvType::F16 if visible >= LONG_RANGE => 1e-4,
        // Over short ranges the per-row f16 path accumulates in f16 (see attention.rs): exact to f16 precision.
        KvType::F16 => 1e-2,
        KvType::Q8_0 => 2e-3,
    };
    let (kv_width, q_width) = (p.n_kv_heads * p.head_dim, p.n_heads * p.head_dim);
    let n_pos = first_pos + n_tokens;
    let layer = 1;
    let mut cache = KvCache::new(kind, 2, p.n_kv_heads, p.head_dim, n_pos + 3).unwrap();
    let (mut keys, mut values) = (Vec::new(), Vec::new());
    for pos in 0..n_pos {
        let (k, v) = (signal(pos, kv_width), signal(pos + 1000, kv_width));
        cache.store(layer, pos, &k, &v).unwrap();
        keys.push(stored(kind, &k));
        values.push(stored(kind, &v));
    }
    let q = signal(7, n_tokens * q_width);
    for isa in Isa::available() {
        let mut out = vec![f32::NAN; q.len()];
        attention(isa, &p, &q, &cache, layer, first_pos, &mut out).unwrap();
        check(case, &q, &keys, &values, &out, query_seen, &tolerance, isa);
    }
}

#[allow(clippy::too_many_arguments)]
fn check(
    case: &Case,
    q: &[f32],
    keys: &[Vec<f32>],
    values: &[Vec<f32>],
    out: &[f32],
    query_seen: fn(&[f32]) -> Vec<f32>,
    tolerance: &dyn Fn(usize) -> f64,
    isa: Isa,
) {
    let Case {
        kind,
        p,
        first_pos,
        n_tokens,
    } = *case;

    let group = p.n_heads / p.n_kv_heads;
    for t in 0..n_tokens {
        let pos = first_pos + t;
        let start = p.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        let tolerance = tolerance(pos + 1 - start);
        for h in 0..p.n_heads {
            let kv_h = h / group;
            let qh = query_seen(&q[(t * p.n_heads + h) * p.head_dim..][..p.head_dim]);
            let scores: Vec<f64> = (start..=pos)
                .map(|j| {
                    let k = &keys[j][kv_h * p.head_dim..][..p.head_dim];
                    let s = qh.iter().zip(k).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() * p.scale as f64;
                    p.softcap.map_or(s, |c| c as f64 * (s / c as f64).tanh())
                })
                .collect();
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            for d in 0..p.head_dim {
                let expected: f64 = (start..=pos)
                    .zip(&weights)
                    .map(|(j, w)| w * values[j][kv_h * p.head_dim + d] as f64)
                    .sum::<f64>()
                    / total;
                let got = out[(t * p.n_heads + h) * p.head_dim + d] as f64;
                assert!(
                    (got - expected).abs() < tolerance * (1.0 + expected.abs()),
                    "{isa} {kind:?} t={t} h={h} d={d}: {got} vs {expected}"
                );
            }
        }
    }
}

#[test]
fn prefill_from_empty_cache_is_causal_with_gqa() {
    run(&Case {
        kind: KvType::F16,
        p: AttentionParams::global(6, 2, 64),
        first_pos: 0,
        n_tokens: 9,
    });
}

#[test]
fn decode_at_depth_over_a_long_context() {
    run(&Case {
        kind: KvType::F16,
        p: AttentionParams::global(4, 1, 128),
        first_pos: 3000,
        n_tokens: 1,
    });
}

#[test]
fn a_batch_crossing_into_the_long_range_path_with_gqa() {
    // The first tokens see fewer than LONG_RANGE positions, the rest more, in segments of 512 (the last partial).
    run(&Case {
        kind: KvType::F16,
        p: AttentionParams::global(6, 2, 64),
        first_pos: LONG_RANGE - 4,
        n_tokens: 9,
    });
    run(&Case {
        kind: KvType::F16,
        p: AttentionParams::global(6, 2, 64),
        first_pos: 1300,
        n_tokens: 2,
    });
}

#[test]
fn decode_with_a_sliding_window_longer_than_the_long_range() {
    let p = AttentionParams {
        window: Some(1100),
        ..AttentionParams::global(4, 2, 64)
    };
    run(&Case {
        kind: KvType::F16,
        p,
        first_pos: 2000,
        n_tokens: 1,
    });
}

#[test]
fn prefill_continuing_a_cached_prefix() {
    run(&Case {
        kind: KvType::F16,
        p: AttentionParams::global(4, 4, 32),
        first_pos: 40,
        n_tokens: 7,
    });
}

#[test]
fn sliding_window_sees_only_recent_positions() {
    let p = AttentionParams {
        window: Some(16),
        ..AttentionParams::global(4, 2, 64)
    };
    run(&Case {
        kind: KvType::F16,
        p,
        first_pos: 50,
        n_tokens: 20,
    });
}

#[test]
fn soft_capped_scores() {
    let p = AttentionParams {
        softcap: Some(5.0),
        scale: 1.0,
        ..AttentionParams::global(2, 1, 64)
    };
    run(&Case {
        kind: KvType::F16,
        p,
        first_pos: 10,
        n_tokens: 3,
    });
}

#[test]
fn tiled_prefill_of_a_long_batch() {
    // Not a multiple of the tile, starting mid-tile after a cached prefix.
    run(&Case {
        kind: KvType::F16,
        p: AttentionParams::global(6, 2, 64),
        first_pos: 30,
        n_tokens: 150,
    });
}

#[test]
fn tiled_prefill_with_a_sliding_window() {
    let p = AttentionParams {
        window: Some(40),
        ..AttentionParams::global(4, 2, 64)
    };
    run(&Case {
        kind: KvType::F16,
        p,
        first_pos: 100,
        n_tokens: 90,
    });
}

#[test]
fn q8_0_cache() {
    run(&Case {
        kind: KvType::Q8_0,
        p: AttentionParams::global(8, 2, 64),
        first_pos: 100,
        n_tokens: 5,
    });
}

#[test]
fn bad_shapes_are_errors() {
    let cache = KvCache::new(KvType::F16, 1, 2, 64, 8).unwrap();
    let mut out = vec![0f32; 4 * 64];
    let isa = Isa::Scalar;
    let (p, uneven_groups) = (AttentionParams::global(4, 2, 64), AttentionParams::global(4, 3, 64));
    assert!(attention(isa, &uneven_groups, &[0.0; 256], &cache, 0, 0, &mut out).is_err());
    assert!(attention(isa, &p, &[0.0; 256], &cache, 1, 0, &mut out).is_err());
    assert!(attention(isa, &p, &[0.0; 256], &cache, 0, 8, &mut out).is_err());
    assert!(KvCache::new(KvType::Q8_0, 1, 1, 48, 4).is_err());
    let mut cache = cache;
    assert!(cache.store(0, 8, &[0.0; 128], &[0.0; 128]).is_err());
}
