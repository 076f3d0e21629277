//! `hearth`: the command-line front end. It parses arguments and renders; the work happens in hearth-runtime.

mod args;
mod cmd;
mod config;
mod malloc;
mod progress;
mod remote;

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
    /// Chat about your code with the model (retrieves project code; -p answers one question and exits).
    Chat(cmd::chat::ChatArgs),
    /// Explain a file or a range of lines (PATH, PATH:LINE or PATH:FIRST-LAST).
    Explain(cmd::presets::ExplainArgs),
    /// Find the cause of an error in a file (--error TEXT, or a traceback on stdin) and propose a fix.
    Debug(cmd::presets::DebugArgs),
    /// Generate code from a description (-o FILE writes the answer's code block).
    Gen(cmd::presets::GenArgs),
    /// Change files as asked: the model answers with edits, you see a diff and confirm (`hearth undo` takes
    /// the last edit back).
    Edit(cmd::edit::EditArgs),
    /// Take back the last applied edit or inserted completion, if its files are still as it left them.
    Undo(cmd::edit::UndoArgs),
    /// Fill in code at PATH:LINE[:COL] (fill-in-the-middle); print it, or insert it with --apply.
    Complete(cmd::complete::CompleteArgs),
    /// Generate text from a prompt, streamed to stdout.
    Run(cmd::run::RunArgs),
    /// Serve the model over an OpenAI-compatible HTTP API (for editors and any OpenAI client).
    Serve(cmd::serve::ServeArgs),
    /// Set a project up: write a commented .hearth/config.toml and build the index.
    Init(cmd::init::InitArgs),
    /// Show the settings in effect (flags > HEARTH_MODEL > project .hearth/config.toml > ~/.config/hearth/config.toml).
    #[command(subcommand)]
    Config(cmd::config::ConfigCommand),
    /// Build or update a project's retrieval index (tree-sitter chunks, BM25 terms, definitions).
    Index(cmd::index::IndexArgs),
    /// Search a project's code: the chunks that best match a query.
    Search(cmd::search::SearchArgs),
    /// Print a project's repo map: its most referenced definitions, fitted to a token budget.
    Map(cmd::map::MapArgs),
    /// Measure prompt and generation speed (llama-bench's workloads).
    Bench(cmd::bench::BenchArgs),
    /// Train a LoRA adapter on a project, conversations or text (llama.cpp's adapter format; use it with --lora).
    Train(cmd::train::TrainArgs),
    /// Convert LoRA adapters trained elsewhere (Hugging Face PEFT) into adapter GGUFs.
    #[command(subcommand)]
    Adapter(cmd::adapter::AdapterCommand),
    /// Bake LoRA adapters into a model's weights and re-encode it (runs anywhere without --lora).
    Merge(cmd::quantize::MergeArgs),
    /// Measure a model's perplexity over a text file (llama.cpp's method).
    Perplexity(cmd::perplexity::PerplexityArgs),
    /// Show how the model's tokenizer splits a text into tokens.
    Tokenize(cmd::tokenize::TokenizeArgs),
}

fn main() -> ExitCode {
    malloc::use_one_arena();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Models(command) => cmd::models::run(command),
        Command::Inspect(args) => cmd::inspect::run(args),
        Command::Quantize(args) => cmd::quantize::run(args),
        Command::Tokenize(args) => cmd::tokenize::run(args),
        Command::Chat(args) => cmd::chat::run(args),
        Command::Train(args) => cmd::train::run(args),
        Command::Merge(args) => cmd::quantize::merge(args),
        Command::Adapter(command) => cmd::adapter::run(command),
        Command::Explain(args) => cmd::presets::explain(args),
        Command::Debug(args) => cmd::presets::debug(args),
        Command::Gen(args) => cmd::presets::gen_code(args),
        Command::Edit(args) => cmd::edit::run(args),
        Command::Undo(args) => cmd::edit::undo_last(args),
        Command::Complete(args) => cmd::complete::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Serve(args) => cmd::serve::run(args),
        Command::Perplexity(args) => cmd::perplexity::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Index(args) => cmd::index::run(args),
        Command::Init(args) => cmd::init::run(args),
        Command::Config(command) => cmd::config::run(command),
        Command::Search(args) => cmd::search::run(args),
        Command::Map(args) => cmd::map::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
