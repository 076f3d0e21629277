//! Re-encoding a model's tensors with a quantization preset, choosing per-tensor types the way llama.cpp's
//! quantizer does (same presets, same mixtures, same fallbacks), so files from either tool are interchangeable.
//!
//! Which tensors are quantized: 2-D (or larger) tensors whose names end in `weight`, except norms and MoE router
//! weights. The rest are copied. A tensor that already has its target type is copied byte for byte.
//!
//! Merging a LoRA adapter ([`merge_file`]) is the same rewrite with each adapted weight's update `scale · B·A` added to
//! its rows between decoding and encoding.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use hearth_kernel::GgmlType;
use hearth_kernel::gguf::{Gguf, GgufWriter, MetadataEntry, TensorSpec, TensorView, Value};
use hearth_kernel::quant;
use rayon::prelude::*;

use crate::lora::{LoraAdapter, LoraError, LoraPair, adapted_weight};
use crate::model::{Model, ModelError};
use crate::model_file::{ModelFile, OpenError};
use crate::progress::{Progress, Unit};

/// A quantization preset: a base type plus llama.cpp's rules for which tensors get more bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// 4-bit K-quant, with Q6_K for the output head and for half of the attn_v/ffn_down layers.
    Q4KM,
    /// 5-bit K-quant, with Q6_K for the output head and for half of the attn_v/ffn_down layers.
    Q5KM,
    /// 6-bit K-quant everywhere.
    Q6K,
    /// 8-bit everywhere (the output head too).
    Q8_0,
    /// Legacy 4-bit, with Q6_K for the output head.
    Q4_0,
    /// Half precision for every quantizable tensor.
    F16,
}

impl Preset {
    /// Every preset, for help text and parsing.
    pub const ALL: [Preset; 6] = [
        Preset::Q4KM,
        Preset::Q5KM,
        Preset::Q6K,
        Preset::Q8_0,
        Preset::Q4_0,
        Preset::F16,
    ];

    /// The name used on the command line (`q4_k_m`, …).
    pub fn name(self) -> &'static str {
        match self {
            Preset::Q4KM => "q4_k_m",
            Preset::Q5KM => "q5_k_m",
            Preset::Q6K => "q6_k",
            Preset::Q8_0 => "q8_0",
            Preset::Q4_0 => "q4_0",
            Preset::F16 => "f16",
        }
    }

    /// The preset called `name` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name().eq_ignore_ascii_case(name))
    }

    fn base_type(self) -> GgmlType {
        match self {
            Preset::Q4KM => GgmlType::Q4_K,
            Preset::Q5KM => GgmlType::Q5_K,
            Preset::Q6K => GgmlType::Q6_K,
            Preset::Q8_0 => GgmlType::Q8_0,
            Preset::Q4_0 => GgmlType::Q4_0,
            Preset::F16 => GgmlType::F16,
        }
    }

    /// llama.cpp's `llama_ftype` number, stored as `general.file_type`.
    fn file_type(self) -> u32 {
        match self {
            Preset::F16 => 1,
            Preset::Q4_0 => 2,
            Preset::Q8_0 => 7,
            Preset::Q4KM => 15,
            Preset::Q5KM => 17,
            Preset::Q6K => 18,
        }
    }
}

/// What happens to one tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorPlan {
    /// Tensor name.
    pub name: String,
    /// Type in the input file.
    pub from: GgmlType,
    /// Type in the output file.
    pub to: GgmlType,
    /// Whether the data is re-encoded (its type changes, or an adapter is merged into it) rather than copied.
    pub reencode: bool,
}

/// Why quantization failed.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    /// The input could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// Input tensors are already quantized and re-quantizing was not allowed.
    #[error(
        "{count} tensors are already quantized (e.g. {example} is {dtype}); re-quantizing loses more precision than \
         quantizing from F16/F32 — pass --allow-requantize to do it anyway"
    )]
    Requantize {
        /// How many tensors would be re-quantized.
        count: usize,
        /// One of them.
        example: String,
        /// Its type.
        dtype: GgmlType,
    },
    /// A tensor whose type hearth cannot decode.
    #[error("tensor {name} has type {dtype}, which hearth cannot convert")]
    Unsupported {
        /// Tensor name.
        name: String,
        /// Its type.
        dtype: GgmlType,
    },
    /// The base model of a merge could not be loaded.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// An adapter to merge does not fit.
    #[error("{path}: {source}")]
    Lora {
        /// The adapter file.
        path: PathBuf,
        /// What is wrong.
        source: LoraError,
    },
    /// Input and output are the same file.
    #[error("the output would overwrite the input {0}")]
    SameFile(PathBuf),
    /// Writing the output failed.
    #[error("cannot write {path}")]
    Write {
        /// Output path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Broad tensor roles that the mixture rules distinguish (by name, as llama.cpp does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    TokenEmbd,
    Output,
    AttnV,
    AttnQkv,
    FfnDown,
    Other,
}

fn category(name: &str) -> Category {
    if name == "output.weight" {
        Category::Output
    } else if name == "token_embd.weight" {
        Category::TokenEmbd
    } else if name.contains("attn_qkv.weight") {
        Category::AttnQkv
    } else if name.contains("attn_v.weight") {
        Category::AttnV
    } else if name.contains("ffn_down") {
        Category::FfnDown
    } else {
        Category::Other
    }
}

fn is_quantizable(t: &TensorView<'_>) -> bool {
    t.n_dims >= 2
        && t.name.ends_with("weight")
        && !t.name.contains("_norm.weight")
        && !t.name.contains("ffn_gate_inp.weight")
        && !t.name.contains("ssm_conv1d")
        && t.name != "position_embd.weight"
        && t.name != "token_types.weight"
}

/// llama.cpp's "more bits" layers: the first and last eighth, and every third layer in between.
fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i as isize - (n / 8) as isize).rem_euclid(3) == 2
}

/// The type for a tensor whose row length does not fit its chosen type's blocks.
fn fallback(dtype: GgmlType, row_len: usize) -> GgmlType {
    if row_len.is_multiple_of(dtype.block_len()) {
        return dtype;
    }
    let smaller = match dtype {
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        other => other,
    };
    if row_len.is_multiple_of(smaller.block_len()) {
        smaller
    } else {
        GgmlType::F16
    }
}

/// The layer number of a `blk.N.…` tensor, -1 for the others.
fn layer_of(name: &str) -> i64 {
    name.strip_prefix("blk.")
        .and_then(|rest| rest.split('.').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(-1)
}

/// Tensors in the order llama.cpp's quantizer visits and writes them: by layer (non-layer tensors first), then by
/// name. The "more bits" rules count layers in this order, so it decides which tensors get Q6_K.
fn quantization_order<'f, 'a>(file: &'f Gguf<'a>) -> Vec<&'f TensorView<'a>> {
    let mut tensors: Vec<&TensorView<'a>> = file.tensors().iter().collect();
    tensors.sort_by(|a, b| (layer_of(a.name), a.name).cmp(&(layer_of(b.name), b.name)));
    tensors
}

/// The output type of every tensor of `file` under `preset`, in the order the output file will hold them.
pub fn plan(file: &Gguf<'_>, preset: Preset) -> Vec<TensorPlan> {
    let tied = file.tensor("output.weight").is_none();
    let count = |c: Category| file.tensors().iter().filter(|t| category(t.name) == c).count();
    let (n_attn_v, n_ffn_down) = (count(Category::AttnV), count(Category::FfnDown));
    let (mut i_attn_v, mut i_ffn_down) = (0, 0);
    let base = preset.base_type();
    let k_mixture = matches!(preset, Preset::Q4KM | Preset::Q5KM);

    quantization_order(file)
        .into_iter()
        .map(|t| {
            let cat = category(t.name);
            let to = if !is_quantizable(t) {
                t.dtype
            } else if preset == Preset::F16 {
                GgmlType::F16
            } else if cat == Category::Output || (tied && cat == Category::TokenEmbd) {
                // The output head (or the embedding table it is tied to) gets Q6_K, or Q8_0 when its rows do not
                // fit the preset's blocks; a Q8_0 preset keeps Q8_0.
                if !t.row_len().is_multiple_of(base.block_len()) {
                    GgmlType::Q8_0
                } else if base != GgmlType::Q8_0 {
                    fallback(GgmlType::Q6_K, t.row_len())
                } else {
                    base
                }
            } else {
                let chosen = match cat {
                    Category::AttnV => {
                        let more = k_mixture && use_more_bits(i_attn_v, n_attn_v);
                        i_attn_v += 1;
                        if more { GgmlType::Q6_K } else { base }
                    }
                    Category::FfnDown => {
                        let more = k_mixture && use_more_bits(i_ffn_down, n_ffn_down);
                        i_ffn_down += 1;
                        if more { GgmlType::Q6_K } else { base }
                    }
                    Category::AttnQkv => match preset {
                        Preset::Q4KM => GgmlType::Q5_K,
                        Preset::Q5KM => GgmlType::Q6_K,
                        _ => base,
                    },
                    _ => base,
                };
                fallback(chosen, t.row_len())
            };
            TensorPlan {
                name: t.name.to_owned(),
                from: t.dtype,
                to,
                reencode: t.dtype != to,
            }
        })
        .collect()
}

/// Quantizes `input` into `output` with `preset`. The output is written to a temporary file next to it and renamed
/// into place only when complete.
pub fn quantize_file(
    input: &Path,
    output: &Path,
    preset: Preset,
    allow_requantize: bool,
    progress: &mut dyn Progress,
) -> Result<Vec<TensorPlan>, QuantizeError> {
    check_distinct(input, output)?;
    let model = ModelFile::open(input)?;
    let plan = plan(model.gguf(), preset);
    check_plan(model.gguf(), &plan, allow_requantize)?;
    rewrite(model.gguf(), &plan, preset, &HashMap::new(), output, progress)?;
    Ok(plan)
}

/// Updates to add to weights while they are rewritten: for each tensor name, low-rank pairs with their scales.
type Updates<'a> = HashMap<String, Vec<(&'a LoraPair, f32)>>;

/// Writes the model `input` with `adapters` (files, each with the user's scale) baked into its weights, re-encoded
/// with `preset` (every adapted weight is re-encoded, whatever its type; the rest as [`quantize_file`] does, allowing
/// re-quantization). Like llama.cpp's `export-lora`, so the result runs anywhere without the adapter.
pub fn merge_file(
    input: &Path,
    adapters: &[(PathBuf, f32)],
    output: &Path,
    preset: Preset,
    progress: &mut dyn Progress,
) -> Result<Vec<TensorPlan>, QuantizeError> {
    check_distinct(input, output)?;
    let file = ModelFile::open(input)?;
    let model = Model::load(&file)?;
    let mut loaded = Vec::new();
    for (path, scale) in adapters {
        let lora = |source| QuantizeError::Lora {
            path: path.clone(),
            source,
        };
        let adapter_file = ModelFile::open(path)?;
        loaded.push((
            LoraAdapter::from_gguf(adapter_file.gguf(), &model).map_err(lora)?,
            *scale,
        ));
    }
    let mut updates: Updates<'_> = HashMap::new();
    for (adapter, scale) in &loaded {
        for (block, projection, pair) in adapter.pairs() {
            let factor = scale * pair.scale(adapter.alpha);
            updates
                .entry(adapted_weight(block, projection))
                .or_default()
                .push((pair, factor));
        }
    }
    let mut plan = plan(file.gguf(), preset);
    for p in &mut plan {
        p.reencode |= updates.contains_key(&p.name);
    }
    check_plan(file.gguf(), &plan, true)?;
    rewrite(file.gguf(), &plan, preset, &updates, output, progress)?;
    Ok(plan)
}

fn check_distinct(input: &Path, output: &Path) -> Result<(), QuantizeError> {
    match (fs::canonicalize(input), fs::canonicalize(output)) {
        (Ok(a), Ok(b)) if a == b => Err(QuantizeError::SameFile(a)),
        _ => Ok(()),
    }
}

/// Writes the output to `OUTPUT.gguf.partial` and renames it into place only when complete.
fn rewrite(
    file: &Gguf<'_>,
    plan: &[TensorPlan],
    preset: Preset,
    updates: &Updates<'_>,
    output: &Path,
    progress: &mut dyn Progress,
) -> Result<(), QuantizeError> {
    let tmp = output.with_extension("gguf.partial");
    let write_error = |source| QuantizeError::Write {
        path: output.to_path_buf(),
        source,
    };
    let result = write_output(file, plan, preset, updates, &tmp, progress).map_err(write_error);
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, output).map_err(write_error)
}

fn check_plan(file: &Gguf<'_>, plan: &[TensorPlan], allow_requantize: bool) -> Result<(), QuantizeError> {
    let decodable = |t: GgmlType| {
        matches!(
            t,
            GgmlType::F32
                | GgmlType::F16
                | GgmlType::BF16
                | GgmlType::Q4_0
                | GgmlType::Q4_1
                | GgmlType::Q5_0
                | GgmlType::Q5_1
                | GgmlType::Q8_0
                | GgmlType::Q4_K
                | GgmlType::Q5_K
                | GgmlType::Q6_K
        )
    };
    if let Some(p) = plan.iter().find(|p| p.reencode && !decodable(p.from)) {
        return Err(QuantizeError::Unsupported {
            name: p.name.clone(),
            dtype: p.from,
        });
    }
    let plain = |t: GgmlType| matches!(t, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16);
    let requantized: Vec<&TensorPlan> = plan.iter().filter(|p| p.reencode && !plain(p.from)).collect();
    if !allow_requantize && let Some(first) = requantized.first() {
        return Err(QuantizeError::Requantize {
            count: requantized.len(),
            example: first.name.clone(),
            dtype: file.tensor(&first.name).map_or(first.from, |t| t.dtype),
        });
    }
    Ok(())
}

fn write_output(
    file: &Gguf<'_>,
    plan: &[TensorPlan],
    preset: Preset,
    updates: &Updates<'_>,
    path: &Path,
    progress: &mut dyn Progress,
) -> std::io::Result<()> {
    // All metadata is kept; the file type and quantization version describe the new contents.
    let mut metadata: Vec<MetadataEntry<'_>> = file
        .metadata()
        .iter()
        .filter(|e| e.key != "general.file_type" && e.key != "general.quantization_version")
        .copied()
        .collect();
    metadata.push(MetadataEntry {
        key: "general.quantization_version",
        value: Value::U32(2),
    });
    metadata.push(MetadataEntry {
        key: "general.file_type",
        value: Value::U32(preset.file_type()),
    });
    // The plan lists every tensor of the file, so each lookup succeeds.
    let tensors: Vec<&TensorView<'_>> = plan.iter().filter_map(|p| file.tensor(&p.name)).collect();
    let specs: Vec<TensorSpec> = tensors
        .iter()
        .zip(plan)
        .map(|(t, p)| TensorSpec {
            name: t.name.to_owned(),
            dtype: p.to,
            ne: t.shape().to_vec(),
        })
        .collect();

    let out = BufWriter::with_capacity(8 << 20, File::create(path)?);
    let mut writer = GgufWriter::new(out, &metadata, &specs)?;
    let total: u64 = file.tensors().iter().map(|t| t.data.len() as u64).sum();
    progress.stage(
        &format!("quantizing {} tensors to {}", plan.len(), preset.name()),
        Some(total),
        Unit::Bytes,
    );
    for (t, p) in tensors.iter().zip(plan) {
        if p.reencode {
            let update = updates.get(t.name).map_or(&[][..], Vec::as_slice);
            writer.write_tensor(&convert(t, p.to, update)?)?;
        } else {
            writer.write_tensor(t.data)?;
        }
        progress.advance(t.data.len() as u64);
    }
    progress.finish_stage();
    let mut out = writer.finish()?;
    out.flush()?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// Decodes a tensor to f32, adds `updates` (row `r` of a pair's `scale · B·A` is `scale · Σ_k B[r,k]·A[k,·]`) and
/// encodes it as `to`, row by row across threads.
fn convert(t: &TensorView<'_>, to: GgmlType, updates: &[(&LoraPair, f32)]) -> std::io::Result<Vec<u8>> {
    let invalid =
        |e: quant::QuantError| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", t.name));
    let (row_len, n_rows) = (t.row_len(), t.n_rows());
    let in_row = t.row_bytes();
    let out_row = to.bytes_for(row_len as u64).ok_or_else(|| {
        invalid(quant::QuantError::Length {
            dtype: to,
            bytes: 0,
            elems: row_len,
        })
    })? as usize;
    let mut out = vec![0u8; out_row * n_rows];
    out.par_chunks_mut(out_row)
        .zip(t.data.par_chunks(in_row))
        .enumerate()
        .try_for_each_init(
            || vec![0f32; row_len],
            |row, (r, (dst, src))| {
                quant::dequantize(t.dtype, src, row).map_err(invalid)?;
                for (pair, scale) in updates {
                    let b = &pair.b[r * pair.rank..][..pair.rank];
                    for (&b, a) in b.iter().zip(pair.a.chunks_exact(pair.n_in)) {
                        for (w, &a) in row.iter_mut().zip(a) {
                            *w += scale * b * a;
                        }
                    }
                }
                quant::quantize(to, row, dst).map_err(invalid)
            },
        )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_sort_numerically_and_other_tensors_come_first() {
        assert_eq!(layer_of("blk.10.attn_v.weight"), 10);
        assert_eq!(layer_of("output.weight"), -1);
        assert_eq!(layer_of("blk.x.weight"), -1);
        let mut names = ["blk.10.a", "blk.2.b", "token_embd.weight", "blk.2.a", "output.weight"];
        names.sort_by(|a, b| (layer_of(a), *a).cmp(&(layer_of(b), *b)));
        assert_eq!(
            names,
            ["output.weight", "token_embd.weight", "blk.2.a", "blk.2.b", "blk.10.a"]
        );
    }

    #[test]
    fn more_bits_layers_match_llama_cpp_for_28_layers() {
        // The first 3 (28/8), the last 4 (from 7·28/8 = 24), and every third one from 3 + 2.
        let layers: Vec<usize> = (0..28).filter(|&i| use_more_bits(i, 28)).collect();
        assert_eq!(layers, [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 24, 25, 26, 27]);
    }

    #[test]
    fn fallbacks_follow_block_sizes() {
        assert_eq!(fallback(GgmlType::Q4_K, 576), GgmlType::Q5_0);
        assert_eq!(fallback(GgmlType::Q6_K, 640), GgmlType::Q8_0);
        assert_eq!(fallback(GgmlType::Q4_K, 1536), GgmlType::Q4_K);
        assert_eq!(fallback(GgmlType::Q8_0, 100), GgmlType::F16);
    }
}
