//! hearth-benches: criterion benches (`cargo bench -p hearth-benches`) and, later, the side-by-side harness that
//! runs llama.cpp and hearth on the same model file.
//!
//! Shared helpers for the benches live here.

use std::path::PathBuf;

use hearth_runtime::{NoProgress, Store};

/// The path of a known model for a bench, pulled into the store if needed. Benches that need a model panic with the
/// store's message when it cannot be had: a bench without its input has nothing to measure.
pub fn bench_model(name: &str) -> PathBuf {
    let store = Store::from_env().unwrap_or_else(|e| panic!("{e}"));
    store.resolve(name, &mut NoProgress).unwrap_or_else(|e| panic!("{e}"))
}
