//! Architecture hyper-parameters from GGUF metadata (`<arch>.*` keys), for the architectures hearth runs.

use hearth_kernel::gguf::Gguf;
use hearth_kernel::ops::rope::{Rope, RopeStyle};

use super::ModelError;

/// A supported architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// LLaMA and its relatives (SmolLM2, TinyLlama, CodeLlama, DeepSeek-Coder): RMSNorm, SwiGLU, adjacent-pair RoPE.
    Llama,
    /// Qwen2 (Qwen2.5-Coder): LLaMA with biases on Q/K/V and split-half (NeoX) RoPE.
    Qwen2,
    /// Gemma 3: Q/K norms, post-attention and post-FFN norms, scaled embeddings, GeGLU, and five sliding-window layers
    /// (own RoPE base) for every global one.
    Gemma3,
}

impl Arch {
    /// Each architecture with its `general.architecture` name.
    const NAMES: [(Arch, &'static str); 3] = [(Arch::Llama, "llama"), (Arch::Qwen2, "qwen2"), (Arch::Gemma3, "gemma3")];

    fn from_name(name: &str) -> Option<Self> {
        Self::NAMES.iter().find(|(_, n)| *n == name).map(|(arch, _)| *arch)
    }

    /// Its `general.architecture` name in GGUF files.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(arch, _)| *arch == self)
            .map_or("", |(_, n)| n)
    }
}

/// Per-layer attention settings (they differ between Gemma 3's local and global layers).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerAttention {
    /// RoPE parameters.
    pub rope: Rope,
    /// Sliding window, for local layers.
    pub window: Option<usize>,
}

/// Everything the forward pass needs to know about the shapes.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Architecture.
    pub arch: Arch,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Residual stream width.
    pub dim: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Elements per head.
    pub head_dim: usize,
    /// Feed-forward inner width.
    pub ff_dim: usize,
    /// RMSNorm epsilon.
    pub eps: f32,
    /// Context length the model was trained for.
    pub context_length: usize,
    /// Attention score scale.
    pub attn_scale: f32,
    /// Per-layer attention settings.
    pub layers: Vec<LayerAttention>,
}

impl Config {
    /// Reads the configuration of a GGUF model.
    pub fn from_gguf(file: &Gguf<'_>) -> Result<Self, ModelError> {
        let arch_name = file
            .get("general.architecture")
            .and_then(|v| v.as_str())
            .ok_or_else(|| ModelError::MissingKey("general.architecture".into()))?;
        let arch = Arch::from_name(arch_name).ok_or_else(|| ModelError::UnknownArch(arch_name.to_owned()))?;
        let key = |k: &str| format!("{arch_name}.{k}");
        let int = |k: &str| -> Result<usize, ModelError> {
            file.get(&key(k))
                .and_then(|v| v.as_u64())
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| ModelError::MissingKey(key(k)))
        };
        let float = |k: &str| file.get(&key(k)).and_then(|v| v.as_f64()).map(|v| v as f32);

        let dim = int("embedding_length")?;
        let n_heads = int("attention.head_count")?;
        if n_heads == 0 {
            return Err(ModelError::MissingKey(key("attention.head_count")));
        }
        let n_kv_heads = int("attention.head_count_kv").unwrap_or(n_heads);
        let head_dim = int("attention.key_length").unwrap_or(dim / n_heads);
        let n_layers = int("block_count")?;
        let style = if arch == Arch::Llama {
            RopeStyle::Normal
        } else {
            RopeStyle::NeoX
        };
        let rope = Rope {
            n_rot: int("rope.dimension_count").unwrap_or(head_dim),
            base: float("rope.freq_base").unwrap_or(10_000.0),
            freq_scale: float("rope.scaling.factor").map_or(1.0, |f| 1.0 / f),
            style,
        };
        let layers = (0..n_layers)
            .map(|il| match arch {
                // Gemma 3: every sixth layer is global; the others see a window and use their own RoPE base.
                Arch::Gemma3 => match int("attention.sliding_window").ok().filter(|&w| w > 0) {
                    Some(window) if il % 6 < 5 => LayerAttention {
                        rope: Rope {
                            base: float("rope.freq_base_swa").unwrap_or(10_000.0),
                            ..rope
                        },
                        window: Some(window),
                    },
                    _ => LayerAttention { rope, window: None },
                },
                _ => LayerAttention { rope, window: None },
            })
            .collect();
        Ok(Config {
            arch,
            n_layers,
            dim,
            n_heads,
            n_kv_heads,
            head_dim,
            ff_dim: int("feed_forward_length")?,
            eps: float("attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
            context_length: int("context_length").unwrap_or(4096),
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            layers,
        })
    }

    /// Width of the queries (`n_heads · head_dim`).
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Width of the keys and of the values (`n_kv_heads · head_dim`).
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}
