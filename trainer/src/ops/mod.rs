//! Forward and backward passes of the operations a transformer block is made of, for training.
//!
//! Conventions: activations are row-major `[n_tokens, width]` f32 slices; a backward function takes the gradient
//! of the loss with respect to the op's output (`d_out`, same shape as the output) and gives the gradients with
//! respect to its inputs. Functions named `…_backward` *write* their input gradients, except where they say they
//! *add* to them (the frozen linear layers and LoRA, whose inputs feed several projections). Base weights are frozen:
//! nothing here computes their gradients, only the gradients that flow through them.
//!
//! Forward passes come from the kernel where the kernel's op is a smooth function (RMSNorm, RoPE, SwiGLU, the
//! quantized matmuls); attention gets its own whole-sequence forward here because its backward needs the softmax
//! probabilities, which the kernel's online softmax never forms.

pub mod act;
pub mod attention;
pub mod linear;
pub mod lora;
pub mod loss;
pub mod norm;
pub mod rope;

#[cfg(test)]
pub(crate) mod check;

pub use hearth_kernel::ops::{OpError, expect_len};
