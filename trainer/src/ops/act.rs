//! Backward passes of the gated activations: SwiGLU (`silu(gate) · up`) and GeGLU (`gelu(gate) · up`).
//!
//! The kernel's GeGLU forward rounds through f16 as ggml does: a step function whose own derivative is zero almost
//! everywhere. Training runs [`geglu_smooth`], the tanh-GELU that rounding approximates (they differ by f16 rounding,
//! a relative 2⁻¹¹), so the loss the optimizer follows is the one its gradient describes.

use hearth_kernel::ops::act::{elementwise, gelu_tanh};
use hearth_kernel::ops::{ELEMENTWISE_CHUNK, even_chunks, for_each_task};

use super::{OpError, expect_len};

/// Writes `d_gate` and `d_up` for `out = f(gate) · up`, given `f` and its derivative `df`.
fn gated_backward(
    gate: &[f32],
    up: &[f32],
    d_out: &[f32],
    d_gate: &mut [f32],
    d_up: &mut [f32],
    f: impl Fn(f32) -> (f32, f32) + Sync,
) -> Result<(), OpError> {
    for (what, len) in [
        ("gated up", up.len()),
        ("gated output gradient", d_out.len()),
        ("gate gradient", d_gate.len()),
        ("up gradient", d_up.len()),
    ] {
        expect_len(what, len, gate.len())?;
    }
    let chunk = even_chunks(gate.len(), ELEMENTWISE_CHUNK);
    let mut tasks: Vec<_> = d_gate
        .chunks_mut(chunk)
        .zip(d_up.chunks_mut(chunk))
        .enumerate()
        .collect();
    for_each_task(&mut tasks, |(i, (d_gate, d_up))| {
        let at = *i * chunk;
        let (gate, up, d_out) = (&gate[at..], &up[at..], &d_out[at..]);
        for ((((&g, &u), &dy), dg), du) in gate
            .iter()
            .zip(up)
            .zip(d_out)
            .zip(d_gate.iter_mut())
            .zip(d_up.iter_mut())
        {
            let (value, slope) = f(g);
            *du = dy * value;
            *dg = dy * u * slope;
        }
    });
    Ok(())
}

/// SwiGLU backward: `silu(x) = x·σ(x)`, `silu'(x) = σ(x)·(1 + x·(1 − σ(x)))`.
pub fn swiglu_backward(
    gate: &[f32],
    up: &[f32],
    d_out: &[f32],
    d_gate: &mut [f32],
    d_up: &mut [f32],
) -> Result<(), OpError> {
    gated_backward(gate, up, d_out, d_gate, d_up, |x| {
        let sigmoid = 1.0 / (1.0 + (-x).exp());
        (x * sigmoid, sigmoid * (1.0 + x * (1.0 - sigmoid)))
    })
}

/// GELU (tanh form) and its derivative, with the kernel's cut-offs: 0 below -10, the identity above 10.
fn gelu_with_slope(x: f32) -> (f32, f32) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const A: f32 = 0.044_715;
    if x <= -10.0 {
        return (0.0, 0.0);
    }
    if x >= 10.0 {
        return (x, 1.0);
    }
    let t = (SQRT_2_OVER_PI * x * (1.0 + A * x * x)).tanh();
    let dt = SQRT_2_OVER_PI * (1.0 + 3.0 * A * x * x);
    (gelu_tanh(x), 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dt)
}

/// GeGLU forward in float: `gate[i] = gelu(gate[i]) · up[i]`, with the kernel's cut-offs but no f16 rounding.
pub fn geglu_smooth(gate: &mut [f32], up: &[f32]) -> Result<(), OpError> {
    elementwise("GeGLU input", gate, up, |gate, up| {
        for (g, &u) in gate.iter_mut().zip(up) {
            *g = gelu_with_slope(*g).0 * u;
        }
    })
}

/// GeGLU backward (of [`geglu_smooth`]).
pub fn geglu_backward(
    gate: &[f32],
    up: &[f32],
    d_out: &[f32],
    d_gate: &mut [f32],
    d_up: &mut [f32],
) -> Result<(), OpError> {
    gated_backward(gate, up, d_out, d_gate, d_up, gelu_with_slope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::check::{Rng, assert_gradient, project};
    use hearth_kernel::ops::act::swiglu;
    use hearth_kernel::simd::Isa;

    type Backward = fn(&[f32], &[f32], &[f32], &mut [f32], &mut [f32]) -> Result<(), OpError>;

    fn check(name: &str, forward: impl Fn(&[f32], &[f32]) -> Vec<f32>, backward: Backward) {
        let mut rng = Rng(3);
        let gate = rng.vec(48, 4.0);
        let up = rng.vec(48, 2.0);
        let g = rng.vec(48, 1.0);
        let (mut d_gate, mut d_up) = (vec![0.0; 48], vec![0.0; 48]);
        backward(&gate, &up, &g, &mut d_gate, &mut d_up).unwrap();
        assert_gradient(&format!("{name} d_gate"), &gate, &d_gate, 1e-2, 2e-3, |gate| {
            project(&forward(gate, &up), &g)
        });
        assert_gradient(&format!("{name} d_up"), &up, &d_up, 1e-2, 2e-3, |up| {
            project(&forward(&gate, up), &g)
        });
    }

    #[test]
    fn swiglu_matches_finite_differences() {
        let forward = |gate: &[f32], up: &[f32]| {
            let mut out = gate.to_vec();
            swiglu(Isa::selected(), &mut out, up).unwrap();
            out
        };
        check("swiglu", forward, swiglu_backward);
    }

    #[test]
    fn geglu_matches_finite_differences_of_the_smooth_gelu() {
        let forward = |gate: &[f32], up: &[f32]| gate.iter().zip(up).map(|(&g, &u)| gelu_with_slope(g).0 * u).collect();
        check("geglu", forward, geglu_backward);
        // The value is the kernel's GELU (before its f16 rounding).
        for x in [-3.0f32, -0.5, 0.0, 0.7, 2.5] {
            assert_eq!(gelu_with_slope(x).0, gelu_tanh(x));
        }
    }
}
