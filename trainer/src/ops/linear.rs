//! The gradient through a frozen linear layer `y = x · Wᵀ`, for weights `W: [n_out, n_in]` of any type the kernel
//! reads (quantized or float): `dx += d_out · W`, with `W`'s rows dequantized a tile at a time, never the whole
//! matrix. (The forward is the kernel's quantized matmul.)

use hearth_kernel::ops::matmul::Weights;
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

/// Adds `d_out · W` to `dx`, for `d_out: [n_tokens, n_out]` and `dx: [n_tokens, n_in]`.
pub fn frozen_linear_backward(isa: Isa, w: &Weights<'_>, d_out: &[f32], dx: &mut [f32]) -> Result<(), OpError> {
    let (n_in, n_out) = (w.n_in, w.n_out);
    if n_in == 0 || !dx.len().is_multiple_of(n_in) {
        return Err(OpError::Shape {
            what: "linear input gradient",
            expected: n_in,
            got: dx.len(),
        });
    }
    let n_tokens = dx.len() / n_in;
    expect_len("linear output gradient", d_out.len(), n_tokens * n_out)?;
    let (tile_rows, token_block) = blocking(n_in);
    let mut tile = vec![0.0f32; tile_rows.min(n_out) * n_in];
    // The tile's columns of `d_out`, `[n_tokens, rows]`: the weights `mad_rows` sums the tile's rows with.
    let mut tile_grads = vec![0.0f32; n_tokens * tile_rows.min(n_out)];
    for first in (0..n_out).step_by(tile_rows) {
        let rows = tile_rows.min(n_out - first);
        let (tile, tile_grads) = (&mut tile[..rows * n_in], &mut tile_grads[..n_tokens * rows]);
        tile.par_chunks_mut(n_in)
            .enumerate()
            .try_for_each(|(i, row)| w.dequantize_row(first + i, row))?;
        for (g, d_out) in tile_grads.chunks_exact_mut(rows).zip(d_out.chunks_exact(n_out)) {
            g.copy_from_slice(&d_out[first..first + rows]);
        }
        let (tile, tile_grads) = (&*tile, &*tile_grads);
        dx.par_chunks_mut(token_block * n_in)
            .zip(tile_grads.par_chunks(token_block * rows))
            .for_each(|(dx, g)| isa.mad_rows(n_in, dx, tile, g));
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
        let x = rng.vec(n_tokens * n_in, 1.0);
        let g = rng.vec(n_tokens * n_out, 1.0);
        let mut dx = vec![0.0; x.len()];
        frozen_linear_backward(Isa::selected(), &w, &g, &mut dx).unwrap();
        let mut scratch = MatmulScratch::default();
        assert_gradient("linear dx", &x, &dx, 1e-2, 1e-3, |x| {
            let mut y = vec![0.0; n_tokens * n_out];
            matmul(Isa::Scalar, &w, x, &mut y, &mut scratch).unwrap();
            project(&y, &g)
        });
    }

    /// Checks `dx += d_out · W` against the dequantized weights, for weights of `dtype` and these shapes.
    fn check_against_dequantized(dtype: GgmlType, (n_tokens, n_in, n_out): (usize, usize, usize), rng: &mut Rng) {
        let values = rng.vec(n_out * n_in, 0.5);
        let weights = Quantized::new(dtype, &values);
        let w = Weights::new(dtype, n_in, n_out, weights.bytes()).unwrap();
        let mut dequantized = vec![0.0; values.len()];
        hearth_kernel::quant::dequantize(dtype, weights.bytes(), &mut dequantized).unwrap();
        let g = rng.vec(n_tokens * n_out, 1.0);
        let before = rng.vec(n_tokens * n_in, 1.0);
        let mut dx = before.clone();
        frozen_linear_backward(Isa::selected(), &w, &g, &mut dx).unwrap();
        for t in 0..n_tokens {
            for i in 0..n_in {
                let expected: f32 = before[t * n_in + i]
                    + (0..n_out)
                        .map(|r| g[t * n_out + r] * dequantized[r * n_in + i])
                        .sum::<f32>();
                let got = dx[t * n_in + i];
                assert!(
                    (got - expected).abs() < 1e-4,
                    "{dtype:?} {n_in} wide [{t}][{i}]: {got} vs {expected}"
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
            check_against_dequantized(dtype, (71, 256, 133), &mut rng);
        }
        // Rows wide enough for shorter tiles (32 rows) and blocks (16 tokens), each with a partial one.
        check_against_dequantized(GgmlType::Q8_0, (19, 8192, 40), &mut rng);
    }
}
