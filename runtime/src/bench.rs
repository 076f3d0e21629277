//! Throughput measurement with llama-bench's workloads, so the two tools' figures compare directly:
//! - `pp N`: one prompt of N tokens (in llama.cpp's 512-token batches, as [`Session::prefill`] runs them);
//! - `tg N`: N tokens run one at a time;
//! - either after a context of `depth` tokens (processed untimed before each repetition).
//!
//! Tokens are pseudo-random ids (BOS first when the model adds one), as llama-bench uses: the content does not
//! change the work.

use std::time::Instant;

use hearth_kernel::ops::kv::KvType;

use crate::model::{Model, ModelError};
use crate::sampling::SplitMix64;
use crate::session::Session;

/// One workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// A prompt of this many tokens.
    Prompt(usize),
    /// This many tokens generated one at a time.
    Generate(usize),
}

impl Workload {
    /// Tokens the workload runs.
    pub fn tokens(self) -> usize {
        match self {
            Workload::Prompt(n) | Workload::Generate(n) => n,
        }
    }

    /// llama-bench's name for it (`pp512`, `tg128`; `@ d4096` added for a depth).
    pub fn name(self, depth: usize) -> String {
        let base = match self {
            Workload::Prompt(n) => format!("pp{n}"),
            Workload::Generate(n) => format!("tg{n}"),
        };
        if depth > 0 { format!("{base} @ d{depth}") } else { base }
    }
}

/// Tokens per second of each repetition, with their mean and sample standard deviation.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// Tokens per second, per repetition.
    pub samples: Vec<f64>,
}

impl Measurement {
    /// Mean tokens per second.
    pub fn mean(&self) -> f64 {
        self.samples.iter().sum::<f64>() / self.samples.len().max(1) as f64
    }

    /// Sample standard deviation (0 for a single repetition).
    pub fn stdev(&self) -> f64 {
        let n = self.samples.len();
        if n < 2 {
            return 0.0;
        }
        let mean = self.mean();
        (self.samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    }
}

/// Runs `workload` after `depth` tokens of context, `reps` times after one untimed warm-up run.
pub fn measure(
    model: &Model<'_>,
    workload: Workload,
    depth: usize,
    reps: usize,
    bos: Option<u32>,
) -> Result<Measurement, ModelError> {
    let mut session = Session::new(model, depth + workload.tokens(), KvType::F16)?;
    let mut rng = SplitMix64(0x6865_6172_7468);
    let vocab = model.vocab_size() as u64;
    let mut samples = Vec::with_capacity(reps);
    for rep in 0..=reps {
        // A fresh random context, BOS first when the model adds one; the timed tokens follow it.
        let tokens: Vec<u32> = (0..depth + workload.tokens())
            .map(|i| match bos {
                Some(bos) if i == 0 => bos,
                _ => (rng.next_u64() % vocab) as u32,
            })
            .collect();
        let (context, timed) = tokens.split_at(depth);
        session.clear();
        if !context.is_empty() {
            session.prefill(context)?;
        }
        let start = Instant::now();
        match workload {
            // Only the tokens after the (cached) context run.
            Workload::Prompt(_) => {
                session.prefill(&tokens)?;
            }
            Workload::Generate(_) => {
                for &token in timed {
                    session.push(token)?;
                }
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        // Repetition 0 warms caches and page tables.
        if rep > 0 {
            samples.push(workload.tokens() as f64 / seconds);
        }
    }
    Ok(Measurement { samples })
}

/// Bytes one generated token reads at `depth`: every weight matrix it multiplies by (one row of the embedding
/// table, the rest whole) and the keys and values of `depth + 1` positions.
pub fn bytes_per_token(model: &Model<'_>, depth: usize) -> usize {
    let c = model.config();
    // Keys and values, f16 (2 bytes) each.
    let kv = 2 * c.n_layers * c.kv_dim() * (depth + 1) * 2;
    model.matmul_bytes() + kv
}

/// Memory read bandwidth in bytes per second: the best of a few passes summing a 1 GiB buffer on every thread
/// (larger than any cache, so it measures DRAM).
pub fn read_bandwidth() -> f64 {
    use rayon::prelude::*;
    const LEN: usize = 1 << 27; // u64s: 1 GiB
    let buffer: Vec<u64> = (0..LEN as u64).collect();
    let mut best = 0f64;
    for _ in 0..4 {
        let start = Instant::now();
        let sum: u64 = buffer
            .par_chunks(1 << 16)
            .map(|c| c.iter().fold(0u64, |a, &b| a.wrapping_add(b)))
            .reduce(|| 0, u64::wrapping_add);
        let seconds = start.elapsed().as_secs_f64();
        std::hint::black_box(sum);
        best = best.max((LEN * size_of::<u64>()) as f64 / seconds);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_and_names() {
        let m = Measurement {
            samples: vec![10.0, 12.0, 14.0],
        };
        assert_eq!(m.mean(), 12.0);
        assert!((m.stdev() - 2.0).abs() < 1e-12);
        assert_eq!(Measurement { samples: vec![5.0] }.stdev(), 0.0);
        assert_eq!(Workload::Prompt(512).name(0), "pp512");
        assert_eq!(Workload::Generate(64).name(4096), "tg64 @ d4096");
    }
}
