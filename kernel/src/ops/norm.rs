//! RMSNorm: `y = x / sqrt(mean(x²) + eps) * weight`, per row.

use super::{OpError, expect_len, for_each_row_group};

/// Normalises each `weight.len()`-element row of `x` in place and scales it by `weight`, rows spread across threads.
/// The sum of squares is accumulated in f64, as the reference does, so long rows lose nothing.
pub fn rms_norm(x: &mut [f32], weight: &[f32], eps: f32) -> Result<(), OpError> {
    expect_rows(x, weight)?;
    for_each_row_group(x, weight.len(), |_, rows| normalise(rows, weight, eps));
    Ok(())
}

/// Like [`rms_norm`] but writes into `out` (same shape as `x`).
pub fn rms_norm_into(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) -> Result<(), OpError> {
    expect_len("rms_norm output", out.len(), x.len())?;
    expect_rows(x, weight)?;
    for_each_row_group(out, weight.len(), |first, rows| {
        rows.copy_from_slice(&x[first * weight.len()..][..rows.len()]);
        normalise(rows, weight, eps);
    });
    Ok(())
}

/// Checks that `x` is whole rows of `weight.len()`.
fn expect_rows(x: &[f32], weight: &[f32]) -> Result<(), OpError> {
    let n = weight.len();
    if n == 0 || !x.len().is_multiple_of(n) {
        return Err(OpError::Shape {
            what: "rms_norm input",
            expected: n,
            got: x.len(),
        });
    }
    Ok(())
}

/// [`rms_norm`] of whole rows, on this thread.
fn normalise(x: &mut [f32], weight: &[f32], eps: f32) {
    let n = weight.len();
    for row in x.chunks_exact_mut(n) {
        let sum: f64 = row.iter().map(|&v| f64::from(v * v)).sum();
        let scale = 1.0 / libm::sqrtf((sum / n as f64) as f32 + eps);
        for (v, w) in row.iter_mut().zip(weight) {
            *v = (*v * scale) * w;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_rms_after_norm_and_weight_applied() {
        let mut x = [3.0f32, -4.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0];
        rms_norm(&mut x, &[1.0, 1.0, 2.0, 0.5], 0.0).unwrap();
        // Row 1: mean square = 25/4, scale = 0.4.
        assert_eq!(&x[..4], &[1.2, -1.6, 0.0, 0.0]);
        assert_eq!(&x[4..], &[1.0, 1.0, 2.0, 0.5]);
        assert!(rms_norm(&mut [1.0; 5], &[1.0; 4], 1e-6).is_err());
    }
}
