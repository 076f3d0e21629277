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
    /// With an f16 cache, round the query to f16 and keep the value accumulator in f16, exactly as ggml's CPU flash
    /// attention (llama.cpp's default) does, so outputs match llama.cpp's. The price is precision at long contexts:
    /// on flat attention over 3000 positions the accumulator drifts by about 1e-2 relative.
    pub f16_accumulator: bool,
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
    if p.n_kv_heads == 0 || !p.n_heads.is_multiple_of(p.n_kv_heads) || p.head_dim > MAX_HEAD_DIM || p.head_dim == 0 {
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
    let emulate = p.f16_accumulator && kv.is_f16();
    let round = |v: f32| if emulate { half::f16::from_f32(v).to_f32() } else { v };
    let mut q_buf = [0f32; MAX_HEAD_DIM];
    let q16 = &mut q_buf[..p.head_dim];
    q16.iter_mut().zip(q).for_each(|(d, s)| *d = round(*s));
    let mut acc_buf = [0f32; MAX_HEAD_DIM];
    let acc = &mut acc_buf[..p.head_dim];
    let (mut max, mut sum) = (f32::NEG_INFINITY, 0f32);
    for j in range {
        let mut s = kv.key(layer, kv_head, j).dot(q16) * p.scale;
        if let Some(cap) = p.softcap {
            s = cap * libm::tanhf(s / cap);
        }
        let (mut rescale, mut weight) = (1.0f32, 1.0f32);
        if s > max {
            // A new maximum: rescale what was accumulated against the old one.
            rescale = libm::expf(max - s);
            acc.iter_mut().for_each(|a| *a = round(*a * rescale));
            max = s;
        } else {
            weight = libm::expf(s - max);
        }
        sum = sum * rescale + weight;
        kv.value(layer, kv_head, j).accumulate(weight, acc, emulate);
    }
    let inv = 1.0 / sum;
    out.iter_mut().zip(acc.iter()).for_each(|(o, a)| *o = a * inv);
}
