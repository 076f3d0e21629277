//! A frozen linear layer `y = x · Wᵀ` for training, for weights `W: [n_out, n_in]` of any type the kernel reads
//! (quantized or float): its forward, and its input gradient `dx += d_out · W`.
//!
//! Quantized weights get copies requantized to 8 bits once, before training ([`Requantized`]); float weights and the
//! trainer's [`InputGradients::Float`](crate::step::InputGradients) have none.
//! - The input gradient runs through `Wᵀ` ([`Transposed`]): the kernel's int8 matmul of `Wᵀ` with the output
//!   gradient, itself rounded to 8 bits per 32 values like any activation the forward multiplies — the forward's own
//!   arithmetic run backwards (int8 products, f32 sums). Without a transpose the gradient is summed in f32 over `W`'s
//!   rows dequantized a tile at a time, never the whole matrix. At Qwen2.5-Coder's shapes
//!   (`benches/benches/training.rs`, 2 threads), in multiply-adds per second: float 86–90 G, AVX-512 VNNI 174–183 G,
//!   AMX tiles 511–646 G.
//! - On CPUs with AMX-INT8 (`Isa::multiplies_tiles`) `Wᵀ` is kept in tiles (`quant::tiles`), and so is `W` itself,
//!   which the forward then multiplies instead of the model's rows; elsewhere the forward reads the rows (the grouped
//!   cache on AVX-512) and `Wᵀ` is Q8_0.

use bytemuck::Zeroable;
use hearth_kernel::GgmlType;
use hearth_kernel::ops::matmul::{MatmulScratch, Weights, matmul, tile_matmul};
use hearth_kernel::ops::{act, for_each_chunk, for_each_task, try_for_each_chunk};
use hearth_kernel::quant::grouped::{self, GroupQ8_0};
use hearth_kernel::quant::tiles::{PANEL_ROWS, TILE_K, TileMatrix};
use hearth_kernel::quant::{self, BlockQ8_0, QuantBlock};
use hearth_kernel::simd::Isa;
use rayon::prelude::*;

use super::{OpError, expect_len};

/// Bytes of `W`'s rows dequantized together (a tile), and of the gradient rows one task adds a tile into: together
/// about what a core's L2 holds, so the sums run from L2 rather than L3. A task passes its tokens over a tile one
/// 64-column span at a time (a span of the tile stays in L1), reading and writing its `dx` once per tile, so taller
/// tiles mean less of that traffic where rows are short enough. Measured with `benches/benches/training.rs`
/// (AVX-512, one thread): Qwen2.5-Coder's 1536-wide rows run at 57 G multiply-adds/s in 128-row tiles and 64-token
/// blocks; its 8960-wide ones at 37 G/s in those and 48 G/s in 32-row tiles and 16-token blocks.
const TILE_BYTES: usize = 768 << 10;
const TOKEN_BLOCK_BYTES: usize = 384 << 10;

/// `(tile rows, tokens per task)` for rows of `n_in` floats.
fn blocking(n_in: usize) -> (usize, usize) {
    let rows_of = |bytes: usize| bytes / (size_of::<f32>() * n_in);
    (
        rows_of(TILE_BYTES).clamp(32, 128),
        rows_of(TOKEN_BLOCK_BYTES).clamp(16, 64),
    )
}

/// Rows of `W` transposed together: dequantized, they stay in L2 (1.5 MB for 1536-wide rows) while every output row
/// gathers its column from them.
const TRANSPOSE_ROWS: usize = 256;

/// `Wᵀ: [n_in, n_out]` of a quantized `W: [n_out, n_in]`, requantized to 8 bits along `n_out`.
#[derive(Debug)]
pub struct Transposed {
    /// `W`'s input width: `Wᵀ`'s rows.
    n_in: usize,
    /// `W`'s rows: `Wᵀ`'s row length.
    n_out: usize,
    layout: Layout,
}

/// How a [`Transposed`] keeps its rows: as the ISA it was made for reads them, and only so.
#[derive(Debug)]
enum Layout {
    /// Q8_0 rows (blocks of 32 with f16 scales).
    Rows(Vec<u8>),
    /// Q8_0 rows grouped sixteen at a time, for the AVX-512 kernels (which would otherwise group them on every call).
    Grouped(Vec<GroupQ8_0>),
    /// AMX tiles (blocks of 32 with f32 scales), for CPUs with AMX-INT8 (`Isa::multiplies_tiles`).
    Tiles(TileMatrix),
}

impl Transposed {
    /// `w` transposed and requantized for matmuls on `isa`, or `None` when its gradient is summed in float instead:
    /// float weights (no rounding to add to them) and, without AMX tiles, `n_out` not a whole number of Q8_0 blocks.
    pub fn of(w: &Weights<'_>, isa: Isa) -> Result<Option<Self>, OpError> {
        let (n_in, n_out) = (w.n_in, w.n_out);
        if is_float(w) || n_in == 0 {
            return Ok(None);
        }
        let layout = if isa.multiplies_tiles() {
            // `Wᵀ`'s K blocks are `W`'s rows, 32 at a time: a tile of `W`'s rows fills whole blocks.
            const _: () = assert!(TRANSPOSE_ROWS.is_multiple_of(TILE_K));
            let mut tiles = TileMatrix::zeros(n_out, n_in);
            for_each_row_tile(w, |first, tile| {
                let k_blocks = first / TILE_K..(first + tile.len() / n_in).div_ceil(TILE_K);
                tiles.pack(0..tiles.panels(), k_blocks, |columns_of_w, rows_of_w, out| {
                    for (i, out) in columns_of_w.zip(out.chunks_exact_mut(rows_of_w.len())) {
                        for (o, r) in out.iter_mut().zip(rows_of_w.clone()) {
                            *o = tile[(r - first) * n_in + i];
                        }
                    }
                });
                Ok(())
            })?;
            Layout::Tiles(tiles)
        } else if n_out.is_multiple_of(BlockQ8_0::LEN) {
            let rows = q8_0_rows(w)?;
            if isa.reads_grouped_weights() {
                let len = grouped::grouped_len(GgmlType::Q8_0, n_out, n_in).expect("whole Q8_0 blocks");
                let mut groups = vec![GroupQ8_0::zeroed(); len / size_of::<GroupQ8_0>()];
                grouped::group_rows(GgmlType::Q8_0, n_out, &rows, bytemuck::cast_slice_mut(&mut groups))?;
                Layout::Grouped(groups)
            } else {
                Layout::Rows(rows)
            }
        } else {
            return Ok(None);
        };
        Ok(Some(Transposed { n_in, n_out, layout }))
    }

    /// Consecutive values of a row that share a scale (a rounding block).
    pub fn values_per_scale(&self) -> usize {
        match self.layout {
            Layout::Rows(_) | Layout::Grouped(_) => BlockQ8_0::LEN,
            Layout::Tiles(_) => TILE_K,
        }
    }

    /// Adds `d_out · W` (`d_out: [n_tokens, n_out]`) to `dx: [n_tokens, n_in]` as the product of `d_out`, rounded
    /// like the rows, with `Wᵀ`.
    fn add_product(&self, isa: Isa, d_out: &[f32], dx: &mut [f32], scratch: &mut MatmulScratch) -> Result<(), OpError> {
        // `Wᵀ`: `n_in` rows of `n_out`.
        let (rows, row_len) = (self.n_in, self.n_out);
        let mut product = vec![0.0f32; dx.len()];
        match &self.layout {
            Layout::Tiles(tiles) => tile_matmul(isa, tiles, d_out, &mut product, scratch)?,
            Layout::Rows(bytes) => {
                let weights = Weights::new(GgmlType::Q8_0, row_len, rows, bytes)?;
                q8_0_product(isa, &weights, d_out, &mut product, scratch)?;
            }
            Layout::Grouped(groups) => {
                let weights = Weights::grouped_only(GgmlType::Q8_0, row_len, rows, bytemuck::cast_slice(groups))?;
                q8_0_product(isa, &weights, d_out, &mut product, scratch)?;
            }
        }
        act::add_assign(dx, &product)?;
        Ok(())
    }
}

/// `product = d_out · W` through `Wᵀ` in Q8_0 (`weights`). Each token's gradient is scaled by a power of two (exact
/// both ways) that brings its largest magnitude to [2^14, 2^15) before it is rounded, and its product unscaled after:
/// gradients are small (a mean over tokens; a softmax's tail), and the Q8_0 blocks they are rounded to keep their
/// scales in f16, whose range would flush them to zero.
fn q8_0_product(
    isa: Isa,
    weights: &Weights<'_>,
    d_out: &[f32],
    product: &mut [f32],
    scratch: &mut MatmulScratch,
) -> Result<(), OpError> {
    // Each token's (scale, scaled gradient, gradient).
    let mut scaled = vec![0.0f32; d_out.len()];
    let mut tokens: Vec<(f32, &mut [f32], &[f32])> = (scaled.chunks_exact_mut(weights.n_in))
        .zip(d_out.chunks_exact(weights.n_in))
        .map(|(scaled, d_out)| (1.0, scaled, d_out))
        .collect();
    for_each_task(&mut tokens, |(scale, scaled, d_out)| {
        *scale = scale_to_f16_range(d_out, scaled)
    });
    let scales: Vec<f32> = tokens.into_iter().map(|(scale, ..)| scale).collect();
    matmul(isa, weights, &scaled, product, scratch)?;
    for_each_chunk(product, weights.n_out, |t, product| {
        act::scale(product, scales[t].recip())
    });
    Ok(())
}

/// Whether `w` is float: no rounding to add to it, so no 8-bit copies.
fn is_float(w: &Weights<'_>) -> bool {
    matches!(w.dtype, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
}

/// Runs `each(first, tile)` over `W`'s rows dequantized [`TRANSPOSE_ROWS`] at a time: `tile` holds rows
/// `first..first + tile.len() / n_in`.
fn for_each_row_tile(
    w: &Weights<'_>,
    mut each: impl FnMut(usize, &[f32]) -> Result<(), OpError>,
) -> Result<(), OpError> {
    let (n_in, n_out) = (w.n_in, w.n_out);
    let mut tile = vec![0.0f32; TRANSPOSE_ROWS.min(n_out) * n_in];
    for first in (0..n_out).step_by(TRANSPOSE_ROWS) {
        let tile = &mut tile[..TRANSPOSE_ROWS.min(n_out - first) * n_in];
        tile.par_chunks_mut(n_in)
            .enumerate()
            .try_for_each(|(i, row)| w.dequantize_row(first + i, row))?;
        each(first, tile)?;
    }
    Ok(())
}

/// `Wᵀ`'s rows in Q8_0 (`W`'s `n_out` a whole number of blocks).
fn q8_0_rows(w: &Weights<'_>) -> Result<Vec<u8>, OpError> {
    let (n_in, n_out) = (w.n_in, w.n_out);
    let row_bytes = n_out / BlockQ8_0::LEN * size_of::<BlockQ8_0>();
    let mut bytes = vec![0u8; n_in * row_bytes];
    for_each_row_tile(w, |first, tile| {
        let rows = tile.len() / n_in;
        // Each row of `Wᵀ` gets this tile's blocks: column `i` of the tile, quantized.
        let blocks =
            first / BlockQ8_0::LEN * size_of::<BlockQ8_0>()..(first + rows) / BlockQ8_0::LEN * size_of::<BlockQ8_0>();
        bytes
            .par_chunks_mut(row_bytes)
            .enumerate()
            .with_min_len(64)
            .try_for_each_init(
                || vec![0.0f32; rows],
                |column, (i, row)| {
                    for (c, w_row) in column.iter_mut().zip(tile.chunks_exact(n_in)) {
                        *c = w_row[i];
                    }
                    quant::quantize(GgmlType::Q8_0, column, &mut row[blocks.clone()])
                },
            )?;
        Ok(())
    })?;
    Ok(bytes)
}

/// The copies of a frozen matrix `W` the trainer multiplies instead of its rows, requantized to 8 bits once before
/// training.
#[derive(Debug, Default)]
pub struct Requantized {
    /// `W` in tiles, for the forward on AMX (`None` elsewhere: the forward reads `W`'s rows).
    tiles: Option<TileMatrix>,
    /// `Wᵀ`, for the input gradient ([`Transposed::of`]; `None`: summed in float).
    transposed: Option<Transposed>,
}

impl Requantized {
    /// `w`'s copies for training on `isa`: its transpose and, where the ISA multiplies tiles, itself in tiles (float
    /// weights have neither).
    pub fn of(w: &Weights<'_>, isa: Isa) -> Result<Self, OpError> {
        let tiles = if isa.multiplies_tiles() && !is_float(w) && w.n_in > 0 {
            let mut tiles = TileMatrix::zeros(w.n_in, w.n_out);
            // A tile of `W`'s rows is whole panels.
            const _: () = assert!(TRANSPOSE_ROWS.is_multiple_of(PANEL_ROWS));
            for_each_row_tile(w, |first, tile| {
                let panels = first / PANEL_ROWS..(first + tile.len() / w.n_in).div_ceil(PANEL_ROWS);
                tiles.pack(panels, 0..tiles.k_blocks(), |rows, columns, out| {
                    for (r, out) in rows.zip(out.chunks_exact_mut(columns.len())) {
                        out.copy_from_slice(&tile[(r - first) * w.n_in..][columns.clone()]);
                    }
                });
                Ok(())
            })?;
            Some(tiles)
        } else {
            None
        };
        Ok(Requantized {
            tiles,
            transposed: Transposed::of(w, isa)?,
        })
    }

    /// `weights` (the matrix these are copies of) with its copies.
    pub fn frozen<'w, 'a>(&'w self, weights: &'w Weights<'a>) -> Frozen<'w, 'a> {
        Frozen {
            weights,
            tiles: self.tiles.as_ref(),
            transposed: self.transposed.as_ref(),
        }
    }
}

/// A frozen weight matrix, with the copies of it the trainer multiplies where it has them ([`Requantized`]).
#[derive(Clone, Copy, Debug)]
pub struct Frozen<'w, 'a> {
    /// `W`'s rows.
    pub weights: &'w Weights<'a>,
    /// `W` in tiles, or `None` to run the forward on its rows.
    pub tiles: Option<&'w TileMatrix>,
    /// `Wᵀ` ([`Transposed::of`] the weights), or `None` to sum the gradient in float.
    pub transposed: Option<&'w Transposed>,
}

impl Frozen<'_, '_> {
    /// A frozen matrix without copies: the forward reads its rows, the gradient is summed in float.
    pub fn rows<'w, 'a>(weights: &'w Weights<'a>) -> Frozen<'w, 'a> {
        Frozen {
            weights,
            tiles: None,
            transposed: None,
        }
    }

    /// `out = x · Wᵀ` for `x: [n_tokens, n_in]`: the kernel's matmul of its tiles or its rows.
    pub fn forward(&self, isa: Isa, x: &[f32], out: &mut [f32], scratch: &mut MatmulScratch) -> Result<(), OpError> {
        match self.tiles {
            Some(tiles) => tile_matmul(isa, tiles, x, out, scratch),
            None => matmul(isa, self.weights, x, out, scratch),
        }
    }
}

/// Adds `d_out · W` to `dx`, for `d_out: [n_tokens, n_out]` and `dx: [n_tokens, n_in]`.
pub fn frozen_linear_backward(
    isa: Isa,
    w: Frozen<'_, '_>,
    d_out: &[f32],
    dx: &mut [f32],
    scratch: &mut MatmulScratch,
) -> Result<(), OpError> {
    let (n_in, n_out) = (w.weights.n_in, w.weights.n_out);
    if n_in == 0 || !dx.len().is_multiple_of(n_in) {
        return Err(OpError::Shape {
            what: "linear input gradient",
            expected: n_in,
            got: dx.len(),
        });
    }
    let n_tokens = dx.len() / n_in;
    expect_len("linear output gradient", d_out.len(), n_tokens * n_out)?;
    match w.transposed {
        Some(transposed) => transposed.add_product(isa, d_out, dx, scratch),
        None => float_backward(isa, w.weights, d_out, dx),
    }
}

/// `row` times the power of two that brings its largest magnitude to `[2^14, 2^15)`, into `out`; returns the power
/// (1 for a row of zeros; rows of non-finite values are left to the caller's guard).
fn scale_to_f16_range(row: &[f32], out: &mut [f32]) -> f32 {
    let max = row.iter().fold(0f32, |m, &v| m.max(v.abs()));
    let scale = if max == 0.0 || !max.is_finite() {
        1.0
    } else {
        // Between 2^-100 and 2^100, the scale and its reciprocal are normal floats.
        2f32.powi((14 - max.log2().floor() as i32).clamp(-100, 100))
    };
    for (o, &v) in out.iter_mut().zip(row) {
        *o = v * scale;
    }
    scale
}

/// [`frozen_linear_backward`] in f32: `W`'s rows dequantized a tile at a time and summed into `dx` by `mad_rows`.
fn float_backward(isa: Isa, w: &Weights<'_>, d_out: &[f32], dx: &mut [f32]) -> Result<(), OpError> {
    let (n_in, n_out) = (w.n_in, w.n_out);
    let n_tokens = dx.len() / n_in;
    let (tile_rows, token_block) = blocking(n_in);
    let mut tile = vec![0.0f32; tile_rows.min(n_out) * n_in];
    // The tile's columns of `d_out`, `[n_tokens, rows]`: the weights `mad_rows` sums the tile's rows with.
    let mut tile_grads = vec![0.0f32; n_tokens * tile_rows.min(n_out)];
    for first in (0..n_out).step_by(tile_rows) {
        let rows = tile_rows.min(n_out - first);
        let (tile, tile_grads) = (&mut tile[..rows * n_in], &mut tile_grads[..n_tokens * rows]);
        try_for_each_chunk(tile, n_in, |i, row| w.dequantize_row(first + i, row))?;
        for (g, d_out) in tile_grads.chunks_exact_mut(rows).zip(d_out.chunks_exact(n_out)) {
            g.copy_from_slice(&d_out[first..first + rows]);
        }
        let (tile, tile_grads) = (&*tile, &*tile_grads);
        for_each_chunk(dx, token_block * n_in, |i, dx| {
            let tile_grads = &tile_grads[i * token_block * rows..][..dx.len() / n_in * rows];
            isa.mad_rows(n_in, dx, tile, tile_grads)
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::check::{Quantized, Rng, assert_gradient, project};
    use hearth_kernel::GgmlType;
    use hearth_kernel::ops::matmul::{MatmulScratch, matmul};

    #[test]
    fn matches_finite_differences_of_the_kernels_matmul() {
        let mut rng = Rng(8);
        // 140 rows: one full tile and a partial one.
        let (n_tokens, n_in, n_out) = (3, 32, 140);
        let values = rng.vec(n_out * n_in, 0.5);
        let weights = Quantized::new(GgmlType::F32, &values);
        let w = Weights::new(GgmlType::F32, n_in, n_out, weights.bytes()).unwrap();
        assert!(
            Transposed::of(&w, Isa::selected()).unwrap().is_none(),
            "float weights are summed in float"
        );
        let x = rng.vec(n_tokens * n_in, 1.0);
        let g = rng.vec(n_tokens * n_out, 1.0);
        let mut dx = vec![0.0; x.len()];
        let mut scratch = MatmulScratch::default();
        let frozen = Frozen::rows(&w);
        frozen_linear_backward(Isa::selected(), frozen, &g, &mut dx, &mut scratch).unwrap();
        assert_gradient("linear dx", &x, &dx, 1e-2, 1e-3, |x| {
            let mut y = vec![0.0; n_tokens * n_out];
            matmul(Isa::Scalar, &w, x, &mut y, &mut scratch).unwrap();
            project(&y, &g)
        });
    }

    /// The most rounding to 8 bits moves each of `values` (blocks of `block` consecutive ones): half a level, plus
    /// what rounding the block's scale to f16 (Q8_0's) moves the largest level, with a margin.
    fn rounding_error(values: &[f32], block: usize) -> Vec<f32> {
        values
            .chunks(block)
            .flat_map(|block| {
                let level = block.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
                std::iter::repeat_n(level * 0.6, block.len())
            })
            .collect()
    }

    /// Checks `dx += d_out · W` against the dequantized weights, for weights of `dtype` and these shapes, with output
    /// gradients of magnitude `gradient`: exactly (to float summation) in float, and in int8 within the bound of
    /// rounding both factors to 8 bits in the transpose's blocks.
    fn check_against_dequantized(
        dtype: GgmlType,
        (n_tokens, n_in, n_out): (usize, usize, usize),
        int8: bool,
        gradient: f32,
        rng: &mut Rng,
    ) {
        let values = rng.vec(n_out * n_in, 0.5);
        let weights = Quantized::new(dtype, &values);
        let w = Weights::new(dtype, n_in, n_out, weights.bytes()).unwrap();
        let transposed = int8.then(|| {
            Transposed::of(&w, Isa::selected())
                .unwrap()
                .expect("a quantized matrix")
        });
        let mut dequantized = vec![0.0; values.len()];
        hearth_kernel::quant::dequantize(dtype, weights.bytes(), &mut dequantized).unwrap();
        // `Wᵀ`'s values and their rounding bounds, row `i` holding column `i`.
        let columns: Vec<f32> = (0..n_in * n_out)
            .map(|k| dequantized[(k % n_out) * n_in + k / n_out])
            .collect();
        let block = transposed.as_ref().map_or(1, Transposed::values_per_scale);
        let column_error = rounding_error(&columns, block);
        let g = rng.vec(n_tokens * n_out, gradient);
        let g_error = rounding_error(&g, block);
        let before = rng.vec(n_tokens * n_in, gradient);
        let mut dx = before.clone();
        let frozen = Frozen {
            weights: &w,
            tiles: None,
            transposed: transposed.as_ref(),
        };
        frozen_linear_backward(Isa::selected(), frozen, &g, &mut dx, &mut MatmulScratch::default()).unwrap();
        for t in 0..n_tokens {
            for i in 0..n_in {
                let (mut expected, mut bound) = (before[t * n_in + i], 1e-4 * gradient);
                for r in 0..n_out {
                    let (g, w) = (g[t * n_out + r], columns[i * n_out + r]);
                    expected += g * w;
                    if int8 {
                        let (eg, ew) = (g_error[t * n_out + r], column_error[i * n_out + r]);
                        bound += g.abs() * ew + w.abs() * eg + eg * ew;
                    }
                }
                let got = dx[t * n_in + i];
                assert!(
                    (got - expected).abs() <= bound,
                    "{dtype:?} {n_in} wide, int8 {int8} [{t}][{i}]: {got} vs {expected} (bound {bound})"
                );
            }
        }
    }

    #[test]
    fn quantized_weights_are_used_as_they_dequantize_and_the_gradient_adds() {
        let mut rng = Rng(9);
        for dtype in [
            GgmlType::Q8_0,
            GgmlType::Q4_K,
            GgmlType::Q6_K,
            GgmlType::Q4_1,
            GgmlType::F16,
        ] {
            // Two tiles of rows; a whole block of tokens and a partial one, itself blocks of four and a leftover.
            check_against_dequantized(dtype, (71, 256, 133), false, 1.0, &mut rng);
        }
        // Rows wide enough for shorter tiles (32 rows) and blocks (16 tokens), each with a partial one.
        check_against_dequantized(GgmlType::Q8_0, (19, 8192, 40), false, 1.0, &mut rng);
    }

    #[test]
    fn int8_gradients_stay_within_the_rounding_of_both_factors() {
        let mut rng = Rng(10);
        for dtype in [GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q4_1] {
            // A partial tile of transposed rows; enough tokens for the kernel's grouped path and one token.
            check_against_dequantized(dtype, (21, 256, 288), true, 1.0, &mut rng);
            check_against_dequantized(dtype, (1, 256, 288), true, 1.0, &mut rng);
        }
        // Gradients as small as a mean over tokens makes them, which f16 block scales alone would flush to zero.
        check_against_dequantized(GgmlType::Q4_K, (21, 256, 288), true, 1e-7, &mut rng);
    }
}
