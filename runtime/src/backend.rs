//! What answers a chat. A [`Backend`] turns a conversation into a streamed answer: [`LocalBackend`] is hearth's own
//! model with its KV cache (a follow-up prefills only what is new); the CLI adds a client of OpenAI-compatible
//! servers (`--backend URL`), so that a chat or an edit keeps hearth's retrieval and safety while another machine
//! runs the model.

use std::fmt::Debug;
use std::ops::ControlFlow;

use hearth_kernel::ops::kv::KvType;

use crate::chat::ChatError;
use crate::conversation::{Conversation, OverflowPolicy};
use crate::generate::{FinishReason, StopConditions, generate};
use crate::model::{Model, ModelError};
use crate::sampling::{Sampler, SamplerParams};
use crate::session::Session;
use crate::template::{ChatTemplate, Message};
use crate::tokenizer::Tokenizer;

/// An answer and what it cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The text (as far as it got, if it was stopped).
    pub text: String,
    /// Tokens of the whole prompt.
    pub prompt_tokens: usize,
    /// Of those, how many were already cached.
    pub cached_tokens: usize,
    /// Tokens generated.
    pub generated: usize,
    /// Why it ended.
    pub finish: FinishReason,
}

/// Something that answers conversations.
pub trait Backend: Debug {
    /// Tokens `text` takes: exact where the tokenizer is at hand, estimated where it is a server's.
    fn count_tokens(&self, text: &str) -> usize;

    /// The context in tokens, when it is known here (a server enforces its own).
    fn capacity(&self) -> Option<usize>;

    /// Answers `messages` (the assistant speaks next) in at most `max_tokens` tokens, streaming the text to
    /// `on_text` ([`ControlFlow::Break`] stops the answer; what was said is kept), which may also get "" while the
    /// prompt is being read, to be able to stop before the first token. A conversation that does not
    /// leave room for `max_tokens` is [`ChatError::Overflow`], reported before any text.
    fn answer(
        &mut self,
        messages: &[Message],
        max_tokens: usize,
        sampler: &SamplerParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Answer, ChatError>;
}

/// hearth's own model: the conversation is rendered with the model's template and prefilled into a KV cache that
/// keeps the longest prefix it shares with the previous prompt.
#[derive(Debug)]
pub struct LocalBackend<'m, 'a> {
    tokenizer: &'m Tokenizer,
    template: &'m ChatTemplate,
    session: Session<'m, 'a>,
}

impl<'m, 'a> LocalBackend<'m, 'a> {
    /// A backend on `model` with a KV cache of `context` tokens.
    pub fn new(
        model: &'m Model<'a>,
        tokenizer: &'m Tokenizer,
        template: &'m ChatTemplate,
        context: usize,
    ) -> Result<Self, ModelError> {
        Ok(LocalBackend {
            tokenizer,
            template,
            session: Session::new(model, context, KvType::F16)?,
        })
    }
}

impl Backend for LocalBackend<'_, '_> {
    fn count_tokens(&self, text: &str) -> usize {
        self.tokenizer.encode(text, false, false).len()
    }

    fn capacity(&self) -> Option<usize> {
        Some(self.session.capacity())
    }

    fn answer(
        &mut self,
        messages: &[Message],
        max_tokens: usize,
        sampler: &SamplerParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Answer, ChatError> {
        let mut conversation = Conversation {
            messages: messages.to_vec(),
        };
        let fitted = conversation
            .fit(
                self.template,
                self.tokenizer,
                self.session.capacity(),
                max_tokens,
                OverflowPolicy::Error,
            )
            .map_err(ChatError::Overflow)?;
        // Reading a long prompt takes a while: `on_text` gets "" between batches so that the caller can stop it.
        let prefilled = self.session.prefill_unless(&fitted.tokens, || on_text(""))?;
        if prefilled.stopped {
            return Ok(Answer {
                text: String::new(),
                prompt_tokens: fitted.tokens.len(),
                cached_tokens: prefilled.reused,
                generated: 0,
                finish: FinishReason::Cancelled,
            });
        }
        let cached_tokens = prefilled.reused;
        let stop = StopConditions {
            max_tokens,
            ..StopConditions::default()
        };
        let generation = generate(
            &mut self.session,
            self.tokenizer,
            &mut Sampler::new(sampler.clone()),
            &stop,
            on_text,
        )?;
        Ok(Answer {
            text: generation.text,
            prompt_tokens: fitted.tokens.len(),
            cached_tokens,
            generated: generation.tokens,
            finish: generation.finish,
        })
    }
}
