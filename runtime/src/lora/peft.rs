//! Importing LoRA adapters trained with Hugging Face PEFT (a directory holding `adapter_config.json` and
//! `adapter_model.safetensors`), so an adapter trained on a GPU elsewhere runs in hearth and llama.cpp.
//!
//! What changes on the way:
//! - Names: `…layers.N.self_attn.q_proj.lora_A.weight` becomes `blk.N.attn_q.weight.lora_a`, and so on for the seven
//!   projections. The layouts agree: PEFT's `lora_A.weight` is `[rank, n_in]` row-major, which is GGUF's
//!   `ne = [n_in, rank]`; `lora_B.weight` is `[n_out, rank]`.
//! - Scale: PEFT scales a module by `lora_alpha / r` (`/ √r` with rsLoRA), with per-module `rank_pattern` and
//!   `alpha_pattern` overrides; an adapter file has one `alpha` and scales each pair by `alpha / rank`. Where the two
//!   differ, the ratio is folded into `B`.
//! - Rows: Hugging Face checkpoints rotate split halves of each head, `(i, i + d/2)`. The GGUF converter reorders the
//!   Q and K rows of architectures whose RoPE rotates adjacent pairs (llama) so that pair `i` lands on rows
//!   `(2i, 2i+1)`; the same reordering applies to the output rows of those pairs' `B`.
//!
//! What cannot be carried is refused by name: DoRA magnitudes, LoRA biases, embedding or output-head adapters,
//! fully trained `modules_to_save`, Conv1D (`fan_in_fan_out`) layouts.

use std::collections::BTreeMap;
use std::path::Path;

use hearth_kernel::ops::rope::RopeStyle;
use hearth_kernel::{GgmlType, quant};
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use super::{LayerLora, LoraAdapter, LoraError, LoraPair};
use crate::model::{Model, Projection};

/// The fields of `adapter_config.json` the import reads; the others (dropout, task type, …) do not change the
/// weights.
#[derive(Debug, Deserialize)]
struct PeftConfig {
    peft_type: Option<String>,
    r: usize,
    lora_alpha: f32,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default)]
    fan_in_fan_out: bool,
    /// Per-module alphas, keyed by a module name or a regular expression matching the end of one, in the file's
    /// order (PEFT takes the first matching key). Ranks need no pattern: the tensors' shapes give them.
    #[serde(default, deserialize_with = "in_file_order")]
    alpha_pattern: Vec<(String, f32)>,
    #[serde(default)]
    modules_to_save: Option<Vec<String>>,
    #[serde(default)]
    base_model_name_or_path: Option<String>,
    /// Everything else, to refuse the options that change what an adapter computes.
    #[serde(flatten)]
    rest: BTreeMap<String, serde_json::Value>,
}

/// Options of PEFT's LoRA that change the computation beyond `scale · B·A` (DoRA's magnitudes, QA-LoRA's pooling,
/// BD-LoRA's block-diagonal factors, layer replication, aLoRA's activation tokens): set to anything but
/// null/false/empty, the adapter cannot be written as plain LoRA.
const CHANGES_THE_COMPUTATION: [&str; 5] = [
    "use_dora",
    "use_qalora",
    "use_bdlora",
    "layer_replication",
    "alora_invocation_tokens",
];

impl PeftConfig {
    /// PEFT's factor for a module of this alpha and rank.
    fn scale(&self, alpha: f32, rank: usize) -> f32 {
        let rank = rank as f32;
        alpha / if self.use_rslora { rank.sqrt() } else { rank }
    }
}

/// `alpha_pattern` compiled once: PEFT matches each key as `(.*\.)?(key)$` against a module's name.
struct AlphaPatterns {
    patterns: Vec<(regex::Regex, f32)>,
    default: f32,
}

impl AlphaPatterns {
    fn new(config: &PeftConfig) -> Result<Self, LoraError> {
        let patterns = config
            .alpha_pattern
            .iter()
            .map(|(key, alpha)| {
                let pattern = regex::Regex::new(&format!(r"^(.*\.)?({key})$")).map_err(|e| {
                    LoraError::NotAnAdapter(format!("adapter_config.json: alpha_pattern key {key:?}: {e}"))
                })?;
                Ok((pattern, *alpha))
            })
            .collect::<Result<_, LoraError>>()?;
        Ok(AlphaPatterns {
            patterns,
            default: config.lora_alpha,
        })
    }

    /// The alpha of the module at `path` (its name in the base model, `model.layers.3.self_attn.v_proj`), by PEFT's
    /// rule: the first key matching a trailing run of the path's components, else `lora_alpha`.
    fn alpha_of(&self, path: &str) -> f32 {
        self.patterns
            .iter()
            .find(|(pattern, _)| pattern.is_match(path))
            .map_or(self.default, |(_, alpha)| *alpha)
    }
}

/// A JSON object as its entries in the file's order.
fn in_file_order<'de, D, V>(deserializer: D) -> Result<Vec<(String, V)>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Entries<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Entries<V> {
        type Value = Vec<(String, V)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
            let mut entries = Vec::new();
            while let Some(entry) = map.next_entry()? {
                entries.push(entry);
            }
            Ok(entries)
        }
    }
    deserializer.deserialize_map(Entries(std::marker::PhantomData))
}

/// What an import read, for the report.
#[derive(Clone, Debug, PartialEq)]
pub struct PeftImport {
    /// The adapter, ready to save or attach.
    pub adapter: LoraAdapter,
    /// The model the adapter says it was trained on (`base_model_name_or_path`), if it says.
    pub base_model: Option<String>,
    /// Pairs whose PEFT scale differed from `alpha / rank` and was folded into `B`.
    pub rescaled: usize,
    /// Q/K pairs whose rows were reordered for the GGUF RoPE layout.
    pub permuted: usize,
}

/// The PEFT module name of each projection, as Hugging Face's llama, qwen2 and gemma3 implementations call them.
fn projection_of(module: &str) -> Option<Projection> {
    Some(match module {
        "q_proj" => Projection::Q,
        "k_proj" => Projection::K,
        "v_proj" => Projection::V,
        "o_proj" => Projection::O,
        "gate_proj" => Projection::Gate,
        "up_proj" => Projection::Up,
        "down_proj" => Projection::Down,
        _ => return None,
    })
}

/// A tensor's place: the module path (`base_model.model.model.layers.3.self_attn.q_proj`), its block, its
/// projection and whether it is `A` (else `B`).
struct Place<'n> {
    module: &'n str,
    block: usize,
    projection: Projection,
    is_a: bool,
}

fn place(name: &str) -> Result<Place<'_>, LoraError> {
    let refuse = |why: &str| LoraError::BadTensor {
        name: name.into(),
        why: why.into(),
    };
    let (module, is_a) = if let Some(module) = name.strip_suffix(".lora_A.weight") {
        (module, true)
    } else if let Some(module) = name.strip_suffix(".lora_B.weight") {
        (module, false)
    } else if name.contains("lora_magnitude_vector") {
        return Err(refuse(
            "a DoRA magnitude: DoRA adapters cannot be written as plain LoRA",
        ));
    } else if name.contains("lora_embedding_") {
        return Err(refuse(
            "an embedding adapter: hearth and llama.cpp adapt projections only",
        ));
    } else if name.ends_with(".lora_B.bias") {
        return Err(refuse(
            "a LoRA bias (lora_bias=True), which the adapter format cannot carry",
        ));
    } else {
        return Err(refuse(
            "not a LoRA factor (a fully trained module from modules_to_save?): the adapter format carries only lora_A/lora_B pairs",
        ));
    };
    let parts: Vec<&str> = module.split('.').collect();
    let block = parts
        .windows(2)
        .find(|w| w[0] == "layers")
        .and_then(|w| w[1].parse().ok())
        .ok_or_else(|| refuse("adapts something outside the transformer blocks (no layers.N in its name)"))?;
    let projection = parts.last().and_then(|m| projection_of(m)).ok_or_else(|| {
        refuse("adapts a module hearth cannot adapt (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)")
    })?;
    Ok(Place {
        module,
        block,
        projection,
        is_a,
    })
}

/// A safetensors tensor as f32 values (F32, F16 or BF16).
fn to_f32(name: &str, view: &safetensors::tensor::TensorView<'_>) -> Result<Vec<f32>, LoraError> {
    let dtype = match view.dtype() {
        Dtype::F32 => GgmlType::F32,
        Dtype::F16 => GgmlType::F16,
        Dtype::BF16 => GgmlType::BF16,
        other => {
            return Err(LoraError::BadTensor {
                name: name.into(),
                why: format!("type {other:?} (expected F32, F16 or BF16)"),
            });
        }
    };
    let mut values = vec![0.0; view.shape().iter().product()];
    quant::dequantize(dtype, view.data(), &mut values).map_err(|e| LoraError::BadTensor {
        name: name.into(),
        why: e.to_string(),
    })?;
    Ok(values)
}

/// Reorders the rows of `b` (`[n_heads · head_dim, rank]`) from Hugging Face's split-half RoPE layout to the
/// adjacent-pair one: within each head, row `h · d/2 + j` moves to row `2j + h` (`h` ∈ {0, 1}).
fn interleave_head_rows(b: &[f32], rank: usize, head_dim: usize) -> Vec<f32> {
    let half = head_dim / 2;
    let mut out = vec![0.0; b.len()];
    for (src_head, dst_head) in b
        .chunks_exact(head_dim * rank)
        .zip(out.chunks_exact_mut(head_dim * rank))
    {
        for h in 0..2 {
            for j in 0..half {
                let src = (h * half + j) * rank;
                let dst = (2 * j + h) * rank;
                dst_head[dst..dst + rank].copy_from_slice(&src_head[src..src + rank]);
            }
        }
    }
    out
}

/// Reads the PEFT adapter in `dir` and converts it for `model`, checking every pair against the weight it adapts.
pub fn import(dir: &Path, model: &Model<'_>) -> Result<PeftImport, LoraError> {
    let config_path = dir.join("adapter_config.json");
    let config_text = std::fs::read_to_string(&config_path).map_err(|e| {
        LoraError::NotAnAdapter(format!(
            "{}: {e} (a PEFT adapter directory holds it)",
            config_path.display()
        ))
    })?;
    let config: PeftConfig = serde_json::from_str(&config_text)
        .map_err(|e| LoraError::NotAnAdapter(format!("{}: {e}", config_path.display())))?;
    let unsupported = |what: &str| LoraError::NotAnAdapter(format!("adapter_config.json: {what}"));
    if let Some(kind) = config.peft_type.as_deref().filter(|k| *k != "LORA") {
        return Err(unsupported(&format!(
            "peft_type is {kind}, only LORA adapters can be imported"
        )));
    }
    for option in CHANGES_THE_COMPUTATION {
        let set = match config.rest.get(option) {
            None | Some(serde_json::Value::Null | serde_json::Value::Bool(false)) => false,
            Some(serde_json::Value::Array(a)) => !a.is_empty(),
            Some(serde_json::Value::Object(o)) => !o.is_empty(),
            Some(_) => true,
        };
        if set {
            return Err(unsupported(&format!(
                "{option} is set: such an adapter cannot be written as plain LoRA"
            )));
        }
    }
    if config.fan_in_fan_out {
        return Err(unsupported(
            "fan_in_fan_out (Conv1D layouts, GPT-2 style) is not a layout hearth's models use",
        ));
    }
    if config.r == 0 {
        return Err(unsupported("r is 0"));
    }
    if let Some(modules) = config.modules_to_save.as_ref().filter(|m| !m.is_empty()) {
        return Err(unsupported(&format!(
            "modules_to_save {modules:?}: fully trained modules cannot be carried by an adapter file"
        )));
    }

    let weights_path = dir.join("adapter_model.safetensors");
    let bytes = std::fs::read(&weights_path).map_err(|e| {
        let hint = if dir.join("adapter_model.bin").exists() {
            " (this adapter is a pickled adapter_model.bin: save it again with safe_serialization=True)"
        } else {
            ""
        };
        LoraError::NotAnAdapter(format!("{}: {e}{hint}", weights_path.display()))
    })?;
    let tensors = SafeTensors::deserialize(&bytes)
        .map_err(|e| LoraError::NotAnAdapter(format!("{}: {e}", weights_path.display())))?;

    // Gather the factors of each (block, projection) first: A and B arrive in any order.
    type Factors<'n> = (
        &'n str,
        Option<(String, Vec<f32>, Vec<usize>)>,
        Option<(String, Vec<f32>, Vec<usize>)>,
    );
    let mut found: BTreeMap<(usize, Projection), Factors<'_>> = BTreeMap::new();
    let names = tensors.names();
    for name in &names {
        let view = tensors.tensor(name).map_err(|e| LoraError::BadTensor {
            name: (*name).to_owned(),
            why: e.to_string(),
        })?;
        let place = place(name)?;
        let entry = found
            .entry((place.block, place.projection))
            .or_insert((place.module, None, None));
        let factor = Some(((*name).to_owned(), to_f32(name, &view)?, view.shape().to_vec()));
        if place.is_a {
            entry.1 = factor;
        } else {
            entry.2 = factor;
        }
    }
    if found.is_empty() {
        return Err(LoraError::NotAnAdapter(format!(
            "{} holds no LoRA pairs",
            weights_path.display()
        )));
    }

    let alphas = AlphaPatterns::new(&config)?;
    let shapes = model.config();
    let mut layers = vec![LayerLora::default(); model.layers().len()];
    let (mut rescaled, mut permuted) = (0, 0);
    for ((block, projection), (module, a, b)) in found {
        let (Some((a_name, a, a_shape)), Some((b_name, mut b, b_shape))) = (a, b) else {
            return Err(LoraError::BadTensor {
                name: module.into(),
                why: "has only one of lora_A and lora_B".into(),
            });
        };
        let Some(layer) = model.layers().get(block) else {
            return Err(LoraError::BadTensor {
                name: a_name,
                why: format!("block {block}, but the model has {} blocks", model.layers().len()),
            });
        };
        let w = projection.weights(layer);
        let rank = a_shape.first().copied().unwrap_or(0);
        if a_shape != [rank, w.n_in] || rank == 0 {
            return Err(LoraError::BadTensor {
                name: a_name,
                why: format!("shape {a_shape:?}, expected [rank, {}]", w.n_in),
            });
        }
        if b_shape != [w.n_out, rank] {
            return Err(LoraError::BadTensor {
                name: b_name,
                why: format!("shape {b_shape:?}, expected [{}, {rank}]", w.n_out),
            });
        }
        let alpha = alphas.alpha_of(module.strip_prefix("base_model.model.").unwrap_or(module));
        let factor = config.scale(alpha, rank) / (config.lora_alpha / rank as f32);
        if factor != 1.0 {
            b.iter_mut().for_each(|v| *v *= factor);
            rescaled += 1;
        }
        let adjacent_pairs = shapes.layers[block].rope.style == RopeStyle::Normal;
        if adjacent_pairs && matches!(projection, Projection::Q | Projection::K) {
            b = interleave_head_rows(&b, rank, shapes.head_dim);
            permuted += 1;
        }
        layers[block].0[projection as usize] = Some(LoraPair {
            n_in: w.n_in,
            n_out: w.n_out,
            rank,
            a,
            b,
        });
    }
    Ok(PeftImport {
        adapter: LoraAdapter {
            alpha: config.lora_alpha,
            layers,
        },
        base_model: config.base_model_name_or_path,
        rescaled,
        permuted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_rows_move_from_split_halves_to_adjacent_pairs() {
        // Two heads of dimension 4, rank 1: rows (0, 2) and (1, 3) of each head are rotation pairs in the split-half
        // layout; afterwards each pair is adjacent.
        let b: Vec<f32> = (0..8).map(|i| i as f32).collect();
        assert_eq!(interleave_head_rows(&b, 1, 4), [0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
        // Rank 2 moves whole rows.
        let b: Vec<f32> = (0..8).map(|i| i as f32).collect();
        assert_eq!(interleave_head_rows(&b, 2, 4), [0.0, 1.0, 4.0, 5.0, 2.0, 3.0, 6.0, 7.0]);
    }

    #[test]
    fn tensor_names_map_to_blocks_and_projections() {
        let p = place("base_model.model.model.layers.12.mlp.down_proj.lora_B.weight").unwrap();
        assert_eq!((p.block, p.projection, p.is_a), (12, Projection::Down, false));
        assert_eq!(p.module, "base_model.model.model.layers.12.mlp.down_proj");
        let p = place("base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight").unwrap();
        assert_eq!((p.block, p.projection, p.is_a), (0, Projection::Q, true));
        for (name, why) in [
            (
                "base_model.model.lm_head.lora_A.weight",
                "outside the transformer blocks",
            ),
            ("base_model.model.model.embed_tokens.lora_embedding_A", "embedding"),
            (
                "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector",
                "DoRA",
            ),
            ("base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias", "bias"),
            (
                "base_model.model.model.layers.0.mlp.experts.lora_A.weight",
                "cannot adapt",
            ),
            (
                "base_model.model.lm_head.modules_to_save.default.weight",
                "modules_to_save",
            ),
        ] {
            let error = place(name).err().unwrap().to_string();
            assert!(error.contains(why), "{name}: {error}");
        }
    }

    #[test]
    fn alpha_patterns_match_trailing_module_names_as_peft_does() {
        let config: PeftConfig = serde_json::from_str(
            r#"{"r": 8, "lora_alpha": 16, "use_rslora": true,
                "alpha_pattern": {"layers\\.2\\.self_attn\\.v_proj": 8, "v_proj": 4,
                                  "layers\\.1\\.mlp\\.(up|down)_proj": 2}}"#,
        )
        .unwrap();
        let patterns = AlphaPatterns::new(&config).unwrap();
        let alpha = |path: &str| patterns.alpha_of(path);
        assert_eq!(alpha("model.layers.3.self_attn.v_proj"), 4.0);
        assert_eq!(alpha("model.layers.1.mlp.up_proj"), 2.0);
        assert_eq!(alpha("model.layers.11.mlp.up_proj"), 16.0);
        assert_eq!(alpha("model.layers.3.self_attn.xv_proj"), 16.0);
        // The first matching key wins, in the file's order.
        assert_eq!(alpha("model.layers.2.self_attn.v_proj"), 8.0);
        assert_eq!(config.scale(16.0, 4), 8.0);
    }
}
