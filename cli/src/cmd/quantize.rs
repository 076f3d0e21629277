//! `hearth quantize`: re-encode a model with a quantization preset; `hearth merge`: the same with LoRA adapters baked
//! in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use hearth_runtime::Store;
use hearth_runtime::quantize::{Preset, TensorPlan, merge_file, quantize_file};

use super::models::human_bytes;
use crate::args::{LoraArg, ModelArg};
use crate::progress::Bars;

#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// Input model: a .gguf path or a known model name.
    input: String,
    /// Output .gguf path (written to OUTPUT.gguf.partial, then renamed).
    output: PathBuf,
    /// Preset: q4_k_m, q5_k_m, q6_k, q8_0, q4_0 or f16 (per-tensor mixtures as llama.cpp's).
    #[arg(short = 't', long = "type", value_parser = parse_preset)]
    preset: Preset,
    /// Allow re-encoding tensors that are already quantized (dequantized to f32 first).
    #[arg(long)]
    allow_requantize: bool,
}

fn parse_preset(name: &str) -> Result<Preset, String> {
    Preset::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Preset::ALL.iter().map(|p| p.name()).collect();
        format!("unknown preset '{name}'; choose one of {}", names.join(", "))
    })
}

pub fn run(args: QuantizeArgs) -> anyhow::Result<()> {
    let input = Store::from_env()?.resolve(&args.input, &mut Bars::default())?;
    let plan = quantize_file(
        &input,
        &args.output,
        args.preset,
        args.allow_requantize,
        &mut Bars::default(),
    )
    .with_context(|| format!("quantizing {}", input.display()))?;
    report(&args.output, &plan);
    Ok(())
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    #[command(flatten)]
    model: ModelArg,
    #[command(flatten)]
    lora: LoraArg,
    /// Output .gguf path (written to OUTPUT.gguf.partial, then renamed).
    #[arg(short = 'o', long = "out")]
    output: PathBuf,
    /// Preset of the output: q4_k_m, q5_k_m, q6_k, q8_0, q4_0 or f16. Adapted weights are always re-encoded (from
    /// the model's own types, as llama.cpp's export-lora does); f16 or q8_0 keep most of the adapter's effect.
    #[arg(short = 't', long = "type", value_parser = parse_preset, default_value = "q8_0")]
    preset: Preset,
}

pub fn merge(args: MergeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(!args.lora.lora.is_empty(), "--lora: name at least one adapter to merge");
    let input = args.model.resolve()?;
    let plan = merge_file(
        &input,
        &args.lora.specs(),
        &args.output,
        args.preset,
        &mut Bars::default(),
    )
    .with_context(|| format!("merging into {}", input.display()))?;
    report(&args.output, &plan);
    Ok(())
}

/// Prints what was written: size and the types of its tensors.
fn report(output: &Path, plan: &[TensorPlan]) {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for p in plan {
        *counts.entry(p.to.name().to_owned()).or_default() += 1;
    }
    let mix: Vec<String> = counts.iter().map(|(t, n)| format!("{n} {t}")).collect();
    let size = std::fs::metadata(output).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "wrote {} ({}, {} tensors: {}; {} re-encoded)",
        output.display(),
        human_bytes(size),
        plan.len(),
        mix.join(", "),
        plan.iter().filter(|p| p.reencode).count()
    );
}
