//! hearth-runtime: everything between the kernel and the user.
//!
//! It owns files (memory-mapped model files, the model store), and will own threads, tokenizers, chat templates,
//! sessions and project retrieval.

pub mod backend;
pub mod bench;
pub mod chat;
pub mod conversation;
pub mod edit;
pub mod fim;
pub mod fsutil;
pub mod generate;
pub mod grouped;
pub mod lora;
pub mod model;
pub mod model_file;
pub mod perplexity;
pub mod progress;
pub mod quantize;
pub mod retrieval;
pub mod sampling;
pub mod session;
pub mod store;
pub mod template;
pub mod tokenizer;

pub use model_file::{ModelFile, OpenError};
pub use progress::{NoProgress, Progress};
pub use store::{KnownModel, Store, StoreError};

/// Sets how many threads the kernels use (once, before any work; later calls report an error).
pub fn set_threads(n: usize) -> Result<(), String> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .map_err(|e| e.to_string())
}

/// How many threads the kernels use.
pub fn threads() -> usize {
    rayon::current_num_threads()
}
