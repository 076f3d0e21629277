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

/// Greedy-decodes the cases of `goldens` (the same prompts, each golden from another llama.cpp build) and returns,
/// per golden and per case, how many leading tokens agree with that build's. Each prompt is decoded once.
fn agreement(model_name: &str, goldens: &[&str]) -> Vec<Vec<(String, usize, usize)>> {
    let goldens: Vec<Value> = goldens.iter().map(|g| serde_json::from_str(g).unwrap()).collect();
    let cases: Vec<&Vec<Value>> = goldens.iter().map(|g| g["cases"].as_array().unwrap()).collect();
    let path = Store::from_env().unwrap().resolve(model_name, &mut NoProgress).unwrap();
    let file = ModelFile::open(path).unwrap();
    let model = Model::load(&file).unwrap();
    let tokenizer = Tokenizer::from_gguf(file.gguf()).unwrap();
    let mut out = vec![Vec::new(); goldens.len()];
    for (i, case) in cases[0].iter().enumerate() {
        let prompt = ids(&case["prompt_ids"]);
        let text = case["prompt"].as_str().unwrap();
        assert_eq!(
            tokenizer.encode(text, true, true),
            prompt,
            "{model_name}: tokens of {text:?}"
        );
        let expected: Vec<Vec<u32>> = cases.iter().map(|c| ids(&c[i]["continuation"])).collect();
        for other in &cases {
            assert_eq!(ids(&other[i]["prompt_ids"]), prompt, "the goldens' prompts differ");
        }
        let n = expected.iter().map(Vec::len).max().unwrap();
        let mut session = Session::new(&model, prompt.len() + n, KvType::F16).unwrap();
        let mut sampler = Sampler::new(SamplerParams::greedy());
        session.prefill(&prompt).unwrap();
        let mut ours = Vec::new();
        loop {
            let next = session.sample(&mut sampler);
            ours.push(next);
            if ours.len() == n {
                break;
            }
            session.push(next).unwrap();
        }
        for (per_golden, expected) in out.iter_mut().zip(&expected) {
            let agree = ours.iter().zip(expected).take_while(|(a, b)| a == b).count();
            per_golden.push((text.to_owned(), agree, expected.len()));
        }
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
    let goldens: Vec<&str> = builds.iter().map(|(_, golden)| *golden).collect();
    let results = agreement(model, &goldens);
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
