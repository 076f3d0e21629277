//! Finite-difference gradient checks for the backward passes.

pub use crate::rng::Rng;

/// Values quantized to a kernel type, in storage aligned for any block type.
pub struct Quantized {
    storage: Vec<u64>,
    len: usize,
}

impl Quantized {
    /// `values` quantized to `dtype`.
    pub fn new(dtype: hearth_kernel::GgmlType, values: &[f32]) -> Self {
        let len = dtype.bytes_for(values.len() as u64).expect("whole blocks") as usize;
        let mut q = Quantized {
            storage: vec![0u64; len.div_ceil(8)],
            len,
        };
        let out = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut q.storage)[..len];
        hearth_kernel::quant::quantize(dtype, values, out).unwrap();
        q
    }

    /// The encoded bytes.
    pub fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<u64, u8>(&self.storage)[..self.len]
    }
}

/// `Σ y·g` in f64: a scalar loss whose gradient with respect to `y` is `g`.
pub fn project(y: &[f32], g: &[f32]) -> f64 {
    y.iter().zip(g).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum()
}

/// Asserts that `analytic` is the gradient of `loss` at `x`: every element's central difference (step `eps`) agrees
/// within `tol` of the largest analytic magnitude (relative errors of tiny elements say nothing about correctness).
pub fn assert_gradient(name: &str, x: &[f32], analytic: &[f32], eps: f32, tol: f64, loss: impl FnMut(&[f32]) -> f64) {
    assert_gradient_every(1, name, x, analytic, eps, tol, loss);
}

/// [`assert_gradient`] at every `step`-th element only (for inputs whose every probe costs a whole block).
pub fn assert_gradient_every(
    step: usize,
    name: &str,
    x: &[f32],
    analytic: &[f32],
    eps: f32,
    tol: f64,
    mut loss: impl FnMut(&[f32]) -> f64,
) {
    assert_eq!(x.len(), analytic.len(), "{name}: gradient shape");
    let largest = analytic.iter().fold(0f64, |m, &g| m.max(f64::from(g).abs()));
    assert!(largest > 0.0, "{name}: the gradient is all zero, which checks nothing");
    let mut probe = x.to_vec();
    for i in (0..x.len()).step_by(step) {
        probe[i] = x[i] + eps;
        let up = loss(&probe);
        probe[i] = x[i] - eps;
        let down = loss(&probe);
        probe[i] = x[i];
        let numeric = (up - down) / (2.0 * f64::from(eps));
        let error = (numeric - f64::from(analytic[i])).abs() / largest;
        assert!(
            error <= tol,
            "{name}[{i}]: analytic {} vs finite difference {numeric} (error {error:.2e} of the largest {largest:.3e})",
            analytic[i]
        );
    }
}
