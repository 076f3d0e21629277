//! The LoRA pair's training side: PEFT's initialisation and the backward pass of [`LoraPair::forward`] (the pair,
//! its forward and its file format live in the runtime, which applies adapters at inference).

use hearth_kernel::ops::for_each_chunk;
use hearth_kernel::simd::Isa;
use hearth_runtime::lora::{LoraPair, TOKEN_BLOCK, transpose_scaled};

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

/// Rank rows one task takes through a rank-parallel product (the height of `mad_rows`' register blocks).
const RANK_BLOCK: usize = 4;

/// Adds the gradients of `pair`'s `A` and `B` to `grad` and the input's to `dx`, from `d_out` and the `x·Aᵀ` that
/// [`LoraPair::forward`] returned: `dB += scale · d_outᵀ·(x·Aᵀ)`, `d(x·Aᵀ) = scale · d_out·B`,
/// `dA += d(x·Aᵀ)ᵀ·x`, `dx += d(x·Aᵀ)·A`. `d(x·Aᵀ)` is dot products of each token's `d_out` with the rows of
/// `scale·Bᵀ`; the others are kernel `mad_rows` (rows of one matrix summed with weights from another), `B`'s gradient
/// computed transposed, `[rank, n_out]`, so that its rows are such sums, as `A`'s (`[rank, n_in]`) already are.
#[allow(clippy::too_many_arguments)] // The pair, its scale, its input and saved product, the output's gradient and the two gradients it adds to.
pub fn lora_backward(
    isa: Isa,
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
    if rank == 0 || n_tokens == 0 {
        return Ok(());
    }
    // d(x·Aᵀ) by dot products with the rows of `scale·Bᵀ`, `n_out` long (`B`'s own rows are only `rank` long).
    let b_t = transpose_scaled(&pair.b, rank, scale);
    let mut d_ax = vec![0.0f32; n_tokens * rank];
    for_each_chunk(&mut d_ax, TOKEN_BLOCK * rank, |i, d_ax| {
        let d_out = &d_out[i * TOKEN_BLOCK * n_out..][..d_ax.len() / rank * n_out];
        isa.dot_rows(n_out, &b_t, d_out, d_ax)
    });

    let mut db_t = vec![0.0f32; rank * n_out];
    let ax_t = transpose_scaled(ax, rank, scale);
    for_each_chunk(&mut db_t, RANK_BLOCK * n_out, |i, db_t| {
        let ax_t = &ax_t[i * RANK_BLOCK * n_tokens..][..db_t.len() / n_out * n_tokens];
        isa.mad_rows(n_out, db_t, d_out, ax_t)
    });
    for (r, db_t) in db_t.chunks_exact(n_out).enumerate() {
        for (db, &g) in grad.b.chunks_exact_mut(rank).zip(db_t) {
            db[r] += g;
        }
    }

    let d_ax_t = transpose_scaled(&d_ax, rank, 1.0);
    for_each_chunk(&mut grad.a, RANK_BLOCK * n_in, |i, da| {
        let d_ax_t = &d_ax_t[i * RANK_BLOCK * n_tokens..][..da.len() / n_in * n_tokens];
        isa.mad_rows(n_in, da, x, d_ax_t)
    });
    for_each_chunk(dx, TOKEN_BLOCK * n_in, |i, dx| {
        let d_ax = &d_ax[i * TOKEN_BLOCK * rank..][..dx.len() / n_in * rank];
        isa.mad_rows(n_in, dx, &pair.a, d_ax)
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::check::{assert_gradient_every, project};

    /// Checks every `step`-th element of the three gradients of a random pair of these shapes.
    fn check(seed: u64, (n_tokens, n_in, n_out, rank): (usize, usize, usize, usize), step: usize) {
        let mut rng = Rng(seed);
        let scale = 2.0;
        // B random too: a fresh pair's zero B would make A's gradient zero.
        let lora = LoraPair {
            b: rng.vec(n_out * rank, 0.5),
            ..fresh_pair(n_in, n_out, rank, &mut rng)
        };
        let x = rng.vec(n_tokens * n_in, 1.0);
        let g = rng.vec(n_tokens * n_out, 1.0);
        let mut out = vec![0.0; n_tokens * n_out];
        let ax = lora.forward(Isa::selected(), scale, &x, &mut out).unwrap();
        let mut grad = LoraPair::zeros(n_in, n_out, rank);
        let mut dx = vec![0.0; x.len()];
        lora_backward(Isa::selected(), &lora, scale, &x, &ax, &g, &mut grad, &mut dx).unwrap();
        let loss = |lora: &LoraPair, x: &[f32]| {
            let mut out = vec![0.0; n_tokens * n_out];
            lora.forward(Isa::selected(), scale, x, &mut out).unwrap();
            project(&out, &g)
        };
        assert_gradient_every(step, "lora dx", &x, &dx, 1e-2, 1e-3, |x| loss(&lora, x));
        assert_gradient_every(step, "lora dA", &lora.a, &grad.a, 1e-2, 1e-3, |a| {
            loss(
                &LoraPair {
                    a: a.to_vec(),
                    ..lora.clone()
                },
                &x,
            )
        });
        assert_gradient_every(step, "lora dB", &lora.b, &grad.b, 1e-2, 1e-3, |b| {
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
    fn matches_finite_differences_for_a_b_and_the_input() {
        check(10, (3, 12, 10, 4), 1);
        // Vector-wide rows, a block of tokens and part of another, two blocks of rank rows.
        check(15, (67, 32, 48, 8), 5);
    }

    #[test]
    fn a_fresh_adapter_leaves_the_output_unchanged() {
        let mut rng = Rng(11);
        let lora = fresh_pair(8, 6, 2, &mut rng);
        assert!(lora.a.iter().all(|a| a.abs() <= 1.0 / 8f32.sqrt()) && lora.a.iter().any(|&a| a != 0.0));
        let x = rng.vec(16, 1.0);
        let mut out = vec![0.5; 12];
        lora.forward(Isa::selected(), 1.0, &x, &mut out).unwrap();
        assert!(out.iter().all(|&y| y == 0.5));
    }
}
