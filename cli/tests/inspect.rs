//! `hearth inspect --json` on the three known models agrees with what the reference reader (the `gguf` Python
//! package) reports for the same files: testdata/golden/*.gguf-py.json, made by testdata/golden/gguf_py_dump.py.
//! The models come through the store (`-m NAME` pulls on first use), shared with every other test.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn hearth_json(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .output()
        .expect("run hearth");
    assert!(
        out.status.success(),
        "hearth {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("hearth printed JSON")
}

fn golden(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../testdata/golden/{name}.gguf-py.json"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("golden file")).expect("golden JSON")
}

fn check_model(name: &str) {
    let ours = hearth_json(&["inspect", "--json", "-m", name]);
    let reference = golden(name);

    let our_meta = ours["metadata"].as_object().unwrap();
    let ref_meta = reference["metadata"].as_object().unwrap();
    let mut our_keys: Vec<&String> = our_meta.keys().collect();
    let mut ref_keys: Vec<&String> = ref_meta.keys().collect();
    our_keys.sort();
    ref_keys.sort();
    assert_eq!(our_keys, ref_keys, "{name}: metadata keys");
    for (key, expected) in ref_meta {
        assert_eq!(&our_meta[key], expected, "{name}: metadata {key}");
    }

    let data_offset = ours["data_offset"].as_u64().unwrap();
    let our_tensors = ours["tensors"].as_array().unwrap();
    let ref_tensors = reference["tensors"].as_array().unwrap();
    assert_eq!(our_tensors.len(), ref_tensors.len(), "{name}: tensor count");
    for (t, r) in our_tensors.iter().zip(ref_tensors) {
        let what = format!("{name}: tensor {}", r["name"]);
        assert_eq!(t["name"], r["name"], "{what}");
        assert_eq!(t["type"], r["type"], "{what}");
        assert_eq!(t["ne"], r["ne"], "{what}");
        assert_eq!(t["bytes"], r["bytes"], "{what}");
        assert_eq!(
            data_offset + t["offset"].as_u64().unwrap(),
            r["abs_offset"].as_u64().unwrap(),
            "{what}"
        );
    }
}

#[test]
fn qwen2_5_coder_matches_the_reference_reader() {
    check_model("qwen2.5-coder-1.5b-instruct");
}

#[test]
fn smollm2_matches_the_reference_reader() {
    check_model("smollm2-135m-instruct");
}

#[test]
fn gemma3_matches_the_reference_reader() {
    check_model("gemma-3-270m");
}

#[test]
fn text_output_names_architecture_shapes_and_types() {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["inspect", "-m", "smollm2-135m-instruct"])
        .output()
        .expect("run hearth");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("architecture  llama"), "{text}");
    assert!(text.contains("llama.block_count"), "{text}");
    assert!(text.contains("token_embd.weight"), "{text}");
    // SmolLM2's file mixes Q4_1 weights with a Q8_0 embedding table and F32 norms.
    for dtype in ["Q4_1", "Q8_0", "F32"] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(dtype) && l.contains("tensors")),
            "{dtype}: {text}"
        );
    }
}

#[test]
fn bad_model_arguments_are_clear_errors() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(args)
            .output()
            .expect("run hearth")
    };
    let out = run(&["inspect", "-m", "no-such-model"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown model 'no-such-model'") && stderr.contains("qwen2.5-coder-1.5b-instruct"),
        "{stderr}"
    );

    let malformed =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/gguf/malformed/overlapping_tensors.gguf");
    let out = run(&["inspect", "-m", malformed.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not a usable GGUF model") && stderr.contains("overlaps"),
        "{stderr}"
    );
}
