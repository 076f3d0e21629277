//! Importing a LoRA adapter trained with Hugging Face PEFT (testdata/peft/smollm2, made by
//! testdata/peft/make_fixture.py): hearth with the imported adapter computes the logits PyTorch + PEFT compute.
//!
//! Both run SmolLM2-135M re-encoded as F16 (by `hearth quantize`), so they start from identical weights: on the
//! store's Q4_1 file hearth quantizes activations to 8 bits, as llama.cpp does, and its base logits differ from
//! PyTorch's f32 ones by up to 0.5, as much as the adapter moves them. On F16 they agree within 0.011.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hearth_kernel::ops::kv::KvType;
use hearth_kernel::simd::Isa;
use hearth_runtime::lora::{LoraAdapter, peft};
use hearth_runtime::model::{Logits, Model, Scratch};
use hearth_runtime::quantize::{Preset, quantize_file};
use hearth_runtime::{ModelFile, NoProgress, Store};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    ids: Vec<u32>,
    /// For each of the last positions: token ids with PyTorch's logits without and with the adapter.
    positions: Vec<Vec<Logit>>,
}

#[derive(Deserialize)]
struct Logit {
    id: usize,
    base: f32,
    adapted: f32,
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/peft/smollm2")
}

/// SmolLM2-135M as F16, made once per test run, as the fixture's script was given it.
fn model_file() -> ModelFile {
    static F16: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = F16.get_or_init(|| {
        let store = Store::from_env().unwrap();
        let q4 = store.resolve("smollm2-135m-instruct", &mut NoProgress).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let f16 = dir.path().join("smollm2-135m-instruct.f16.gguf");
        quantize_file(&q4, &f16, Preset::F16, true, &mut NoProgress).unwrap();
        (dir, f16)
    });
    ModelFile::open(path).unwrap()
}

/// The logits of the last `rows` positions of `ids`.
fn last_logits(model: &Model<'_>, ids: &[u32], rows: usize) -> Vec<Vec<f32>> {
    let mut kv = model.new_cache(KvType::F16, ids.len()).unwrap();
    let mut scratch = Scratch::default();
    let logits = model
        .forward(
            Isa::best(),
            ids,
            0,
            &mut kv,
            &mut scratch,
            Logits::From(ids.len() - rows),
        )
        .unwrap();
    logits.chunks_exact(model.vocab_size()).map(<[f32]>::to_vec).collect()
}

#[test]
fn an_imported_peft_adapter_changes_the_logits_as_pytorch_and_peft_do() {
    let reference: Reference =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("reference.json")).unwrap()).unwrap();
    let file = model_file();
    let base = Model::load(&file).unwrap();
    let import = peft::import(&fixture(), &base).unwrap();
    // Two blocks × seven projections; rsLoRA and the per-module rank and alpha rescale every pair; Q and K are
    // reordered for llama's adjacent-pair RoPE.
    assert_eq!(import.adapter.pairs().count(), 14);
    assert_eq!((import.rescaled, import.permuted), (14, 4));
    assert_eq!(import.base_model.as_deref(), Some("smollm2-135m-instruct.f16.gguf"));

    let mut adapted = Model::load(&file).unwrap();
    adapted.attach_lora(import.adapter, 1.0).unwrap();
    let rows = reference.positions.len();
    let hearth_base = last_logits(&base, &reference.ids, rows);
    let hearth_adapted = last_logits(&adapted, &reference.ids, rows);
    // Compare what the adapter changes (the base logits differ a little: f16 against f32 arithmetic). Measured:
    // effects up to 0.44, hearth's within 0.013 of PyTorch's; without reordering Q/K rows, off by 0.097.
    let (mut worst_error, mut largest_effect, mut worst_base) = (0.0f32, 0.0f32, 0.0f32);
    for (row, logits) in reference.positions.iter().enumerate() {
        for l in logits {
            let expected = l.adapted - l.base;
            let got = hearth_adapted[row][l.id] - hearth_base[row][l.id];
            worst_error = worst_error.max((got - expected).abs());
            largest_effect = largest_effect.max(expected.abs());
            worst_base = worst_base.max((hearth_base[row][l.id] - l.base).abs());
        }
    }
    eprintln!(
        "adapter effect up to {largest_effect:.4}; hearth's differs from PyTorch's by at most {worst_error:.4} \
         (base logits by at most {worst_base:.4})"
    );
    assert!(
        largest_effect > 0.2,
        "the fixture's adapter should move the logits clearly"
    );
    assert!(
        worst_error < 0.1 * largest_effect && worst_base < 0.05,
        "hearth's adapter effect differs from PyTorch's by {worst_error} (effects up to {largest_effect}), base logits by {worst_base}"
    );
}

#[test]
fn an_imported_adapter_saves_in_llama_cpp_format_and_loads_back_unchanged() {
    let file = model_file();
    let model = Model::load(&file).unwrap();
    let import = peft::import(&fixture(), &model).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imported.gguf");
    import.adapter.save(&path, "llama").unwrap();
    let saved = ModelFile::open(&path).unwrap();
    assert_eq!(LoraAdapter::from_gguf(saved.gguf(), &model).unwrap(), import.adapter);
}

/// A copy of the fixture with `change` applied to its directory.
fn altered(change: impl FnOnce(&Path)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(fixture().join(name), dir.path().join(name)).unwrap();
    }
    change(dir.path());
    dir
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("adapter_config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, config.to_string()).unwrap();
}

#[test]
fn adapters_that_cannot_be_carried_are_refused_with_the_reason() {
    let file = model_file();
    let model = Model::load(&file).unwrap();
    let cases: Vec<(tempfile::TempDir, &str)> = vec![
        (
            altered(|d| edit_config(d, |c| c["use_dora"] = true.into())),
            "use_dora is set",
        ),
        (
            altered(|d| edit_config(d, |c| c["peft_type"] = "IA3".into())),
            "peft_type is IA3",
        ),
        (
            altered(|d| edit_config(d, |c| c["modules_to_save"] = serde_json::json!(["lm_head"]))),
            "modules_to_save",
        ),
        (
            altered(|d| edit_config(d, |c| c["fan_in_fan_out"] = true.into())),
            "fan_in_fan_out",
        ),
        (
            altered(|d| {
                std::fs::remove_file(d.join("adapter_model.safetensors")).unwrap();
                std::fs::write(d.join("adapter_model.bin"), b"pickle").unwrap();
            }),
            "safe_serialization=True",
        ),
        (
            altered(|d| std::fs::write(d.join("adapter_model.safetensors"), b"\x10\0\0\0").unwrap()),
            "adapter_model.safetensors",
        ),
        (
            altered(|d| std::fs::remove_file(d.join("adapter_config.json")).unwrap()),
            "adapter_config.json",
        ),
    ];
    for (dir, why) in cases {
        let error = peft::import(dir.path(), &model).unwrap_err().to_string();
        assert!(error.contains(why), "expected {why:?} in: {error}");
    }
}
