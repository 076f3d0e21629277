//! Transformer models bound to the weights of a GGUF file, and their forward pass.
//!
//! One block structure covers the supported architectures; each layer carries the optional pieces its architecture
//! has (Q/K/V biases for Qwen2; Q/K norms and post-norms for Gemma 3). Weights are borrowed from the memory-mapped file
//! (only small f32 vectors — norms and biases — are decoded at load).

mod config;

use hearth_kernel::GgmlType;
use hearth_kernel::gguf::Gguf;
use hearth_kernel::ops::attention::{AttentionParams, attention};
use hearth_kernel::ops::kv::{KvCache, KvType};
use hearth_kernel::ops::matmul::{MatmulScratch, Weights, matmul};
use hearth_kernel::ops::{OpError, act, norm, team};
use hearth_kernel::quant;
use hearth_kernel::simd::Isa;

pub use config::{Arch, Config, LayerAttention};

use crate::ModelFile;
use crate::grouped::GroupedWeights;
use crate::lora::{LoraAdapter, LoraError};

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// `general.architecture` names an architecture hearth does not implement.
    #[error("unsupported architecture '{0}' (hearth runs llama, qwen2 and gemma3)")]
    UnknownArch(String),
    /// A hyper-parameter is missing.
    #[error("the model file has no {0}")]
    MissingKey(String),
    /// A weight is missing.
    #[error("the model file has no tensor {0}")]
    MissingTensor(String),
    /// A weight with the wrong shape or an unusable type.
    #[error("tensor {name}: {why}")]
    BadTensor {
        /// Tensor name.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// A forward pass over no tokens.
    #[error("nothing to run: no tokens were given")]
    NoTokens,
    /// A token id outside the vocabulary.
    #[error("token id {0} is outside the vocabulary")]
    BadToken(u32),
    /// More positions than the KV cache holds.
    #[error("context overflow: {needed} positions needed, the context holds {capacity}")]
    ContextOverflow {
        /// Positions the request needs.
        needed: usize,
        /// Positions available.
        capacity: usize,
    },
    /// A kernel operation failed (shapes that do not fit).
    #[error(transparent)]
    Op(#[from] OpError),
}

/// The weights of one transformer block. Matrices are borrowed from the file; norms and biases are decoded to f32.
#[derive(Debug)]
pub struct Layer<'a> {
    /// RMSNorm before attention, `[dim]`.
    pub attn_norm: Vec<f32>,
    /// Query projection, `[q_dim, dim]`.
    pub wq: Weights<'a>,
    /// Key projection, `[kv_dim, dim]`.
    pub wk: Weights<'a>,
    /// Value projection, `[kv_dim, dim]`.
    pub wv: Weights<'a>,
    /// Attention output projection, `[dim, q_dim]`.
    pub wo: Weights<'a>,
    /// Query bias (Qwen2), `[q_dim]`.
    pub q_bias: Option<Vec<f32>>,
    /// Key bias (Qwen2), `[kv_dim]`.
    pub k_bias: Option<Vec<f32>>,
    /// Value bias (Qwen2), `[kv_dim]`.
    pub v_bias: Option<Vec<f32>>,
    /// Per-head RMSNorm of queries (Gemma 3), `[head_dim]`.
    pub q_norm: Option<Vec<f32>>,
    /// Per-head RMSNorm of keys (Gemma 3), `[head_dim]`.
    pub k_norm: Option<Vec<f32>>,
    /// RMSNorm of the attention output before the residual (Gemma 3), `[dim]`.
    pub post_attn_norm: Option<Vec<f32>>,
    /// RMSNorm before the feed-forward network, `[dim]`.
    pub ffn_norm: Vec<f32>,
    /// Gate projection, `[ff_dim, dim]`.
    pub gate: Weights<'a>,
    /// Up projection, `[ff_dim, dim]`.
    pub up: Weights<'a>,
    /// Down projection, `[dim, ff_dim]`.
    pub down: Weights<'a>,
    /// RMSNorm of the feed-forward output before the residual (Gemma 3), `[dim]`.
    pub post_ffn_norm: Option<Vec<f32>>,
}

/// A projection of a block: the weights a LoRA pair can adapt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Projection {
    /// Queries.
    Q,
    /// Keys.
    K,
    /// Values.
    V,
    /// Attention output.
    O,
    /// Feed-forward gate.
    Gate,
    /// Feed-forward up.
    Up,
    /// Feed-forward down.
    Down,
}

impl Projection {
    /// Every projection, in this order everywhere (per-block arrays are indexed by it).
    pub const ALL: [Projection; 7] = [
        Projection::Q,
        Projection::K,
        Projection::V,
        Projection::O,
        Projection::Gate,
        Projection::Up,
        Projection::Down,
    ];

    /// Its short name (`q`, `k`, `v`, `o`, `gate`, `up`, `down`), as the command line says it.
    pub fn name(self) -> &'static str {
        match self {
            Projection::Q => "q",
            Projection::K => "k",
            Projection::V => "v",
            Projection::O => "o",
            Projection::Gate => "gate",
            Projection::Up => "up",
            Projection::Down => "down",
        }
    }

    /// The projection a short name means.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Its tensor within a block, as GGUF names it (`blk.N.<this>.weight`).
    pub fn tensor(self) -> &'static str {
        match self {
            Projection::Q => "attn_q",
            Projection::K => "attn_k",
            Projection::V => "attn_v",
            Projection::O => "attn_output",
            Projection::Gate => "ffn_gate",
            Projection::Up => "ffn_up",
            Projection::Down => "ffn_down",
        }
    }

    /// Its weights in `layer`.
    pub fn weights<'l, 'a>(self, layer: &'l Layer<'a>) -> &'l Weights<'a> {
        match self {
            Projection::Q => &layer.wq,
            Projection::K => &layer.wk,
            Projection::V => &layer.wv,
            Projection::O => &layer.wo,
            Projection::Gate => &layer.gate,
            Projection::Up => &layer.up,
            Projection::Down => &layer.down,
        }
    }
}

/// A model ready to run: configuration plus weights borrowed from its file.
pub struct Model<'a> {
    config: Config,
    embed: Weights<'a>,
    layers: Vec<Layer<'a>>,
    out_norm: Vec<f32>,
    output: Weights<'a>,
    /// Attached LoRA adapters, each with the user's scale.
    adapters: Vec<(LoraAdapter, f32)>,
}

impl std::fmt::Debug for Model<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Which positions of a batch need logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// Only the last token (generation).
    Last,
    /// The tokens from this index of the batch on (perplexity scores only a chunk's second half).
    From(usize),
}

/// One sequence's part of a batched forward pass: its new tokens, the position of the first, and its KV cache.
#[derive(Debug)]
pub struct Segment<'k> {
    /// Tokens to run.
    pub tokens: &'k [u32],
    /// Position of the first of them.
    pub first_pos: usize,
    /// The sequence's cache (holds positions `0..first_pos` already).
    pub kv: &'k mut KvCache,
}

/// Buffers reused across forward passes (grown to the largest batch seen).
#[derive(Debug, Default)]
pub struct Scratch {
    x: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    o: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    angles: Vec<f32>,
    logits: Vec<f32>,
    matmul: MatmulScratch,
}

impl Scratch {
    /// The logits of the last forward pass.
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// Keeps only the first `len` logits (row 0 of a batched result).
    pub(crate) fn truncate_logits(&mut self, len: usize) {
        self.logits.truncate(len);
    }

    /// Makes `row` the logits of the last pass (a row of a batched result computed in another scratch).
    pub(crate) fn set_logits(&mut self, row: &[f32]) {
        self.logits.clear();
        self.logits.extend_from_slice(row);
    }
}

fn sized(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buf.resize(len, 0.0);
    &mut buf[..len]
}

struct Binder<'f, 'a> {
    file: &'f Gguf<'a>,
    grouped: Option<&'a GroupedWeights>,
}

impl<'a> Binder<'_, 'a> {
    fn weights(&self, name: &str, n_in: usize, n_out: usize) -> Result<Weights<'a>, ModelError> {
        let t = self
            .file
            .tensor(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_owned()))?;
        let w = Weights::from_tensor(t).map_err(|e| ModelError::BadTensor {
            name: name.to_owned(),
            why: e.to_string(),
        })?;
        if (w.n_in, w.n_out) != (n_in, n_out) {
            return Err(ModelError::BadTensor {
                name: name.to_owned(),
                why: format!("shape {}x{}, expected {n_in}x{n_out}", w.n_in, w.n_out),
            });
        }
        match self.grouped.and_then(|g| g.get(name)) {
            Some(groups) => w.with_grouped(groups).map_err(|e| ModelError::BadTensor {
                name: name.to_owned(),
                why: format!("grouped-weights cache: {e}"),
            }),
            None => Ok(w),
        }
    }

    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>, ModelError> {
        let t = self
            .file
            .tensor(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_owned()))?;
        let bad = |why: String| ModelError::BadTensor {
            name: name.to_owned(),
            why,
        };
        if t.n_elems() != len {
            return Err(bad(format!("{} elements, expected {len}", t.n_elems())));
        }
        let mut out = vec![0f32; len];
        quant::dequantize(t.dtype, t.data, &mut out).map_err(|e| bad(e.to_string()))?;
        Ok(out)
    }

    fn optional_vector(&self, name: &str, len: usize) -> Result<Option<Vec<f32>>, ModelError> {
        if self.file.tensor(name).is_none() {
            Ok(None)
        } else {
            self.vector(name, len).map(Some)
        }
    }
}

impl<'a> Model<'a> {
    /// Binds the weights of `file` (whose metadata names the architecture).
    pub fn load(file: &'a ModelFile) -> Result<Self, ModelError> {
        let gguf = file.gguf();
        let config = Config::from_gguf(gguf)?;
        let b = Binder {
            file: gguf,
            grouped: file.grouped(),
        };
        let (dim, q_dim, kv_dim, ff) = (config.dim, config.q_dim(), config.kv_dim(), config.ff_dim);
        let embed_tensor = gguf
            .tensor("token_embd.weight")
            .ok_or_else(|| ModelError::MissingTensor("token_embd.weight".into()))?;
        let vocab = embed_tensor.n_rows();
        let embed = b.weights("token_embd.weight", dim, vocab)?;
        // A file without an output matrix ties the head to the embedding table.
        let output = if gguf.tensor("output.weight").is_some() {
            b.weights("output.weight", dim, vocab)?
        } else {
            embed
        };
        let head = config.head_dim;
        let layers = (0..config.n_layers)
            .map(|i| {
                let n = |s: &str| format!("blk.{i}.{s}");
                Ok(Layer {
                    attn_norm: b.vector(&n("attn_norm.weight"), dim)?,
                    wq: b.weights(&n("attn_q.weight"), dim, q_dim)?,
                    wk: b.weights(&n("attn_k.weight"), dim, kv_dim)?,
                    wv: b.weights(&n("attn_v.weight"), dim, kv_dim)?,
                    wo: b.weights(&n("attn_output.weight"), q_dim, dim)?,
                    q_bias: b.optional_vector(&n("attn_q.bias"), q_dim)?,
                    k_bias: b.optional_vector(&n("attn_k.bias"), kv_dim)?,
                    v_bias: b.optional_vector(&n("attn_v.bias"), kv_dim)?,
                    q_norm: b.optional_vector(&n("attn_q_norm.weight"), head)?,
                    k_norm: b.optional_vector(&n("attn_k_norm.weight"), head)?,
                    post_attn_norm: b.optional_vector(&n("post_attention_norm.weight"), dim)?,
                    ffn_norm: b.vector(&n("ffn_norm.weight"), dim)?,
                    gate: b.weights(&n("ffn_gate.weight"), dim, ff)?,
                    up: b.weights(&n("ffn_up.weight"), dim, ff)?,
                    down: b.weights(&n("ffn_down.weight"), ff, dim)?,
                    post_ffn_norm: b.optional_vector(&n("post_ffw_norm.weight"), dim)?,
                })
            })
            .collect::<Result<_, ModelError>>()?;
        Ok(Model {
            config,
            embed,
            layers,
            out_norm: b.vector("output_norm.weight", dim)?,
            output,
            adapters: Vec::new(),
        })
    }

    /// Adds `adapter`'s update, times `scale`, to every projection it adapts (llama.cpp's `--lora-scaled`). Adapters
    /// stack; a new one changes every later forward pass, so caches made before no longer match the model.
    pub fn attach_lora(&mut self, adapter: LoraAdapter, scale: f32) -> Result<(), LoraError> {
        for (block, projection, pair) in adapter.pairs() {
            let w = self.layers.get(block).map(|layer| projection.weights(layer));
            if w.is_none_or(|w| (w.n_in, w.n_out) != (pair.n_in, pair.n_out)) {
                return Err(LoraError::BadTensor {
                    name: crate::lora::adapted_weight(block, projection),
                    why: "the adapter does not fit this model's weight".into(),
                });
            }
        }
        self.adapters.push((adapter, scale));
        Ok(())
    }

    /// Adds every attached adapter's update of `projection` in block `layer` for input `x` to `out`.
    fn add_lora(
        &self,
        isa: Isa,
        layer: usize,
        projection: Projection,
        x: &[f32],
        out: &mut [f32],
    ) -> Result<(), OpError> {
        for (adapter, user_scale) in &self.adapters {
            if let Some(pair) = adapter.layers[layer].get(projection) {
                pair.forward(isa, user_scale * pair.scale(adapter.alpha), x, out)?;
            }
        }
        Ok(())
    }

    /// The model's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The token embedding table, `[vocab, dim]` (Gemma 3 scales looked-up rows by `sqrt(dim)`).
    pub fn embedding(&self) -> &Weights<'a> {
        &self.embed
    }

    /// The transformer blocks, first to last.
    pub fn layers(&self) -> &[Layer<'a>] {
        &self.layers
    }

    /// The RMSNorm weights before the output head, `[dim]`.
    pub fn output_norm(&self) -> &[f32] {
        &self.out_norm
    }

    /// The output head, `[vocab, dim]` (the embedding table itself when the file ties them).
    pub fn output(&self) -> &Weights<'a> {
        &self.output
    }

    /// Vocabulary size (rows of the embedding table).
    pub fn vocab_size(&self) -> usize {
        self.embed.n_out
    }

    /// Type of the output head's weights (shown in stats and used by benchmarks).
    pub fn output_type(&self) -> GgmlType {
        self.output.dtype
    }

    /// Weight bytes one token's forward pass reads: every matrix whole, except a single row of the embedding table.
    pub fn matmul_bytes(&self) -> usize {
        let layers: usize = self
            .layers
            .iter()
            .flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down])
            .map(|w| w.bytes.len())
            .sum();
        layers + self.output.bytes.len() + self.embed.bytes.len() / self.embed.n_out
    }

    /// A KV cache for `capacity` positions of this model.
    pub fn new_cache(&self, kind: KvType, capacity: usize) -> Result<KvCache, ModelError> {
        let c = &self.config;
        Ok(KvCache::new(kind, c.n_layers, c.n_kv_heads, c.head_dim, capacity)?)
    }

    /// Runs `tokens` at positions `first_pos..`, storing their keys and values in `kv`, and returns the logits
    /// (`[vocab]` for [`Logits::Last`], `[n_tokens - i, vocab]` for [`Logits::From`]`(i)`).
    pub fn forward<'s>(
        &self,
        isa: Isa,
        tokens: &[u32],
        first_pos: usize,
        kv: &mut KvCache,
        scratch: &'s mut Scratch,
        logits: Logits,
    ) -> Result<&'s [f32], ModelError> {
        let mut one = [Segment { tokens, first_pos, kv }];
        self.forward_segments(isa, &mut one, scratch, logits)
    }

    /// Runs several sequences in one pass: their rows share every weight matrix read (decode is memory-bound, so a
    /// batch of sequences costs little more than one), while positions, RoPE, the KV cache and attention stay each
    /// sequence's own. Returns the logits of each segment's last token (`[n_segments, vocab]`) for
    /// [`Logits::Last`]; [`Logits::From`]`(i)` counts rows across the concatenated segments.
    pub fn forward_segments<'s>(
        &self,
        isa: Isa,
        segments: &mut [Segment<'_>],
        scratch: &'s mut Scratch,
        logits: Logits,
    ) -> Result<&'s [f32], ModelError> {
        // One region per pass: its ~10 parallel loops per layer are shared by threads that stay awake between them
        // (see `team`), rather than each loop waking the pool.
        team::region(|| self.forward_in_region(isa, segments, scratch, logits))
    }

    /// [`Self::forward_segments`] inside its parallel region.
    fn forward_in_region<'s>(
        &self,
        isa: Isa,
        segments: &mut [Segment<'_>],
        scratch: &'s mut Scratch,
        logits: Logits,
    ) -> Result<&'s [f32], ModelError> {
        let c = &self.config;
        let n: usize = segments.iter().map(|s| s.tokens.len()).sum();
        if n == 0 || segments.iter().any(|s| s.tokens.is_empty()) {
            return Err(ModelError::NoTokens);
        }
        for s in segments.iter() {
            if s.first_pos + s.tokens.len() > s.kv.capacity() {
                return Err(ModelError::ContextOverflow {
                    needed: s.first_pos + s.tokens.len(),
                    capacity: s.kv.capacity(),
                });
            }
        }
        // Row ranges of each segment in the concatenated batch.
        let ranges: Vec<std::ops::Range<usize>> = segments
            .iter()
            .scan(0, |start, s| {
                let range = *start..*start + s.tokens.len();
                *start = range.end;
                Some(range)
            })
            .collect();
        let (dim, q_dim, kv_dim, hd) = (c.dim, c.q_dim(), c.kv_dim(), c.head_dim);
        let x = sized(&mut scratch.x, n * dim);
        for (t, &token) in segments.iter().flat_map(|s| s.tokens).enumerate() {
            if token as usize >= self.embed.n_out {
                return Err(ModelError::BadToken(token));
            }
            self.embed.dequantize_row(token as usize, &mut x[t * dim..][..dim])?;
        }
        if c.arch == Arch::Gemma3 {
            act::scale(x, (dim as f32).sqrt());
        }
        let h = sized(&mut scratch.h, n * dim);
        let q = sized(&mut scratch.q, n * q_dim);
        let k = sized(&mut scratch.k, n * kv_dim);
        let v = sized(&mut scratch.v, n * kv_dim);
        let attn = sized(&mut scratch.attn, n * q_dim);
        let o = sized(&mut scratch.o, n * dim);
        let gate = sized(&mut scratch.gate, n * c.ff_dim);
        let up = sized(&mut scratch.up, n * c.ff_dim);
        let mm = &mut scratch.matmul;

        for (il, layer) in self.layers.iter().enumerate() {
            let la = &c.layers[il];
            norm::rms_norm_into(x, &layer.attn_norm, c.eps, h)?;
            matmul(isa, &layer.wq, h, q, mm)?;
            self.add_lora(isa, il, Projection::Q, h, q)?;
            matmul(isa, &layer.wk, h, k, mm)?;
            self.add_lora(isa, il, Projection::K, h, k)?;
            matmul(isa, &layer.wv, h, v, mm)?;
            self.add_lora(isa, il, Projection::V, h, v)?;
            for (buf, bias) in [
                (&mut *q, &layer.q_bias),
                (&mut *k, &layer.k_bias),
                (&mut *v, &layer.v_bias),
            ] {
                if let Some(bias) = bias {
                    act::add_to_rows(buf, bias)?;
                }
            }
            if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
                norm::rms_norm(q, qn, c.eps)?;
                norm::rms_norm(k, kn, c.eps)?;
            }
            let angles = sized(&mut scratch.angles, la.rope.n_rot);
            for (segment, rows) in segments.iter_mut().zip(&ranges) {
                for (t, pos) in rows.clone().zip(segment.first_pos..) {
                    la.rope.angles(pos, angles)?;
                    la.rope.apply(&mut q[t * q_dim..][..q_dim], hd, angles)?;
                    la.rope.apply(&mut k[t * kv_dim..][..kv_dim], hd, angles)?;
                    segment
                        .kv
                        .store(il, pos, &k[t * kv_dim..][..kv_dim], &v[t * kv_dim..][..kv_dim])?;
                }
            }
            let params = AttentionParams {
                n_heads: c.n_heads,
                n_kv_heads: c.n_kv_heads,
                head_dim: hd,
                scale: c.attn_scale,
                window: la.window,
                softcap: None,
            };
            for (segment, rows) in segments.iter().zip(&ranges) {
                attention(
                    isa,
                    &params,
                    &q[rows.start * q_dim..rows.end * q_dim],
                    segment.kv,
                    il,
                    segment.first_pos,
                    &mut attn[rows.start * q_dim..rows.end * q_dim],
                )?;
            }
            matmul(isa, &layer.wo, attn, o, mm)?;
            self.add_lora(isa, il, Projection::O, attn, o)?;
            if let Some(post) = &layer.post_attn_norm {
                norm::rms_norm(o, post, c.eps)?;
            }
            act::add_assign(x, o)?;

            norm::rms_norm_into(x, &layer.ffn_norm, c.eps, h)?;
            matmul(isa, &layer.gate, h, gate, mm)?;
            self.add_lora(isa, il, Projection::Gate, h, gate)?;
            matmul(isa, &layer.up, h, up, mm)?;
            self.add_lora(isa, il, Projection::Up, h, up)?;
            if c.arch == Arch::Gemma3 {
                act::geglu(gate, up)?;
            } else {
                act::swiglu(isa, gate, up)?;
            }
            matmul(isa, &layer.down, gate, o, mm)?;
            self.add_lora(isa, il, Projection::Down, gate, o)?;
            if let Some(post) = &layer.post_ffn_norm {
                norm::rms_norm(o, post, c.eps)?;
            }
            act::add_assign(x, o)?;
        }

        let rows = match logits {
            // Each segment's last row, gathered into `h` (free by now).
            Logits::Last => {
                for (i, rows) in ranges.iter().enumerate() {
                    h[i * dim..][..dim].copy_from_slice(&x[(rows.end - 1) * dim..][..dim]);
                }
                &mut h[..ranges.len() * dim]
            }
            Logits::From(i) => &mut x[i.min(n - 1) * dim..],
        };
        norm::rms_norm(rows, &self.out_norm, c.eps)?;
        let out = sized(&mut scratch.logits, rows.len() / dim * self.output.n_out);
        matmul(isa, &self.output, rows, out, mm)?;
        Ok(out)
    }
}
