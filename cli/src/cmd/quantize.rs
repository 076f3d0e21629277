//! `hearth quantize`: re-encode a model with a quantization preset.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use hearth_runtime::Store;
use hearth_runtime::quantize::{Preset, quantize_file};

use super::models::human_bytes;
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
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for p in &plan {
        *counts.entry(p.to.name().to_owned()).or_default() += 1;
    }
    let mix: Vec<String> = counts.iter().map(|(t, n)| format!("{n} {t}")).collect();
    let size = std::fs::metadata(&args.output).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "wrote {} ({}, {} tensors: {}; {} converted)",
        args.output.display(),
        human_bytes(size),
        plan.len(),
        mix.join(", "),
        plan.iter().filter(|p| p.converts()).count()
    );
    Ok(())
}
