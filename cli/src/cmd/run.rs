//! `hearth run`: one-shot generation, streamed to stdout. Flags mirror llama.cpp's where they mean the same.

use std::io::Write;
use std::ops::ControlFlow;
use std::time::Instant;

use clap::Args;
use hearth_kernel::ops::kv::KvType;
use hearth_runtime::ModelFile;
use hearth_runtime::generate::{FinishReason, StopConditions, generate};
use hearth_runtime::sampling::Sampler;
use hearth_runtime::session::Session;
use hearth_runtime::template::{ChatTemplate, Message};
use hearth_runtime::tokenizer::Tokenizer;

use crate::args::{ContextArg, LoraArg, ModelArg, SamplingArgs, ThreadsArg, prompt_text};
use crate::progress::Bars;

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    model: ModelArg,
    #[command(flatten)]
    lora: LoraArg,
    /// The prompt; `-` (or nothing) reads standard input.
    #[arg(short = 'p', long = "prompt")]
    prompt: Option<String>,
    /// Tokens to generate (generation also stops at the end-of-turn token unless --ignore-eos).
    #[arg(short = 'n', long = "n-predict", default_value_t = 256)]
    n_predict: usize,
    #[command(flatten)]
    context: ContextArg,
    #[command(flatten)]
    threads: ThreadsArg,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Keep generating past the end-of-turn token.
    #[arg(long)]
    ignore_eos: bool,
    /// Stop when the output contains this text (not printed); repeatable.
    #[arg(long = "stop", value_name = "TEXT")]
    stop: Vec<String>,
    /// Treat the prompt as a user message and apply the model's chat template.
    #[arg(long)]
    chat: bool,
    /// System message for --chat.
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// Print nothing but the generated text (no timing line on stderr).
    #[arg(long)]
    quiet: bool,
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    args.threads.apply()?;
    let prompt = prompt_text(args.prompt.as_deref())?;
    let file = ModelFile::open_to_run(args.model.resolve()?, &mut Bars::default())?;
    let tokenizer = Tokenizer::from_gguf(file.gguf())?;
    let model = args.lora.load(&file)?;
    let ids = if args.chat {
        let template = ChatTemplate::from_gguf(file.gguf(), &tokenizer);
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(Message::new("system", system.as_str()));
        }
        messages.push(Message::new("user", prompt.as_str()));
        template.prompt(&tokenizer, &messages)?
    } else {
        tokenizer.encode(&prompt, true, true)
    };
    let ctx = args.context.size(&model)?;
    let mut session = Session::new(&model, ctx, KvType::F16)?;
    let mut sampler = Sampler::new(args.sampling.params()?);
    let stop = StopConditions {
        max_tokens: args.n_predict,
        strings: args.stop.clone(),
        ignore_eos: args.ignore_eos,
        ..StopConditions::default()
    };
    let mut out = std::io::stdout().lock();

    let start = Instant::now();
    session.prefill(&ids)?;
    let prefill_time = start.elapsed();
    let decode_start = Instant::now();
    let mut write_error = None;
    let generation = generate(&mut session, &tokenizer, &mut sampler, &stop, |text| {
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                write_error = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    match write_error {
        // The reader went away (`| head`): not a failure of ours.
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        Some(e) => return Err(e.into()),
        None => {}
    }
    writeln!(out)?;
    let generated = generation.tokens;
    if generation.finish == FinishReason::ContextFull {
        eprintln!("stopped: the context of {ctx} tokens is full (raise -c)");
    }
    if !args.quiet {
        let decode = decode_start.elapsed().as_secs_f64();
        eprintln!(
            "prompt {} tokens in {:.0} ms ({:.1} t/s); generated {generated} tokens at {:.1} t/s",
            ids.len(),
            prefill_time.as_secs_f64() * 1e3,
            ids.len() as f64 / prefill_time.as_secs_f64(),
            generated.saturating_sub(1) as f64 / decode.max(1e-9)
        );
    }
    Ok(())
}
