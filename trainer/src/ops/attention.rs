//! Causal grouped-query attention over a whole training sequence (positions `0..n_tokens`), forward and backward.
//!
//! Shapes: `q, out: [n_tokens, n_heads · head_dim]`, `k, v: [n_tokens, n_kv_heads · head_dim]`; query head `h` reads
//! KV head `h / (n_heads / n_kv_heads)`. Scores are `scale · q·k` (soft-capped as `cap · tanh(s / cap)` when the
//! layer says so), masked to the causal past (and to the window of sliding-window layers), softmaxed per row.
//!
//! Both passes are blocked matrix products: per head, the sequence is cut into blocks of [`BLOCK`] positions, and each
//! block of query rows is multiplied with the key blocks it sees, 64 × 64 tiles at a time, by the kernel's `mad_rows`
//! (register-blocked over 4 rows × 4 vectors, against one row at a time for a matrix–vector product). The forward
//! keeps the probabilities the backward needs, one `[rows, keys seen]` matrix per block of rows and head (see
//! [`Layout`]): 5.3 MB for SmolLM2's 9 heads × 512 tokens; with gradient checkpointing only one transformer block's
//! exist at a time.

use core::ops::Range;

use hearth_kernel::ops::attention::AttentionParams;
use hearth_kernel::ops::{for_each_chunk, for_each_task, thread_count, zeroed};
use hearth_kernel::simd::Isa;

use super::{OpError, expect_len};

/// Positions per block of query rows and per tile of keys: four AVX-512 vectors (eight AVX2 ones) of a tile's row.
const BLOCK: usize = 64;

/// The positions token `t` sees.
fn visible(p: &AttentionParams, t: usize) -> Range<usize> {
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

/// A block of query rows and the keys its rows see, from the start of the first key block any of them sees to the
/// last row: its probabilities (and their gradients) are a `[rows, keys]` matrix.
struct RowBlock {
    rows: Range<usize>,
    keys: Range<usize>,
    /// Where the matrix starts in a head's share of the probabilities.
    offset: usize,
}

impl RowBlock {
    fn len(&self) -> usize {
        self.rows.len() * self.keys.len()
    }

    /// The key blocks (of [`BLOCK`] positions) the rows see.
    fn key_blocks(&self) -> Range<usize> {
        self.keys.start / BLOCK..self.keys.end.div_ceil(BLOCK)
    }

    /// Row `t`'s visible positions as columns of the block's matrix.
    fn columns(&self, p: &AttentionParams, t: usize) -> Range<usize> {
        let seen = visible(p, t);
        seen.start - self.keys.start..seen.end - self.keys.start
    }
}

/// How the probabilities of a sequence are laid out: `[n_heads, per_head]`, each head's share the matrices of its
/// row blocks one after the other. Only what some row sees is kept (about half of `n_tokens²` per head).
struct Layout {
    blocks: Vec<RowBlock>,
    per_head: usize,
}

impl Layout {
    fn new(p: &AttentionParams, n: usize) -> Layout {
        let mut per_head = 0;
        let blocks = (0..n)
            .step_by(BLOCK)
            .map(|first| {
                let rows = first..(first + BLOCK).min(n);
                let keys = visible(p, first).start / BLOCK * BLOCK..rows.end;
                let block = RowBlock {
                    rows,
                    keys,
                    offset: per_head,
                };
                per_head += block.len();
                block
            })
            .collect();
        Layout { blocks, per_head }
    }
}

/// `x: [n_tokens, heads · d]` rearranged to `[heads, n_tokens, d]`: each head's rows contiguous, as the kernel's row
/// primitives take them.
fn by_head(x: &[f32], heads: usize, d: usize) -> Vec<f32> {
    let n = x.len() / (heads * d);
    let mut out = zeroed(x.len());
    for_each_chunk(&mut out, n * d, |h, out| {
        for (out, x) in out.chunks_exact_mut(d).zip(x.chunks_exact(heads * d)) {
            out.copy_from_slice(&x[h * d..][..d]);
        }
    });
    out
}

/// The inverse of [`by_head`].
fn by_token(x: &[f32], heads: usize, d: usize, out: &mut [f32]) {
    let n = x.len() / (heads * d);
    let tokens_per_task = n.div_ceil(thread_count()).max(1);
    for_each_chunk(out, tokens_per_task * heads * d, |chunk, out| {
        let first = chunk * tokens_per_task;
        for (t, out) in (first..).zip(out.chunks_exact_mut(heads * d)) {
            for (h, out) in out.chunks_exact_mut(d).enumerate() {
                out.copy_from_slice(&x[(h * n + t) * d..][..d]);
            }
        }
    });
}

/// `x: [n_tokens, heads · d]` as transposed key blocks, `[heads, blocks, d, BLOCK]` (the last block padded with
/// zeros): the right-hand sides of a block of rows' products with the keys (or values).
fn panels(x: &[f32], heads: usize, d: usize) -> Vec<f32> {
    let n = x.len() / (heads * d);
    let blocks = n.div_ceil(BLOCK);
    let mut out = zeroed(heads * blocks * d * BLOCK);
    if out.is_empty() {
        return out;
    }
    // One panel per task: head `h`, block `b`.
    for_each_chunk(&mut out, d * BLOCK, |panel_index, panel| {
        let (h, b) = (panel_index / blocks, panel_index % blocks);
        for (t, x) in (b * BLOCK..n.min(b * BLOCK + BLOCK)).zip(x.chunks_exact(heads * d).skip(b * BLOCK)) {
            for (i, &x) in x[h * d..][..d].iter().enumerate() {
                panel[i * BLOCK + t % BLOCK] = x;
            }
        }
    });
    out
}

/// The inputs of both passes, rearranged for blocked products.
struct Operands {
    d: usize,
    /// Query heads per KV head.
    group: usize,
    n: usize,
    /// `[n_heads, n, d]`.
    queries: Vec<f32>,
    /// `[n_kv_heads, n, d]`.
    keys: Vec<f32>,
    values: Vec<f32>,
    /// The keys as [`panels`].
    key_panels: Vec<f32>,
}

impl Operands {
    fn new(p: &AttentionParams, n: usize, q: &[f32], k: &[f32], v: &[f32]) -> Operands {
        let d = p.head_dim;
        Operands {
            d,
            group: p.n_heads / p.n_kv_heads,
            n,
            queries: by_head(q, p.n_heads, d),
            keys: by_head(k, p.n_kv_heads, d),
            values: by_head(v, p.n_kv_heads, d),
            key_panels: panels(k, p.n_kv_heads, d),
        }
    }

    /// Rows `rows` of head `h` of a `[heads, n, d]` array.
    fn rows<'a>(&self, x: &'a [f32], h: usize, rows: Range<usize>) -> &'a [f32] {
        &x[(h * self.n + rows.start) * self.d..(h * self.n + rows.end) * self.d]
    }

    /// KV head `kv_head`'s panels of `x` (from [`panels`]).
    fn panels<'a>(&self, x: &'a [f32], kv_head: usize) -> &'a [f32] {
        let size = self.n.div_ceil(BLOCK) * self.d * BLOCK;
        &x[kv_head * size..][..size]
    }
}

/// `out[r][c] = a_r · x_(keys.start + c)` for the block's rows `a: [rows, d]` and the keys it sees, from their
/// `panels` (one KV head's), a 64 × 64 tile at a time; `tile` is scratch.
fn products(isa: Isa, block: &RowBlock, a: &[f32], panels: &[f32], d: usize, tile: &mut [f32], out: &mut [f32]) {
    let (rows, width) = (block.rows.len(), block.keys.len());
    let tile = &mut tile[..rows * BLOCK];
    for key_block in block.key_blocks() {
        tile.fill(0.0);
        isa.mad_rows(BLOCK, tile, &panels[key_block * d * BLOCK..][..d * BLOCK], a);
        let first = key_block * BLOCK - block.keys.start;
        let columns = BLOCK.min(width - first);
        for (out, tile) in out.chunks_exact_mut(width).zip(tile.chunks_exact(BLOCK)) {
            out[first..][..columns].copy_from_slice(&tile[..columns]);
        }
    }
}

/// One task per head and block of rows: the block's matrix (of probabilities or their gradients) and its rows of a
/// `[heads, n, d]` output.
fn row_tasks<'a>(
    layout: &'a Layout,
    d: usize,
    matrices: &'a mut [f32],
    outputs: &'a mut [f32],
) -> Vec<(usize, &'a RowBlock, &'a mut [f32], &'a mut [f32])> {
    let n = layout.blocks.last().map_or(0, |b| b.rows.end);
    let mut tasks = Vec::new();
    for (h, (mut matrices, mut outputs)) in matrices
        .chunks_exact_mut(layout.per_head)
        .zip(outputs.chunks_exact_mut(n * d))
        .enumerate()
    {
        for block in &layout.blocks {
            let (matrix, rest) = core::mem::take(&mut matrices).split_at_mut(block.len());
            let (output, rest_out) = core::mem::take(&mut outputs).split_at_mut(block.rows.len() * d);
            (matrices, outputs) = (rest, rest_out);
            tasks.push((h, block, matrix, output));
        }
    }
    tasks
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
    let x = Operands::new(p, n, q, k, v);
    let layout = Layout::new(p, n);
    let d = x.d;
    let mut probs = zeroed(p.n_heads * layout.per_head);
    let mut out_heads = zeroed(q.len());
    for_each_task(
        &mut row_tasks(&layout, d, &mut probs, &mut out_heads),
        |&mut (h, block, ref mut probs, ref mut out)| {
            let tile = &mut vec![0.0f32; BLOCK * BLOCK];
            let kv_head = h / x.group;
            let queries = x.rows(&x.queries, h, block.rows.clone());
            products(isa, block, queries, x.panels(&x.key_panels, kv_head), d, tile, probs);
            for (t, row) in block.rows.clone().zip(probs.chunks_exact_mut(block.keys.len())) {
                let seen = block.columns(p, t);
                row[..seen.start].fill(0.0);
                row[seen.end..].fill(0.0);
                let row = &mut row[seen];
                row.iter_mut().for_each(|s| *s = score(p, *s).0);
                let max = row.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
                let inverse = (1.0 / isa.exp_sum(row, max)) as f32;
                row.iter_mut().for_each(|x| *x *= inverse);
            }
            isa.mad_rows(d, out, x.rows(&x.values, kv_head, block.keys.clone()), probs);
        },
    );
    by_token(&out_heads, p.n_heads, d, out);
    Ok(probs)
}

/// Writes `dq`, `dk` and `dv` from `d_out`, with `probs` from [`attention_forward`] on the same inputs.
///
/// Per row: `dP_j = d_out·v_j`, `dS_j = P_j (dP_j − Σ_i P_i dP_i)`, and through the score function the dot product's
/// gradient `dZ_j`; then `dq = Σ_j dZ_j k_j`, `dk_j = Σ_rows dZ_j q`, `dv_j = Σ_rows P_j d_out`. The query side runs
/// in parallel over heads and blocks of rows; the key/value side over KV heads and blocks of key positions, each
/// summing the blocks of rows that see it with their columns of `dZ` and `P` as weights (read in place, transposed),
/// so no two threads add to the same gradient.
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
    let layout = Layout::new(p, n);
    expect_len("attention probabilities", probs.len(), p.n_heads * layout.per_head)?;
    expect_len("attention output gradient", d_out.len(), q.len())?;
    expect_len("query gradient", dq.len(), q.len())?;
    expect_len("key gradient", dk.len(), k.len())?;
    expect_len("value gradient", dv.len(), v.len())?;
    if n == 0 {
        return Ok(());
    }
    let x = Operands::new(p, n, q, k, v);
    let d = x.d;
    let (d_outs, value_panels) = (by_head(d_out, p.n_heads, d), panels(v, p.n_kv_heads, d));
    // dZ, laid out like the probabilities (zero where masked, as they are).
    let mut dz = zeroed(probs.len());
    let mut dq_heads = zeroed(q.len());
    for_each_task(
        &mut row_tasks(&layout, d, &mut dz, &mut dq_heads),
        |&mut (h, block, ref mut dz, ref mut dq)| {
            let (tile, dots) = (&mut vec![0.0f32; BLOCK * BLOCK], &mut Vec::new());
            let kv_head = h / x.group;
            let probs = &probs[h * layout.per_head + block.offset..][..block.len()];
            let d_outs = x.rows(&d_outs, h, block.rows.clone());
            products(isa, block, d_outs, x.panels(&value_panels, kv_head), d, tile, dz); // dP for now
            if p.softcap.is_some() {
                dots.resize(block.len(), 0.0);
                let queries = x.rows(&x.queries, h, block.rows.clone());
                products(isa, block, queries, x.panels(&x.key_panels, kv_head), d, tile, dots);
            }
            let width = block.keys.len();
            for (r, (t, (dz, probs))) in block
                .rows
                .clone()
                .zip(dz.chunks_exact_mut(width).zip(probs.chunks_exact(width)))
                .enumerate()
            {
                let seen = block.columns(p, t);
                dz[..seen.start].fill(0.0);
                dz[seen.end..].fill(0.0);
                let (dz, probs) = (&mut dz[seen.clone()], &probs[seen.clone()]);
                let weighted: f32 = probs.iter().zip(&*dz).map(|(p, dp)| p * dp).sum();
                if p.softcap.is_some() {
                    let dots = &dots[r * width..][seen];
                    for ((dz, prob), &dot) in dz.iter_mut().zip(probs).zip(dots) {
                        *dz = prob * (*dz - weighted) * score(p, dot).1;
                    }
                } else {
                    for (dz, prob) in dz.iter_mut().zip(probs) {
                        *dz = prob * (*dz - weighted) * p.scale;
                    }
                }
            }
            isa.mad_rows(d, dq, x.rows(&x.keys, kv_head, block.keys.clone()), dz);
        },
    );
    by_token(&dq_heads, p.n_heads, d, dq);

    let (mut dk_heads, mut dv_heads) = (zeroed(k.len()), zeroed(v.len()));
    // One task per KV head and block of key positions: (KV head, block, its rows of dK and of dV).
    let mut tasks: Vec<(usize, usize, &mut [f32], &mut [f32])> = (dk_heads.chunks_exact_mut(n * d))
        .zip(dv_heads.chunks_exact_mut(n * d))
        .enumerate()
        .flat_map(|(kv_head, (dk, dv))| {
            let blocks = dk.chunks_mut(BLOCK * d).zip(dv.chunks_mut(BLOCK * d)).enumerate();
            blocks.map(move |(key_block, (dk, dv))| (kv_head, key_block, dk, dv))
        })
        .collect();
    for_each_task(&mut tasks, |&mut (kv_head, key_block, ref mut dk, ref mut dv)| {
        let positions = key_block * BLOCK..(key_block * BLOCK + BLOCK).min(n);
        for block in layout.blocks[key_block..]
            .iter()
            .filter(|b| b.keys.start <= positions.start)
        {
            for h in kv_head * x.group..(kv_head + 1) * x.group {
                // The block's columns for these positions, `[rows, positions]` of dZ and P (read transposed): the
                // weights of each position's sum over the rows.
                let at = h * layout.per_head + block.offset + positions.start - block.keys.start;
                let width = block.keys.len();
                isa.mad_columns(d, dk, x.rows(&x.queries, h, block.rows.clone()), &dz[at..], width);
                isa.mad_columns(d, dv, x.rows(&d_outs, h, block.rows.clone()), &probs[at..], width);
            }
        }
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
        // 150 tokens: three blocks of 64 positions, the last one partial; 16-wide heads. With a window of 20 the last
        // block's rows see nothing of the first key block, so its matrix starts at key 64.
        let params = AttentionParams {
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 16,
            scale: 0.25,
            window: None,
            softcap: None,
        };
        check(params, 13, 150, 7);
        let windowed = AttentionParams {
            window: Some(20),
            ..params
        };
        assert_eq!(Layout::new(&windowed, 150).blocks[2].keys, 64..150);
        check(windowed, 14, 150, 7);
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
