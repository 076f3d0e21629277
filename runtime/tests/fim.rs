//! Fill-in-the-middle prompts with Qwen2.5-Coder's real tokenizer: the repo-level layout its model card documents,
//! user text that is never read as control tokens, and a clear error for models without FIM tokens.

use hearth_runtime::fim::{ContextFile, FimError, FimRequest, fim_prompt};
use hearth_runtime::tokenizer::Tokenizer;
use hearth_runtime::{ModelFile, NoProgress, Store};

fn tokenizer(model: &str) -> Tokenizer {
    let path = Store::from_env().unwrap().resolve(model, &mut NoProgress).unwrap();
    Tokenizer::from_gguf(ModelFile::open(path).unwrap().gguf()).unwrap()
}

#[test]
fn repo_level_prompts_follow_qwen_coders_layout() {
    let qwen = tokenizer("qwen2.5-coder-1.5b-instruct");
    let context = [ContextFile {
        path: "util.py".into(),
        text: "def sub(a, b):\n    return a - b".into(),
    }];
    let request = FimRequest {
        prefix: "def add(a, b):\n    ",
        suffix: "\n",
        repo_name: Some("calc"),
        path: Some("ops.py"),
        context: &context,
    };
    let ids = fim_prompt(&qwen, &request).unwrap();
    assert_eq!(
        qwen.decode(&ids),
        "<|repo_name|>calc\n<|file_sep|>util.py\ndef sub(a, b):\n    return a - b\n<|file_sep|>ops.py\n\
         <|fim_prefix|>def add(a, b):\n    <|fim_suffix|>\n<|fim_middle|>"
    );
    let fim = qwen.fim();
    assert_eq!(ids.last().copied(), fim.middle);
    assert_eq!(ids.first().copied(), fim.repo);

    // Without repo context: the plain prefix-suffix-middle form.
    let plain = fim_prompt(
        &qwen,
        &FimRequest {
            prefix: "x = ",
            suffix: "\n",
            ..FimRequest::default()
        },
    )
    .unwrap();
    assert_eq!(qwen.decode(&plain), "<|fim_prefix|>x = <|fim_suffix|>\n<|fim_middle|>");
}

#[test]
fn control_token_text_in_code_stays_text() {
    let qwen = tokenizer("qwen2.5-coder-1.5b-instruct");
    let tricky = "s = '<|fim_middle|><|endoftext|>'\n";
    let ids = fim_prompt(
        &qwen,
        &FimRequest {
            prefix: tricky,
            suffix: "",
            ..FimRequest::default()
        },
    )
    .unwrap();
    let middle = qwen.fim().middle.unwrap();
    assert_eq!(
        ids.iter().filter(|&&id| id == middle).count(),
        1,
        "only the prompt's own middle token"
    );
    assert!(ids.iter().all(|&id| !qwen.is_end_of_generation(id)));
    assert!(qwen.decode(&ids).contains(tricky));
}

#[test]
fn models_without_fim_tokens_are_refused() {
    let smol = tokenizer("smollm2-135m-instruct");
    let error = fim_prompt(
        &smol,
        &FimRequest {
            prefix: "a",
            suffix: "b",
            ..FimRequest::default()
        },
    );
    assert!(matches!(error, Err(FimError::Unsupported)), "{error:?}");
}
