//! Fitting a conversation into a context with SmolLM2's real template and tokenizer: the default refuses with a clear
//! error and leaves the conversation alone; the opt-in policy drops the oldest turns (in user/assistant pairs), keeps
//! the system prompt and the newest message, and drops no more than needed.

use hearth_runtime::conversation::{Conversation, ConversationError, OverflowPolicy};
use hearth_runtime::template::{ChatTemplate, Message};
use hearth_runtime::tokenizer::Tokenizer;
use hearth_runtime::{ModelFile, NoProgress, Store};

fn setup() -> (ChatTemplate, Tokenizer) {
    let path = Store::from_env()
        .unwrap()
        .resolve("smollm2-135m-instruct", &mut NoProgress)
        .unwrap();
    let file = ModelFile::open_to_run(path, &mut NoProgress).unwrap();
    let tokenizer = Tokenizer::from_gguf(file.gguf()).unwrap();
    let template = ChatTemplate::from_gguf(file.gguf(), &tokenizer);
    (template, tokenizer)
}

fn conversation(turns: usize) -> Conversation {
    let mut messages = vec![Message::new("system", "You are a terse assistant.")];
    for i in 0..turns {
        messages.push(Message::new(
            "user",
            format!("Question {i}: what does function number {i} return?"),
        ));
        messages.push(Message::new(
            "assistant",
            format!("Function {i} returns the number {i} squared."),
        ));
    }
    messages.push(Message::new("user", "And the last one?"));
    Conversation { messages }
}

#[test]
fn a_conversation_that_fits_is_untouched() {
    let (template, tokenizer) = setup();
    let mut c = conversation(3);
    let fitted = c.fit(&template, &tokenizer, 2048, 256, OverflowPolicy::Error).unwrap();
    assert_eq!(fitted.dropped, 0);
    let text = template.render(&c.messages, true).unwrap();
    assert_eq!(fitted.tokens, tokenizer.encode(&text, false, true));
}

#[test]
fn overflow_is_an_error_by_default_and_nothing_is_lost() {
    let (template, tokenizer) = setup();
    let mut c = conversation(20);
    let before = c.clone();
    let error = c
        .fit(&template, &tokenizer, 300, 64, OverflowPolicy::Error)
        .unwrap_err();
    assert!(matches!(
        error,
        ConversationError::Overflow {
            can_drop: true,
            capacity: 300,
            reserve: 64,
            ..
        }
    ));
    assert!(error.to_string().contains("allow dropping the oldest turns"), "{error}");
    assert_eq!(c, before);
}

#[test]
fn the_opt_in_policy_drops_oldest_pairs_keeping_system_and_newest() {
    let (template, tokenizer) = setup();
    let original = conversation(20);
    let mut c = original.clone();
    let fitted = c
        .fit(&template, &tokenizer, 300, 64, OverflowPolicy::DropOldestTurns)
        .unwrap();
    assert!(
        fitted.dropped > 0 && fitted.dropped.is_multiple_of(2),
        "dropped {}",
        fitted.dropped
    );
    assert!(fitted.tokens.len() + 64 <= 300);
    assert_eq!(c.messages[0], original.messages[0], "the system prompt stays");
    assert_eq!(c.messages.last(), original.messages.last(), "the newest message stays");
    assert_eq!(c.messages[1..], original.messages[1 + fitted.dropped..]);
    // No more than needed: with the last dropped pair back it would not fit.
    let mut one_more = original.clone();
    one_more.messages.drain(1..fitted.dropped - 1);
    assert!(
        one_more
            .fit(&template, &tokenizer, 300, 64, OverflowPolicy::Error)
            .is_err()
    );
}

#[test]
fn a_newest_message_that_cannot_fit_is_an_error_even_with_the_policy() {
    let (template, tokenizer) = setup();
    let mut c = conversation(2);
    c.messages.push(Message::new("user", "word ".repeat(400)));
    let error = c
        .fit(&template, &tokenizer, 300, 64, OverflowPolicy::DropOldestTurns)
        .unwrap_err();
    assert!(
        matches!(error, ConversationError::Overflow { can_drop: false, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("raise the context"), "{error}");
}
