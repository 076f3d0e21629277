//! Causal grouped-query attention over the KV cache, for a batch of consecutive positions (prefill) or one (decode).
//!
//! Query head `h` reads KV head `h / (n_heads / n_kv_heads)`. Token `t` of the batch sits at position
//! `first_pos + t` and attends to cached positions `j <= first_pos + t` (within `window` of it, for sliding-window
//! layers). Scores are `scale · q·k`, optionally soft-capped as `cap · tanh(s / cap)`, and normalised with an online
//! softmax (no score matrix).
//!
//! The arithmetic is that of ggml's CPU flash attention, llama.cpp's default, so outputs match llama.cpp's:
//! - Batches of at least [`TILE`] tokens over an f16 cache take the tiled path: f32 queries, keys and values, scores
//!   for [`TILE`] positions at a time, one softmax rescale per tile, f32 accumulators.
//! - Smaller batches (decode) and Q8_0 caches go one position at a time: with an f16 cache the query is rounded to f16
//!   and, below [`LONG_RANGE`] visible positions, the value accumulator is f16 (a fused multiply-add rounded per
//!   step); with Q8_0 the query is quantized to Q8_0 and values accumulate in f32.
//! - From [`LONG_RANGE`] visible positions of an f16 cache (decode deep in a context), ggml splits the positions
//!   across threads and its rounding depends on the thread count, so it is not mirrored: the query heads that share a
//!   KV head go together (each key and value row is read and converted once for all of them), the positions are cut
//!   into [`SEGMENT`]s that threads take in any order, and each segment's f32 partial softmax is merged at the end.
//!   The segments do not depend on the thread count, so neither does the result.

use alloc::vec;
use alloc::vec::Vec;

use bytemuck::Zeroable;
use half::f16;

use super::kv::{KvCache, KvHead, KvType};
use super::{OpError, expect_len, for_each_chunk};
use crate::quant::{BlockQ8_0, QuantBlock, dequantize_blocks};
use crate::simd::Isa;

/// Largest head size supported (per-row buffers live on the stack).
pub const MAX_HEAD_DIM: usize = 512;

/// Query rows per tile, and cached positions per tile, of the batched path (ggml's `GGML_FA_TILE_Q/KV`).
pub const TILE: usize = 64;

/// Visible positions from which the per-row f16 path accumulates in f32 (ggml's split-KV threshold).
pub const LONG_RANGE: usize = 512;

/// Positions whose scores the per-row path computes in one pass.
const SCORE_BLOCK: usize = 64;

/// Positions the long-range path converts and scores at a time (their f32 keys and values, 32 KiB for 128-element
/// heads, stay in L1).
const LONG_BLOCK: usize = 32;

/// Positions per work item of the long-range path: enough that a thread's share outweighs waking it, few enough that
/// a 4096-position context keeps two threads per KV head busy.
const SEGMENT: usize = 512;

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

impl AttentionParams {
    /// Global attention, neither windowed nor soft-capped, with scores scaled by `1/sqrt(head_dim)`.
    pub fn global(n_heads: usize, n_kv_heads: usize, head_dim: usize) -> AttentionParams {
        AttentionParams {
            n_heads,
            n_kv_heads,
            head_dim,
            scale: 1.0 / libm::sqrtf(head_dim as f32),
            window: None,
            softcap: None,
        }
    }

    /// The positions the token at `pos` attends to.
    fn visible(&self, pos: usize) -> core::ops::RangeInclusive<usize> {
        self.window.map_or(0, |w| (pos + 1).saturating_sub(w))..=pos
    }

    /// `score(q·k)`: ggml divides the scale by the cap before the product and multiplies by it after the tanh.
    #[inline]
    fn score(&self, dot: f32) -> f32 {
        match self.softcap {
            None => dot * self.scale,
            Some(cap) => cap * libm::tanhf(dot * (self.scale / cap)),
        }
    }
}

/// `out[t][h] = Σ_j softmax_j(score(q[t][h], k_j)) · v_j` for `q, out: [n_tokens, n_heads · head_dim]`, reading keys
/// and values of `layer` from `kv`, which must already hold every position up to `first_pos + n_tokens - 1`.
pub fn attention(
    isa: Isa,
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
    if n_tokens >= TILE && kv.kind() == KvType::F16 {
        for_each_chunk(out, TILE * width, |block, out| {
            let t0 = block * TILE;
            let q = &q[t0 * width..][..out.len()];
            // One key/value tile buffer per block, reused by every head.
            let mut tiles = TileBuffers::new(p.head_dim);
            for h in 0..p.n_heads {
                let KvHead::F16 { k, v } = kv.head(layer, h / group) else {
                    unreachable!("the tiled path is taken only for an f16 cache")
                };
                attend_tile(isa, p, q, h, k, v, first_pos + t0, &mut tiles, out);
            }
        });
    } else {
        let long = |t: usize| {
            let visible = p.visible(first_pos + t);
            kv.kind() == KvType::F16 && visible.end() + 1 - visible.start() >= LONG_RANGE
        };
        let long_tokens: Vec<usize> = (0..n_tokens).filter(|&t| long(t)).collect();
        if long_tokens.len() < n_tokens {
            for_each_chunk(out, p.head_dim, |index, out| {
                let (t, h) = (index / p.n_heads, index % p.n_heads);
                if long(t) {
                    return;
                }
                let q = &q[index * p.head_dim..][..p.head_dim];
                let range = p.visible(first_pos + t);
                match kv.head(layer, h / group) {
                    KvHead::F16 { k, v } => attend_f16(isa, p, q, k, v, range, out),
                    KvHead::Q8_0 { k, v } => attend_q8_0(isa, p, q, k, v, range, out),
                }
            });
        }
        if !long_tokens.is_empty() {
            attend_long_f16(isa, p, q, kv, layer, first_pos, &long_tokens, out);
        }
    }
    Ok(())
}

/// One work item of the long-range path: a token's query heads that share KV head `kv_head`, over `positions`.
struct Segment {
    token: usize,
    kv_head: usize,
    positions: core::ops::Range<usize>,
}

/// The tokens `tokens` of the batch, each seeing at least [`LONG_RANGE`] positions of an f16 cache (see the module
/// docs): every (token, KV head, [`SEGMENT`] of positions) is a work item that leaves, per query head of the KV head's
/// group, its running maximum, sum and f32 value accumulator; the items of each head are then merged in order.
#[allow(clippy::too_many_arguments)]
fn attend_long_f16(
    isa: Isa,
    p: &AttentionParams,
    q: &[f32],
    kv: &KvCache,
    layer: usize,
    first_pos: usize,
    tokens: &[usize],
    out: &mut [f32],
) {
    let (hd, group) = (p.head_dim, p.n_heads / p.n_kv_heads);
    let width = p.n_heads * hd;
    // The queries rounded to f16 once, as the per-row path rounds them: [token][head][hd].
    let q16: Vec<f32> = q.iter().map(|&x| f16::from_f32(x).to_f32()).collect();
    // The work items, and for each (token, KV head) in that order, the range of its items (consecutive).
    let mut segments = Vec::new();
    let mut item_ranges = Vec::with_capacity(tokens.len() * p.n_kv_heads);
    for &token in tokens {
        let visible = p.visible(first_pos + token);
        for kv_head in 0..p.n_kv_heads {
            let first_item = segments.len();
            for start in (*visible.start()..=*visible.end()).step_by(SEGMENT) {
                let end = (start + SEGMENT).min(visible.end() + 1);
                segments.push(Segment {
                    token,
                    kv_head,
                    positions: start..end,
                });
            }
            item_ranges.push(first_item..segments.len());
        }
    }
    // Per item and query head of its group: [max, sum, accumulator[hd]].
    let state_len = hd + 2;
    let mut partials = vec![0f32; segments.len() * group * state_len];
    for_each_chunk(&mut partials, group * state_len, |i, partial| {
        let Segment {
            token,
            kv_head,
            ref positions,
        } = segments[i];
        let KvHead::F16 { k, v } = kv.head(layer, kv_head) else {
            unreachable!("the long-range path is taken only for an f16 cache")
        };
        let queries = &q16[token * width + kv_head * group * hd..][..group * hd];
        attend_segment(isa, p, queries, k, v, positions.clone(), partial);
    });
    // Merge each head's segments: weights rescaled to the overall maximum, accumulators and sums added in order.
    let mut sums = vec![0f32; hd];
    for (&token, item_ranges) in tokens.iter().zip(item_ranges.chunks_exact(p.n_kv_heads)) {
        for h in 0..p.n_heads {
            let (kv_head, member) = (h / group, h % group);
            let states = item_ranges[kv_head]
                .clone()
                .map(|i| &partials[(i * group + member) * state_len..][..state_len]);
            let max = states.clone().fold(f32::NEG_INFINITY, |m, s| m.max(s[0]));
            sums.fill(0.0);
            let mut total = 0f32;
            for state in states {
                let weight = libm::expf(state[0] - max);
                total += state[1] * weight;
                isa.mad_f32(&mut sums, &state[2..], weight);
            }
            let inv = if total == 0.0 { 0.0 } else { 1.0 / total };
            let out = &mut out[token * width + h * hd..][..hd];
            out.iter_mut().zip(&sums).for_each(|(o, s)| *o = s * inv);
        }
    }
}

/// `group` query heads (`queries: [group][hd]`, f16 values in f32) against `positions` of one f16 KV head,
/// [`LONG_BLOCK`] positions at a time: the block's keys and values converted to f32 once for every head, then per
/// head its scores, one rescale, the weights exponentiated together, and the weighted values added. Leaves
/// `[max, sum, accumulator[hd]]` per head in `partial`.
fn attend_segment(
    isa: Isa,
    p: &AttentionParams,
    queries: &[f32],
    k: &[f16],
    v: &[f16],
    positions: core::ops::Range<usize>,
    partial: &mut [f32],
) {
    let hd = p.head_dim;
    let mut keys = vec![0f32; LONG_BLOCK * hd];
    let mut values = vec![0f32; LONG_BLOCK * hd];
    let mut weights = [0f32; LONG_BLOCK];
    for state in partial.chunks_exact_mut(hd + 2) {
        state[0] = f32::NEG_INFINITY;
        state[1..].fill(0.0);
    }
    for start in positions.clone().step_by(LONG_BLOCK) {
        let n = (positions.end - start).min(LONG_BLOCK);
        let (keys, values, weights) = (&mut keys[..n * hd], &mut values[..n * hd], &mut weights[..n]);
        isa.f16_to_f32(&k[start * hd..][..n * hd], keys);
        isa.f16_to_f32(&v[start * hd..][..n * hd], values);
        for (query, state) in queries.chunks_exact(hd).zip(partial.chunks_exact_mut(hd + 2)) {
            isa.dot_rows(hd, keys, query, weights);
            weights.iter_mut().for_each(|s| *s = p.score(*s));
            let max = weights.iter().fold(state[0], |m, &s| m.max(s));
            if max > state[0] {
                // What was accumulated shrinks by exp(old - new) (nothing, on the first block: exp(-inf) = 0).
                let rescale = libm::expf(state[0] - max);
                state[1..].iter_mut().for_each(|x| *x *= rescale);
                state[0] = max;
            }
            state[1] = (f64::from(state[1]) + isa.exp_sum(weights, max)) as f32;
            isa.mad_rows(hd, &mut state[2..], values, weights);
        }
    }
}

/// Online-softmax state of one query row: running maximum and sum.
struct Softmax {
    max: f32,
    sum: f32,
}

impl Softmax {
    const EMPTY: Softmax = Softmax {
        max: f32::NEG_INFINITY,
        sum: 0.0,
    };

    /// Takes score `s` into the running state, returning `(rescale for the accumulator, weight of this value)`.
    #[inline]
    fn push(&mut self, s: f32) -> (f32, f32) {
        let (rescale, weight) = if s > self.max {
            // A new maximum: what was accumulated shrinks by exp(old - new); this value weighs exp(0) = 1.
            let rescale = libm::expf(self.max - s);
            self.max = s;
            (rescale, 1.0)
        } else {
            (1.0, libm::expf(s - self.max))
        };
        self.sum = self.sum * rescale + weight;
        (rescale, weight)
    }

    /// `1 / sum`, or 0 when nothing was visible.
    fn inverse(&self) -> f32 {
        if self.sum == 0.0 { 0.0 } else { 1.0 / self.sum }
    }
}

/// One query head against `range` (under [`LONG_RANGE`] positions) of an f16 KV head, with an f16 query and an f16
/// value accumulator (ggml's per-row path).
fn attend_f16(
    isa: Isa,
    p: &AttentionParams,
    q: &[f32],
    k: &[f16],
    v: &[f16],
    range: core::ops::RangeInclusive<usize>,
    out: &mut [f32],
) {
    let hd = p.head_dim;
    let mut q_buf = [f16::ZERO; MAX_HEAD_DIM];
    let q16 = &mut q_buf[..hd];
    q16.iter_mut().zip(q).for_each(|(d, s)| *d = f16::from_f32(*s));
    let mut softmax = Softmax::EMPTY;
    let mut acc_buf = [f16::ZERO; MAX_HEAD_DIM];
    let acc = &mut acc_buf[..hd];
    softmax_steps(isa, p, k, q16, range, &mut softmax, |j, rescale, weight| {
        if rescale != 1.0 {
            isa.scale_f16(acc, rescale);
        }
        isa.mad_f16(acc, &v[j * hd..][..hd], weight);
    });
    let inv = softmax.inverse();
    out.iter_mut().zip(acc.iter()).for_each(|(o, a)| *o = a.to_f32() * inv);
}

/// Walks `range` in order and calls `visit(position, rescale, weight)` with each position's online-softmax step.
/// Scores are computed [`SCORE_BLOCK`] positions at a time (eight per SIMD pass), then consumed in order.
fn softmax_steps(
    isa: Isa,
    p: &AttentionParams,
    k: &[f16],
    q16: &[f16],
    range: core::ops::RangeInclusive<usize>,
    softmax: &mut Softmax,
    mut visit: impl FnMut(usize, f32, f32),
) {
    let hd = q16.len();
    let mut scores = [0f32; SCORE_BLOCK];
    let (first, last) = (*range.start(), *range.end());
    for start in (first..=last).step_by(SCORE_BLOCK) {
        let n = (last + 1 - start).min(SCORE_BLOCK);
        isa.dot_f16_rows(&k[start * hd..][..n * hd], q16, &mut scores[..n]);
        for (j, &dot) in (start..).zip(&scores[..n]) {
            let (rescale, weight) = softmax.push(p.score(dot));
            visit(j, rescale, weight);
        }
    }
}

/// One query head against `range` of a Q8_0 KV head: the query quantized to Q8_0, f32 accumulator.
fn attend_q8_0(
    isa: Isa,
    p: &AttentionParams,
    q: &[f32],
    k: &[BlockQ8_0],
    v: &[BlockQ8_0],
    range: core::ops::RangeInclusive<usize>,
    out: &mut [f32],
) {
    let per_row = p.head_dim / BlockQ8_0::LEN;
    let mut q_buf = [BlockQ8_0::zeroed(); MAX_HEAD_DIM / BlockQ8_0::LEN];
    let q8 = &mut q_buf[..per_row];
    q8.iter_mut()
        .zip(q.chunks_exact(BlockQ8_0::LEN))
        .for_each(|(b, x)| *b = BlockQ8_0::quantize_activation(x));
    let mut row_buf = [0f32; MAX_HEAD_DIM];
    let row = &mut row_buf[..p.head_dim];
    out.fill(0.0);
    let mut softmax = Softmax::EMPTY;
    for j in range {
        let s = p.score(isa.vec_dot(&k[j * per_row..][..per_row], q8));
        let (rescale, weight) = softmax.push(s);
        if rescale != 1.0 {
            out.iter_mut().for_each(|o| *o *= rescale);
        }
        dequantize_blocks(&v[j * per_row..][..per_row], row);
        isa.mad_f32(out, row, weight);
    }
    let inv = softmax.inverse();
    out.iter_mut().for_each(|o| *o *= inv);
}

/// One tile of keys transposed to `[head_dim][TILE]` (so a query row scores TILE positions with column-wise FMA
/// chains) and values `[TILE][head_dim]`, both f32.
struct TileBuffers {
    kt: Vec<f32>,
    v: Vec<f32>,
}

impl TileBuffers {
    fn new(head_dim: usize) -> Self {
        TileBuffers {
            kt: vec![0.0; head_dim * TILE],
            v: vec![0.0; TILE * head_dim],
        }
    }
}

/// Query head `h` of up to [`TILE`] consecutive tokens (the first at position `pos0`) against an f16 KV head, a tile
/// of [`TILE`] positions at a time (ggml's tiled path). `q` and `out` are the block's rows of all heads.
#[allow(clippy::too_many_arguments)]
fn attend_tile(
    isa: Isa,
    p: &AttentionParams,
    q: &[f32],
    h: usize,
    k: &[f16],
    v: &[f16],
    pos0: usize,
    tiles: &mut TileBuffers,
    out: &mut [f32],
) {
    let hd = p.head_dim;
    let width = p.n_heads * hd;
    let rows = out.len() / width;
    let last = pos0 + rows - 1;
    let first_visible = *p.visible(pos0).start();
    let TileBuffers { kt, v: vt } = tiles;
    let mut state: [Softmax; TILE] = core::array::from_fn(|_| Softmax::EMPTY);
    for r in 0..rows {
        out[r * width + h * hd..][..hd].fill(0.0);
    }
    let mut scores = [0f32; TILE];
    for tile in (first_visible / TILE * TILE..=last).step_by(TILE) {
        let n = (last + 1 - tile).min(TILE);
        kt.fill(0.0);
        let mut row_buf = [0f32; MAX_HEAD_DIM];
        let row = &mut row_buf[..hd];
        for j in 0..n {
            isa.f16_to_f32(&k[(tile + j) * hd..][..hd], row);
            for (d, &x) in row.iter().enumerate() {
                kt[d * TILE + j] = x;
            }
        }
        isa.f16_to_f32(&v[tile * hd..][..n * hd], &mut vt[..n * hd]);
        for (r, softmax) in state.iter_mut().enumerate().take(rows) {
            let visible = p.visible(pos0 + r);
            let (lo, hi) = ((*visible.start()).max(tile), (*visible.end()).min(tile + TILE - 1));
            if lo > hi {
                continue;
            }
            isa.dot_columns(kt, &q[r * width + h * hd..][..hd], &mut scores);
            for (j, s) in scores.iter_mut().enumerate() {
                *s = if (lo..=hi).contains(&(tile + j)) {
                    p.score(*s)
                } else {
                    f32::NEG_INFINITY
                };
            }
            let acc = &mut out[r * width + h * hd..][..hd];
            let tile_max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let max = softmax.max.max(tile_max);
            if max > softmax.max {
                let rescale = libm::expf(softmax.max - max);
                acc.iter_mut().for_each(|a| *a *= rescale);
                softmax.sum *= rescale;
            }
            softmax.max = max;
            softmax.sum = (f64::from(softmax.sum) + isa.exp_sum(&mut scores, max)) as f32;
            let visible = lo - tile..hi - tile + 1;
            isa.mad_rows(hd, acc, &vt[visible.start * hd..visible.end * hd], &scores[visible]);
        }
    }
    for (r, softmax) in state.iter().enumerate().take(rows) {
        let inv = softmax.inverse();
        out[r * width + h * hd..][..hd].iter_mut().for_each(|o| *o *= inv);
    }
}
