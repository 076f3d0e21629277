//! hearth-runtime: everything between the kernel and the user.
//!
//! It owns files (memory-mapped model files, the model store), and will own threads, tokenizers, chat templates,
//! sessions and project retrieval as they arrive.

pub mod model_file;
pub mod progress;
pub mod quantize;
pub mod store;

pub use model_file::{ModelFile, OpenError};
pub use progress::{NoProgress, Progress};
pub use store::{KnownModel, Store, StoreError};
