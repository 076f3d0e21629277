//! RMSNorm backward. Forward (the kernel's): `y = x · r · w` per row, with `r = 1/sqrt(mean(x²) + eps)`.

use hearth_kernel::ops::for_each_row_group;

use super::{OpError, expect_len};

/// Writes `dx` for `y = rms_norm(x) · weight` (rows of `weight.len()`), the weight being frozen:
/// `dx_i = r·w_i·dy_i − r³·x_i·Σ_j(w_j·dy_j·x_j)/n`. Rows are spread across threads.
pub fn rms_norm_backward(x: &[f32], weight: &[f32], eps: f32, d_out: &[f32], dx: &mut [f32]) -> Result<(), OpError> {
    let n = weight.len();
    if n == 0 || !x.len().is_multiple_of(n) {
        return Err(OpError::Shape {
            what: "rms_norm input",
            expected: n,
            got: x.len(),
        });
    }
    expect_len("rms_norm output gradient", d_out.len(), x.len())?;
    expect_len("rms_norm input gradient", dx.len(), x.len())?;
    for_each_row_group(dx, n, |first, dx| {
        let (x, d_out) = (&x[first * n..][..dx.len()], &d_out[first * n..][..dx.len()]);
        for ((x, dy), dx) in x.chunks_exact(n).zip(d_out.chunks_exact(n)).zip(dx.chunks_exact_mut(n)) {
            // The mean square as the forward computes it (summed in f64).
            let sum: f64 = x.iter().map(|&v| f64::from(v * v)).sum();
            let r = 1.0 / ((sum / n as f64) as f32 + eps).sqrt();
            let dot: f32 = x.iter().zip(dy).zip(weight).map(|((x, dy), w)| w * dy * x).sum();
            let k = r * r * r * dot / n as f32;
            for (((dx, x), dy), w) in dx.iter_mut().zip(x).zip(dy).zip(weight) {
                *dx = r * w * dy - k * x;
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::check::{Rng, assert_gradient, project};
    use hearth_kernel::ops::norm::rms_norm;

    #[test]
    fn matches_finite_differences() {
        let mut rng = Rng(1);
        let (rows, n, eps) = (3, 16, 1e-6);
        let x = rng.vec(rows * n, 1.0);
        let weight = rng.vec(n, 1.5);
        let g = rng.vec(rows * n, 1.0);
        let mut dx = vec![0.0; x.len()];
        rms_norm_backward(&x, &weight, eps, &g, &mut dx).unwrap();
        assert_gradient("rms_norm dx", &x, &dx, 1e-2, 2e-3, |x| {
            let mut y = x.to_vec();
            rms_norm(&mut y, &weight, eps).unwrap();
            project(&y, &g)
        });
    }
}
