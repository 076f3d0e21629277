//! hearth-trainer: LoRA adapters trained on a frozen, quantized base model, exported as llama.cpp-compatible GGUF.
//!
//! Built so far: the backward passes of every operation of a transformer block ([`ops`]) and the LoRA path
//! ([`ops::lora`]), each checked against finite differences. The training loop, data, optimizer, checkpoints and
//! export arrive on top of them.

pub mod block;
pub mod ops;
pub mod rng;
