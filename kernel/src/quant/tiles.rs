//! Matrices rounded to 8 bits with one f32 scale per 32 values, laid out as AMX tiles: the operands of the tile
//! matmul (`ops::matmul::tile_matmul`), which the trainer runs on CPUs with AMX-INT8 (`simd::x86::amx`).
//!
//! A weight matrix `[n_out, n_in]` ([`TileMatrix`]) is cut into panels of 16 rows and blocks of [`TILE_K`] columns
//! ("K blocks"). Each (panel, K block) is one [`TileBlock`]: its 16 × 32 levels in the order `tdpbssd` reads its
//! second operand, then the 16 rows' scales. Activations `[n_rows, n_in]` ([`TileRows`]) are kept as the tiles of its
//! first operand, 16 rows of a K block together, with a scale per row and K block.
//!
//! Levels are symmetric: `level = round(x / scale)` in `[-127, 127]` with `scale = max |x| / 127` over the block's
//! values, kept in f32 (gradients far below f16's range keep their precision). Blocks of 32 as Q8_0's: a block of 64
//! makes the AMX kernel 1.5 times as fast, but rounds activations more coarsely than the legacy types' forward does
//! (SmolLM2-135M Q4_1's adapter gradients against unrounded weights, minimum cosine: 0.92 with blocks of 64, 0.96 with
//! 32, 0.95 with the AVX-512 forward). Shapes are padded with zeros to whole panels, K blocks and 16-row tiles of
//! activations; zero levels add nothing, so padding never changes a result.
//!
//! An output is `Σ_kb (Σ_j a_j · w_j as i32) as f32 · (a_scale · w_scale)`, each term fused into an f32 accumulator in
//! K-block order: the integer sums are exact, so every path that keeps this order gives the same bits ([`dot`] is the
//! reference).

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use bytemuck::Zeroable;

use super::kquant::nearest_int;

/// Values per scale, and the depth of one tile product.
pub const TILE_K: usize = 32;

/// Rows of a panel: the rows of a tile product's result.
pub const PANEL_ROWS: usize = 16;

/// 16 rows × 32 columns of a [`TileMatrix`] (576 bytes, 9 cache lines).
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Zeroable)]
pub struct TileBlock {
    /// `levels[q][n]`: row `n`'s levels of columns `4q..4q + 4` (AMX's "VNNI" layout of a 32 × 16 byte operand).
    pub levels: [[[i8; 4]; PANEL_ROWS]; TILE_K / 4],
    /// Row `n`'s scale.
    pub scales: [f32; PANEL_ROWS],
}

/// A weight matrix `[n_out, n_in]` in tiles (see the module documentation).
#[derive(Clone, Debug)]
pub struct TileMatrix {
    n_in: usize,
    n_out: usize,
    /// `blocks[p · k_blocks + kb]`: panel `p`, K block `kb`.
    blocks: Vec<TileBlock>,
}

impl TileMatrix {
    /// A matrix of zeros, to be filled by [`pack`](Self::pack).
    pub fn zeros(n_in: usize, n_out: usize) -> Self {
        let panels = n_out.div_ceil(PANEL_ROWS);
        TileMatrix {
            n_in,
            n_out,
            blocks: vec![TileBlock::zeroed(); panels * n_in.div_ceil(TILE_K)],
        }
    }

    /// Rounds and stores K blocks `k_blocks` of panels `panels` (panel `p`: rows `16p..16p + 16`), spread over
    /// threads a panel at a time: `fill(rows, columns, values)` writes the matrix's values at `rows × columns` into
    /// `values` (row-major, `rows.len() × columns.len()`), for the rows of one panel (cut at `n_out`) and the columns
    /// of `k_blocks` (cut at `n_in`).
    pub fn pack(
        &mut self,
        panels: Range<usize>,
        k_blocks: Range<usize>,
        fill: impl Fn(Range<usize>, Range<usize>, &mut [f32]) + Sync + Send,
    ) {
        let (n_in, n_out, per_panel) = (self.n_in, self.n_out, self.k_blocks());
        let columns = k_blocks.start * TILE_K..(k_blocks.end * TILE_K).min(n_in);
        let panels = panels.start..panels.end.min(n_out.div_ceil(PANEL_ROWS));
        if panels.is_empty() || columns.is_empty() {
            return;
        }
        let blocks = &mut self.blocks[panels.start * per_panel..panels.end * per_panel];
        crate::ops::for_each_chunk(blocks, per_panel, |i, panel| {
            let p = panels.start + i;
            let rows = p * PANEL_ROWS..((p + 1) * PANEL_ROWS).min(n_out);
            let mut values = vec![0.0f32; rows.len() * columns.len()];
            fill(rows.clone(), columns.clone(), &mut values);
            for (n, row) in values.chunks_exact(columns.len()).enumerate() {
                for (kb, x) in k_blocks.clone().zip(row.chunks(TILE_K)) {
                    let block = &mut panel[kb];
                    let (scale, levels) = round_block(x);
                    block.scales[n] = scale;
                    for (q, levels) in levels.as_chunks::<4>().0.iter().enumerate() {
                        block.levels[q][n] = *levels;
                    }
                }
            }
        });
    }

    /// Columns.
    pub fn n_in(&self) -> usize {
        self.n_in
    }

    /// Rows.
    pub fn n_out(&self) -> usize {
        self.n_out
    }

    /// K blocks per row.
    pub fn k_blocks(&self) -> usize {
        self.n_in.div_ceil(TILE_K)
    }

    /// Panels (the last one padded with rows of zeros when `n_out` is not a multiple of 16).
    pub fn panels(&self) -> usize {
        self.blocks.len() / self.k_blocks().max(1)
    }

    /// Panel `p`'s K blocks in order.
    pub fn panel(&self, p: usize) -> &[TileBlock] {
        let per_panel = self.k_blocks();
        &self.blocks[p * per_panel..][..per_panel]
    }
}

/// Activation rows `[n_rows, n_in]` rounded for a tile matmul (see the module documentation), kept as the tiles the
/// AMX kernel loads: the levels of 16 rows in one K block are 16 × `TILE_K` consecutive bytes, so that a tile load
/// reads whole cache lines in order rather than a piece of 16 rows far apart. Reused between calls:
/// [`quantize`](Self::quantize) resizes it.
#[derive(Clone, Debug, Default)]
pub struct TileRows {
    n_rows: usize,
    k_blocks: usize,
    /// `[padded rows / 16][k_blocks][16][TILE_K]`.
    levels: Vec<i8>,
    /// `[padded rows / 16][k_blocks][16]`.
    scales: Vec<f32>,
}

impl TileRows {
    /// Rounds `x: [n_rows, n_in]` into `self`, spread over threads 16 rows at a time.
    pub fn quantize(&mut self, n_in: usize, x: &[f32]) {
        let n_rows = x.len().checked_div(n_in).unwrap_or(0);
        let k_blocks = n_in.div_ceil(TILE_K);
        let padded = n_rows.next_multiple_of(PANEL_ROWS);
        self.n_rows = n_rows;
        self.k_blocks = k_blocks;
        self.levels.clear();
        self.levels.resize(padded * k_blocks * TILE_K, 0);
        self.scales.clear();
        self.scales.resize(padded * k_blocks, 0.0);
        if n_rows == 0 {
            return;
        }
        let tile_levels = PANEL_ROWS * k_blocks * TILE_K;
        let mut tiles: Vec<(&mut [i8], &mut [f32])> = self
            .levels
            .chunks_exact_mut(tile_levels)
            .zip(self.scales.chunks_exact_mut(PANEL_ROWS * k_blocks))
            .take(n_rows.div_ceil(PANEL_ROWS))
            .collect();
        crate::ops::for_each_chunk(&mut tiles, 1, |tile, chunk| {
            let (levels, scales) = &mut chunk[0];
            let first = tile * PANEL_ROWS;
            for (i, x) in x.chunks_exact(n_in).skip(first).take(PANEL_ROWS).enumerate() {
                for (kb, x) in x.chunks(TILE_K).enumerate() {
                    let (scale, rounded) = round_block(x);
                    scales[kb * PANEL_ROWS + i] = scale;
                    levels[(kb * PANEL_ROWS + i) * TILE_K..][..TILE_K].copy_from_slice(&rounded);
                }
            }
        });
    }

    /// Rows, padding excluded.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Rows, padding included (a multiple of 16).
    pub fn padded_rows(&self) -> usize {
        self.scales.len() / self.k_blocks.max(1)
    }

    /// K blocks per row.
    pub fn k_blocks(&self) -> usize {
        self.k_blocks
    }

    /// The levels of rows `16·r..16·r + 16` in every K block: `[k_blocks][16][TILE_K]`.
    pub fn tile_levels(&self, r: usize) -> &[i8] {
        let len = PANEL_ROWS * self.k_blocks * TILE_K;
        &self.levels[r * len..][..len]
    }

    /// The scales of rows `16·r..16·r + 16` in every K block: `[k_blocks][16]`.
    pub fn tile_scales(&self, r: usize) -> &[f32] {
        let len = PANEL_ROWS * self.k_blocks;
        &self.scales[r * len..][..len]
    }
}

/// Up to `TILE_K` values rounded to levels (zeros beyond `x`), and their scale.
fn round_block(x: &[f32]) -> (f32, [i8; TILE_K]) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let inverse = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut levels = [0i8; TILE_K];
    for (level, &v) in levels.iter_mut().zip(x) {
        // |v · inverse| <= 127, where `nearest_int` is exact (and takes NaN to 0).
        *level = nearest_int(v * inverse) as i8;
    }
    (amax / 127.0, levels)
}

/// Row `t` of `a` times row `r` of `w`, in the order every path sums (the reference the AMX kernel is tested against).
pub fn dot(a: &TileRows, t: usize, w: &TileMatrix, r: usize) -> f32 {
    let (p, n) = (r / PANEL_ROWS, r % PANEL_ROWS);
    // Row `t`'s levels of each K block, 16 rows apart in its tile.
    let levels = a
        .tile_levels(t / PANEL_ROWS)
        .chunks_exact(TILE_K)
        .skip(t % PANEL_ROWS)
        .step_by(PANEL_ROWS);
    let scales = a
        .tile_scales(t / PANEL_ROWS)
        .iter()
        .skip(t % PANEL_ROWS)
        .step_by(PANEL_ROWS);
    let mut acc = 0.0f32;
    for ((block, a_levels), &a_scale) in w.panel(p).iter().zip(levels).zip(scales) {
        let mut sum = 0i32;
        for (q, a_levels) in a_levels.as_chunks::<4>().0.iter().enumerate() {
            for (&x, &y) in a_levels.iter().zip(&block.levels[q][n]) {
                sum += i32::from(x) * i32::from(y);
            }
        }
        acc = libm::fmaf(sum as f32, a_scale * block.scales[n], acc);
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value sequence with every sign and a spread of magnitudes (no RNG needed).
    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len as u32)
            .map(|i| {
                let h = (i ^ seed).wrapping_mul(2_654_435_761);
                (h >> 8) as f32 / (1 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn products_stay_within_the_rounding_of_both_factors_and_padding_adds_nothing() {
        // 40 rows: two whole panels and a padded one; 100 columns: three whole K blocks and a partial one; 5 rows of
        // activations, padded to 16.
        let (n_rows, n_in, n_out) = (5, 100, 40);
        let w = values(n_out * n_in, 7);
        let x = values(n_rows * n_in, 11);
        let mut matrix = TileMatrix::zeros(n_in, n_out);
        assert_eq!((matrix.panels(), matrix.k_blocks()), (3, 4));
        // Packed in two K ranges (as the trainer packs a transpose) and two ranges of panels (as it packs a matrix).
        for (panels, k_blocks) in [(0..9, 0..2), (0..1, 2..4), (1..3, 2..4)] {
            matrix.pack(panels, k_blocks, |rows, columns, out| {
                for (r, out) in rows.zip(out.chunks_exact_mut(columns.len())) {
                    out.copy_from_slice(&w[r * n_in..][columns.clone()]);
                }
            });
        }
        let mut a = TileRows::default();
        a.quantize(n_in, &x);
        assert_eq!((a.n_rows(), a.padded_rows(), a.k_blocks()), (5, 16, 4));
        // Half a level of each factor, the level being its block's largest magnitude / 127.
        let error = |v: &[f32]| -> Vec<f32> {
            v.chunks(TILE_K)
                .flat_map(|b| {
                    let half_level = b.iter().fold(0f32, |m, x| m.max(x.abs())) / 254.0;
                    core::iter::repeat_n(half_level * 1.001, b.len())
                })
                .collect()
        };
        for t in 0..n_rows {
            let (x, ex) = (&x[t * n_in..][..n_in], error(&x[t * n_in..][..n_in]));
            for r in 0..n_out {
                let (w, ew) = (&w[r * n_in..][..n_in], error(&w[r * n_in..][..n_in]));
                let (mut exact, mut bound) = (0.0f32, 1e-5);
                for i in 0..n_in {
                    exact += x[i] * w[i];
                    bound += x[i].abs() * ew[i] + w[i].abs() * ex[i] + ex[i] * ew[i];
                }
                let got = dot(&a, t, &matrix, r);
                assert!(
                    (got - exact).abs() <= bound,
                    "[{t}][{r}]: {got} vs {exact} (bound {bound})"
                );
            }
        }
        // Empty shapes are empty, not panics.
        let mut empty = TileMatrix::zeros(0, 3);
        empty.pack(0..1, 0..1, |_, _, _| unreachable!("no columns to fill"));
        a.quantize(0, &[]);
        assert_eq!((a.n_rows(), a.padded_rows()), (0, 0));
        a.quantize(n_in, &x);
        // The padding is zeros: padded activation rows and padded weight rows give exact zeros.
        assert_eq!(dot(&a, 15, &matrix, 0), 0.0);
        assert_eq!(dot(&a, 0, &matrix, 47), 0.0);
    }
}
