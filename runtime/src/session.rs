//! A session: one model's KV cache and the tokens it holds. A new prompt that starts with tokens already in the
//! cache only runs the tokens after the shared prefix.

use hearth_kernel::ops::kv::{KvCache, KvType};
use hearth_kernel::simd::Isa;

use crate::model::{Logits, Model, ModelError, Scratch};
use crate::sampling::Sampler;

/// Tokens per forward pass while prefilling (llama.cpp's default `n_ubatch`).
pub const UBATCH: usize = 512;

/// A conversation's state on one model.
#[derive(Debug)]
pub struct Session<'m, 'a> {
    model: &'m Model<'a>,
    kv: KvCache,
    scratch: Scratch,
    tokens: Vec<u32>,
    isa: Isa,
}

impl<'m, 'a> Session<'m, 'a> {
    /// A session with room for `context` positions.
    pub fn new(model: &'m Model<'a>, context: usize, kv_type: KvType) -> Result<Self, ModelError> {
        let kv = model.new_cache(kv_type, context)?;
        Ok(Session {
            model,
            kv,
            scratch: Scratch::default(),
            tokens: Vec::new(),
            isa: Isa::selected(),
        })
    }

    /// The tokens the cache holds.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// How many leading tokens of `prompt` the cache already holds.
    pub fn shared_prefix(&self, prompt: &[u32]) -> usize {
        self.tokens.iter().zip(prompt).take_while(|(a, b)| a == b).count()
    }

    /// Positions the cache can hold.
    pub fn capacity(&self) -> usize {
        self.kv.capacity()
    }

    /// Makes the cache hold exactly `prompt`, running only what is not already cached, and returns how many tokens
    /// were reused from the cache. [`Session::logits`] then holds the logits after the prompt's last token.
    pub fn prefill(&mut self, prompt: &[u32]) -> Result<usize, ModelError> {
        if prompt.len() > self.kv.capacity() {
            return Err(ModelError::ContextOverflow {
                needed: prompt.len(),
                capacity: self.kv.capacity(),
            });
        }
        // The last prompt token always runs: its logits are the answer.
        let reused = self.shared_prefix(prompt).min(prompt.len().saturating_sub(1));
        self.tokens.truncate(reused);
        // Batches of at most UBATCH tokens, as llama.cpp splits them: attention arithmetic depends on batch size.
        for batch in prompt[reused..].chunks(UBATCH) {
            let pos = self.tokens.len();
            self.model
                .forward(self.isa, batch, pos, &mut self.kv, &mut self.scratch, Logits::Last)?;
            self.tokens.extend_from_slice(batch);
        }
        Ok(reused)
    }

    /// Forgets every cached token (the next prefill runs from position 0).
    pub fn clear(&mut self) {
        self.tokens.clear();
    }

    /// Appends one token; [`Session::logits`] then holds the logits after it.
    pub fn push(&mut self, token: u32) -> Result<(), ModelError> {
        let pos = self.tokens.len();
        self.model
            .forward(self.isa, &[token], pos, &mut self.kv, &mut self.scratch, Logits::Last)?;
        self.tokens.push(token);
        Ok(())
    }

    /// The logits after the last token run.
    pub fn logits(&self) -> &[f32] {
        self.scratch.logits()
    }

    /// Draws the next token from the current logits, with the session's tokens as the penalties' history.
    pub fn sample(&self, sampler: &mut Sampler) -> u32 {
        sampler.sample(self.scratch.logits(), &self.tokens)
    }
}
