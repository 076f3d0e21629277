//! Tokenization identical to llama.cpp's on a 239-string corpus (testdata/tokenizer/corpus.json: code, Unicode,
//! whitespace runs, digits, special tokens, chat text), with and without special-token parsing. The golden ids were
//! made by llama-tokenize (testdata/tokenizer/make_golden.py). Byte-level BPE (SmolLM2, Qwen2.5-Coder) and
//! SentencePiece-style BPE (Gemma-3).

use hearth_runtime::tokenizer::Tokenizer;
use hearth_runtime::{ModelFile, NoProgress, Store};
use serde_json::Value;

fn check(model: &str, golden: &str) {
    let corpus: Vec<String> = serde_json::from_str(include_str!("../../testdata/tokenizer/corpus.json")).unwrap();
    let golden: Vec<Value> = serde_json::from_str(golden).unwrap();
    assert_eq!(corpus.len(), golden.len(), "{model}: corpus and golden lengths");
    let path = Store::from_env().unwrap().resolve(model, &mut NoProgress).unwrap();
    let file = ModelFile::open(path).unwrap();
    let tokenizer = Tokenizer::from_gguf(file.gguf()).unwrap();
    let ids = |v: &Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let mut mismatches = Vec::new();
    for (text, expected) in corpus.iter().zip(&golden) {
        for (parse_special, key) in [(true, "parse_special"), (false, "no_parse_special")] {
            let ours = tokenizer.encode(text, true, parse_special);
            if ours != ids(&expected[key]) {
                mismatches.push(format!(
                    "{key} {text:?}:\n  ours      {ours:?}\n  llama.cpp {:?}",
                    ids(&expected[key])
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{model}: {} of {} differ:\n{}",
        mismatches.len(),
        2 * corpus.len(),
        mismatches.join("\n")
    );
}

#[test]
fn smollm2_tokenizes_like_llama_cpp() {
    check(
        "smollm2-135m-instruct",
        include_str!("../../testdata/tokenizer/smollm2-135m-instruct.llama-cpp.json"),
    );
}

#[test]
fn qwen2_5_coder_tokenizes_like_llama_cpp() {
    check(
        "qwen2.5-coder-1.5b-instruct",
        include_str!("../../testdata/tokenizer/qwen2.5-coder-1.5b-instruct.llama-cpp.json"),
    );
}

#[test]
fn decoding_restores_the_text() {
    let path = Store::from_env()
        .unwrap()
        .resolve("qwen2.5-coder-1.5b-instruct", &mut NoProgress)
        .unwrap();
    let file = ModelFile::open(path).unwrap();
    let tokenizer = Tokenizer::from_gguf(file.gguf()).unwrap();
    let corpus: Vec<String> = serde_json::from_str(include_str!("../../testdata/tokenizer/corpus.json")).unwrap();
    for text in &corpus {
        assert_eq!(&tokenizer.decode(&tokenizer.encode(text, false, true)), text);
    }
}

#[test]
fn gemma3_tokenizes_like_llama_cpp() {
    check(
        "gemma-3-270m",
        include_str!("../../testdata/tokenizer/gemma-3-270m.llama-cpp.json"),
    );
}
