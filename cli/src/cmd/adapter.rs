//! `hearth adapter`: LoRA adapters made elsewhere.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use hearth_runtime::ModelFile;
use hearth_runtime::lora::peft;
use hearth_runtime::model::Model;

use crate::args::ModelArg;

#[derive(Debug, Subcommand)]
pub enum AdapterCommand {
    /// Convert a Hugging Face PEFT LoRA (a directory with adapter_config.json and adapter_model.safetensors) into
    /// an adapter GGUF for hearth's --lora and llama.cpp's --lora.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The PEFT adapter directory (as `save_pretrained` writes it).
    dir: PathBuf,
    /// The adapter file to write.
    #[arg(short = 'o', long = "out")]
    out: PathBuf,
    // The base model the adapter was trained on: its shapes are checked and its architecture recorded.
    #[command(flatten)]
    model: ModelArg,
}

pub fn run(command: AdapterCommand) -> anyhow::Result<()> {
    let AdapterCommand::Import(args) = command;
    anyhow::ensure!(args.dir.is_dir(), "{} is not a directory", args.dir.display());
    let path = args.model.resolve()?;
    let file = ModelFile::open(&path)?;
    let model = Model::load(&file).context("loading the model")?;
    let import = peft::import(&args.dir, &model)
        .with_context(|| format!("importing {} for {}", args.dir.display(), path.display()))?;
    let arch = model.config().arch.name();
    import
        .adapter
        .save(&args.out, arch)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let pairs = import.adapter.pairs().count();
    let blocks = import
        .adapter
        .layers
        .iter()
        .filter(|l| l.0.iter().any(Option::is_some))
        .count();
    eprintln!(
        "wrote {}: {pairs} pairs in {blocks} of {} blocks, {} parameters, alpha {}{}{}",
        args.out.display(),
        model.layers().len(),
        import.adapter.parameter_count(),
        import.adapter.alpha,
        match import.rescaled {
            0 => String::new(),
            n => format!("; {n} pairs rescaled to the file's alpha/rank"),
        },
        match import.permuted {
            0 => String::new(),
            n => format!("; {n} Q/K pairs reordered for {arch}'s RoPE layout"),
        },
    );
    if let Some(base) = import.base_model {
        eprintln!("PEFT records its base model as {base}");
    }
    Ok(())
}
