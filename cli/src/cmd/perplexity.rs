//! `hearth perplexity`: a model's perplexity over a text file, by llama.cpp's method (and flags), so the figures can
//! be compared with `llama-perplexity` directly.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use hearth_kernel::simd::Isa;
use hearth_runtime::ModelFile;
use hearth_runtime::perplexity::perplexity;
use hearth_runtime::progress::{Progress, Unit};
use hearth_runtime::tokenizer::Tokenizer;

use crate::args::{LoraArg, ModelArg, ThreadsArg};
use crate::progress::Bars;

#[derive(Debug, Args)]
pub struct PerplexityArgs {
    #[command(flatten)]
    model: ModelArg,
    #[command(flatten)]
    lora: LoraArg,
    /// The text to score.
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// Tokens per chunk; the second half of each chunk is scored.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
    ctx_size: usize,
    /// Evaluate at most this many chunks (default: all that fit).
    #[arg(long)]
    chunks: Option<usize>,
    #[command(flatten)]
    threads: ThreadsArg,
}

pub fn run(args: PerplexityArgs) -> anyhow::Result<()> {
    args.threads.apply()?;
    let text = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let text = String::from_utf8(text).with_context(|| format!("{} is not UTF-8 text", args.file.display()))?;
    let file = ModelFile::open_to_run(args.model.resolve()?, &mut Bars::default())?;
    let tokenizer = Tokenizer::from_gguf(file.gguf())?;
    let model = args.lora.load(&file)?;
    let tokens = tokenizer.encode(&text, true, false);
    let bos = tokenizer.added_bos();

    let mut bars = Bars::default();
    let mut started = false;
    let result = perplexity(
        &model,
        Isa::selected(),
        &tokens,
        args.ctx_size,
        args.chunks,
        bos,
        |chunk| {
            if !started {
                bars.stage("perplexity", Some(chunk.n_chunks as u64), Unit::Items);
                started = true;
            }
            bars.advance(1);
            bars.note(&format!("[{}] {:.4}", chunk.chunk, chunk.running_ppl));
        },
    )?;
    bars.finish_stage();
    println!(
        "Final estimate: PPL = {:.4} +/- {:.5} ({} chunks of {} tokens, {} tokens scored)",
        result.ppl, result.ppl_stderr, result.chunks, args.ctx_size, result.scored
    );
    Ok(())
}
