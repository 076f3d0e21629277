//! Next-token cross-entropy through the frozen output head, computed a few tokens at a time so that the full
//! `n_tokens × vocab` logits never exist: for each chunk, logits (the kernel's matmul), their log-sum-exp and loss,
//! their gradient `softmax − onehot` in place, and its product with the head into the hidden states' gradient.

use hearth_kernel::ops::matmul::MatmulScratch;
use hearth_kernel::ops::{act, for_each_task};
use hearth_kernel::simd::Isa;

use super::linear::{Frozen, frozen_linear_backward};
use super::{OpError, expect_len};

/// Tokens whose logits exist at once: `CHUNK × vocab` floats (39 MB with Qwen2.5's 151,936-token vocabulary). The
/// gradient pass dequantizes the whole head once per chunk, so fewer, larger chunks are faster (16 took a fifth of
/// a Qwen2.5-Coder-1.5B training step dequantizing its Q6_K head).
pub const CHUNK: usize = 64;

/// A loss and how many tokens it is the mean over.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Loss {
    /// Mean negative log-likelihood of the targets, in nats.
    pub mean: f64,
    /// Tokens that had a target.
    pub tokens: usize,
}

/// The mean cross-entropy of predicting `targets` from hidden states `h: [n_tokens, n_embd]` through the frozen head
/// `head: [vocab, n_embd]` (logits `h · headᵀ`); writes `dh`, the gradient of that mean, when given (evaluation
/// needs only the loss). Tokens whose target is `None` (prompt tokens, padding) count for nothing and get a zero
/// gradient.
pub fn cross_entropy(
    isa: Isa,
    head: Frozen<'_, '_>,
    h: &[f32],
    targets: &[Option<u32>],
    mut dh: Option<&mut [f32]>,
    scratch: &mut MatmulScratch,
) -> Result<Loss, OpError> {
    let (n_embd, vocab) = (head.weights.n_in, head.weights.n_out);
    expect_len("hidden states", h.len(), targets.len() * n_embd)?;
    if let Some(dh) = dh.as_deref_mut() {
        expect_len("hidden-state gradient", dh.len(), h.len())?;
        dh.fill(0.0);
    }
    if let Some(&t) = targets.iter().flatten().find(|&&t| t as usize >= vocab) {
        return Err(OpError::Shape {
            what: "target token (the vocabulary size)",
            expected: vocab,
            got: t as usize,
        });
    }
    let counted = targets.iter().flatten().count();
    // d(mean)/d(logit) = (softmax − onehot) / counted.
    let weight = 1.0 / counted.max(1) as f32;
    let gradient = dh.is_some();
    let mut logits = vec![0.0f32; CHUNK.min(targets.len()) * vocab];
    let mut total = 0.0f64;
    for (chunk, (h, targets)) in h.chunks(CHUNK * n_embd).zip(targets.chunks(CHUNK)).enumerate() {
        let logits = &mut logits[..targets.len() * vocab];
        head.forward(isa, h, logits, scratch)?;
        // Each token's (negative log-likelihood, logits, target), its logits turned into their gradient; the losses
        // summed in token order.
        let mut tokens: Vec<(f64, &mut [f32], Option<u32>)> = logits
            .chunks_exact_mut(vocab)
            .zip(targets)
            .map(|(row, &target)| (0.0, row, target))
            .collect();
        for_each_task(&mut tokens, |(loss, row, target)| {
            let Some(target) = target.map(|t| t as usize) else {
                row.fill(0.0);
                return;
            };
            let target_logit = row[target];
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l));
            // The row becomes `exp(logit − max)`.
            let sum = isa.exp_sum(row, max);
            if gradient {
                act::scale(row, (f64::from(weight) / sum) as f32);
                row[target] -= weight;
            }
            *loss = f64::from(max) + sum.ln() - f64::from(target_logit);
        });
        total += tokens.iter().map(|(loss, ..)| loss).sum::<f64>();
        if let Some(dh) = dh.as_deref_mut() {
            frozen_linear_backward(isa, head, logits, &mut dh[chunk * CHUNK * n_embd..][..h.len()], scratch)?;
        }
    }
    Ok(Loss {
        mean: if counted == 0 { 0.0 } else { total / counted as f64 },
        tokens: counted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::check::{Quantized, Rng, assert_gradient};
    use hearth_kernel::GgmlType;
    use hearth_kernel::ops::matmul::{Weights, matmul};

    #[test]
    fn matches_finite_differences_across_chunks_and_skips_untargeted_tokens() {
        let mut rng = Rng(12);
        // A full chunk and a partial one.
        let (n_tokens, n_embd, vocab) = (CHUNK + 3, 8, 40);
        let values = rng.vec(vocab * n_embd, 1.0);
        let storage = Quantized::new(GgmlType::F32, &values);
        let head = Weights::new(GgmlType::F32, n_embd, vocab, storage.bytes()).unwrap();
        let h = rng.vec(n_tokens * n_embd, 1.0);
        let targets: Vec<Option<u32>> = (0..n_tokens as u32)
            .map(|t| (t % 5 != 0).then_some((t * 7) % vocab as u32))
            .collect();
        let mut dh = vec![0.0; h.len()];
        let mut scratch = MatmulScratch::default();
        let frozen = Frozen::rows(&head);
        let loss = cross_entropy(Isa::Scalar, frozen, &h, &targets, Some(&mut dh), &mut scratch).unwrap();
        let counted = n_tokens - n_tokens.div_ceil(5);
        assert_eq!(loss.tokens, counted);
        // The mean over tokens, recomputed from all logits at once.
        let mut logits = vec![0.0; n_tokens * vocab];
        matmul(Isa::Scalar, &head, &h, &mut logits, &mut scratch).unwrap();
        let expected: f64 = logits
            .chunks(vocab)
            .zip(&targets)
            .filter_map(|(row, t)| t.map(|t| (row, t as usize)))
            .map(|(row, t)| row.iter().map(|&l| f64::from(l).exp()).sum::<f64>().ln() - f64::from(row[t]))
            .sum::<f64>()
            / counted as f64;
        assert!((loss.mean - expected).abs() < 1e-5, "{} vs {expected}", loss.mean);
        assert!(dh.chunks(n_embd).step_by(5).all(|row| row.iter().all(|&g| g == 0.0)));
        assert_gradient("cross-entropy dh", &h, &dh, 1e-2, 2e-3, |h| {
            cross_entropy(Isa::Scalar, frozen, h, &targets, None, &mut MatmulScratch::default())
                .unwrap()
                .mean
        });
    }
}
