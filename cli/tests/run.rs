//! `hearth run` and `hearth tokenize` as a user runs them, on SmolLM2: the greedy answer llama.cpp gives to a chat
//! prompt (testdata/golden/kernel-example.json), the chat template, seeds, and context overflow.

mod common;

use common::hearth;

/// llama.cpp's greedy answer to a SmolLM2 chat prompt, with the prompt and its token ids.
fn golden() -> serde_json::Value {
    serde_json::from_str(include_str!("../../testdata/golden/kernel-example.json")).unwrap()
}

#[test]
fn answer_matches_llama_cpp() {
    let golden = golden();
    let expected = golden["llama_cpp_greedy_text"].as_str().unwrap();
    let prompt = golden["prompt"].as_str().unwrap();
    let (ok, stdout, stderr) = hearth(&[
        "run",
        "-m",
        "smollm2-135m-instruct",
        "-p",
        prompt,
        "--temp",
        "0",
        "-n",
        "32",
    ]);
    assert!(ok, "{stderr}");
    // Generation stops at the end-of-turn token, so the answer is all there is.
    assert_eq!(stdout.trim_end(), expected, "stderr: {stderr}");
    assert!(stderr.contains("prompt") && stderr.contains("t/s"), "{stderr}");
}

#[test]
fn chat_template_renders_the_models_turn_format() {
    let (ok, stdout, stderr) = hearth(&[
        "run",
        "-m",
        "smollm2-135m-instruct",
        "--chat",
        "-p",
        "What is 2+2?",
        "--temp",
        "0",
        "-n",
        "32",
    ]);
    assert!(ok, "{stderr}");
    // SmolLM2's template adds its default system prompt: a longer prompt than the bare turn, and a sensible answer.
    let prompt_tokens: usize = stderr
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(prompt_tokens > 16, "{stderr}");
    assert!(stdout.contains('4'), "{stdout}");
}

#[test]
fn chat_prompt_tokens_match_llama_cpp() {
    let golden = golden();
    let prompt = golden["prompt"].as_str().unwrap();
    let (ok, stdout, stderr) = hearth(&["tokenize", "-m", "smollm2-135m-instruct", "-p", prompt, "--ids"]);
    assert!(ok, "{stderr}");
    let ids: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(ids, golden["prompt_ids"]);
}

#[test]
fn sampling_is_reproducible_with_a_seed() {
    let args = [
        "run",
        "-m",
        "smollm2-135m-instruct",
        "-p",
        "Once upon a time",
        "-n",
        "24",
        "--seed",
        "42",
        "--quiet",
    ];
    let (ok, first, stderr) = hearth(&args);
    assert!(ok, "{stderr}");
    let (_, second, _) = hearth(&args);
    assert_eq!(first, second);
    let mut other = args;
    other[8] = "43";
    let (_, third, _) = hearth(&other);
    assert!(first.trim().len() > 10);
    assert_ne!(
        first, third,
        "a different seed should (almost surely) change 24 sampled tokens"
    );
}

#[test]
fn context_overflow_is_a_clear_error() {
    let (ok, _, stderr) = hearth(&[
        "run",
        "-m",
        "smollm2-135m-instruct",
        "-p",
        "one two three four five six",
        "-c",
        "4",
    ]);
    assert!(!ok);
    assert!(stderr.contains("context overflow"), "{stderr}");
}

#[test]
fn a_stop_string_ends_the_answer_before_it() {
    let golden = golden();
    let expected = golden["llama_cpp_greedy_text"].as_str().unwrap();
    let prompt = golden["prompt"].as_str().unwrap();
    // A word from the middle of the known answer: everything before it is printed, it and the rest are not.
    let words: Vec<&str> = expected.split(' ').collect();
    let stop = words[words.len() / 2];
    let before = &expected[..expected.find(stop).unwrap()];
    let (ok, stdout, stderr) = hearth(&[
        "run",
        "-m",
        "smollm2-135m-instruct",
        "-p",
        prompt,
        "--temp",
        "0",
        "-n",
        "32",
        "--stop",
        stop,
        "--quiet",
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.strip_suffix('\n').unwrap(), before, "stop {stop:?}");
}
