//! Causal grouped-query attention over a whole training sequence (positions `0..n_tokens`), forward and backward.
//!
//! Shapes: `q, out: [n_tokens, n_heads · head_dim]`, `k, v: [n_tokens, n_kv_heads · head_dim]`; query head `h` reads
//! KV head `h / (n_heads / n_kv_heads)`. Scores are `scale · q·k` (soft-capped as `cap · tanh(s / cap)` when the
//! layer says so), masked to the causal past (and to the window of sliding-window layers), softmaxed per row.
//! The forward keeps the probabilities, `[n_tokens, n_heads, n_tokens]` (12.6 MB for 12 heads × 512 tokens), which
//! the backward needs; with gradient checkpointing only one block's exist at a time.

use hearth_kernel::ops::attention::AttentionParams;
use rayon::prelude::*;

use super::{OpError, expect_len};

/// The first position token `t` sees.
fn first_visible(p: &AttentionParams, t: usize) -> usize {
    p.window.map_or(0, |w| (t + 1).saturating_sub(w))
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The score of a raw dot product, and its derivative with respect to the dot product.
fn score(p: &AttentionParams, dot: f32) -> (f32, f32) {
    match p.softcap {
        None => (dot * p.scale, p.scale),
        Some(cap) => {
            let t = (dot * (p.scale / cap)).tanh();
            (cap * t, p.scale * (1.0 - t * t))
        }
    }
}

fn check_shapes(p: &AttentionParams, q: &[f32], k: &[f32], v: &[f32]) -> Result<usize, OpError> {
    let width = p.n_heads * p.head_dim;
    if p.n_kv_heads == 0 || !p.n_heads.is_multiple_of(p.n_kv_heads) || width == 0 || !q.len().is_multiple_of(width) {
        return Err(OpError::Shape {
            what: "attention queries",
            expected: width,
            got: q.len(),
        });
    }
    let n_tokens = q.len() / width;
    expect_len("attention keys", k.len(), n_tokens * p.n_kv_heads * p.head_dim)?;
    expect_len("attention values", v.len(), k.len())?;
    Ok(n_tokens)
}

/// Writes `out` and returns the probabilities for [`attention_backward`].
pub fn attention_forward(
    p: &AttentionParams,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
) -> Result<Vec<f32>, OpError> {
    let n = check_shapes(p, q, k, v)?;
    expect_len("attention output", out.len(), q.len())?;
    let (d, group, kv_width) = (p.head_dim, p.n_heads / p.n_kv_heads, p.n_kv_heads * p.head_dim);
    let mut probs = vec![0.0f32; n * p.n_heads * n];
    out.par_chunks_mut(p.n_heads * d)
        .zip(probs.par_chunks_mut(p.n_heads * n))
        .enumerate()
        .for_each(|(t, (out, probs))| {
            let visible = first_visible(p, t)..=t;
            for h in 0..p.n_heads {
                let kv = (h / group) * d;
                let q = &q[t * p.n_heads * d + h * d..][..d];
                let row = &mut probs[h * n..][..n];
                let mut max = f32::NEG_INFINITY;
                for j in visible.clone() {
                    row[j] = score(p, dot(q, &k[j * kv_width + kv..][..d])).0;
                    max = max.max(row[j]);
                }
                let mut sum = 0.0;
                for j in visible.clone() {
                    row[j] = (row[j] - max).exp();
                    sum += row[j];
                }
                let out = &mut out[h * d..][..d];
                out.fill(0.0);
                for j in visible.clone() {
                    row[j] /= sum;
                    for (o, v) in out.iter_mut().zip(&v[j * kv_width + kv..][..d]) {
                        *o += row[j] * v;
                    }
                }
            }
        });
    Ok(probs)
}

/// Writes `dq`, `dk` and `dv` from `d_out`, with `probs` from [`attention_forward`] on the same inputs.
///
/// Per row: `dP_j = d_out·v_j`, `dS_j = P_j (dP_j − Σ_i P_i dP_i)`, and through the score function the dot product's
/// gradient `dZ_j`; then `dq = Σ_j dZ_j k_j`, `dk_j = Σ_rows dZ_j q`, `dv_j = Σ_rows P_j d_out`. The query side runs
/// in parallel over rows, the key/value side over key positions, so no two threads add to the same gradient.
#[allow(clippy::too_many_arguments)] // Three inputs, their three gradients, the output's gradient and the saved probabilities.
pub fn attention_backward(
    p: &AttentionParams,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &[f32],
    d_out: &[f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) -> Result<(), OpError> {
    let n = check_shapes(p, q, k, v)?;
    expect_len("attention probabilities", probs.len(), n * p.n_heads * n)?;
    expect_len("attention output gradient", d_out.len(), q.len())?;
    expect_len("query gradient", dq.len(), q.len())?;
    expect_len("key gradient", dk.len(), k.len())?;
    expect_len("value gradient", dv.len(), v.len())?;
    let (d, group, kv_width, width) = (
        p.head_dim,
        p.n_heads / p.n_kv_heads,
        p.n_kv_heads * p.head_dim,
        p.n_heads * p.head_dim,
    );
    // dZ, laid out like the probabilities.
    let mut dz = vec![0.0f32; probs.len()];
    dq.par_chunks_mut(width)
        .zip(dz.par_chunks_mut(p.n_heads * n))
        .enumerate()
        .for_each(|(t, (dq, dz))| {
            let visible = first_visible(p, t)..=t;
            for h in 0..p.n_heads {
                let kv = (h / group) * d;
                let q = &q[t * width + h * d..][..d];
                let d_out = &d_out[t * width + h * d..][..d];
                let probs = &probs[(t * p.n_heads + h) * n..][..n];
                let dz = &mut dz[h * n..][..n];
                let mut weighted = 0.0;
                for j in visible.clone() {
                    dz[j] = dot(d_out, &v[j * kv_width + kv..][..d]); // dP for now
                    weighted += probs[j] * dz[j];
                }
                let dq = &mut dq[h * d..][..d];
                dq.fill(0.0);
                for j in visible.clone() {
                    let key = &k[j * kv_width + kv..][..d];
                    dz[j] = probs[j] * (dz[j] - weighted) * score(p, dot(q, key)).1;
                    for (g, k) in dq.iter_mut().zip(key) {
                        *g += dz[j] * k;
                    }
                }
            }
        });
    dk.par_chunks_mut(kv_width)
        .zip(dv.par_chunks_mut(kv_width))
        .enumerate()
        .for_each(|(j, (dk, dv))| {
            dk.fill(0.0);
            dv.fill(0.0);
            // Rows that see position j: from j to the end (masked entries of dz and probs are zero).
            for t in j..n {
                for h in 0..p.n_heads {
                    let kv = (h / group) * d;
                    let row = (t * p.n_heads + h) * n + j;
                    let (dz, prob) = (dz[row], probs[row]);
                    if dz == 0.0 && prob == 0.0 {
                        continue;
                    }
                    let q = &q[t * width + h * d..][..d];
                    let d_out = &d_out[t * width + h * d..][..d];
                    for i in 0..d {
                        dk[kv + i] += dz * q[i];
                        dv[kv + i] += prob * d_out[i];
                    }
                }
            }
        });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::check::{Rng, assert_gradient, project};

    fn check(p: AttentionParams, seed: u64) {
        let mut rng = Rng(seed);
        let n = 7;
        let q = rng.vec(n * p.n_heads * p.head_dim, 1.5);
        let k = rng.vec(n * p.n_kv_heads * p.head_dim, 1.5);
        let v = rng.vec(k.len(), 1.0);
        let g = rng.vec(q.len(), 1.0);
        let mut out = vec![0.0; q.len()];
        let probs = attention_forward(&p, &q, &k, &v, &mut out).unwrap();
        let (mut dq, mut dk, mut dv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
        attention_backward(&p, &q, &k, &v, &probs, &g, &mut dq, &mut dk, &mut dv).unwrap();
        let loss = |q: &[f32], k: &[f32], v: &[f32]| {
            let mut out = vec![0.0; q.len()];
            attention_forward(&p, q, k, v, &mut out).unwrap();
            project(&out, &g)
        };
        assert_gradient("attention dq", &q, &dq, 1e-2, 2e-3, |q| loss(q, &k, &v));
        assert_gradient("attention dk", &k, &dk, 1e-2, 2e-3, |k| loss(&q, k, &v));
        assert_gradient("attention dv", &v, &dv, 1e-2, 2e-3, |v| loss(&q, &k, v));
    }

    #[test]
    fn grouped_query_attention_matches_finite_differences() {
        let params = AttentionParams {
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 8,
            scale: 1.0 / 8f32.sqrt(),
            window: None,
            softcap: None,
        };
        check(params, 4);
        check(
            AttentionParams {
                window: Some(3),
                ..params
            },
            5,
        );
        check(
            AttentionParams {
                softcap: Some(2.0),
                ..params
            },
            6,
        );
    }

    #[test]
    fn the_forward_agrees_with_the_kernels_attention_over_a_cache() {
        use hearth_kernel::ops::kv::{KvCache, KvType};
        use hearth_kernel::simd::Isa;
        let p = AttentionParams {
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 8,
            scale: 0.35,
            window: None,
            softcap: None,
        };
        let mut rng = Rng(7);
        let n = 9;
        let q = rng.vec(n * 32, 1.0);
        let k = rng.vec(n * 16, 1.0);
        let v = rng.vec(n * 16, 1.0);
        let mut ours = vec![0.0; q.len()];
        attention_forward(&p, &q, &k, &v, &mut ours).unwrap();
        let mut cache = KvCache::new(KvType::F16, 1, p.n_kv_heads, p.head_dim, n).unwrap();
        for t in 0..n {
            cache.store(0, t, &k[t * 16..][..16], &v[t * 16..][..16]).unwrap();
        }
        let mut theirs = vec![0.0; q.len()];
        hearth_kernel::ops::attention::attention(Isa::Scalar, &p, &q, &cache, 0, 0, &mut theirs).unwrap();
        // The kernel keeps keys and values (and, for short rows, the query and the sum) in f16.
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() < 1e-2, "{a} vs {b}");
        }
    }
}
