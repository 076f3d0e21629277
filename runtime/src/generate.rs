//! The generation loop shared by every front end (run, chat, serve, edit): sample, stop on end-of-generation tokens,
//! extra stop tokens, stop strings or a token budget, and stream text that never shows any part of a stop string.

use std::ops::ControlFlow;

use crate::model::ModelError;
use crate::sampling::Sampler;
use crate::session::Session;
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// When generation ends.
#[derive(Clone, Debug, Default)]
pub struct StopConditions {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Texts that end generation; the text up to (not including) the first one is the answer.
    pub strings: Vec<String>,
    /// Token ids that end generation, besides the model's end-of-generation tokens.
    pub tokens: Vec<u32>,
    /// Keep going past the model's end-of-generation tokens (extra stop tokens still stop).
    pub ignore_eos: bool,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token, a stop token or a stop string.
    Stop,
    /// The token budget was spent.
    Length,
    /// The context (KV cache) is full.
    ContextFull,
    /// The caller asked to stop (Ctrl-C, a client that went away).
    Cancelled,
}

impl FinishReason {
    /// Lower-case name for output (`stop`, `length`, `context_full`, `cancelled`).
    pub fn name(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ContextFull => "context_full",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

/// What a generation produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generation {
    /// The text, without any stop string.
    pub text: String,
    /// Tokens sampled (a stop token included).
    pub tokens: usize,
    /// Why it ended.
    pub finish: FinishReason,
}

/// Holds back streamed text while it could still turn out to be the start of a stop string.
#[derive(Debug)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    /// A matcher for `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> Self {
        StopMatcher {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
        }
    }

    /// Adds streamed text. Returns the text that is safe to show and whether a stop string was found (the text
    /// returned then ends right before it).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        self.held.push_str(text);
        let first_stop = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min();
        if let Some(at) = first_stop {
            let shown = self.held[..at].to_owned();
            self.held.clear();
            return (shown, true);
        }
        // Keep the longest tail of the held text that is a proper prefix of some stop string.
        let keep = self
            .stops
            .iter()
            .flat_map(|s| s.char_indices().skip(1).map(move |(i, _)| &s[..i]))
            .filter(|prefix| self.held.ends_with(prefix))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let shown = self.held[..self.held.len() - keep].to_owned();
        self.held.drain(..self.held.len() - keep);
        (shown, false)
    }

    /// The held text, once the stream has ended without completing a stop string.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// The generation loop's bookkeeping for one sequence, one sampled token at a time: stop tokens, stop strings,
/// budgets and streamed text. [`generate`] drives it for one session; a server drives several, batching their forward
/// passes.
#[derive(Debug)]
pub struct Generator<'t> {
    tokenizer: &'t Tokenizer,
    stop: StopConditions,
    decoder: StreamDecoder,
    matcher: StopMatcher,
    text: String,
    tokens: usize,
    stopped_by_string: bool,
}

impl<'t> Generator<'t> {
    /// A generator that ends on `stop`.
    pub fn new(tokenizer: &'t Tokenizer, stop: StopConditions) -> Self {
        Generator {
            tokenizer,
            matcher: StopMatcher::new(&stop.strings),
            stop,
            decoder: StreamDecoder::default(),
            text: String::new(),
            tokens: 0,
            stopped_by_string: false,
        }
    }

    /// Why generation ends before any token is sampled, if it does (a budget of zero).
    pub fn done_before_start(&self) -> Option<FinishReason> {
        (self.stop.max_tokens == 0).then_some(FinishReason::Length)
    }

    /// Takes the token sampled next. Returns the text that is now safe to show, and why generation ends if it does;
    /// otherwise the caller appends `token` to the sequence and samples again. `has_room` says whether the sequence's
    /// context can take the token.
    pub fn accept(&mut self, token: u32, has_room: bool) -> (String, Option<FinishReason>) {
        self.tokens += 1;
        if self.stop.tokens.contains(&token) || (!self.stop.ignore_eos && self.tokenizer.is_end_of_generation(token)) {
            return (String::new(), Some(FinishReason::Stop));
        }
        let (shown, stopped) = self.matcher.push(&self.decoder.push(self.tokenizer.piece(token)));
        self.text.push_str(&shown);
        let end = if stopped {
            self.stopped_by_string = true;
            Some(FinishReason::Stop)
        } else if self.tokens == self.stop.max_tokens {
            Some(FinishReason::Length)
        } else if !has_room {
            Some(FinishReason::ContextFull)
        } else {
            None
        };
        (shown, end)
    }

    /// Ends generation for `reason`. Returns the text held back until now (part of the answer unless a stop string
    /// ended it or the caller cancelled) and the whole generation.
    pub fn finish(mut self, reason: FinishReason) -> (String, Generation) {
        let tail = if self.stopped_by_string || reason == FinishReason::Cancelled {
            String::new()
        } else {
            let (shown, stopped) = self.matcher.push(&self.decoder.finish());
            if stopped { shown } else { shown + &self.matcher.finish() }
        };
        self.text.push_str(&tail);
        let generation = Generation {
            text: self.text,
            tokens: self.tokens,
            finish: reason,
        };
        (tail, generation)
    }
}

/// Generates from the session's current logits (after [`Session::prefill`]), handing each piece of text to
/// `on_text` as soon as it is final; `on_text` returning [`ControlFlow::Break`] cancels. The session ends up holding
/// every generated token except the last one sampled.
pub fn generate(
    session: &mut Session<'_, '_>,
    tokenizer: &Tokenizer,
    sampler: &mut Sampler,
    stop: &StopConditions,
    mut on_text: impl FnMut(&str) -> ControlFlow<()>,
) -> Result<Generation, ModelError> {
    let mut generator = Generator::new(tokenizer, stop.clone());
    let reason = match generator.done_before_start() {
        Some(reason) => reason,
        None => loop {
            let next = session.sample(sampler);
            let (shown, end) = generator.accept(next, session.tokens().len() < session.capacity());
            if !shown.is_empty() && on_text(&shown).is_break() {
                break FinishReason::Cancelled;
            }
            if let Some(end) = end {
                break end;
            }
            session.push(next)?;
        },
    };
    let (tail, generation) = generator.finish(reason);
    if !tail.is_empty() {
        // Cancellation at the very end changes nothing: everything was generated.
        let _ = on_text(&tail);
    }
    Ok(generation)
}

#[cfg(test)]
mod tests {
    use super::StopMatcher;

    fn stream(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool, String) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(&stops);
        let mut shown = Vec::new();
        for p in pieces {
            let (s, stopped) = m.push(p);
            shown.push(s);
            if stopped {
                return (shown, true, String::new());
            }
        }
        (shown, false, m.finish())
    }

    #[test]
    fn a_stop_string_split_across_pieces_is_never_shown() {
        let (shown, stopped, _) = stream(&["\n\n"], &["def f():", "\n", "\n", "more"]);
        assert!(stopped);
        assert_eq!(shown.concat(), "def f():");
        assert_eq!(shown, ["def f():", "", ""]);
    }

    #[test]
    fn a_false_start_is_released_once_it_cannot_match() {
        let (shown, stopped, rest) = stream(&["END"], &["a E", "N", "x", "EN"]);
        assert!(!stopped);
        assert_eq!(shown, ["a ", "", "ENx", ""]);
        assert_eq!(rest, "EN");
    }

    #[test]
    fn the_earliest_of_several_stops_wins_and_text_inside_one_piece_is_cut() {
        let (shown, stopped, _) = stream(&["</s>", "User:"], &["ok User: hi </s>"]);
        assert!(stopped);
        assert_eq!(shown.concat(), "ok ");
    }

    #[test]
    fn multibyte_stops_hold_whole_characters() {
        let (shown, stopped, _) = stream(&["→ end"], &["x →", " e", "nd!"]);
        assert!(stopped);
        assert_eq!(shown.concat(), "x ");
        let (shown, stopped, rest) = stream(&["→ end"], &["x →", " y"]);
        assert!(!stopped);
        assert_eq!(shown.concat() + &rest, "x → y");
    }

    #[test]
    fn no_stops_shows_everything_at_once() {
        let (shown, stopped, rest) = stream(&[], &["a", "b"]);
        assert!(!stopped);
        assert_eq!(shown, ["a", "b"]);
        assert!(rest.is_empty());
    }
}
