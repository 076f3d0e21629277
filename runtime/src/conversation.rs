//! A chat conversation and how it is fitted into a context: rendered with the model's template, tokenized, and — when
//! it does not fit — either refused with a clear error (the default) or, by opt-in policy, shortened by dropping the
//! oldest turns while keeping the system prompt and the newest message. Never silently truncated.

use crate::template::{ChatTemplate, Message, TemplateError};
use crate::tokenizer::Tokenizer;

/// What to do when a conversation does not fit the context.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OverflowPolicy {
    /// Refuse with [`ConversationError::Overflow`].
    #[default]
    Error,
    /// Drop the oldest messages after the system prompt (never the system prompt or the newest message) until it
    /// fits, and report how many were dropped.
    DropOldestTurns,
}

/// Why a conversation could not be turned into a prompt.
#[derive(Debug, thiserror::Error)]
pub enum ConversationError {
    /// The prompt plus the room kept for the answer exceed the context.
    #[error(
        "the conversation needs {prompt} tokens plus {reserve} for the answer, more than the context of {capacity}{}",
        if *.can_drop { "; drop or clear earlier turns, shorten the message, or allow dropping the oldest turns" }
        else { "; even the system prompt and the newest message alone do not fit — shorten them or raise the context" }
    )]
    Overflow {
        /// Tokens of the rendered prompt.
        prompt: usize,
        /// Tokens kept free for the answer.
        reserve: usize,
        /// Context size.
        capacity: usize,
        /// Whether dropping older turns could help.
        can_drop: bool,
    },
    /// The template failed.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A server refused the conversation as too long for its context (its own words).
    #[error("the server refused the conversation as too long: {0}")]
    Refused(String),
}

/// A prompt that fits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FittedPrompt {
    /// Token ids to prefill.
    pub tokens: Vec<u32>,
    /// Messages dropped from the front of the conversation to make it fit (0 under [`OverflowPolicy::Error`]).
    pub dropped: usize,
}

/// The messages of a chat, oldest first; a system prompt, if any, is the first message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conversation {
    /// The messages.
    pub messages: Vec<Message>,
}

impl Conversation {
    /// Renders the conversation (with the assistant's turn opened) and tokenizes it so that it leaves `reserve`
    /// tokens of `capacity` for the answer, applying `policy` if it does not fit. Messages dropped by the policy are
    /// removed from the conversation.
    pub fn fit(
        &mut self,
        template: &ChatTemplate,
        tokenizer: &Tokenizer,
        capacity: usize,
        reserve: usize,
        policy: OverflowPolicy,
    ) -> Result<FittedPrompt, ConversationError> {
        let first_droppable = usize::from(self.messages.first().is_some_and(|m| m.role == "system"));
        let mut dropped = 0;
        loop {
            let tokens = template.prompt(tokenizer, &self.messages)?;
            if tokens.len() + reserve <= capacity {
                return Ok(FittedPrompt { tokens, dropped });
            }
            // Only whole messages before the newest one can go.
            let can_drop = self.messages.len() > first_droppable + 1;
            if policy == OverflowPolicy::Error || !can_drop {
                return Err(ConversationError::Overflow {
                    prompt: tokens.len(),
                    reserve,
                    capacity,
                    can_drop,
                });
            }
            // Drop a user turn together with the assistant's answer to it, so roles keep alternating.
            let n = if self.messages.len() > first_droppable + 2
                && self.messages[first_droppable].role == "user"
                && self.messages[first_droppable + 1].role == "assistant"
            {
                2
            } else {
                1
            };
            self.messages.drain(first_droppable..first_droppable + n);
            dropped += n;
        }
    }
}
