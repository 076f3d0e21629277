//! Checkpoints: the adapter as an adapter file (so a checkpoint loads with `--lora` like the final adapter), plus the
//! optimizer's moments, the run's position and its loss history, in one GGUF written atomically (a `kill -9` at any
//! moment leaves the previous checkpoint or the new one, never a mix).
//!
//! Extra metadata: `hearth.checkpoint.fingerprint` (the options and data the run was started with; resuming with
//! others is refused), `….step`, `….cursor`, `….skipped`, `….adam_steps`, `….losses` (how many values of the
//! `hearth.losses` tensor count). Extra tensors: `<pair tensor>.adam_m` and `.adam_v` for every pair tensor.

use std::path::Path;

use hearth_kernel::gguf::{MetadataEntry, Value};
use hearth_runtime::ModelFile;
use hearth_runtime::lora::{LoraAdapter, LoraError};
use hearth_runtime::model::Model;

use crate::optim::AdamW;
use crate::train::RunState;

/// Why a checkpoint could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Opening the file.
    #[error(transparent)]
    Open(#[from] hearth_runtime::OpenError),
    /// Its adapter part.
    #[error(transparent)]
    Lora(#[from] LoraError),
    /// It was made by a run with other options or data.
    #[error("the checkpoint was made with {saved}, not {now}; run with the same options, or without --resume")]
    Mismatch {
        /// What the checkpoint was made with.
        saved: String,
        /// What this run has.
        now: String,
    },
    /// Something it should hold is missing or the wrong size.
    #[error("the checkpoint is incomplete: {0}")]
    Incomplete(String),
}

const FINGERPRINT: &str = "hearth.checkpoint.fingerprint";
const STEP: &str = "hearth.checkpoint.step";
const CURSOR: &str = "hearth.checkpoint.cursor";
const SKIPPED: &str = "hearth.checkpoint.skipped";
const ADAM_STEPS: &str = "hearth.checkpoint.adam_steps";
const LOSSES: &str = "hearth.checkpoint.losses";
const LOSS_TENSOR: &str = "hearth.losses";

/// Writes a checkpoint of `adapter`, `optimizer` and `state` for a model of architecture `arch`.
pub fn save(
    path: &Path,
    arch: &str,
    fingerprint: &str,
    adapter: &LoraAdapter,
    optimizer: &AdamW,
    state: &RunState,
) -> Result<(), LoraError> {
    let metadata = [
        (FINGERPRINT, Value::String(fingerprint)),
        (STEP, Value::U64(state.step)),
        (CURSOR, Value::U64(state.cursor)),
        (SKIPPED, Value::U64(state.skipped)),
        (ADAM_STEPS, Value::U64(optimizer.steps)),
        (LOSSES, Value::U64(state.losses.len() as u64)),
    ]
    .map(|(key, value)| MetadataEntry { key, value });
    // A GGUF tensor cannot be empty: a run without losses yet stores one unused value.
    let losses: &[f32] = if state.losses.is_empty() {
        &[f32::NAN]
    } else {
        &state.losses
    };
    let mut tensors = vec![(LOSS_TENSOR.to_owned(), losses)];
    for ((name, _), (m, v)) in adapter
        .tensor_names()
        .zip(optimizer.m.tensors().zip(optimizer.v.tensors()))
    {
        tensors.push((format!("{name}.adam_m"), m));
        tensors.push((format!("{name}.adam_v"), v));
    }
    adapter.save_with(path, arch, &metadata, &tensors)
}

/// What a run continues from: what a checkpoint holds.
#[derive(Debug)]
pub struct Checkpoint {
    /// The adapter as trained so far.
    pub adapter: LoraAdapter,
    /// The optimizer's moments and step count.
    pub optimizer: AdamW,
    /// The run's progress.
    pub state: RunState,
}

/// Reads a checkpoint for `model` made by a run with `fingerprint` (its optimizer with `weight_decay`).
pub fn load(
    path: &Path,
    model: &Model<'_>,
    fingerprint: &str,
    weight_decay: f32,
) -> Result<Checkpoint, CheckpointError> {
    let file = ModelFile::open(path)?;
    let gguf = file.gguf();
    let saved = gguf.get(FINGERPRINT).and_then(|v| v.as_str()).unwrap_or("(none)");
    if saved != fingerprint {
        return Err(CheckpointError::Mismatch {
            saved: saved.to_owned(),
            now: fingerprint.to_owned(),
        });
    }
    let adapter = LoraAdapter::from_gguf(gguf, model)?;
    let number = |key: &str| {
        gguf.get(key)
            .and_then(|v| v.as_u64())
            .ok_or_else(|| CheckpointError::Incomplete(format!("{key} is missing")))
    };
    let floats = |name: &str, len: usize| -> Result<Vec<f32>, CheckpointError> {
        let tensor = gguf
            .tensor(name)
            .filter(|t| t.dtype == hearth_kernel::GgmlType::F32 && t.n_elems() >= len)
            .ok_or_else(|| CheckpointError::Incomplete(format!("{name} is missing or too small")))?;
        Ok(tensor
            .data
            .chunks_exact(4)
            .take(len)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect())
    };
    let mut optimizer = AdamW::new(&adapter, weight_decay);
    optimizer.steps = number(ADAM_STEPS)?;
    let names: Vec<(String, [usize; 2])> = adapter.tensor_names().collect();
    for (((name, ne), m), v) in names
        .iter()
        .zip(optimizer.m.tensors_mut())
        .zip(optimizer.v.tensors_mut())
    {
        let len = ne[0] * ne[1];
        m.copy_from_slice(&floats(&format!("{name}.adam_m"), len)?);
        v.copy_from_slice(&floats(&format!("{name}.adam_v"), len)?);
    }
    let state = RunState {
        step: number(STEP)?,
        cursor: number(CURSOR)?,
        skipped: number(SKIPPED)?,
        losses: floats(LOSS_TENSOR, number(LOSSES)? as usize)?,
    };
    Ok(Checkpoint {
        adapter,
        optimizer,
        state,
    })
}
