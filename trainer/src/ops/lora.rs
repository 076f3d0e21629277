//! The LoRA pair's training side: PEFT's initialisation and the backward pass of [`LoraPair::forward`] (the pair,
//! its forward and its file format live in the runtime, which applies adapters at inference).

use hearth_runtime::lora::LoraPair;
use rayon::prelude::*;

use super::{OpError, expect_len};
use crate::rng::Rng;

/// A fresh pair as PEFT initialises it: `A` uniform in `±1/sqrt(n_in)` (Kaiming-uniform with `a = √5`), `B` zero, so
/// training starts from exactly the base model.
pub fn fresh_pair(n_in: usize, n_out: usize, rank: usize, rng: &mut Rng) -> LoraPair {
    LoraPair {
        a: rng.vec(rank * n_in, 1.0 / (n_in as f32).sqrt()),
        ..LoraPair::zeros(n_in, n_out, rank)
    }
}

/// Adds the gradients of `pair`'s `A` and `B` to `grad` and the input's to `dx`, from `d_out` and the `x·Aᵀ` that
/// [`LoraPair::forward`] returned: `dB += scale · d_outᵀ·(x·Aᵀ)`, `d(x·Aᵀ) = scale · d_out·B`,
/// `dA += d(x·Aᵀ)ᵀ·x`, `dx += d(x·Aᵀ)·A`.
pub fn lora_backward(
    pair: &LoraPair,
    scale: f32,
    x: &[f32],
    ax: &[f32],
    d_out: &[f32],
    grad: &mut LoraPair,
    dx: &mut [f32],
) -> Result<(), OpError> {
    let n_tokens = pair.tokens(x)?;
    let (rank, n_in, n_out) = (pair.rank, pair.n_in, pair.n_out);
    expect_len("LoRA saved product", ax.len(), n_tokens * rank)?;
    expect_len("LoRA output gradient", d_out.len(), n_tokens * n_out)?;
    expect_len("LoRA input gradient", dx.len(), x.len())?;
    expect_len("LoRA A gradient", grad.a.len(), pair.a.len())?;
    expect_len("LoRA B gradient", grad.b.len(), pair.b.len())?;
    let mut d_ax = vec![0.0f32; n_tokens * rank];
    d_ax.par_chunks_mut(rank.max(1))
        .zip(d_out.par_chunks(n_out))
        .for_each(|(d_ax, d_out)| {
            for (o, &g) in d_out.iter().enumerate() {
                for (d, b) in d_ax.iter_mut().zip(&pair.b[o * rank..][..rank]) {
                    *d += scale * g * b;
                }
            }
        });
    grad.b.par_chunks_mut(rank.max(1)).enumerate().for_each(|(o, db)| {
        for (ax, d_out) in ax.chunks_exact(rank).zip(d_out.chunks_exact(n_out)) {
            let g = scale * d_out[o];
            for (db, h) in db.iter_mut().zip(ax) {
                *db += g * h;
            }
        }
    });
    grad.a.par_chunks_mut(n_in).enumerate().for_each(|(k, da)| {
        for (d_ax, x) in d_ax.chunks_exact(rank).zip(x.chunks_exact(n_in)) {
            for (da, x) in da.iter_mut().zip(x) {
                *da += d_ax[k] * x;
            }
        }
    });
    dx.par_chunks_mut(n_in)
        .zip(d_ax.par_chunks(rank.max(1)))
        .for_each(|(dx, d_ax)| {
            for (&g, a) in d_ax.iter().zip(pair.a.chunks_exact(n_in)) {
                for (dx, a) in dx.iter_mut().zip(a) {
                    *dx += g * a;
                }
            }
        });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::check::{assert_gradient, project};

    #[test]
    fn matches_finite_differences_for_a_b_and_the_input() {
        let mut rng = Rng(10);
        let (n_tokens, n_in, n_out, rank, scale) = (3, 12, 10, 4, 2.0);
        // B random too: a fresh pair's zero B would make A's gradient zero.
        let lora = LoraPair {
            b: rng.vec(n_out * rank, 0.5),
            ..fresh_pair(n_in, n_out, rank, &mut rng)
        };
        let x = rng.vec(n_tokens * n_in, 1.0);
        let g = rng.vec(n_tokens * n_out, 1.0);
        let mut out = vec![0.0; n_tokens * n_out];
        let ax = lora.forward(scale, &x, &mut out).unwrap();
        let mut grad = LoraPair::zeros(n_in, n_out, rank);
        let mut dx = vec![0.0; x.len()];
        lora_backward(&lora, scale, &x, &ax, &g, &mut grad, &mut dx).unwrap();
        let loss = |lora: &LoraPair, x: &[f32]| {
            let mut out = vec![0.0; n_tokens * n_out];
            lora.forward(scale, x, &mut out).unwrap();
            project(&out, &g)
        };
        assert_gradient("lora dx", &x, &dx, 1e-2, 1e-3, |x| loss(&lora, x));
        assert_gradient("lora dA", &lora.a, &grad.a, 1e-2, 1e-3, |a| {
            loss(
                &LoraPair {
                    a: a.to_vec(),
                    ..lora.clone()
                },
                &x,
            )
        });
        assert_gradient("lora dB", &lora.b, &grad.b, 1e-2, 1e-3, |b| {
            loss(
                &LoraPair {
                    b: b.to_vec(),
                    ..lora.clone()
                },
                &x,
            )
        });
    }

    #[test]
    fn a_fresh_adapter_leaves_the_output_unchanged() {
        let mut rng = Rng(11);
        let lora = fresh_pair(8, 6, 2, &mut rng);
        assert!(lora.a.iter().all(|a| a.abs() <= 1.0 / 8f32.sqrt()) && lora.a.iter().any(|&a| a != 0.0));
        let x = rng.vec(16, 1.0);
        let mut out = vec![0.5; 12];
        lora.forward(1.0, &x, &mut out).unwrap();
        assert!(out.iter().all(|&y| y == 0.5));
    }
}
