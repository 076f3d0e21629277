//! Perplexity against llama.cpp's `llama-perplexity` on the same text, context size and chunks
//! (testdata/perplexity/*.llama-cpp.json, made by make_golden.py): the bar is within 1%, per chunk and final.

use hearth_kernel::simd::Isa;
use hearth_runtime::model::Model;
use hearth_runtime::perplexity::perplexity;
use hearth_runtime::tokenizer::Tokenizer;
use hearth_runtime::{ModelFile, NoProgress, Store};
use serde_json::Value;

const TEXT: &str = include_str!("../../testdata/perplexity/textwrap.py.txt");

fn check(model_name: &str, golden: &str) {
    let golden: Value = serde_json::from_str(golden).unwrap();
    let path = Store::from_env().unwrap().resolve(model_name, &mut NoProgress).unwrap();
    let file = ModelFile::open_to_run(path, &mut NoProgress).unwrap();
    let model = Model::load(&file).unwrap();
    let tokenizer = Tokenizer::from_gguf(file.gguf()).unwrap();
    let tokens = tokenizer.encode(TEXT, true, false);
    let bos = tokenizer.added_bos();
    let n_ctx = golden["n_ctx"].as_u64().unwrap() as usize;
    let chunks = golden["chunks"].as_u64().unwrap() as usize;
    let mut running = Vec::new();
    let result = perplexity(&model, Isa::selected(), &tokens, n_ctx, Some(chunks), bos, |c| {
        running.push(c.running_ppl)
    })
    .unwrap();
    let reference: Vec<f64> = golden["running_ppl"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let final_ref = golden["ppl"].as_f64().unwrap();
    eprintln!(
        "{model_name}: PPL {:.4} ± {:.4} vs llama.cpp {final_ref:.4} ({:+.3}%); per chunk {running:.4?} vs {reference:?}",
        result.ppl,
        result.ppl_stderr,
        (result.ppl / final_ref - 1.0) * 100.0
    );
    assert_eq!(result.chunks, chunks);
    assert_eq!(result.scored, chunks * (n_ctx - 1 - n_ctx / 2));
    assert_eq!(running.len(), reference.len());
    for (ours, theirs) in running.iter().zip(&reference) {
        assert!((ours / theirs - 1.0).abs() < 0.01, "{model_name}: {ours} vs {theirs}");
    }
    assert!((result.ppl / final_ref - 1.0).abs() < 0.01);
}

#[test]
fn smollm2_perplexity_matches_llama_cpp() {
    check(
        "smollm2-135m-instruct",
        include_str!("../../testdata/perplexity/smollm2-135m-instruct.llama-cpp.json"),
    );
}

#[test]
fn qwen2_5_coder_perplexity_matches_llama_cpp() {
    check(
        "qwen2.5-coder-1.5b-instruct",
        include_str!("../../testdata/perplexity/qwen2.5-coder-1.5b-instruct.llama-cpp.json"),
    );
}

#[test]
fn a_text_shorter_than_two_contexts_is_a_clear_error() {
    let path = Store::from_env()
        .unwrap()
        .resolve("smollm2-135m-instruct", &mut NoProgress)
        .unwrap();
    let file = ModelFile::open_to_run(path, &mut NoProgress).unwrap();
    let model = Model::load(&file).unwrap();
    let error = perplexity(&model, Isa::selected(), &[1, 2, 3], 512, None, None, |_| {}).unwrap_err();
    assert!(error.to_string().contains("needs at least 1024"), "{error}");
}
