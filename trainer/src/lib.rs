//! hearth-trainer: LoRA adapters trained on a frozen, quantized base model, exported as llama.cpp-compatible GGUF.
//!
//! - [`ops`]: forward and backward passes of every operation of a transformer block, and the LoRA path, each checked
//!   against finite differences.
//! - [`block`]: one block with adapters on its projections, forward and backward.
//! - [`adapter`]: a fresh adapter for a model (the adapter itself is the runtime's
//!   [`LoraAdapter`](hearth_runtime::lora::LoraAdapter), which inference applies and saves in llama.cpp's format);
//!   [`step`]: one example's loss and gradients through the model, with or without gradient checkpointing;
//!   [`optim`]: AdamW, the learning-rate schedule, clipping.
//! - [`data`]: examples from a project, conversations or text; [`train`]: the loop; [`checkpoint`]: saving and
//!   resuming it.

pub mod adapter;
pub mod block;
pub mod checkpoint;
pub mod data;
pub mod ops;
pub mod optim;
pub mod rng;
pub mod step;
pub mod train;

use hearth_kernel::ops::OpError;

/// Why a training computation failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// An example with no tokens to feed.
    #[error("a training example has no tokens")]
    EmptyExample,
    /// A token id outside the model's vocabulary.
    #[error("token {0} is outside the model's vocabulary")]
    BadToken(u32),
    /// The loss or the gradients stayed non-finite.
    #[error("training diverged at step {0}: the loss or the gradients stayed infinite or NaN; lower the learning rate")]
    Diverged(u64),
    /// Shapes that do not fit (a bug, or an adapter made for another model).
    #[error(transparent)]
    Op(#[from] OpError),
}
