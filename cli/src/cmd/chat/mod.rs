//! `hearth chat`: the interactive coding assistant, and one-shot answers (`-p`, piped input, `--json`).

mod render;
mod repl;

use std::io::{IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use clap::Args;
use hearth_runtime::ModelFile;
use hearth_runtime::chat::{Chat, ChatSettings, DEFAULT_SYSTEM, Transcript, TurnStats};
use hearth_runtime::conversation::OverflowPolicy;
use hearth_runtime::model::Model;
use hearth_runtime::retrieval::{Project, project_root};
use hearth_runtime::template::ChatTemplate;
use hearth_runtime::tokenizer::Tokenizer;

use crate::args::{ContextArg, ModelArg, SamplingArgs, ThreadsArg};
use crate::progress::Bars;
use render::{Renderer, sources_line, stats_line};

#[derive(Debug, Args)]
pub struct ChatArgs {
    #[command(flatten)]
    model: ModelArg,
    /// Ask this and exit (`-` reads standard input). Without it, piped input is one question; a terminal gets the
    /// interactive chat.
    #[arg(short = 'p', long = "prompt")]
    prompt: Option<String>,
    /// With a one-shot question: print the answer, its sources and stats as one JSON object.
    #[arg(long)]
    json: bool,
    /// Project to retrieve code from [default: the nearest directory at or above the current one holding .hearth/
    /// or .git; none if there is none].
    #[arg(long, value_name = "DIR")]
    project: Option<PathBuf>,
    /// Do not retrieve project code for questions.
    #[arg(long)]
    no_retrieval: bool,
    /// Tokens of retrieved code per question.
    #[arg(long, default_value_t = ChatSettings::default().retrieval_budget)]
    retrieval_budget: usize,
    /// Pin a file (or a directory, or a glob over the project's files) into the conversation; repeatable.
    #[arg(long = "add", value_name = "PATH")]
    add: Vec<String>,
    /// System prompt.
    #[arg(long, default_value = DEFAULT_SYSTEM, hide_default_value = true)]
    system: String,
    /// Most tokens per answer (this much of the context is kept free for it).
    #[arg(short = 'n', long = "max-tokens", default_value_t = ChatSettings::default().max_answer_tokens)]
    max_tokens: usize,
    /// When the conversation outgrows the context, drop the oldest turns instead of refusing.
    #[arg(long)]
    drop_oldest: bool,
    #[command(flatten)]
    context: ContextArg,
    #[command(flatten)]
    threads: ThreadsArg,
    #[command(flatten)]
    sampling: SamplingArgs,
}

impl ChatArgs {
    fn settings(&self) -> ChatSettings {
        ChatSettings {
            system: self.system.clone(),
            max_answer_tokens: self.max_tokens,
            sampler: self.sampling.params(),
            retrieval_budget: if self.no_retrieval { 0 } else { self.retrieval_budget },
            overflow: if self.drop_oldest {
                OverflowPolicy::DropOldestTurns
            } else {
                OverflowPolicy::Error
            },
        }
    }

    /// The project to chat about, indexed and up to date (None without one, or with retrieval off).
    fn open_project(&self) -> anyhow::Result<Option<Project>> {
        if self.no_retrieval && self.add.is_empty() {
            return Ok(None);
        }
        let root = match &self.project {
            Some(dir) => dir.clone(),
            None => match project_root(&std::env::current_dir()?) {
                Some(root) => root,
                None => return Ok(None),
            },
        };
        let (project, _) = Project::index(&root, &mut Bars::default())?;
        Ok(Some(project))
    }
}

/// Set by Ctrl-C while an answer streams; the answer stops and the chat goes on.
#[derive(Clone, Debug, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    fn install() -> anyhow::Result<Self> {
        let interrupt = Interrupt::default();
        let flag = interrupt.0.clone();
        ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("installing the Ctrl-C handler")?;
        Ok(interrupt)
    }

    fn reset(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

pub fn run(args: ChatArgs) -> anyhow::Result<()> {
    args.threads.apply()?;
    let one_shot = args.prompt.is_some() || !std::io::stdin().is_terminal();
    if args.json && !one_shot {
        anyhow::bail!("--json needs a one-shot question (-p, or piped input)");
    }
    // Read before loading anything: an empty question should not cost a model load.
    let question = if one_shot {
        Some(crate::args::prompt_text(args.prompt.as_deref())?)
    } else {
        None
    };
    if question.as_ref().is_some_and(|q| q.trim().is_empty()) {
        anyhow::bail!("the question is empty");
    }
    // The line editor first: creating it installs its own SIGINT handler, which the interrupt's must replace (the
    // editor reads Ctrl-C as a key while it edits; while an answer streams, SIGINT has to reach the interrupt).
    let mut editor = if one_shot { None } else { Some(repl::Input::new()?) };
    let interrupt = Interrupt::install()?;
    let mut model_spec = args.model.model.clone();
    let mut project = args.open_project()?;
    let mut transcript: Option<Transcript> = None;
    loop {
        let path = ModelArg {
            model: model_spec.clone(),
        }
        .resolve()?;
        let file = ModelFile::open(&path)?;
        let tokenizer = Tokenizer::from_gguf(file.gguf())?;
        let template = ChatTemplate::from_gguf(file.gguf(), &tokenizer);
        let model = Model::load(&file).context("loading the model")?;
        let context = args.context.size(&model);
        let mut chat = Chat::new(&model, &tokenizer, &template, context, args.settings(), project.take())?;
        match transcript.take() {
            Some(saved) => chat.restore(saved)?,
            None => {
                for spec in &args.add {
                    chat.pin(spec)?;
                }
            }
        }
        let Some(input) = editor.as_mut() else {
            return answer_once(&args, &mut chat, question.as_deref().unwrap_or_default(), &interrupt);
        };
        let info = repl::ModelInfo {
            spec: model_spec.clone(),
            path,
            context,
        };
        match repl::run(input, &mut chat, &info, &interrupt)? {
            repl::Outcome::Exit => return Ok(()),
            repl::Outcome::SwitchModel(spec) => {
                transcript = Some(chat.transcript());
                project = chat.into_project();
                model_spec = spec;
            }
        }
    }
}

/// One question from `-p` or standard input: the answer streamed to stdout (stats and sources on stderr), or one
/// JSON object with `--json`.
fn answer_once(args: &ChatArgs, chat: &mut Chat<'_, '_>, question: &str, interrupt: &Interrupt) -> anyhow::Result<()> {
    if args.json {
        let stats = chat.ask(question, |_| interrupted(interrupt))?;
        let answer = chat.turns().last().map(|t| t.answer.clone()).unwrap_or_default();
        let json = serde_json::json!({ "answer": answer, "sources": stats.sources, "stats": stats_json(&stats) });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    let stdout = std::io::stdout();
    let mut renderer = Renderer::new(stdout.lock(), stdout.is_terminal());
    let stats = stream_answer(chat, question, &mut renderer, interrupt)?;
    if let Some(line) = sources_line(&stats.sources) {
        eprintln!("{line}");
    }
    eprintln!("{}", stats_line(&stats));
    Ok(())
}

/// Asks and streams the answer through `renderer`.
fn stream_answer<W: Write>(
    chat: &mut Chat<'_, '_>,
    question: &str,
    renderer: &mut Renderer<W>,
    interrupt: &Interrupt,
) -> anyhow::Result<TurnStats> {
    interrupt.reset();
    let mut write_error = None;
    let stats = chat.ask(question, |text| {
        if let Err(e) = renderer.push(text) {
            write_error = Some(e);
            return ControlFlow::Break(());
        }
        interrupted(interrupt)
    })?;
    if let Some(e) = write_error {
        return Err(e.into());
    }
    renderer.finish()?;
    Ok(stats)
}

fn interrupted(interrupt: &Interrupt) -> ControlFlow<()> {
    if interrupt.is_set() {
        ControlFlow::Break(())
    } else {
        ControlFlow::Continue(())
    }
}

fn stats_json(stats: &TurnStats) -> serde_json::Value {
    serde_json::json!({
        "prompt_tokens": stats.prompt_tokens,
        "cached_tokens": stats.cached_tokens,
        "first_token_seconds": stats.first_token.as_secs_f64(),
        "generated_tokens": stats.generated,
        "tokens_per_second": stats.tokens_per_second(),
        "finish": stats.finish.name(),
        "contexts_dropped": stats.contexts_dropped,
        "turns_dropped": stats.turns_dropped,
    })
}
