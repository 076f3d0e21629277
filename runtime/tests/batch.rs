//! Continuous batching: decoding several sequences in one forward pass (`Session::push_each`) gives each exactly the
//! logits it gets when decoded on its own — sequences of different lengths, on a llama model and on Gemma 3 (whose
//! sliding-window layers make position bookkeeping matter). And a prompt resumed from the KV cache gives exactly the
//! logits of the same prompt run afresh.

use hearth_kernel::ops::attention::TILE;
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
    let file = ModelFile::open_to_run(path, &mut NoProgress).unwrap();
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

/// The prompt's logits after a prefill of all its tokens, and after a prefill of all but the last followed by the last
/// decoded alone (a prompt resumed from the KV cache, as `serve` and `chat` do): the same bits, since a decode step
/// computes each output as a prefill does (with AVX-512, through the grouped-weights cache).
fn resumed_prompt_matches_fresh(model_name: &str) {
    let path = Store::from_env().unwrap().resolve(model_name, &mut NoProgress).unwrap();
    let file = ModelFile::open_to_run(path, &mut NoProgress).unwrap();
    let model = Model::load(&file).unwrap();
    let tokenizer = Tokenizer::from_gguf(file.gguf()).unwrap();
    for prompt in PROMPTS {
        // Long enough for the batched matmul kernels (at least 16 tokens in the first prefill), short enough for
        // attention's per-position path (from `TILE` tokens, a prefill's attention rounds as ggml's batched flash
        // attention does, and a resumed prompt parts from a fresh one there as it does in llama.cpp).
        let ids = tokenizer.encode(&[prompt; 5].join(" "), true, true);
        let ids = &ids[..ids.len().min(TILE - 1)];
        assert!(ids.len() > 17, "{model_name}: {} tokens", ids.len());
        let mut fresh = Session::new(&model, 256, KvType::F16).unwrap();
        fresh.prefill(ids).unwrap();
        let mut resumed = Session::new(&model, 256, KvType::F16).unwrap();
        resumed.prefill(&ids[..ids.len() - 1]).unwrap();
        resumed.push(ids[ids.len() - 1]).unwrap();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert!(
            bits(fresh.logits()) == bits(resumed.logits()),
            "{model_name}: {prompt:?} resumed differs from fresh"
        );
    }
}

#[test]
fn llama_resumed_prompt_matches_fresh() {
    resumed_prompt_matches_fresh("smollm2-135m-instruct");
}

#[test]
fn qwen2_resumed_prompt_matches_fresh() {
    resumed_prompt_matches_fresh("qwen2.5-coder-1.5b-instruct");
}
