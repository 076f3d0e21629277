//! First-token latency of a follow-up in a long conversation: the case prefix reuse exists for. A conversation of
//! about 2,000 tokens is restored into a chat, a first question prefills all of it, and a follow-up then only
//! prefills its own tokens. Prints one line per turn; run with
//! `cargo bench -p hearth-benches --bench chat_latency` (model: `$HEARTH_BENCH_MODEL`, default
//! qwen2.5-coder-1.5b-instruct; retrieval off so that only the conversation is measured).

use std::ops::ControlFlow;

use hearth_runtime::ModelFile;
use hearth_runtime::backend::LocalBackend;
use hearth_runtime::chat::{Chat, ChatSettings, Transcript, Turn};
use hearth_runtime::model::Model;
use hearth_runtime::sampling::SamplerParams;
use hearth_runtime::store::DEFAULT_MODEL;
use hearth_runtime::template::ChatTemplate;
use hearth_runtime::tokenizer::Tokenizer;

/// Earlier turns: a question about a function and a long answer, repeated with variations to reach the target.
fn conversation(tokenizer: &Tokenizer, target_tokens: usize) -> Transcript {
    let mut transcript = Transcript {
        system: ChatSettings::default().system,
        ..Transcript::default()
    };
    let mut tokens = 0;
    let mut n = 0;
    while tokens < target_tokens {
        n += 1;
        let user = format!("In step {n}, how should I handle a missing configuration file when the service starts?");
        let answer = format!(
            "For step {n}, check for the file before reading it and fall back to defaults:\n\n```python\n\
             import os\n\ndef load_config(path, defaults):\n    if not os.path.exists(path):\n        \
             return dict(defaults)\n    with open(path) as f:\n        return {{**defaults, **parse(f.read())}}\n```\n\n\
             Log a warning that names the path so that the operator knows defaults are in use, and keep the \
             defaults in one place so that tests can assert on them."
        );
        tokens += tokenizer.encode(&user, false, false).len() + tokenizer.encode(&answer, false, false).len() + 10;
        transcript.turns.push(Turn {
            user,
            context: None,
            sources: Vec::new(),
            answer,
        });
    }
    transcript
}

fn main() {
    let name = std::env::var("HEARTH_BENCH_MODEL").unwrap_or_else(|_| DEFAULT_MODEL.to_owned());
    let file = ModelFile::open(hearth_benches::bench_model(&name)).expect("open model");
    let tokenizer = Tokenizer::from_gguf(file.gguf()).expect("tokenizer");
    let template = ChatTemplate::from_gguf(file.gguf(), &tokenizer);
    let model = Model::load(&file).expect("load model");
    let settings = ChatSettings {
        sampler: SamplerParams::greedy(),
        max_answer_tokens: 32,
        ..ChatSettings::default()
    };
    let backend = LocalBackend::new(&model, &tokenizer, &template, 4096).expect("KV cache");
    let mut chat = Chat::new(Box::new(backend), settings, None);
    chat.restore(conversation(&tokenizer, 2000)).expect("restore");
    println!("model {name}, {} threads", hearth_runtime::threads());
    for (label, question) in [
        (
            "first question (whole conversation prefilled)",
            "And what if the file exists but is empty?",
        ),
        ("follow-up (prefix cached)", "Show that as a test."),
        ("second follow-up", "Now make the warning configurable."),
    ] {
        let stats = chat.ask(question, |_| ControlFlow::Continue(())).expect("ask");
        println!(
            "{label}: prompt {} tokens, {} cached, first token {:.2} s, {} tokens at {:.1} t/s",
            stats.prompt_tokens,
            stats.cached_tokens,
            stats.first_token.as_secs_f64(),
            stats.generated,
            stats.tokens_per_second()
        );
    }
}
