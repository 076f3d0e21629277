//! The gradient through a frozen linear layer `y = x · Wᵀ`, for weights `W: [n_out, n_in]` of any type the kernel
//! reads (quantized or float): `dx += d_out · W`, with `W`'s rows dequantized a tile at a time, never the whole
//! matrix. (The forward is the kernel's quantized matmul.)

use hearth_kernel::ops::matmul::Weights;
use rayon::prelude::*;

use super::{OpError, expect_len};

/// Rows of `W` dequantized together: enough work per pass over the tokens, little memory (64 × n_in floats).
const ROW_TILE: usize = 64;

/// Adds `d_out · W` to `dx`, for `d_out: [n_tokens, n_out]` and `dx: [n_tokens, n_in]`.
pub fn frozen_linear_backward(w: &Weights<'_>, d_out: &[f32], dx: &mut [f32]) -> Result<(), OpError> {
    let (n_in, n_out) = (w.n_in, w.n_out);
    if n_in == 0 || !dx.len().is_multiple_of(n_in) {
        return Err(OpError::Shape {
            what: "linear input gradient",
            expected: n_in,
            got: dx.len(),
        });
    }
    expect_len("linear output gradient", d_out.len(), dx.len() / n_in * n_out)?;
    let mut tile = vec![0.0f32; ROW_TILE.min(n_out) * n_in];
    for first in (0..n_out).step_by(ROW_TILE) {
        let rows = ROW_TILE.min(n_out - first);
        let tile = &mut tile[..rows * n_in];
        tile.par_chunks_mut(n_in)
            .enumerate()
            .try_for_each(|(i, row)| w.dequantize_row(first + i, row))?;
        let tile = &*tile;
        dx.par_chunks_mut(n_in)
            .zip(d_out.par_chunks(n_out))
            .for_each(|(dx, d_out)| {
                for (row, &g) in tile.chunks_exact(n_in).zip(&d_out[first..first + rows]) {
                    if g != 0.0 {
                        for (dx, w) in dx.iter_mut().zip(row) {
                            *dx += g * w;
                        }
                    }
                }
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
    use hearth_kernel::simd::Isa;

    #[test]
    fn matches_finite_differences_of_the_kernels_matmul() {
        let mut rng = Rng(8);
        // 70 rows: one full tile and a partial one.
        let (n_tokens, n_in, n_out) = (3, 32, 70);
        let values = rng.vec(n_out * n_in, 0.5);
        let weights = Quantized::new(GgmlType::F32, &values);
        let w = Weights::new(GgmlType::F32, n_in, n_out, weights.bytes()).unwrap();
        let x = rng.vec(n_tokens * n_in, 1.0);
        let g = rng.vec(n_tokens * n_out, 1.0);
        let mut dx = vec![0.0; x.len()];
        frozen_linear_backward(&w, &g, &mut dx).unwrap();
        let mut scratch = MatmulScratch::default();
        assert_gradient("linear dx", &x, &dx, 1e-2, 1e-3, |x| {
            let mut y = vec![0.0; n_tokens * n_out];
            matmul(Isa::Scalar, &w, x, &mut y, &mut scratch).unwrap();
            project(&y, &g)
        });
    }

    #[test]
    fn quantized_weights_are_used_as_they_dequantize_and_the_gradient_adds() {
        let mut rng = Rng(9);
        let (n_tokens, n_in, n_out) = (2, 256, 5);
        let values = rng.vec(n_out * n_in, 0.5);
        for dtype in [
            GgmlType::Q8_0,
            GgmlType::Q4_K,
            GgmlType::Q6_K,
            GgmlType::Q4_1,
            GgmlType::F16,
        ] {
            let weights = Quantized::new(dtype, &values);
            let w = Weights::new(dtype, n_in, n_out, weights.bytes()).unwrap();
            let mut dequantized = vec![0.0; values.len()];
            hearth_kernel::quant::dequantize(dtype, weights.bytes(), &mut dequantized).unwrap();
            let g = rng.vec(n_tokens * n_out, 1.0);
            let before = rng.vec(n_tokens * n_in, 1.0);
            let mut dx = before.clone();
            frozen_linear_backward(&w, &g, &mut dx).unwrap();
            for t in 0..n_tokens {
                for i in 0..n_in {
                    let expected: f32 = before[t * n_in + i]
                        + (0..n_out)
                            .map(|r| g[t * n_out + r] * dequantized[r * n_in + i])
                            .sum::<f32>();
                    let got = dx[t * n_in + i];
                    assert!(
                        (got - expected).abs() < 1e-4,
                        "{dtype:?} [{t}][{i}]: {got} vs {expected}"
                    );
                }
            }
        }
    }
}
