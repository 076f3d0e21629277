//! Quantized matrix multiplication: `out[t][r] = Σ_i w[r][i] · x[t][i]`.
//!
//! Weights are `[n_out, n_in]` rows of any supported type, borrowed from the model file. Activations are f32
//! `[n_tokens, n_in]`, quantized once per call to the weights' partner type (Q8_K for K-quants, Q8_0 for the legacy
//! types); each output is then an integer dot product. Work is split by weight rows across threads; with several
//! tokens, a thread visits its rows once per tile of tokens so a weight row is reused from cache for the whole tile,
//! and each kernel call dots a row with several tokens, unpacking the row's blocks once for all of them.
//!
//! With AVX-512, Q4_K, Q6_K, Q4_1 and Q8_0 weights (all of the shipped models' matrices) take another way: rows
//! grouped sixteen at a time (`quant::grouped`), each row a vector lane (`simd::x86::interleaved`), every token
//! streamed past each group. The groups come with the weights (hearth's grouped-weights cache, mapped from disk: then
//! for any number of tokens, a decode step included), or, for enough tokens, each thread groups its rows itself.
//! Either way a token's outputs are the same bits whatever the number of tokens in the call.

use alloc::vec::Vec;

#[cfg(hearth_x86_simd)]
use bytemuck::Zeroable;

use super::{OpError, even_chunks, expect_len, for_each_chunk, thread_count};
use crate::GgmlType;
use crate::gguf::TensorView;
use crate::quant::grouped::{self, GROUP_ROWS};
use crate::quant::tiles::{self, PANEL_ROWS, TileMatrix, TileRows};
use crate::quant::{
    self, BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_1, BlockQ5_K, BlockQ6_K, BlockQ8_0, BlockQ8_0Sum,
    BlockQ8_1, BlockQ8_K, QuantBlock, QuantError, Quantize,
};
#[cfg(hearth_x86_simd)]
use crate::simd::x86::Avx512;
#[cfg(hearth_x86_simd)]
use crate::simd::x86::interleaved::GroupDots;
use crate::simd::{Isa, SimdDot};

/// Tokens processed together against each weight row (their quantized activations stay in L2).
const TOKEN_TILE: usize = 32;

/// Tokens one kernel call dots a weight row with: its 8 accumulators of 8 lanes and a few temporaries fit the 16 AVX2
/// registers, the unpacked row block stays in L1. (Measured on Qwen2.5-Coder Q4_K_M and SmolLM2 prefill: 8 beats 4
/// by 5–9 %, 16 spills and loses.)
const TOKENS_PER_CALL: usize = 8;

/// Rows whose multi-token results are stored together (see [`MatmulScratch`]): one cache line of f32 outputs, and
/// the rows of an interleaved group.
const ROW_GROUP: usize = 16;
const _: () = assert!(ROW_GROUP == GROUP_ROWS);

/// Tokens from which weights without grouped rows are grouped here, per call, for the AVX-512 kernels: below, the
/// one-row kernels, for which grouping the rows costs more than it saves. (Qwen2.5-Coder Q4_K_M prompts, alternated
/// with the one-row kernels: 8 tokens 25 % slower, 16 tokens 8 % faster, 64 tokens twice as fast.)
#[cfg(hearth_x86_simd)]
const INTERLEAVED_MIN_TOKENS: usize = 16;

/// Tokens per call of the interleaved kernel: its four or five 16-lane accumulators per token, the weights and the
/// scales fit AVX-512's 32 registers (eight tokens measured 3 % slower on Qwen2.5-Coder prefill).
#[cfg(hearth_x86_simd)]
const INTERLEAVED_TILE: usize = 4;

/// Activation blocks quantized per thread task (below this, one thread quantizes them all).
const QUANTIZE_CHUNK: usize = 64;

/// A weight matrix `[n_out, n_in]`: `n_out` rows of `n_in` elements of type `dtype`, row-major.
#[derive(Clone, Copy, Debug)]
pub struct Weights<'a> {
    /// Element type.
    pub dtype: GgmlType,
    /// Elements per row (the input dimension; GGML's `ne[0]`).
    pub n_in: usize,
    /// Number of rows (the output dimension; GGML's `ne[1]`).
    pub n_out: usize,
    /// The rows' bytes.
    pub bytes: &'a [u8],
    /// The same rows grouped sixteen at a time (`quant::grouped`), when the caller keeps them (hearth's weight cache
    /// next to a model): the AVX-512 kernels then read these for any number of tokens, and never `bytes`.
    pub grouped: Option<&'a [u8]>,
}

impl<'a> Weights<'a> {
    /// A 2-D tensor from a GGUF file as a weight matrix.
    pub fn from_tensor(t: &TensorView<'a>) -> Result<Self, OpError> {
        if t.n_dims > 2 {
            return Err(OpError::Shape {
                what: "weight matrix dimensions",
                expected: 2,
                got: t.n_dims,
            });
        }
        Self::new(t.dtype, t.row_len(), t.n_rows(), t.data)
    }

    /// A weight matrix over `bytes`, checked against the shape.
    pub fn new(dtype: GgmlType, n_in: usize, n_out: usize, bytes: &'a [u8]) -> Result<Self, OpError> {
        let Some(row_bytes) = dtype.bytes_for(n_in as u64) else {
            return Err(QuantError::Length {
                dtype,
                bytes: 0,
                elems: n_in,
            }
            .into());
        };
        expect_len("weight bytes", bytes.len(), row_bytes as usize * n_out)?;
        Ok(Self {
            dtype,
            n_in,
            n_out,
            bytes,
            grouped: None,
        })
    }

    /// These weights with their rows also grouped sixteen at a time in `grouped` (as [`grouped::group_rows`] writes
    /// them), checked against the shape.
    pub fn with_grouped(self, grouped: &'a [u8]) -> Result<Self, OpError> {
        let Some(len) = grouped::grouped_len(self.dtype, self.n_in, self.n_out) else {
            return Err(QuantError::Unsupported {
                op: "grouped weights",
                dtype: self.dtype,
            }
            .into());
        };
        expect_len("grouped weight bytes", grouped.len(), len)?;
        Ok(Self {
            grouped: Some(grouped),
            ..self
        })
    }

    /// A matrix given only grouped sixteen rows at a time (as [`grouped::group_rows`] writes them), without its rows:
    /// for a caller that made the groups itself and multiplies them only on an ISA that
    /// [reads grouped weights](Isa::reads_grouped_weights). Other ISAs' matmuls refuse it, and its rows do not
    /// dequantize.
    pub fn grouped_only(dtype: GgmlType, n_in: usize, n_out: usize, grouped: &'a [u8]) -> Result<Self, OpError> {
        let rowless = Self {
            dtype,
            n_in,
            n_out,
            bytes: &[],
            grouped: None,
        };
        rowless.with_grouped(grouped)
    }

    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.bytes.len() / self.n_out.max(1)
    }

    /// Row `r` as f32 into `out[..n_in]`: an embedding lookup when the matrix is a token table.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) -> Result<(), OpError> {
        if r >= self.n_out {
            return Err(OpError::Shape {
                what: "row index",
                expected: self.n_out,
                got: r,
            });
        }
        let row_bytes = self.row_bytes();
        Ok(quant::dequantize(
            self.dtype,
            &self.bytes[r * row_bytes..][..row_bytes],
            out,
        )?)
    }
}

/// Buffers a matmul reuses between calls (sized by the largest call; no allocation once warm).
#[derive(Debug, Default)]
pub struct MatmulScratch {
    q8_0: Vec<BlockQ8_0>,
    q8_0_sum: Vec<BlockQ8_0Sum>,
    q8_1: Vec<BlockQ8_1>,
    q8_k: Vec<BlockQ8_K>,
    /// Results when there are several tokens, by groups of [`ROW_GROUP`] rows: `[n_tokens, ROW_GROUP]` per group
    /// (the last one narrower when `n_out` is not a multiple), gathered into the output at the end.
    by_group: Vec<f32>,
    /// Dequantized weight rows for plain-float weights, one per thread chunk.
    rows: Vec<f32>,
    /// Activations rounded for [`tile_matmul`].
    tile_rows: TileRows,
}

/// An activation block type: how activations are quantized to it, and where the scratch keeps its buffer.
pub trait Activation: Quantize {
    /// Quantizes one block of activations (`x.len() == LEN`).
    fn quantize_activation(x: &[f32]) -> Self;
    /// The scratch buffer for this type.
    fn buffer(scratch: &mut MatmulScratch) -> &mut Vec<Self>;
}

impl Activation for BlockQ8_0 {
    fn quantize_activation(x: &[f32]) -> Self {
        BlockQ8_0::quantize_activation(x)
    }
    fn buffer(scratch: &mut MatmulScratch) -> &mut Vec<Self> {
        &mut scratch.q8_0
    }
}

impl Activation for BlockQ8_0Sum {
    fn quantize_activation(x: &[f32]) -> Self {
        BlockQ8_0::quantize_activation(x).into()
    }
    fn buffer(scratch: &mut MatmulScratch) -> &mut Vec<Self> {
        &mut scratch.q8_0_sum
    }
}

impl Activation for BlockQ8_1 {
    fn quantize_activation(x: &[f32]) -> Self {
        BlockQ8_1::quantize_activation(x)
    }
    fn buffer(scratch: &mut MatmulScratch) -> &mut Vec<Self> {
        &mut scratch.q8_1
    }
}

impl Activation for BlockQ8_K {
    fn quantize_activation(x: &[f32]) -> Self {
        BlockQ8_K::quantize(x)
    }
    fn buffer(scratch: &mut MatmulScratch) -> &mut Vec<Self> {
        &mut scratch.q8_k
    }
}

/// `out[t][r] = Σ_i w[r][i] · x[t][i]` for `x: [n_tokens, n_in]` and `out: [n_tokens, n_out]`, using `isa`.
pub fn matmul(
    isa: Isa,
    w: &Weights<'_>,
    x: &[f32],
    out: &mut [f32],
    scratch: &mut MatmulScratch,
) -> Result<(), OpError> {
    let n_tokens = x.len() / w.n_in.max(1);
    expect_len("activations", x.len(), n_tokens * w.n_in)?;
    expect_len("output", out.len(), n_tokens * w.n_out)?;
    if n_tokens == 0 {
        return Ok(());
    }
    if w.bytes.is_empty() && w.n_in * w.n_out > 0 && !(w.grouped.is_some() && isa.reads_grouped_weights()) {
        // Grouped-only weights (`Weights::grouped_only`) on an ISA that reads rows.
        return Err(QuantError::Unsupported {
            op: "weights grouped only, on an ISA that reads rows",
            dtype: w.dtype,
        }
        .into());
    }
    // With AVX-512, Q4_K, Q6_K, Q4_1 and Q8_0 take the grouped kernels when the rows come grouped or there are
    // enough tokens to group them here; otherwise every type has one path.
    #[cfg(hearth_x86_simd)]
    let grouped = w.grouped.is_some() || n_tokens >= INTERLEAVED_MIN_TOKENS;
    match (w.dtype, isa) {
        #[cfg(hearth_x86_simd)]
        (GgmlType::Q4_K, Isa::Avx512(token)) if grouped => grouped_rows::<BlockQ4_K>(token, w, x, out, scratch),
        #[cfg(hearth_x86_simd)]
        (GgmlType::Q6_K, Isa::Avx512(token)) if grouped => grouped_rows::<BlockQ6_K>(token, w, x, out, scratch),
        #[cfg(hearth_x86_simd)]
        (GgmlType::Q4_1, Isa::Avx512(token)) if grouped => grouped_rows::<BlockQ4_1>(token, w, x, out, scratch),
        #[cfg(hearth_x86_simd)]
        (GgmlType::Q8_0, Isa::Avx512(token)) if grouped => grouped_rows::<BlockQ8_0>(token, w, x, out, scratch),
        (GgmlType::Q8_0, _) => quantized::<BlockQ8_0>(isa, w, x, out, scratch),
        (GgmlType::Q4_0, _) => quantized::<BlockQ4_0>(isa, w, x, out, scratch),
        (GgmlType::Q4_1, _) => quantized::<BlockQ4_1>(isa, w, x, out, scratch),
        (GgmlType::Q5_0, _) => quantized::<BlockQ5_0>(isa, w, x, out, scratch),
        (GgmlType::Q5_1, _) => quantized::<BlockQ5_1>(isa, w, x, out, scratch),
        (GgmlType::Q4_K, _) => quantized::<BlockQ4_K>(isa, w, x, out, scratch),
        (GgmlType::Q5_K, _) => quantized::<BlockQ5_K>(isa, w, x, out, scratch),
        (GgmlType::Q6_K, _) => quantized::<BlockQ6_K>(isa, w, x, out, scratch),
        (GgmlType::F32 | GgmlType::F16 | GgmlType::BF16, _) => plain(w, x, out, scratch),
        (dtype, _) => Err(QuantError::Unsupported { op: "matmul", dtype }.into()),
    }
}

/// `out[t][r] = Σ_i w[r][i] · x[t][i]` for weights in tiles (`quant::tiles`), `x` rounded to them as well: on AMX
/// when `isa` has it ([`Isa::multiplies_tiles`]), else by the scalar reference (the same bits, slowly).
pub fn tile_matmul(
    isa: Isa,
    w: &TileMatrix,
    x: &[f32],
    out: &mut [f32],
    scratch: &mut MatmulScratch,
) -> Result<(), OpError> {
    let n_tokens = x.len() / w.n_in().max(1);
    expect_len("activations", x.len(), n_tokens * w.n_in())?;
    expect_len("output", out.len(), n_tokens * w.n_out())?;
    if n_tokens == 0 {
        return Ok(());
    }
    #[cfg(not(hearth_x86_simd))]
    let _ = isa; // Only x86 has tile hardware.
    let MatmulScratch {
        tile_rows, by_group, ..
    } = scratch;
    tile_rows.quantize(w.n_in(), x);
    let a = &*tile_rows;
    #[cfg(hearth_x86_simd)]
    let amx = isa.amx();
    // Whole panels per task (`for_each_row_range` rounds to groups of 16 rows).
    const _: () = assert!(PANEL_ROWS == ROW_GROUP);
    for_each_row_range(n_tokens, rows_per_task(w.n_out()), out, by_group, |first_row, block| {
        #[cfg(hearth_x86_simd)]
        if let Some(amx) = amx {
            return amx.tile_products(a, w, first_row / PANEL_ROWS, block);
        }
        for (g, group) in block.chunks_mut(PANEL_ROWS * n_tokens).enumerate() {
            let width = group.len() / n_tokens;
            for (t, outputs) in group.chunks_exact_mut(width).enumerate() {
                for (n, o) in outputs.iter_mut().enumerate() {
                    *o = tiles::dot(a, t, w, first_row + g * PANEL_ROWS + n);
                }
            }
        }
    });
    Ok(())
}

/// Rows per parallel task: a few tasks per thread so uneven progress balances out.
fn rows_per_task(n_out: usize) -> usize {
    n_out.div_ceil(thread_count() * 4).max(1)
}

/// Runs `row_dots(r, t, dots)` for every output, writing `out` as `[n_tokens, n_out]`: it fills `dots[i]` with the
/// output of row `r` for token `t + i`, for up to [`TOKENS_PER_CALL`] tokens.
fn for_each_output(
    n_tokens: usize,
    n_out: usize,
    out: &mut [f32],
    by_group: &mut Vec<f32>,
    row_dots: impl Fn(usize, usize, &mut [f32]) + Sync + Send,
) {
    let rows = rows_per_task(n_out);
    if n_tokens == 1 {
        for_each_chunk(out, rows, |chunk, out| {
            for (i, o) in out.iter_mut().enumerate() {
                row_dots(chunk * rows + i, 0, core::slice::from_mut(o));
            }
        });
        return;
    }
    for_each_row_range(n_tokens, rows, out, by_group, |first_row, block| {
        for t0 in (0..n_tokens).step_by(TOKEN_TILE) {
            let t1 = (t0 + TOKEN_TILE).min(n_tokens);
            for (g, group) in block.chunks_mut(ROW_GROUP * n_tokens).enumerate() {
                let width = group.len() / n_tokens;
                for r in 0..width {
                    for t in (t0..t1).step_by(TOKENS_PER_CALL) {
                        let mut dots = [0.0; TOKENS_PER_CALL];
                        let dots = &mut dots[..(t1 - t).min(TOKENS_PER_CALL)];
                        row_dots(first_row + g * ROW_GROUP + r, t, dots);
                        for (i, &dot) in dots.iter().enumerate() {
                            group[(t + i) * width + r] = dot;
                        }
                    }
                }
            }
        }
    });
}

/// The multi-token outputs by row ranges: runs `task(first_row, block)` across threads for ranges of `rows` rows (a
/// multiple of [`ROW_GROUP`], rounded up here), where `block` is the range's part of the grouped results (see
/// [`MatmulScratch`]); then gathers them into `out` as `[n_tokens, n_out]`.
fn for_each_row_range(
    n_tokens: usize,
    rows: usize,
    out: &mut [f32],
    by_group: &mut Vec<f32>,
    task: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    let rows = rows.next_multiple_of(ROW_GROUP);
    if n_tokens == 1 {
        // One token: the grouped results are already `out`'s layout.
        for_each_chunk(out, rows, |chunk, block| task(chunk * rows, block));
        return;
    }
    // Every task writes all of its block, so the buffer is only grown, never cleared: zeroing it cost a few percent of
    // a training step.
    if by_group.len() < out.len() {
        by_group.resize(out.len(), 0.0);
    }
    let by_group = &mut by_group[..out.len()];
    for_each_chunk(by_group, rows * n_tokens, |chunk, block| task(chunk * rows, block));
    gather_groups(by_group, n_tokens, out);
}

/// `out[t][ROW_GROUP·g + i] = by_group[g][t][i]`, spread across threads by tokens: each token's outputs are copied a
/// group (one cache line) at a time.
fn gather_groups(by_group: &[f32], n_tokens: usize, out: &mut [f32]) {
    let n_out = by_group.len() / n_tokens;
    let tokens_per_task = n_tokens.div_ceil(thread_count());
    for_each_chunk(out, tokens_per_task * n_out, |chunk, out| {
        for (t, out_row) in (chunk * tokens_per_task..).zip(out.chunks_exact_mut(n_out)) {
            for (group, out) in by_group.chunks(ROW_GROUP * n_tokens).zip(out_row.chunks_mut(ROW_GROUP)) {
                let width = out.len();
                out.copy_from_slice(&group[t * width..][..width]);
            }
        }
    });
}

/// `x` (`[n_tokens, n_in]`) quantized to activation blocks across threads, in the scratch's buffer for `A` (taken
/// out of the scratch; give it back with [`Activation::buffer`] to reuse it).
fn quantize_activations<A: Activation>(n_in: usize, x: &[f32], scratch: &mut MatmulScratch) -> Result<Vec<A>, OpError> {
    if !n_in.is_multiple_of(A::LEN) {
        return Err(QuantError::Length {
            dtype: A::DTYPE,
            bytes: 0,
            elems: n_in,
        }
        .into());
    }
    let mut acts = core::mem::take(A::buffer(scratch));
    acts.clear();
    acts.resize(x.len() / A::LEN, A::zeroed());
    let chunk = even_chunks(acts.len(), QUANTIZE_CHUNK);
    for_each_chunk(&mut acts, chunk, |i, acts| {
        for (block, x) in acts.iter_mut().zip(x[i * chunk * A::LEN..].chunks_exact(A::LEN)) {
            *block = A::quantize_activation(x);
        }
    });
    Ok(acts)
}

fn quantized<W: SimdDot>(
    isa: Isa,
    w: &Weights<'_>,
    x: &[f32],
    out: &mut [f32],
    scratch: &mut MatmulScratch,
) -> Result<(), OpError>
where
    W::Act: Activation,
{
    let blocks: &[W] = quant::cast_blocks(w.bytes)?;
    let acts = quantize_activations::<W::Act>(w.n_in, x, scratch)?;
    let n_tokens = x.len() / w.n_in;
    let (w_per_row, a_per_row) = (w.n_in / W::LEN, w.n_in / <W::Act as QuantBlock>::LEN);
    let acts_ref = &acts;
    let act = |t: usize| &acts_ref[t * a_per_row..][..a_per_row];
    for_each_output(n_tokens, w.n_out, out, &mut scratch.by_group, |r, t, dots| {
        let row = &blocks[r * w_per_row..][..w_per_row];
        if let Ok(dots) = <&mut [f32; TOKENS_PER_CALL]>::try_from(&mut *dots) {
            *dots = isa.vec_dots(row, core::array::from_fn(|i| act(t + i)));
        } else {
            for (i, dot) in dots.iter_mut().enumerate() {
                *dot = isa.vec_dot(row, act(t + i));
            }
        }
    });
    *W::Act::buffer(scratch) = acts;
    Ok(())
}

/// Q4_K, Q6_K, Q4_1 or Q8_0 weights with AVX-512 VNNI, sixteen rows at a time: the weights' own groups
/// (`quant::grouped`) if they have them, otherwise each task groups its rows. Each group is multiplied with every
/// token, [`INTERLEAVED_TILE`] tokens per kernel call.
#[cfg(hearth_x86_simd)]
fn grouped_rows<W: GroupDots<Act: Activation + Sync>>(
    token: Avx512,
    w: &Weights<'_>,
    x: &[f32],
    out: &mut [f32],
    scratch: &mut MatmulScratch,
) -> Result<(), OpError> {
    let stored: Option<&[W::Group]> = match w.grouped {
        Some(bytes) => Some(bytemuck::try_cast_slice(bytes).map_err(|_| QuantError::Misaligned(w.dtype))?),
        None => None,
    };
    // The rows, read only when there are no groups (grouped-only weights have none).
    let blocks: &[W] = match stored {
        Some(_) => &[],
        None => quant::cast_blocks(w.bytes)?,
    };
    let acts = quantize_activations::<W::Act>(w.n_in, x, scratch)?;
    let n_tokens = x.len() / w.n_in;
    let per_row = w.n_in / W::LEN;
    let acts_ref = &acts;
    // One tile of tokens reads each group once, straight from memory: a decode step, which may ask for lines ahead.
    let stream = n_tokens <= INTERLEAVED_TILE && token.prefetches_weights();
    for_each_row_range(
        n_tokens,
        rows_per_task(w.n_out),
        out,
        &mut scratch.by_group,
        |first_row, block| {
            let mut grouped_here = Vec::new();
            for (g, outs) in block.chunks_mut(ROW_GROUP * n_tokens).enumerate() {
                let r0 = first_row + g * ROW_GROUP;
                let group = match stored {
                    Some(groups) => &groups[r0 / ROW_GROUP * per_row..][..per_row],
                    None => {
                        let width = outs.len() / n_tokens;
                        let rows = blocks[r0 * per_row..][..width * per_row].chunks_exact(per_row);
                        grouped_here.resize(per_row, W::Group::zeroed());
                        grouped::group_blocks(rows, &mut grouped_here);
                        &grouped_here[..]
                    }
                };
                let mut t0 = 0;
                while t0 < n_tokens {
                    t0 += match n_tokens - t0 {
                        1 => group_tile::<W, 1>(token, group, acts_ref, t0, stream, outs),
                        2 => group_tile::<W, 2>(token, group, acts_ref, t0, stream, outs),
                        3 => group_tile::<W, 3>(token, group, acts_ref, t0, stream, outs),
                        _ => group_tile::<W, INTERLEAVED_TILE>(token, group, acts_ref, t0, stream, outs),
                    };
                }
            }
        },
    );
    *W::Act::buffer(scratch) = acts;
    Ok(())
}

/// Tokens `t0..t0 + T` against a group, written into the group's results `outs` (`[n_tokens, width]`). Returns `T`.
#[cfg(hearth_x86_simd)]
fn group_tile<W: GroupDots, const T: usize>(
    token: Avx512,
    group: &[W::Group],
    acts: &[W::Act],
    t0: usize,
    stream: bool,
    outs: &mut [f32],
) -> usize {
    let per_row = group.len();
    let width = outs.len() / (acts.len() / per_row);
    let y = core::array::from_fn(|i| &acts[(t0 + i) * per_row..][..per_row]);
    for (t, dots) in W::group_dots::<T>(token, group, y, stream).iter().enumerate() {
        outs[(t0 + t) * width..][..width].copy_from_slice(&dots[..width]);
    }
    T
}

/// F32/F16/BF16 weights: each row is converted to f32 once per call and dotted in f32.
fn plain(w: &Weights<'_>, x: &[f32], out: &mut [f32], scratch: &mut MatmulScratch) -> Result<(), OpError> {
    let mut rows = core::mem::take(&mut scratch.rows);
    rows.clear();
    rows.resize(w.n_in * w.n_out, 0.0);
    quant::dequantize(w.dtype, w.bytes, &mut rows)?;
    let n_tokens = x.len() / w.n_in;
    let rows_ref = &rows;
    for_each_output(n_tokens, w.n_out, out, &mut scratch.by_group, |r, t, dots| {
        let row = &rows_ref[r * w.n_in..][..w.n_in];
        for (i, dot) in dots.iter_mut().enumerate() {
            *dot = row
                .iter()
                .zip(&x[(t + i) * w.n_in..][..w.n_in])
                .map(|(a, b)| a * b)
                .sum();
        }
    });
    scratch.rows = rows;
    Ok(())
}
