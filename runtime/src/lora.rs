//! LoRA adapters: low-rank updates `scale · B·A` on a model's projections, in llama.cpp's adapter GGUF format, so an
//! adapter trained by hearth loads in llama.cpp and one made for llama.cpp loads here.
//!
//! The format: `general.type = "adapter"`, `general.architecture` = the base model's, `adapter.type = "lora"`,
//! `adapter.lora.alpha` (float32), and for each adapted weight `blk.N.<tensor>.weight` the pair
//! `blk.N.<tensor>.weight.lora_a` (`ne = [n_in, rank]`) and `….lora_b` (`ne = [rank, n_out]`), F32 or F16. The
//! update of a pair is scaled by `alpha / rank` (its own rank), times the user's scale.

use std::collections::BTreeMap;
use std::path::Path;

use hearth_kernel::GgmlType;
use hearth_kernel::gguf::{Gguf, GgufWriter, MetadataEntry, TensorSpec, Value};
use hearth_kernel::ops::{OpError, expect_len, for_each_chunk};
use hearth_kernel::quant;
use hearth_kernel::simd::Isa;

use crate::model::{Model, Projection};

pub mod peft;

/// Why an adapter file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    /// The file is not an adapter, or not a LoRA one.
    #[error("not a LoRA adapter: {0}")]
    NotAnAdapter(String),
    /// The adapter was made for another architecture.
    #[error("the adapter is for a {adapter} model, not {model}")]
    WrongArchitecture {
        /// `general.architecture` of the adapter.
        adapter: String,
        /// The base model's.
        model: String,
    },
    /// A tensor that does not fit the base model or the format.
    #[error("{name}: {why}")]
    BadTensor {
        /// The tensor's name.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// Reading or writing the file.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The name of the weight a pair adapts (its tensors append `.lora_a` and `.lora_b`).
pub fn adapted_weight(block: usize, projection: Projection) -> String {
    format!("blk.{block}.{}.weight", projection.tensor())
}

/// One pair on a frozen weight `W: [n_out, n_in]`: `y = x·Wᵀ + scale · (x·Aᵀ)·Bᵀ`, with `A: [rank, n_in]` and
/// `B: [n_out, rank]` row-major in f32 (the layouts of the file's `lora_a` and `lora_b`).
#[derive(Clone, Debug, PartialEq)]
pub struct LoraPair {
    /// Input width of the adapted weight.
    pub n_in: usize,
    /// Output width of the adapted weight.
    pub n_out: usize,
    /// Rank.
    pub rank: usize,
    /// `[rank, n_in]`.
    pub a: Vec<f32>,
    /// `[n_out, rank]`.
    pub b: Vec<f32>,
}

impl LoraPair {
    /// All zeros (also a gradient accumulator).
    pub fn zeros(n_in: usize, n_out: usize, rank: usize) -> Self {
        LoraPair {
            n_in,
            n_out,
            rank,
            a: vec![0.0; rank * n_in],
            b: vec![0.0; n_out * rank],
        }
    }

    /// The factor its product is multiplied by in an adapter of `alpha`: `alpha / rank`.
    pub fn scale(&self, alpha: f32) -> f32 {
        alpha / self.rank as f32
    }

    /// Rows of `x` (`[n_tokens, n_in]`).
    pub fn tokens(&self, x: &[f32]) -> Result<usize, OpError> {
        if self.n_in == 0 || !x.len().is_multiple_of(self.n_in) {
            return Err(OpError::Shape {
                what: "LoRA input",
                expected: self.n_in,
                got: x.len(),
            });
        }
        Ok(x.len() / self.n_in)
    }

    /// Adds `scale · (x·Aᵀ)·Bᵀ` to `out` (`x: [n_tokens, n_in]`, `out: [n_tokens, n_out]`) and returns `x·Aᵀ`
    /// (`[n_tokens, rank]`), which a backward pass needs.
    pub fn forward(&self, isa: Isa, scale: f32, x: &[f32], out: &mut [f32]) -> Result<Vec<f32>, OpError> {
        let n_tokens = self.tokens(x)?;
        expect_len("LoRA output", out.len(), n_tokens * self.n_out)?;
        let mut ax = vec![0.0f32; n_tokens * self.rank];
        if self.rank == 0 {
            return Ok(ax);
        }
        for_each_chunk(&mut ax, TOKEN_BLOCK * self.rank, |i, ax| {
            let x = &x[i * TOKEN_BLOCK * self.n_in..][..ax.len() / self.rank * self.n_in];
            isa.dot_rows(self.n_in, &self.a, x, ax)
        });
        if n_tokens == 1 {
            // One token's `B·(x·Aᵀ)` from `B`'s rows as they are stored: transposing them would cost a decode step as
            // much as the product.
            let mut update = vec![0.0f32; self.n_out];
            isa.dot_rows(self.rank, &self.b, &ax, &mut update);
            for (y, u) in out.iter_mut().zip(&update) {
                *y += scale * u;
            }
        } else {
            // Each token's update a sum of the rows of `scale·Bᵀ` (`[rank, n_out]`), weighted by its `x·Aᵀ`:
            // register-blocked over tokens and outputs, where `B`'s rows are only `rank` long.
            let b_t = transpose_scaled(&self.b, self.rank, scale);
            for_each_chunk(out, TOKEN_BLOCK * self.n_out, |i, out| {
                let ax = &ax[i * TOKEN_BLOCK * self.rank..][..out.len() / self.n_out * self.rank];
                isa.mad_rows(self.n_out, out, &b_t, ax)
            });
        }
        Ok(ax)
    }
}

/// Tokens one task of a LoRA product takes.
pub const TOKEN_BLOCK: usize = 64;

/// `m: [rows, columns]` (row-major) transposed to `[columns, rows]`, times `scale`.
pub fn transpose_scaled(m: &[f32], columns: usize, scale: f32) -> Vec<f32> {
    let rows = m.len() / columns;
    let mut t = vec![0.0f32; m.len()];
    for (r, row) in m.chunks_exact(columns).enumerate() {
        for (c, &x) in row.iter().enumerate() {
            t[c * rows + r] = scale * x;
        }
    }
    t
}

/// The pairs of one block, indexed by [`Projection`] (`None` where it has none).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LayerLora(pub [Option<LoraPair>; Projection::ALL.len()]);

impl LayerLora {
    /// The pair on `projection`.
    pub fn get(&self, projection: Projection) -> Option<&LoraPair> {
        self.0[projection as usize].as_ref()
    }

    /// Zeros shaped like these pairs.
    pub fn zeros_like(&self) -> Self {
        LayerLora(
            self.0
                .each_ref()
                .map(|p| p.as_ref().map(|p| LoraPair::zeros(p.n_in, p.n_out, p.rank))),
        )
    }
}

/// A whole model's adapter (also used, with the same shapes, for gradients and optimizer state).
#[derive(Clone, Debug, PartialEq)]
pub struct LoraAdapter {
    /// Scale numerator: a pair's update is `alpha / rank · B·A`.
    pub alpha: f32,
    /// One entry per block, first to last.
    pub layers: Vec<LayerLora>,
}

impl LoraAdapter {
    /// Zeros of the same shapes.
    pub fn zeros_like(&self) -> Self {
        LoraAdapter {
            alpha: self.alpha,
            layers: self.layers.iter().map(LayerLora::zeros_like).collect(),
        }
    }

    /// Every pair with its block index and projection, in block then [`Projection::ALL`] order.
    pub fn pairs(&self) -> impl Iterator<Item = (usize, Projection, &LoraPair)> {
        self.layers.iter().enumerate().flat_map(|(block, layer)| {
            Projection::ALL
                .into_iter()
                .filter_map(move |p| layer.get(p).map(|pair| (block, p, pair)))
        })
    }

    /// Every trainable tensor (each pair's `A`, then its `B`), in [`LoraAdapter::pairs`] order.
    pub fn tensors(&self) -> impl Iterator<Item = &[f32]> {
        self.pairs()
            .flat_map(|(_, _, pair)| [pair.a.as_slice(), pair.b.as_slice()])
    }

    /// [`LoraAdapter::tensors`], mutable.
    pub fn tensors_mut(&mut self) -> impl Iterator<Item = &mut [f32]> {
        self.layers
            .iter_mut()
            .flat_map(|layer| layer.0.iter_mut().flatten())
            .flat_map(|pair| [pair.a.as_mut_slice(), pair.b.as_mut_slice()])
    }

    /// Number of trainable values.
    pub fn parameter_count(&self) -> usize {
        self.tensors().map(<[f32]>::len).sum()
    }

    /// Sets every value to zero.
    pub fn clear(&mut self) {
        self.tensors_mut().for_each(|t| t.fill(0.0));
    }

    /// Reads an adapter GGUF for `model`, checking every pair against the weight it adapts.
    pub fn from_gguf(file: &Gguf<'_>, model: &Model<'_>) -> Result<Self, LoraError> {
        let text = |key: &str| file.get(key).and_then(|v| v.as_str());
        if text("general.type") != Some("adapter") || text("adapter.type") != Some("lora") {
            return Err(LoraError::NotAnAdapter(
                "general.type must be \"adapter\" and adapter.type \"lora\"".into(),
            ));
        }
        let arch = text("general.architecture").unwrap_or("");
        let model_arch = model.config().arch.name();
        if arch != model_arch {
            return Err(LoraError::WrongArchitecture {
                adapter: arch.into(),
                model: model_arch.into(),
            });
        }
        let alpha = file
            .get("adapter.lora.alpha")
            .and_then(|v| v.as_f64())
            .ok_or_else(|| LoraError::NotAnAdapter("adapter.lora.alpha is missing".into()))? as f32;
        let mut tensors: BTreeMap<&str, _> = file.tensors().iter().map(|t| (t.name, t)).collect();
        let mut layers = vec![LayerLora::default(); model.layers().len()];
        for (index, layer) in model.layers().iter().enumerate() {
            for projection in Projection::ALL {
                let base = adapted_weight(index, projection);
                let (a_name, b_name) = (format!("{base}.lora_a"), format!("{base}.lora_b"));
                let (a, b) = match (tensors.remove(a_name.as_str()), tensors.remove(b_name.as_str())) {
                    (None, None) => continue,
                    (Some(a), Some(b)) => (a, b),
                    (a, _) => {
                        let missing = if a.is_none() { a_name } else { b_name };
                        return Err(LoraError::BadTensor {
                            name: missing,
                            why: "its partner is there but it is not".into(),
                        });
                    }
                };
                let w = projection.weights(layer);
                let bad = |name: &str, why: String| LoraError::BadTensor { name: name.into(), why };
                let rank = a.shape().get(1).copied().unwrap_or(0);
                if a.shape() != [w.n_in, rank] || rank == 0 {
                    return Err(bad(
                        &a_name,
                        format!("shape {:?}, expected [{}, rank]", a.shape(), w.n_in),
                    ));
                }
                if b.shape() != [rank, w.n_out] {
                    return Err(bad(
                        &b_name,
                        format!("shape {:?}, expected [{rank}, {}]", b.shape(), w.n_out),
                    ));
                }
                let decode = |name: &str, t: &hearth_kernel::gguf::TensorView<'_>| {
                    if !matches!(t.dtype, GgmlType::F32 | GgmlType::F16) {
                        return Err(bad(name, format!("type {} (adapters are F32 or F16)", t.dtype)));
                    }
                    let mut out = vec![0.0; t.n_elems()];
                    quant::dequantize(t.dtype, t.data, &mut out).map_err(|e| bad(name, e.to_string()))?;
                    Ok(out)
                };
                layers[index].0[projection as usize] = Some(LoraPair {
                    n_in: w.n_in,
                    n_out: w.n_out,
                    rank,
                    a: decode(&a_name, a)?,
                    b: decode(&b_name, b)?,
                });
            }
        }
        // Pairs that adapt something else (the embedding table, a block the model lacks) would be silently lost.
        if let Some(name) = tensors
            .keys()
            .find(|n| n.ends_with(".lora_a") || n.ends_with(".lora_b"))
        {
            return Err(LoraError::BadTensor {
                name: (*name).into(),
                why: "adapts nothing hearth can adapt in this model".into(),
            });
        }
        Ok(LoraAdapter { alpha, layers })
    }

    /// The file's name of each trainable tensor, in [`LoraAdapter::tensors`] order, with its GGUF shape.
    pub fn tensor_names(&self) -> impl Iterator<Item = (String, [usize; 2])> {
        self.pairs().flat_map(|(block, projection, pair)| {
            let base = adapted_weight(block, projection);
            [
                (format!("{base}.lora_a"), [pair.n_in, pair.rank]),
                (format!("{base}.lora_b"), [pair.rank, pair.n_out]),
            ]
        })
    }

    /// Writes the adapter, as F32, in llama.cpp's format for a base model of architecture `arch` (a GGUF
    /// `general.architecture` name). Written atomically: a crash leaves the old file or the new one.
    pub fn save(&self, path: &Path, arch: &str) -> Result<(), LoraError> {
        self.save_with(path, arch, &[], &[])
    }

    /// [`LoraAdapter::save`], adding `metadata` and 1-D f32 `tensors` (named so they are not pairs: readers of
    /// adapters skip them), such as a training checkpoint's state.
    pub fn save_with(
        &self,
        path: &Path,
        arch: &str,
        metadata: &[MetadataEntry<'_>],
        tensors: &[(String, &[f32])],
    ) -> Result<(), LoraError> {
        let mut entries = vec![
            MetadataEntry {
                key: "general.type",
                value: Value::String("adapter"),
            },
            MetadataEntry {
                key: "general.architecture",
                value: Value::String(arch),
            },
            MetadataEntry {
                key: "adapter.type",
                value: Value::String("lora"),
            },
            MetadataEntry {
                key: "adapter.lora.alpha",
                value: Value::F32(self.alpha),
            },
        ];
        entries.extend_from_slice(metadata);
        let pairs = self.tensor_names().map(|(name, ne)| (name, ne.to_vec()));
        let extra = tensors.iter().map(|(name, data)| (name.clone(), vec![data.len()]));
        let specs: Vec<TensorSpec> = pairs
            .chain(extra)
            .map(|(name, ne)| TensorSpec {
                name,
                dtype: GgmlType::F32,
                ne,
            })
            .collect();
        let mut writer = GgufWriter::new(Vec::new(), &entries, &specs)?;
        for data in self.tensors().chain(tensors.iter().map(|(_, data)| *data)) {
            writer.write_tensor(bytemuck::cast_slice(data))?;
        }
        crate::fsutil::write_atomic(path, &writer.finish()?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values in [-1, 1) from a fixed sequence.
    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32 / (1 << 23) as f32 - 1.0)
            .collect()
    }

    #[test]
    fn the_forward_adds_the_scaled_low_rank_product_for_one_token_and_for_many() {
        // 70 tokens: a block of 64 and part of another; outputs and inputs not multiples of a vector.
        let (n_tokens, n_in, n_out, rank, scale) = (70, 40, 37, 3, 0.75);
        let pair = LoraPair {
            n_in,
            n_out,
            rank,
            a: values(rank * n_in, 1),
            b: values(n_out * rank, 2),
        };
        let x = values(n_tokens * n_in, 3);
        let start = values(n_tokens * n_out, 4);
        // Written out from the definition, in f64.
        let expected: Vec<f64> = (0..n_tokens * n_out)
            .map(|i| {
                let (t, o) = (i / n_out, i % n_out);
                let ax = |r: usize| {
                    (0..n_in)
                        .map(|c| f64::from(pair.a[r * n_in + c] * x[t * n_in + c]))
                        .sum::<f64>()
                };
                f64::from(start[i])
                    + f64::from(scale) * (0..rank).map(|r| ax(r) * f64::from(pair.b[o * rank + r])).sum::<f64>()
            })
            .collect();
        for isa in Isa::available() {
            let mut many = start.clone();
            pair.forward(isa, scale, &x, &mut many).unwrap();
            let mut one_at_a_time = start.clone();
            for (x, out) in x.chunks_exact(n_in).zip(one_at_a_time.chunks_exact_mut(n_out)) {
                pair.forward(isa, scale, x, out).unwrap();
            }
            for (way, got) in [("many", &many), ("one at a time", &one_at_a_time)] {
                for (i, (&got, &want)) in got.iter().zip(&expected).enumerate() {
                    assert!(
                        (f64::from(got) - want).abs() < 1e-4,
                        "{isa} {way}: output {i} is {got}, not {want}"
                    );
                }
            }
        }
    }
}
