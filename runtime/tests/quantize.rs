//! hearth's quantizer writes the same bytes as llama.cpp's for every preset: SmolLM2 → F16 → each preset, compared
//! tensor by tensor with testdata/golden/quantize-smollm2.json (made by make_quantize_golden.py from llama-quantize).

use std::collections::BTreeMap;
use std::path::Path;

use hearth_runtime::quantize::{Preset, QuantizeError, quantize_file};
use hearth_runtime::{ModelFile, NoProgress, Store};
use sha2::{Digest, Sha256};

fn digest(path: &Path) -> BTreeMap<String, String> {
    let file = ModelFile::open(path).unwrap();
    file.gguf()
        .tensors()
        .iter()
        .map(|t| {
            let hash: String = Sha256::digest(t.data)
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect();
            (t.name.to_owned(), format!("{}:{hash}", t.dtype))
        })
        .collect()
}

fn assert_same(preset: &str, ours: &BTreeMap<String, String>, golden: &serde_json::Value) {
    let golden = golden[preset]
        .as_object()
        .unwrap_or_else(|| panic!("no golden for {preset}"));
    assert_eq!(ours.len(), golden.len(), "{preset}: tensor count");
    let differing: Vec<String> = golden
        .iter()
        .filter(|(name, expected)| ours.get(*name).map(String::as_str) != expected.as_str())
        .map(|(name, expected)| format!("{name}: ours {:?}, llama.cpp {expected}", ours.get(name)))
        .collect();
    assert!(
        differing.is_empty(),
        "{preset}: {} tensors differ from llama.cpp:\n{}",
        differing.len(),
        differing.join("\n")
    );
}

#[test]
fn every_preset_matches_llama_cpp_byte_for_byte() {
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("../../testdata/golden/quantize-smollm2.json")).unwrap();
    let model = Store::from_env()
        .unwrap()
        .resolve("smollm2-135m-instruct", &mut NoProgress)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f16 = dir.path().join("f16.gguf");
    quantize_file(&model, &f16, Preset::F16, true, &mut NoProgress).unwrap();
    assert_same("f16", &digest(&f16), &golden);
    for preset in [Preset::Q8_0, Preset::Q4_0, Preset::Q4KM, Preset::Q5KM, Preset::Q6K] {
        let out = dir.path().join(format!("{}.gguf", preset.name()));
        quantize_file(&f16, &out, preset, false, &mut NoProgress).unwrap();
        assert_same(preset.name(), &digest(&out), &golden);
    }
}

#[test]
fn requantizing_needs_consent_and_failures_leave_no_output() {
    let model = Store::from_env()
        .unwrap()
        .resolve("smollm2-135m-instruct", &mut NoProgress)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.gguf");
    let err = quantize_file(&model, &out, Preset::Q8_0, false, &mut NoProgress).unwrap_err();
    assert!(matches!(err, QuantizeError::Requantize { .. }), "{err}");
    assert!(err.to_string().contains("--allow-requantize"), "{err}");
    assert!(!out.exists() && !out.with_extension("gguf.partial").exists());
    let err = quantize_file(&model, &model, Preset::Q8_0, true, &mut NoProgress).unwrap_err();
    assert!(matches!(err, QuantizeError::SameFile(_)), "{err}");
}
