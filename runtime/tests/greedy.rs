//! Greedy continuations against llama.cpp's: 20 prompts, the 64 tokens after each (testdata/greedy/*.llama-cpp.json,
//! made by make_golden.py with llama.cpp's libllama). Part of the bar is asserted here for Qwen2.5-Coder: every
//! prompt agrees on its first 16 tokens, or parts from llama.cpp there only at a near-tie ([`NEAR_TIE`]);
//! full-length agreement and the logit margin of every parting are printed. SmolLM2 and Gemma-3 do not meet it yet
//! (their goldens are committed; see the runtime issue's notes).
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

/// A parting in the first 16 tokens is accepted when, at the token where hearth and each llama.cpp build part, hearth's
/// logit for its own choice is less than this above its logit for llama.cpp's (Qwen's top logits are around 20): a
/// near-tie that summation order decides. Measured at all 40 partings of the 20 prompts from both builds (2026-12-02,
/// hearth's grouped AVX-512 kernels): 0.002–0.18. A wrong weight, position or token parts within a few tokens by whole
/// logits.
const NEAR_TIE: f32 = 0.25;

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// How one prompt's greedy continuation compares with one golden.
#[derive(Clone, Debug)]
struct Agreement {
    prompt: String,
    /// Leading tokens identical to the golden's.
    agree: usize,
    /// The golden's length.
    len: usize,
    /// Where they part: hearth's logit for its token minus its logit for llama.cpp's.
    margin: Option<f32>,
}

/// Greedy-decodes the cases of `goldens` (the same prompts, each golden from another llama.cpp build) and returns,
/// per golden and per case, how many leading tokens agree with that build's. Each prompt is decoded once.
fn agreement(model_name: &str, goldens: &[&str]) -> Vec<Vec<Agreement>> {
    let goldens: Vec<Value> = goldens.iter().map(|g| serde_json::from_str(g).unwrap()).collect();
    let cases: Vec<&Vec<Value>> = goldens.iter().map(|g| g["cases"].as_array().unwrap()).collect();
    let path = Store::from_env().unwrap().resolve(model_name, &mut NoProgress).unwrap();
    let file = ModelFile::open_to_run(path, &mut NoProgress).unwrap();
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
        // Per golden: how far hearth's logit for its own choice is above its logit for llama.cpp's, where they first
        // part (both conditioned on the same tokens so far).
        let mut margins = vec![None; expected.len()];
        loop {
            let next = session.sample(&mut sampler);
            let step = ours.len();
            for (margin, expected) in margins.iter_mut().zip(&expected) {
                if margin.is_none() && ours[..] == expected[..step] && expected.get(step).is_some_and(|&e| e != next) {
                    *margin = Some(session.logits()[next as usize] - session.logits()[expected[step] as usize]);
                }
            }
            ours.push(next);
            if ours.len() == n {
                break;
            }
            session.push(next).unwrap();
        }
        for ((per_golden, expected), margin) in out.iter_mut().zip(&expected).zip(margins) {
            let agree = ours.iter().zip(expected).take_while(|(a, b)| a == b).count();
            per_golden.push(Agreement {
                prompt: text.to_owned(),
                agree,
                len: expected.len(),
                margin,
            });
        }
    }
    out
}

#[test]
fn qwen2_5_coder_agrees_with_llama_cpp_for_16_tokens_or_parts_at_a_near_tie() {
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
        let full = results.iter().filter(|r| r.agree == r.len).count();
        report.push(format!(
            "llama.cpp {build}: identical for all 64 tokens: {full}/{}",
            results.len()
        ));
        report.extend(results.iter().map(|r| {
            let margin = r
                .margin
                .map(|m| format!(" (parted at a logit margin of {m:.3})"))
                .unwrap_or_default();
            format!("  {:?}: {}/{}{margin}", r.prompt, r.agree, r.len)
        }));
    }
    let report = report.join("\n");
    eprintln!("{report}");
    let prompts = results[0].len();
    let agrees_or_near_tie = |i: usize| {
        results.iter().any(|per_build| per_build[i].agree >= 16)
            || results
                .iter()
                .all(|per_build| per_build[i].margin.is_some_and(|m| m < NEAR_TIE))
    };
    assert!((0..prompts).all(agrees_or_near_tie), "{report}");
}
