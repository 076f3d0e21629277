//! Continuous batching: decoding several sequences in one forward pass (`Session::push_each`) gives each exactly the
//! logits it gets when decoded on its own — sequences of different lengths, on a llama model and on Gemma 3 (whose
//! sliding-window layers make position bookkeeping matter).

use hearth_kernel::ops::kv::KvType;
use hearth_runtime::model::Model;
use hearth_runtime::sampling::{Sampler, SamplerParams};
use hearth_runtime::session::Session;
use hearth_runtime::tokenizer::Tokenizer;
use hearth_runtime::{ModelFile, NoProgress, Store};

const PROMPTS: [&str; 3] = [
    "def fibonacci(n):",
    "The three primary colors are",
    "SELECT name, email FROM users WHERE created_at > NOW() - INTERVAL '7 days' ORDER BY",
];

fn batched_decoding_matches_one_at_a_time(model_name: &str) {
    let path = Store::from_env().unwrap().resolve(model_name, &mut NoProgress).unwrap();
    let file = ModelFile::open(path).unwrap();
    let model = Model::load(&file).unwrap();
    let tokenizer = Tokenizer::from_gguf(file.gguf()).unwrap();
    let start = |prompt: &str| {
        let mut session = Session::new(&model, 256, KvType::F16).unwrap();
        session.prefill(&tokenizer.encode(prompt, true, true)).unwrap();
        session
    };
    let mut alone: Vec<Session<'_, '_>> = PROMPTS.iter().map(|p| start(p)).collect();
    let mut batch: Vec<Session<'_, '_>> = PROMPTS.iter().map(|p| start(p)).collect();
    let mut sampler = Sampler::new(SamplerParams::greedy());
    for step in 0..24 {
        let next: Vec<u32> = alone.iter().map(|s| s.sample(&mut sampler)).collect();
        for (session, &token) in alone.iter_mut().zip(&next) {
            session.push(token).unwrap();
        }
        let mut refs: Vec<&mut Session<'_, '_>> = batch.iter_mut().collect();
        Session::push_each(&mut refs, &next).unwrap();
        for (i, (a, b)) in alone.iter().zip(&batch).enumerate() {
            assert_eq!(a.tokens(), b.tokens());
            assert!(
                a.logits() == b.logits(),
                "{model_name}: sequence {i} differs at step {step}"
            );
        }
    }
}

#[test]
fn llama_batched_decoding_matches_one_at_a_time() {
    batched_decoding_matches_one_at_a_time("smollm2-135m-instruct");
}

#[test]
fn gemma3_batched_decoding_matches_one_at_a_time() {
    batched_decoding_matches_one_at_a_time("gemma-3-270m");
}
