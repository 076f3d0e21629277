//! Causal grouped-query attention over a whole training sequence (positions `0..n_tokens`), forward and backward.
//!
//! Shapes: `q, out: [n_tokens, n_heads · head_dim]`, `k, v: [n_tokens, n_kv_heads · head_dim]`; query head `h` reads
//! KV head `h / (n_heads / n_kv_heads)`. Scores are `scale · q·k` (soft-capped as `cap · tanh(s / cap)` when the
//! layer says so), masked to the causal past (and to the window of sliding-window layers), softmaxed per row.
//! The forward keeps the probabilities, `[n_tokens, n_heads, n_tokens]` (12.6 MB for 12 heads × 512 tokens), which
//! the backward needs; with gradient checkpointing only one block's exist at a time.

use hearth_kernel::ops::attention::AttentionParams;
use hearth_kernel::simd::Isa;
use rayon::prelude::*;

use super::{OpError, expect_len};

/// Key positions one task of the backward's key side owns (their `dk`, `dv` rows stay in L1 while the rows that see
/// them pass).
const KEY_BLOCK: usize = 16;

/// Query rows the key side takes at once: the width of the transposed gradient block `mad_rows` reads.
const QUERY_BLOCK: usize = 64;

/// The positions token `t` sees.
fn visible(p: &AttentionParams, t: usize) -> core::ops::Range<usize> {
    p.window.map_or(0, |w| (t + 1).saturating_sub(w))..t + 1
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

/// `x: [n_tokens, heads · d]` rearranged to `[heads, n_tokens, d]`: each head's rows contiguous, as the kernel's row
/// primitives take them.
fn by_head(x: &[f32], heads: usize, d: usize) -> Vec<f32> {
    let n = x.len() / (heads * d);
    let mut out = vec![0.0f32; x.len()];
    for (h, out) in out.chunks_exact_mut(n * d).enumerate() {
        for (out, x) in out.chunks_exact_mut(d).zip(x.chunks_exact(heads * d)) {
            out.copy_from_slice(&x[h * d..][..d]);
        }
    }
    out
}

/// The inverse of [`by_head`].
fn by_token(x: &[f32], heads: usize, d: usize, out: &mut [f32]) {
    let n = x.len() / (heads * d);
    for (h, x) in x.chunks_exact(n * d).enumerate() {
        for (out, x) in out.chunks_exact_mut(heads * d).zip(x.chunks_exact(d)) {
            out[h * d..][..d].copy_from_slice(x);
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
    isa: Isa,
    p: &AttentionParams,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
) -> Result<Vec<f32>, OpError> {
    let n = check_shapes(p, q, k, v)?;
    expect_len("attention output", out.len(), q.len())?;
    if n == 0 {
        return Ok(Vec::new());
    }
    let (d, group, width) = (p.head_dim, p.n_heads / p.n_kv_heads, p.n_heads * p.head_dim);
    let (keys, values) = (by_head(k, p.n_kv_heads, d), by_head(v, p.n_kv_heads, d));
    let mut probs = vec![0.0f32; n * p.n_heads * n];
    out.par_chunks_mut(width)
        .zip(probs.par_chunks_mut(p.n_heads * n))
        .enumerate()
        .for_each(|(t, (out, probs))| {
            let seen = visible(p, t);
            for (h, (out, row)) in out.chunks_exact_mut(d).zip(probs.chunks_exact_mut(n)).enumerate() {
                let rows = (h / group * n + seen.start) * d..(h / group * n + seen.end) * d;
                let row = &mut row[seen.clone()];
                isa.dot_rows(&keys[rows.clone()], &q[t * width + h * d..][..d], row);
                row.iter_mut().for_each(|s| *s = score(p, *s).0);
                let max = row.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
                let inverse = (1.0 / isa.exp_sum(row, max)) as f32;
                row.iter_mut().for_each(|x| *x *= inverse);
                out.fill(0.0);
                isa.mad_rows(d, out, &values[rows], row);
            }
        });
    Ok(probs)
}

/// Writes `dq`, `dk` and `dv` from `d_out`, with `probs` from [`attention_forward`] on the same inputs.
///
/// Per row: `dP_j = d_out·v_j`, `dS_j = P_j (dP_j − Σ_i P_i dP_i)`, and through the score function the dot product's
/// gradient `dZ_j`; then `dq = Σ_j dZ_j k_j`, `dk_j = Σ_rows dZ_j q`, `dv_j = Σ_rows P_j d_out`. The query side runs
/// in parallel over rows; the key/value side over blocks of key positions per KV head, each summing the rows that
/// see it a block at a time from transposed blocks of `dZ` and `P`, so no two threads add to the same gradient.
#[allow(clippy::too_many_arguments)] // Three inputs, their three gradients, the output's gradient and the saved probabilities.
pub fn attention_backward(
    isa: Isa,
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
    if n == 0 {
        return Ok(());
    }
    let (d, group, width) = (p.head_dim, p.n_heads / p.n_kv_heads, p.n_heads * p.head_dim);
    let (keys, values) = (by_head(k, p.n_kv_heads, d), by_head(v, p.n_kv_heads, d));
    // dZ, laid out like the probabilities (zero where masked, as they are).
    let mut dz = vec![0.0f32; probs.len()];
    dq.par_chunks_mut(width)
        .zip(dz.par_chunks_mut(p.n_heads * n))
        .enumerate()
        .for_each_init(
            || vec![0.0f32; n],
            |dots, (t, (dq, dz))| {
                let seen = visible(p, t);
                for (h, (dq, dz)) in dq.chunks_exact_mut(d).zip(dz.chunks_exact_mut(n)).enumerate() {
                    let rows = (h / group * n + seen.start) * d..(h / group * n + seen.end) * d;
                    let at = t * width + h * d;
                    let probs = &probs[(t * p.n_heads + h) * n..][seen.clone()];
                    let dz = &mut dz[seen.clone()];
                    isa.dot_rows(&values[rows.clone()], &d_out[at..][..d], dz); // dP for now
                    let weighted: f32 = probs.iter().zip(&*dz).map(|(p, dp)| p * dp).sum();
                    if p.softcap.is_some() {
                        let dots = &mut dots[seen.clone()];
                        isa.dot_rows(&keys[rows.clone()], &q[at..][..d], dots);
                        for ((dz, prob), &dot) in dz.iter_mut().zip(probs).zip(&*dots) {
                            *dz = prob * (*dz - weighted) * score(p, dot).1;
                        }
                    } else {
                        for (dz, prob) in dz.iter_mut().zip(probs) {
                            *dz = prob * (*dz - weighted) * p.scale;
                        }
                    }
                    dq.fill(0.0);
                    isa.mad_rows(d, dq, &keys[rows], dz);
                }
            },
        );
    let (queries, d_outs) = (by_head(q, p.n_heads, d), by_head(d_out, p.n_heads, d));
    let (mut dk_heads, mut dv_heads) = (vec![0.0f32; k.len()], vec![0.0f32; v.len()]);
    dk_heads
        .par_chunks_mut(n * d)
        .zip(dv_heads.par_chunks_mut(n * d))
        .enumerate()
        .for_each(|(kv_head, (dk_head, dv_head))| {
            dk_head
                .par_chunks_mut(KEY_BLOCK * d)
                .zip(dv_head.par_chunks_mut(KEY_BLOCK * d))
                .enumerate()
                .for_each_init(
                    || {
                        (
                            vec![0.0f32; KEY_BLOCK * QUERY_BLOCK],
                            vec![0.0f32; KEY_BLOCK * QUERY_BLOCK],
                        )
                    },
                    |(dz_block, prob_block), (block, (dk_block, dv_block))| {
                        let positions = block * KEY_BLOCK..(block * KEY_BLOCK + KEY_BLOCK).min(n);
                        // The rows that see a position of the block: from its first to the last its window reaches.
                        let last_row = p.window.map_or(n, |w| (positions.end - 1 + w).min(n));
                        for rows in (positions.start..last_row).step_by(QUERY_BLOCK) {
                            let rows = rows..(rows + QUERY_BLOCK).min(last_row);
                            let (dz_block, prob_block) = (
                                &mut dz_block[..positions.len() * rows.len()],
                                &mut prob_block[..positions.len() * rows.len()],
                            );
                            for h in kv_head * group..(kv_head + 1) * group {
                                // `[positions, rows]` blocks of dZ and P: the weights of each position's sum over
                                // the rows.
                                for (r, t) in rows.clone().enumerate() {
                                    let at = (t * p.n_heads + h) * n;
                                    for (j, position) in positions.clone().enumerate() {
                                        dz_block[j * rows.len() + r] = dz[at + position];
                                        prob_block[j * rows.len() + r] = probs[at + position];
                                    }
                                }
                                let head_rows = (h * n + rows.start) * d..(h * n + rows.end) * d;
                                isa.mad_rows(d, dk_block, &queries[head_rows.clone()], dz_block);
                                isa.mad_rows(d, dv_block, &d_outs[head_rows], prob_block);
                            }
                        }
                    },
                );
        });
    by_token(&dk_heads, p.n_kv_heads, d, dk);
    by_token(&dv_heads, p.n_kv_heads, d, dv);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::check::{Rng, assert_gradient_every, project};

    /// Four query heads on two KV heads of 8, global.
    const SMALL: AttentionParams = AttentionParams {
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 8,
        scale: 0.35,
        window: None,
        softcap: None,
    };

    /// Checks every `step`-th element of the three gradients over `n` tokens.
    fn check(p: AttentionParams, seed: u64, n: usize, step: usize) {
        let mut rng = Rng(seed);
        let q = rng.vec(n * p.n_heads * p.head_dim, 1.5);
        let k = rng.vec(n * p.n_kv_heads * p.head_dim, 1.5);
        let v = rng.vec(k.len(), 1.0);
        let g = rng.vec(q.len(), 1.0);
        let mut out = vec![0.0; q.len()];
        let probs = attention_forward(Isa::selected(), &p, &q, &k, &v, &mut out).unwrap();
        let (mut dq, mut dk, mut dv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
        attention_backward(Isa::selected(), &p, &q, &k, &v, &probs, &g, &mut dq, &mut dk, &mut dv).unwrap();
        let loss = |q: &[f32], k: &[f32], v: &[f32]| {
            let mut out = vec![0.0; q.len()];
            attention_forward(Isa::selected(), &p, q, k, v, &mut out).unwrap();
            project(&out, &g)
        };
        assert_gradient_every(step, "attention dq", &q, &dq, 1e-2, 2e-3, |q| loss(q, &k, &v));
        assert_gradient_every(step, "attention dk", &k, &dk, 1e-2, 2e-3, |k| loss(&q, k, &v));
        assert_gradient_every(step, "attention dv", &v, &dv, 1e-2, 2e-3, |v| loss(&q, &k, v));
    }

    #[test]
    fn grouped_query_attention_matches_finite_differences() {
        let params = AttentionParams {
            scale: 1.0 / 8f32.sqrt(),
            ..SMALL
        };
        check(params, 4, 7, 1);
        check(
            AttentionParams {
                window: Some(3),
                ..params
            },
            5,
            7,
            1,
        );
        check(
            AttentionParams {
                softcap: Some(2.0),
                ..params
            },
            6,
            7,
            1,
        );
    }

    #[test]
    fn an_empty_sequence_has_empty_results() {
        let p = SMALL;
        let isa = Isa::selected();
        assert!(attention_forward(isa, &p, &[], &[], &[], &mut []).unwrap().is_empty());
        attention_backward(isa, &p, &[], &[], &[], &[], &[], &mut [], &mut [], &mut []).unwrap();
    }

    #[test]
    fn blocks_of_positions_and_rows_add_up_over_a_longer_sequence() {
        // 70 tokens: the key side's blocks of 16 positions and 64 rows, each with a partial one; 16-wide heads.
        let params = AttentionParams {
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 16,
            scale: 0.25,
            window: None,
            softcap: None,
        };
        check(params, 13, 70, 7);
        check(
            AttentionParams {
                window: Some(20),
                ..params
            },
            14,
            70,
            7,
        );
    }

    #[test]
    fn the_forward_agrees_with_the_kernels_attention_over_a_cache() {
        use hearth_kernel::ops::kv::{KvCache, KvType};
        let p = SMALL;
        let mut rng = Rng(7);
        let n = 9;
        let q = rng.vec(n * 32, 1.0);
        let k = rng.vec(n * 16, 1.0);
        let v = rng.vec(n * 16, 1.0);
        let mut ours = vec![0.0; q.len()];
        attention_forward(Isa::selected(), &p, &q, &k, &v, &mut ours).unwrap();
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
