//! Greedy continuations against llama.cpp's: 20 prompts, the 64 tokens after each (testdata/greedy/*.llama-cpp.json,
//! made by make_golden.py with llama.cpp's libllama). Part of the bar is asserted here — every prompt agrees
//! on its first 16 tokens — for the model that meets it (Qwen2.5-Coder); full-length agreement is printed. SmolLM2
//! and Gemma-3 do not meet it yet (their goldens are committed; see the runtime issue's notes).
//!
//! llama.cpp's own continuations depend on the vector ISA it was built for: its AVX2 build (the goldens made on an
//! AVX2 machine) and its AVX-512 build (the `-avx512` ones, made on an AVX-512 machine) agree on the first 16 tokens of
//! only 17 of the 20 Qwen prompts — their kernels sum in different orders, which flips near-ties. So each prompt must
//! agree with llama.cpp's continuation for its first 16 tokens in one build or the other: hearth's divergences then
//! stay within the spread of the reference itself.

use hearth_kernel::ops::kv::KvType;
use hearth_runtime::model::Model;
use hearth_runtime::sampling::{Sampler, SamplerParams};
use hearth_runtime::session::Session;
use hearth_runtime::tokenizer::Tokenizer;
use hearth_runtime::{ModelFile, NoProgress, Store};
use serde_json::Value;

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Greedy-decodes every golden case and returns, per case, how many leading tokens agree with llama.cpp's.
fn agreement(model_name: &str, golden: &str) -> Vec<(String, usize, usize)> {
    let golden: Value = serde_json::from_str(golden).unwrap();
    let path = Store::from_env().unwrap().resolve(model_name, &mut NoProgress).unwrap();
    let file = ModelFile::open(path).unwrap();
    let model = Model::load(&file).unwrap();
    let tokenizer = Tokenizer::from_gguf(file.gguf()).unwrap();
    let mut out = Vec::new();
    for case in golden["cases"].as_array().unwrap() {
        let prompt = ids(&case["prompt_ids"]);
        let expected = ids(&case["continuation"]);
        let text = case["prompt"].as_str().unwrap();
        assert_eq!(
            tokenizer.encode(text, true, true),
            prompt,
            "{model_name}: tokens of {text:?}"
        );
        let mut session = Session::new(&model, prompt.len() + expected.len(), KvType::F16).unwrap();
        let mut sampler = Sampler::new(SamplerParams::greedy());
        session.prefill(&prompt).unwrap();
        let mut ours = Vec::new();
        loop {
            let next = session.sample(&mut sampler);
            ours.push(next);
            if ours.len() == expected.len() {
                break;
            }
            session.push(next).unwrap();
        }
        let agree = ours.iter().zip(&expected).take_while(|(a, b)| a == b).count();
        out.push((text.to_owned(), agree, expected.len()));
    }
    out
}

#[test]
fn qwen2_5_coder_agrees_with_a_llama_cpp_build_on_the_first_16_tokens_of_every_prompt() {
    let model = "qwen2.5-coder-1.5b-instruct";
    let builds = [
        (
            "AVX2",
            include_str!("../../testdata/greedy/qwen2.5-coder-1.5b-instruct.llama-cpp.json"),
        ),
        (
            "AVX-512",
            include_str!("../../testdata/greedy/qwen2.5-coder-1.5b-instruct.llama-cpp-avx512.json"),
        ),
    ];
    let results: Vec<_> = builds.iter().map(|(_, golden)| agreement(model, golden)).collect();
    let mut report = Vec::new();
    for ((build, _), results) in builds.iter().zip(&results) {
        let full = results.iter().filter(|(_, agree, len)| agree == len).count();
        report.push(format!(
            "llama.cpp {build}: identical for all 64 tokens: {full}/{}",
            results.len()
        ));
        report.extend(results.iter().map(|(t, a, l)| format!("  {t:?}: {a}/{l}")));
    }
    let report = report.join("\n");
    eprintln!("{report}");
    let prompts = results[0].len();
    assert!(
        (0..prompts).all(|i| results.iter().any(|per_build| per_build[i].1 >= 16)),
        "{report}"
    );
}
