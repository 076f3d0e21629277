//! A session: one model's KV cache and the tokens it holds. A new prompt that starts with tokens already in the
//! cache only runs the tokens after the shared prefix.

use std::ops::ControlFlow;

use hearth_kernel::ops::kv::{KvCache, KvType};
use hearth_kernel::simd::Isa;

use crate::model::{Logits, Model, ModelError, Scratch, Segment};
use crate::sampling::Sampler;

/// Tokens per forward pass while prefilling (llama.cpp's default `n_ubatch`).
pub const UBATCH: usize = 512;

/// What [`Session::prefill_unless`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefilled {
    /// Leading prompt tokens that were already cached.
    pub reused: usize,
    /// Whether it was asked to stop before the whole prompt ran.
    pub stopped: bool,
}

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
        let prefilled = self.prefill_unless(prompt, || ControlFlow::Continue(()))?;
        Ok(prefilled.reused)
    }

    /// [`Session::prefill`], asking `go_on` before each batch of [`UBATCH`] tokens whether to continue: a long
    /// prompt takes minutes on a laptop, and a user who gives up should not have to wait for it. When it says
    /// [`ControlFlow::Break`], the cache keeps the batches already run (a prefix of `prompt` that the next prefill
    /// reuses) and [`Prefilled::stopped`] is set; [`Session::logits`] are then not the prompt's.
    pub fn prefill_unless(
        &mut self,
        prompt: &[u32],
        mut go_on: impl FnMut() -> ControlFlow<()>,
    ) -> Result<Prefilled, ModelError> {
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
            if go_on().is_break() {
                return Ok(Prefilled { reused, stopped: true });
            }
            let pos = self.tokens.len();
            self.model
                .forward(self.isa, batch, pos, &mut self.kv, &mut self.scratch, Logits::Last)?;
            self.tokens.extend_from_slice(batch);
        }
        Ok(Prefilled { reused, stopped: false })
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

    /// Appends `tokens[i]` to `sessions[i]`, all in one forward pass (continuous batching: the sequences share each
    /// weight read), and leaves each session's logits after its token, as its own [`Session::push`] would.
    ///
    /// # Panics
    /// If the sessions do not all belong to the same model or the lengths differ (a caller's bug).
    pub fn push_each(sessions: &mut [&mut Session<'m, 'a>], tokens: &[u32]) -> Result<(), ModelError> {
        assert_eq!(sessions.len(), tokens.len(), "one token per session");
        let Some(first) = sessions.first() else {
            return Ok(());
        };
        let (model, isa) = (first.model, first.isa);
        assert!(
            sessions.iter().all(|s| std::ptr::eq(s.model, model)),
            "sessions of one model"
        );
        // The first session's scratch serves the batch; the other sessions receive their rows of the logits.
        let mut scratch = std::mem::take(&mut sessions[0].scratch);
        let mut segments: Vec<Segment<'_>> = sessions
            .iter_mut()
            .zip(tokens)
            .map(|(s, token)| Segment {
                tokens: std::slice::from_ref(token),
                first_pos: s.tokens.len(),
                kv: &mut s.kv,
            })
            .collect();
        let result = model
            .forward_segments(isa, &mut segments, &mut scratch, Logits::Last)
            .map(|logits| {
                let vocab = logits.len() / tokens.len();
                for (s, row) in sessions.iter_mut().zip(logits.chunks_exact(vocab)).skip(1) {
                    s.scratch.set_logits(row);
                }
                vocab
            });
        if let Ok(vocab) = result {
            scratch.truncate_logits(vocab);
        }
        sessions[0].scratch = scratch;
        result?;
        for (s, &token) in sessions.iter_mut().zip(tokens) {
            s.tokens.push(token);
        }
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
