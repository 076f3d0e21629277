//! The shared generation loop on SmolLM2 with greedy sampling: token budget, stop strings (cut before the match, even
//! across tokens), extra stop tokens, cancellation, and a full context — each checked against an unconstrained run;
//! and a prefill stopped between batches.

use std::ops::ControlFlow;

use hearth_kernel::ops::kv::KvType;
use hearth_runtime::generate::{FinishReason, Generation, StopConditions, generate};
use hearth_runtime::model::Model;
use hearth_runtime::sampling::{Sampler, SamplerParams};
use hearth_runtime::session::{Prefilled, Session, UBATCH};
use hearth_runtime::tokenizer::Tokenizer;
use hearth_runtime::{ModelFile, NoProgress, Store};

const PROMPT: &str = "def fibonacci(n):";

struct Fixture {
    file: ModelFile,
}

impl Fixture {
    fn new() -> Self {
        let path = Store::from_env()
            .unwrap()
            .resolve("smollm2-135m-instruct", &mut NoProgress)
            .unwrap();
        Fixture {
            file: ModelFile::open(path).unwrap(),
        }
    }

    /// Greedy generation after PROMPT with `stop`, in a context of `ctx`; also returns every streamed piece.
    fn run(&self, ctx: usize, stop: &StopConditions, cancel_after: Option<usize>) -> (Generation, Vec<String>) {
        let model = Model::load(&self.file).unwrap();
        let tokenizer = Tokenizer::from_gguf(self.file.gguf()).unwrap();
        let mut session = Session::new(&model, ctx, KvType::F16).unwrap();
        session.prefill(&tokenizer.encode(PROMPT, true, true)).unwrap();
        let mut sampler = Sampler::new(SamplerParams::greedy());
        let mut pieces = Vec::new();
        let generation = generate(&mut session, &tokenizer, &mut sampler, stop, |text| {
            pieces.push(text.to_owned());
            if cancel_after.is_some_and(|n| pieces.len() >= n) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        (generation, pieces)
    }
}

fn budget(n: usize) -> StopConditions {
    StopConditions {
        max_tokens: n,
        ignore_eos: true,
        ..StopConditions::default()
    }
}

#[test]
fn budget_stop_strings_stop_tokens_cancellation_and_full_context() {
    let fx = Fixture::new();
    let (free, pieces) = fx.run(256, &budget(40), None);
    assert_eq!(free.finish, FinishReason::Length);
    assert_eq!(free.tokens, 40);
    assert_eq!(pieces.concat(), free.text);
    assert!(free.text.len() > 40, "{:?}", free.text);

    // A stop string from the middle of the free text: the answer is exactly what came before it.
    let cut = free
        .text
        .char_indices()
        .map(|(i, _)| i)
        .find(|&i| i >= free.text.len() / 2)
        .unwrap();
    let stop_text: String = free.text[cut..].chars().take(3).collect();
    let first = free.text.find(&stop_text).unwrap();
    let (stopped, pieces) = fx.run(
        256,
        &StopConditions {
            strings: vec![stop_text.clone()],
            ..budget(40)
        },
        None,
    );
    assert_eq!(stopped.finish, FinishReason::Stop, "stop {stop_text:?}");
    assert_eq!(stopped.text, free.text[..first]);
    assert_eq!(pieces.concat(), stopped.text);
    assert!(stopped.tokens < 40);

    // The 10th token of the free text as an extra stop token ends generation there or earlier.
    let tokenizer = Tokenizer::from_gguf(fx.file.gguf()).unwrap();
    let ids = tokenizer.encode(&free.text, false, false);
    let (by_token, _) = fx.run(
        256,
        &StopConditions {
            tokens: vec![ids[9]],
            ..budget(40)
        },
        None,
    );
    assert_eq!(by_token.finish, FinishReason::Stop);
    assert!(by_token.tokens <= 10 && free.text.starts_with(&by_token.text));

    // Cancelling after 3 pieces keeps what was shown.
    let (cancelled, pieces) = fx.run(256, &budget(40), Some(3));
    assert_eq!(cancelled.finish, FinishReason::Cancelled);
    assert_eq!(pieces.len(), 3);
    assert_eq!(cancelled.text, pieces.concat());
    assert!(free.text.starts_with(&cancelled.text));

    // A context with room for 12 more tokens: generation stops there, reporting why.
    let prompt_len = tokenizer.encode(PROMPT, true, true).len();
    let (full, _) = fx.run(prompt_len + 12, &budget(40), None);
    assert_eq!(full.finish, FinishReason::ContextFull);
    assert_eq!(full.tokens, 13);
    assert!(free.text.starts_with(&full.text));
}

#[test]
fn a_stopped_prefill_keeps_its_batches_and_the_next_one_reuses_them() {
    let fixture = Fixture::new();
    let model = Model::load(&fixture.file).unwrap();
    let tokenizer = Tokenizer::from_gguf(fixture.file.gguf()).unwrap();
    let prompt = tokenizer.encode(&format!("{PROMPT}\n").repeat(200), true, true);
    assert!(prompt.len() > 2 * UBATCH, "{} tokens", prompt.len());

    let mut whole = Session::new(&model, prompt.len(), KvType::F16).unwrap();
    whole.prefill(&prompt).unwrap();

    let mut stopped = Session::new(&model, prompt.len(), KvType::F16).unwrap();
    let mut asked = 0;
    let prefilled = stopped
        .prefill_unless(&prompt, || {
            asked += 1;
            if asked > 1 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(
        prefilled,
        Prefilled {
            reused: 0,
            stopped: true
        }
    );
    assert_eq!(stopped.tokens(), &prompt[..UBATCH]);
    // The rest runs in the same batches as in one go, so the logits are the same to the bit.
    assert_eq!(stopped.prefill(&prompt).unwrap(), UBATCH);
    assert_eq!(stopped.logits(), whole.logits());
}
