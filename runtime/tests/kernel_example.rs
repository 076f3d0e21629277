//! The kernel's embedding example (kernel/examples/embed.rs) generates what llama.cpp generates: greedy decoding of
//! a chat prompt with SmolLM2, on every ISA this machine has. The golden (prompt ids and llama.cpp's answer) was made
//! by testdata/golden/make_kernel_example.sh.

#[path = "../../kernel/examples/embed.rs"]
mod embed;

use hearth_kernel::simd::Isa;
use hearth_runtime::{NoProgress, Store};

#[test]
fn kernel_example_answers_like_llama_cpp() {
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("../../testdata/golden/kernel-example.json")).unwrap();
    let prompt: Vec<u32> = golden["prompt_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let expected = golden["llama_cpp_greedy_text"].as_str().unwrap();
    let model = Store::from_env()
        .unwrap()
        .resolve(golden["model"].as_str().unwrap(), &mut NoProgress)
        .unwrap();
    for isa in Isa::available() {
        let (_, text) = embed::generate(model.to_str().unwrap(), &prompt, 12, isa).unwrap();
        // llama.cpp stops at the end-of-turn token; the example keeps going, so that token must come next.
        assert!(
            text.starts_with(&format!("{expected}<|im_end|>")),
            "{isa}: {text:?}, llama.cpp: {expected:?}"
        );
    }
}
