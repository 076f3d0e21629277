//! Perplexity of a model over a text, computed the way llama.cpp's `llama-perplexity` does, so the two tools' figures
//! can be compared directly.
//!
//! The token stream is cut into consecutive chunks of `n_ctx` tokens; each chunk runs from an empty cache (its first
//! token replaced by BOS when the model adds one), and only the second half of each chunk is scored, so every scored
//! token sees at least `n_ctx / 2` tokens of context.

use hearth_kernel::ops::kv::KvType;
use hearth_kernel::simd::Isa;

use crate::model::{Logits, Model, ModelError, Scratch};

/// What went wrong computing a perplexity.
#[derive(Debug, thiserror::Error)]
pub enum PerplexityError {
    /// The text is shorter than two contexts.
    #[error("the text has {tokens} tokens; a context of {n_ctx} needs at least {} (two chunks' worth)", 2 * n_ctx)]
    TooShort {
        /// Tokens in the text.
        tokens: usize,
        /// The context size asked for.
        n_ctx: usize,
    },
    /// The context is too small to score anything.
    #[error("context size {0} is too small: it must be at least 4")]
    ContextTooSmall(usize),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// The running result after a chunk.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChunkResult {
    /// 1-based chunk index.
    pub chunk: usize,
    /// Chunks that will be evaluated in all.
    pub n_chunks: usize,
    /// Perplexity over every token scored so far.
    pub running_ppl: f64,
}

/// The final estimate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Perplexity {
    /// exp(mean negative log-likelihood).
    pub ppl: f64,
    /// Standard error of the estimate (the same first-order estimate llama.cpp prints after `+/-`).
    pub ppl_stderr: f64,
    /// Tokens scored.
    pub scored: usize,
    /// Chunks evaluated.
    pub chunks: usize,
}

/// Scores `tokens` (the whole text, BOS included if the model adds one) in chunks of `n_ctx`, at most `max_chunks`
/// of them (`None`: all that fit). `bos` replaces each chunk's first token, as llama.cpp does for models that add
/// one. `on_chunk` sees the running perplexity after each chunk.
pub fn perplexity(
    model: &Model<'_>,
    isa: Isa,
    tokens: &[u32],
    n_ctx: usize,
    max_chunks: Option<usize>,
    bos: Option<u32>,
    mut on_chunk: impl FnMut(ChunkResult),
) -> Result<Perplexity, PerplexityError> {
    if n_ctx < 4 {
        return Err(PerplexityError::ContextTooSmall(n_ctx));
    }
    if tokens.len() < 2 * n_ctx {
        return Err(PerplexityError::TooShort {
            tokens: tokens.len(),
            n_ctx,
        });
    }
    let n_chunks = max_chunks.map_or(tokens.len() / n_ctx, |m| m.min(tokens.len() / n_ctx));
    let first = n_ctx / 2;
    let mut kv = model.new_cache(KvType::F16, n_ctx)?;
    let mut scratch = Scratch::default();
    let mut chunk_tokens = Vec::with_capacity(n_ctx);
    let (mut nll, mut nll2, mut scored) = (0.0f64, 0.0f64, 0usize);
    let vocab = model.vocab_size();

    for (index, chunk) in tokens.chunks_exact(n_ctx).take(n_chunks).enumerate() {
        chunk_tokens.clear();
        chunk_tokens.extend_from_slice(chunk);
        if let Some(bos) = bos {
            chunk_tokens[0] = bos;
        }
        // Logits rows for positions first..n_ctx; row j predicts chunk[first + j + 1]. The last position predicts
        // past the chunk and is not scored.
        let logits = model.forward(isa, &chunk_tokens, 0, &mut kv, &mut scratch, Logits::From(first))?;
        for (row, &target) in logits.chunks_exact(vocab).zip(&chunk[first + 1..]) {
            let v = -log_softmax(row, target as usize);
            nll += v;
            nll2 += v * v;
        }
        scored += n_ctx - 1 - first;
        on_chunk(ChunkResult {
            chunk: index + 1,
            n_chunks,
            running_ppl: (nll / scored as f64).exp(),
        });
    }

    let mean = nll / scored as f64;
    let ppl = mean.exp();
    // Standard error of the mean NLL, carried through exp() to first order.
    let variance = nll2 / scored as f64 - mean * mean;
    let ppl_stderr = if variance > 0.0 && scored > 1 {
        (variance / (scored - 1) as f64).sqrt() * ppl
    } else {
        0.0
    };
    Ok(Perplexity {
        ppl,
        ppl_stderr,
        scored,
        chunks: n_chunks,
    })
}

/// log softmax(logits)[target], with the same precisions as llama.cpp (f32 exponentials, f64 sum).
fn log_softmax(logits: &[f32], target: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    f64::from(logits[target] - max) - sum.ln()
}

#[cfg(test)]
mod tests {
    use super::log_softmax;

    #[test]
    fn log_softmax_matches_the_definition() {
        let logits = [1.0f32, 2.0, 3.0, -4.0];
        let denominator: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
        for (i, &l) in logits.iter().enumerate() {
            let expected = f64::from(l) - denominator.ln();
            assert!((log_softmax(&logits, i) - expected).abs() < 1e-6);
        }
    }
}
