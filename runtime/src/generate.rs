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
    let mut decoder = StreamDecoder::default();
    let mut matcher = StopMatcher::new(&stop.strings);
    let mut text = String::new();
    let mut emit = |piece: &str, text: &mut String| {
        text.push_str(piece);
        if piece.is_empty() {
            ControlFlow::Continue(())
        } else {
            on_text(piece)
        }
    };
    let mut tokens = 0;
    let finish = loop {
        if tokens == stop.max_tokens {
            break FinishReason::Length;
        }
        let next = session.sample(sampler);
        tokens += 1;
        if stop.tokens.contains(&next) || (!stop.ignore_eos && tokenizer.is_end_of_generation(next)) {
            break FinishReason::Stop;
        }
        let (shown, stopped) = matcher.push(&decoder.push(tokenizer.piece(next)));
        if emit(&shown, &mut text).is_break() {
            return Ok(Generation {
                text,
                tokens,
                finish: FinishReason::Cancelled,
            });
        }
        if stopped {
            return Ok(Generation {
                text,
                tokens,
                finish: FinishReason::Stop,
            });
        }
        if tokens == stop.max_tokens {
            break FinishReason::Length;
        }
        if session.tokens().len() == session.capacity() {
            break FinishReason::ContextFull;
        }
        session.push(next)?;
    };
    // The stream ended without a stop string: what was held back is part of the answer.
    let (shown, stopped) = matcher.push(&decoder.finish());
    let tail = if stopped { shown } else { shown + &matcher.finish() };
    // Cancellation at the very end changes nothing: everything was generated.
    let _ = emit(&tail, &mut text);
    Ok(Generation { text, tokens, finish })
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
