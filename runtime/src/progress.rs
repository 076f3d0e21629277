//! Progress reporting for long work (pulling models, quantizing, indexing, training). The runtime reports; the CLI
//! decides how to draw it.

/// Receives progress of long-running work, one stage at a time.
pub trait Progress {
    /// A new stage begins: `message` says what it does, `total` is its size in `unit`s when known.
    fn stage(&mut self, message: &str, total: Option<u64>, unit: Unit);
    /// `n` more units of the current stage are done.
    fn advance(&mut self, n: u64);
    /// The current stage is over.
    fn finish_stage(&mut self);
    /// A remark that is not a stage (e.g. "waiting for another process").
    fn note(&mut self, message: &str);
}

/// What the counts of a stage measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Bytes (shown as KiB/MiB/GiB).
    Bytes,
    /// Discrete items (files, parts, tensors, steps).
    Items,
}

/// Discards all progress (for tests and library callers that do not show any).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn stage(&mut self, _: &str, _: Option<u64>, _: Unit) {}
    fn advance(&mut self, _: u64) {}
    fn finish_stage(&mut self) {}
    fn note(&mut self, _: &str) {}
}
