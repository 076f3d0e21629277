//! Element-wise activations and their gated forms (with ggml's arithmetic, so outputs match llama.cpp's), softmax, and element-wise arithmetic.

use half::f16;

use super::{ELEMENTWISE_CHUNK, OpError, even_chunks, expect_len, for_each_chunk, for_each_row_group};
use crate::simd::Isa;

/// GELU, tanh approximation: `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + libm::tanhf(SQRT_2_OVER_PI * x * (1.0 + 0.044_715 * x * x)))
}

/// `apply(x, y)` over matching pieces of `x` and `y` (prefill's gate and up, `[n_tokens, n_ff]`; a residual stream and
/// a branch), spread across threads; `what` names `y` in the error when the two differ in length.
pub fn elementwise(
    what: &'static str,
    x: &mut [f32],
    y: &[f32],
    apply: impl Fn(&mut [f32], &[f32]) + Sync + Send,
) -> Result<(), OpError> {
    expect_len(what, y.len(), x.len())?;
    let chunk = even_chunks(x.len(), ELEMENTWISE_CHUNK);
    for_each_chunk(x, chunk, |i, x| apply(x, &y[i * chunk..][..x.len()]));
    Ok(())
}

/// SwiGLU: `gate[i] = silu(gate[i]) · up[i]` with `silu(x) = x / (1 + exp(-x))` and libm's `expf`, vectorised
/// where `isa` has a kernel (the same bits). (ggml's vectorised exponential is not used here: with it, greedy
/// agreement with llama.cpp measured worse than with libm's.)
pub fn swiglu(isa: Isa, gate: &mut [f32], up: &[f32]) -> Result<(), OpError> {
    elementwise("SwiGLU input", gate, up, |gate, up| isa.silu_mul(gate, up))
}

/// GeGLU: `gate[i] = gelu(gate[i]) · up[i]` as ggml computes it: GELU of the f16-rounded input, rounded to f16 (its
/// 64K-entry table), 0 below -10 and the identity above 10.
pub fn geglu(gate: &mut [f32], up: &[f32]) -> Result<(), OpError> {
    let round = |x: f32| f16::from_f32(x).to_f32();
    elementwise("GeGLU input", gate, up, |gate, up| {
        for (g, u) in gate.iter_mut().zip(up) {
            let gelu = if *g <= -10.0 {
                0.0
            } else if *g >= 10.0 {
                *g
            } else {
                round(gelu_tanh(round(*g)))
            };
            *g = gelu * u;
        }
    })
}

/// `x[i] += y[i]` (residual connections).
pub fn add_assign(x: &mut [f32], y: &[f32]) -> Result<(), OpError> {
    elementwise("addend", x, y, |x, y| x.iter_mut().zip(y).for_each(|(a, b)| *a += b))
}

/// `x[i] *= y[i]`.
pub fn mul_assign(x: &mut [f32], y: &[f32]) -> Result<(), OpError> {
    elementwise("factor", x, y, |x, y| x.iter_mut().zip(y).for_each(|(a, b)| *a *= b))
}

/// Adds `row` to every `row.len()`-element row of `x` (a projection's bias).
pub fn add_to_rows(x: &mut [f32], row: &[f32]) -> Result<(), OpError> {
    if row.is_empty() || !x.len().is_multiple_of(row.len()) {
        return Err(OpError::Shape {
            what: "rows to add to",
            expected: row.len(),
            got: x.len(),
        });
    }
    for_each_row_group(x, row.len(), |_, rows| {
        for r in rows.chunks_exact_mut(row.len()) {
            r.iter_mut().zip(row).for_each(|(a, b)| *a += b);
        }
    });
    Ok(())
}

/// `x[i] *= s`.
pub fn scale(x: &mut [f32], s: f32) {
    let chunk = even_chunks(x.len(), ELEMENTWISE_CHUNK);
    for_each_chunk(x, chunk, |_, x| x.iter_mut().for_each(|a| *a *= s));
}

/// Softmax in place; the sum of exponentials is accumulated in f64. An empty slice is left alone.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return;
    }
    let mut sum = 0f64;
    for v in x.iter_mut() {
        *v = libm::expf(*v - max);
        sum += f64::from(*v);
    }
    let inv = (1.0 / sum) as f32;
    x.iter_mut().for_each(|v| *v *= inv);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let (mut gate, up) = ([0.0f32, 1.0, -2.0, 3.0], [1.0f32, 1.0, 2.0, 0.5]);
        swiglu(Isa::Scalar, &mut gate, &up).unwrap();
        let silu = |x: f32| x / (1.0 + (-x).exp());
        for (g, (x, u)) in gate.iter().zip([(0.0f32, 1.0f32), (1.0, 1.0), (-2.0, 2.0), (3.0, 0.5)]) {
            assert!((g - silu(x) * u).abs() < 1e-6);
        }
        let mut gate = [-11.0f32, 11.0, 1.0];
        geglu(&mut gate, &[1.0, 2.0, 1.0]).unwrap();
        assert_eq!(gate[..2], [0.0, 22.0]);
        assert!((gate[2] - 0.841_192).abs() < 1e-3);
        assert_eq!(gelu_tanh(0.0), 0.0);
        assert!((gelu_tanh(1.0) - 0.841_192).abs() < 1e-5);
        assert!((gelu_tanh(-3.0) + 0.003_637_7).abs() < 1e-5);
        let mut p = [1.0f32, 2.0, 3.0, f32::NEG_INFINITY];
        softmax(&mut p);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((p[2] - 0.665_240_9).abs() < 1e-6);
        assert_eq!(p[3], 0.0);
        let mut x = [1.0f32, 2.0, 3.0];
        add_assign(&mut x, &[1.0, 1.0, 1.0]).unwrap();
        mul_assign(&mut x, &[2.0, 0.5, -1.0]).unwrap();
        scale(&mut x, 2.0);
        assert_eq!(x, [8.0, 3.0, -8.0]);
        assert!(mul_assign(&mut x, &[1.0]).is_err());
        let mut rows = [1.0f32, 2.0, 3.0, 4.0];
        add_to_rows(&mut rows, &[10.0, 20.0]).unwrap();
        assert_eq!(rows, [11.0, 22.0, 13.0, 24.0]);
        assert!(add_to_rows(&mut rows, &[1.0; 3]).is_err());
    }
}
