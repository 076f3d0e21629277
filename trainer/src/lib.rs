//! hearth-trainer: LoRA adapters trained on a frozen, quantized base model, exported as llama.cpp-compatible GGUF.
//!
//! Nothing is implemented yet: training arrives with the trainer issue, on top of the runtime's models.
