//! Causal grouped-query attention over the KV cache, for a batch of consecutive positions (prefill) or one (decode).
//!
//! Query head `h` reads KV head `h / (n_heads / n_kv_heads)`. Token `t` of the batch sits at position
//! `first_pos + t` and attends to cached positions `j <= first_pos + t` (within `window` of it, for sliding-window
//! layers). Scores are `scale · q·k`, optionally soft-capped as `cap · tanh(s / cap)`, and are normalised with an
//! online softmax (one pass over the keys and values, no score buffer).

use super::kv::KvCache;
use super::{OpError, expect_len, for_each_chunk};

/// Largest head size supported (the per-head accumulator lives on the stack).
pub const MAX_HEAD_DIM: usize = 512;

/// Shape and options of one attention layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionParams {
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (divides `n_heads`).
    pub n_kv_heads: usize,
    /// Elements per head.
    pub head_dim: usize,
    /// Score scale, usually `1/sqrt(head_dim)`.
    pub scale: f32,
    /// Sliding window: a token sees the last `window` positions including its own. `None` for global attention.
    pub window: Option<usize>,
    /// Logit soft-capping value (Gemma 2 style), if any.
    pub softcap: Option<f32>,
}

/// `out[t][h] = Σ_j softmax_j(score(q[t][h], k_j)) · v_j` for `q, out: [n_tokens, n_heads · head_dim]`, reading keys
/// and values of `layer` from `kv`, which must already hold every position up to `first_pos + n_tokens - 1`.
pub fn attention(
    p: &AttentionParams,
    q: &[f32],
    kv: &KvCache,
    layer: usize,
    first_pos: usize,
    out: &mut [f32],
) -> Result<(), OpError> {
    let width = p.n_heads * p.head_dim;
    if p.n_kv_heads == 0
        || !p.n_heads.is_multiple_of(p.n_kv_heads)
        || p.head_dim > MAX_HEAD_DIM
        || p.head_dim == 0
    {
        return Err(OpError::Shape {
            what: "attention heads",
            expected: p.n_kv_heads,
            got: p.n_heads,
        });
    }
    if kv.head_dim() != p.head_dim || kv.n_kv_heads() != p.n_kv_heads || layer >= kv.n_layers() {
        return Err(OpError::Shape {
            what: "KV cache shape",
            expected: p.n_kv_heads * p.head_dim,
            got: kv.n_kv_heads() * kv.head_dim(),
        });
    }
    let n_tokens = q.len() / width;
    expect_len("queries", q.len(), n_tokens * width)?;
    expect_len("attention output", out.len(), q.len())?;
    if first_pos + n_tokens > kv.capacity() {
        return Err(OpError::Shape {
            what: "KV positions",
            expected: kv.capacity(),
            got: first_pos + n_tokens,
        });
    }
    let group = p.n_heads / p.n_kv_heads;
    for_each_chunk(out, p.head_dim, |index, out| {
        let (t, h) = (index / p.n_heads, index % p.n_heads);
        let q = &q[index * p.head_dim..][..p.head_dim];
        let pos = first_pos + t;
        let start = p.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        attend(p, q, kv, layer, h / group, start..=pos, out);
    });
    Ok(())
}

/// One query head against positions `range` of one KV head, with an online softmax.
fn attend(
    p: &AttentionParams,
    q: &[f32],
    kv: &KvCache,
    layer: usize,
    kv_head: usize,
    range: core::ops::RangeInclusive<usize>,
    out: &mut [f32],
) {
    let mut acc_buf = [0f32; MAX_HEAD_DIM];
    let acc = &mut acc_buf[..p.head_dim];
    let (mut max, mut sum) = (f32::NEG_INFINITY, 0f32);
    for j in range {
        let mut s = kv.key(layer, kv_head, j).dot(q) * p.scale;
        if let Some(cap) = p.softcap {
            s = cap * libm::tanhf(s / cap);
        }
        if s > max {
            // Rescale what was accumulated against the old maximum.
            let c = libm::expf(max - s);
            sum *= c;
            acc.iter_mut().for_each(|a| *a *= c);
            max = s;
        }
        let w = libm::expf(s - max);
        sum += w;
        kv.value(layer, kv_head, j).add_scaled(w, acc);
    }
    let inv = 1.0 / sum;
    out.iter_mut()
        .zip(acc.iter())
        .for_each(|(o, a)| *o = a * inv);
}
