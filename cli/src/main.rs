//! `hearth`: the command-line front end. It parses arguments and renders; the work happens in hearth-runtime.

mod args;
mod cmd;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A local, offline coding assistant for CPU laptops.
#[derive(Debug, Parser)]
#[command(name = "hearth", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List, fetch, locate and remove models in the local store.
    #[command(subcommand)]
    Models(cmd::models::ModelsCommand),
    /// Show a model file's architecture, hyper-parameters, tokenizer and tensors.
    Inspect(cmd::inspect::InspectArgs),
    /// Re-encode a model with a quantization preset (the same per-tensor mixtures as llama.cpp's).
    Quantize(cmd::quantize::QuantizeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Models(command) => cmd::models::run(command),
        Command::Inspect(args) => cmd::inspect::run(args),
        Command::Quantize(args) => cmd::quantize::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
