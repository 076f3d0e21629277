//! `hearth adapter import` as a user runs it: a PEFT adapter (testdata/peft/smollm2) becomes an adapter GGUF that
//! `--lora` takes; an adapter for another model is refused with what does not fit.

mod common;

use std::path::Path;

use common::hearth_in;

fn fixture() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/peft/smollm2")
        .display()
        .to_string()
}

#[test]
fn imports_a_peft_adapter_that_run_then_applies() {
    let dir = tempfile::tempdir().unwrap();
    let smollm2 = ["-m", "smollm2-135m-instruct"];
    let (ok, _, err) = hearth_in(
        dir.path(),
        &[&["adapter", "import", &fixture(), "-o", "peft.gguf"], &smollm2[..]].concat(),
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("14 pairs in 2 of 30 blocks")
            && err.contains("14 pairs rescaled")
            && err.contains("4 Q/K pairs reordered for llama's RoPE layout"),
        "{err}"
    );
    let run = |lora: &[&str]| {
        let args = [
            &["run", "-p", "def fibonacci(n):", "-n", "12", "--temp", "0"],
            &smollm2[..],
            lora,
        ]
        .concat();
        let (ok, out, err) = hearth_in(dir.path(), &args);
        assert!(ok, "{err}");
        out
    };
    // At scale 0 the adapter changes nothing; at 4 its (random) weights change the greedy answer.
    assert_eq!(run(&["--lora", "peft.gguf:0"]), run(&[]));
    assert_ne!(run(&["--lora", "peft.gguf:4"]), run(&[]));
}

#[test]
fn an_adapter_for_another_model_or_no_adapter_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = hearth_in(
        dir.path(),
        &["adapter", "import", &fixture(), "-o", "x.gguf", "-m", "gemma-3-270m"],
    );
    assert!(
        !ok && err.contains("lora_A.weight: shape [2, 576], expected [rank, 640]"),
        "{err}"
    );
    assert!(!dir.path().join("x.gguf").exists());
    let (ok, _, err) = hearth_in(dir.path(), &["adapter", "import", "missing", "-o", "x.gguf"]);
    assert!(!ok && err.contains("missing is not a directory"), "{err}");
}
