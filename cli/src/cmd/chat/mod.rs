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
use hearth_runtime::backend::LocalBackend;
use hearth_runtime::chat::{Chat, ChatSettings, Transcript, TurnStats};
use hearth_runtime::conversation::OverflowPolicy;
use hearth_runtime::model::Model;
use hearth_runtime::retrieval::{Project, project_root};
use hearth_runtime::template::ChatTemplate;
use hearth_runtime::tokenizer::Tokenizer;

use crate::args::{ContextArg, LoraArg, ModelArg, SamplingArgs, ThreadsArg, resolve_model};
use crate::config;
use crate::progress::Bars;
use crate::remote::BackendArgs;
use render::{Renderer, sources_line, stats_line};
pub use repl::ModelInfo;

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Ask this and exit (`-` reads standard input). Without it, piped input is one question; a terminal gets the
    /// interactive chat.
    #[arg(short = 'p', long = "prompt")]
    prompt: Option<String>,
    /// With a one-shot question: print the answer, its sources and stats as one JSON object.
    #[arg(long)]
    json: bool,
    /// Pin a file (or a directory, or a glob over the project's files) into the conversation; repeatable.
    #[arg(long = "add", value_name = "PATH")]
    add: Vec<String>,
    #[command(flatten)]
    session: SessionArgs,
}

/// What every chat-based command shares: model, project and retrieval, answer length, sampling.
#[derive(Debug, Args)]
pub struct SessionArgs {
    #[command(flatten)]
    pub(crate) model: ModelArg,
    #[command(flatten)]
    pub(crate) lora: LoraArg,
    /// Project to retrieve code from [default: the nearest directory at or above the current one holding .hearth/
    /// or .git; none if there is none].
    #[arg(long, value_name = "DIR")]
    project: Option<PathBuf>,
    /// Do not retrieve project code for questions [default: the settings files' `chat.retrieval`, else retrieve].
    #[arg(long)]
    no_retrieval: bool,
    /// Tokens of retrieved code per question [default: 1536].
    #[arg(long)]
    retrieval_budget: Option<usize>,
    /// System prompt [default: hearth's, which asks for precise answers, tagged code blocks and file paths].
    #[arg(long)]
    system: Option<String>,
    /// Most tokens per answer (this much of the context is kept free for it) [default: 1024].
    #[arg(short = 'n', long = "max-tokens")]
    max_tokens: Option<usize>,
    /// When the conversation outgrows the context, drop the oldest turns instead of refusing.
    #[arg(long)]
    drop_oldest: bool,
    #[command(flatten)]
    pub(crate) context: ContextArg,
    #[command(flatten)]
    pub(crate) threads: ThreadsArg,
    #[command(flatten)]
    pub(crate) sampling: SamplingArgs,
    #[command(flatten)]
    pub(crate) backend: BackendArgs,
}

impl SessionArgs {
    /// The chat settings: flags, else the settings files, else the defaults.
    fn settings(&self) -> anyhow::Result<ChatSettings> {
        self.settings_over(ChatSettings::default())
    }

    /// The settings for a command whose own defaults are `defaults`: flags, else the settings files, else those.
    pub fn settings_over(&self, defaults: ChatSettings) -> anyhow::Result<ChatSettings> {
        let budget = config::resolve(
            self.retrieval_budget,
            |c| c.chat.retrieval_budget,
            defaults.retrieval_budget,
        )?;
        let drop_oldest = self.drop_oldest || config::current()?.get(|c| c.chat.drop_oldest).unwrap_or(false);
        Ok(ChatSettings {
            system: config::resolve(self.system.clone(), |c| c.chat.system.clone(), defaults.system)?,
            max_answer_tokens: config::resolve(self.max_tokens, |c| c.chat.max_tokens, defaults.max_answer_tokens)?,
            sampler: self.sampling.params()?,
            retrieval_budget: if self.retrieval()? { budget } else { 0 },
            overflow: if drop_oldest {
                OverflowPolicy::DropOldestTurns
            } else {
                OverflowPolicy::Error
            },
        })
    }

    /// Whether to retrieve project code.
    pub fn retrieval(&self) -> anyhow::Result<bool> {
        Ok(!self.no_retrieval && config::current()?.get(|c| c.chat.retrieval).unwrap_or(true))
    }

    /// The project to chat about, indexed and up to date (None without one, or with retrieval off and no files to
    /// pin).
    fn open_project(&self, pins: &[String]) -> anyhow::Result<Option<Project>> {
        if !self.retrieval()? && pins.is_empty() {
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

    /// The project root for commands that write files: `--project`, else the nearest project directory, else the
    /// current directory.
    pub fn root(&self) -> anyhow::Result<PathBuf> {
        crate::args::project_dir(self.project.as_deref())
    }

    /// Runs `f` on a chat with `settings` about `project`, answered by the `--backend` server, else by the local
    /// model (loaded here). `model` is the model as the user named it, if they did: a server's model name, or a
    /// local model [default: the settings files', else hearth's].
    pub fn with_chat<R>(
        &self,
        model: Option<&str>,
        settings: ChatSettings,
        project: Option<Project>,
        f: impl FnOnce(&mut Chat<'_>, &ModelInfo) -> anyhow::Result<R>,
    ) -> anyhow::Result<R> {
        if let Some(remote) = self.backend.connect(model)? {
            anyhow::ensure!(
                self.lora.lora.is_empty(),
                "--lora applies adapters to a local model; with --backend, load them in the server"
            );
            let info = ModelInfo {
                name: remote.model().to_owned(),
                place: remote.url(),
                context: None,
            };
            return f(&mut Chat::new(Box::new(remote), settings, project), &info);
        }
        let spec = match model {
            Some(spec) => spec.to_owned(),
            None => self.model.spec()?,
        };
        let loaded = Loaded::open(&spec)?;
        let model = loaded.model(&self.lora)?;
        let context = self.context.size(&model)?;
        let backend = LocalBackend::new(&model, &loaded.tokenizer, &loaded.template, context)?;
        let info = ModelInfo {
            name: spec,
            place: loaded.path.display().to_string(),
            context: Some(context),
        };
        f(&mut Chat::new(Box::new(backend), settings, project), &info)
    }
}

/// Set by Ctrl-C while an answer streams; the answer stops and the chat goes on.
#[derive(Clone, Debug, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// Installs the Ctrl-C handler that sets it.
    pub fn install() -> anyhow::Result<Self> {
        let interrupt = Interrupt::default();
        let flag = interrupt.0.clone();
        ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("installing the Ctrl-C handler")?;
        Ok(interrupt)
    }

    /// Clears it, before an answer starts.
    pub fn reset(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    /// Whether Ctrl-C was pressed since the last reset.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

pub fn run(args: ChatArgs) -> anyhow::Result<()> {
    let one_shot = args.prompt.is_some() || !std::io::stdin().is_terminal();
    if one_shot {
        let question = crate::args::prompt_text(args.prompt.as_deref())?;
        return ask_once(&args.session, &question, &args.add, args.json).map(drop);
    }
    if args.json {
        anyhow::bail!("--json needs a one-shot question (-p, or piped input)");
    }
    let session = &args.session;
    session.threads.apply()?;
    // The line editor first: creating it installs its own SIGINT handler, which the interrupt's must replace (the
    // editor reads Ctrl-C as a key while it edits; while an answer streams, SIGINT has to reach the interrupt).
    let mut input = repl::Input::new()?;
    let interrupt = Interrupt::install()?;
    let mut model = session.model.model.clone();
    let mut project = session.open_project(&args.add)?;
    let mut transcript: Option<Transcript> = None;
    loop {
        let outcome = session.with_chat(model.as_deref(), session.settings()?, project.take(), |chat, info| {
            match transcript.take() {
                Some(saved) => chat.restore(saved)?,
                None => {
                    for spec in &args.add {
                        chat.pin(spec)?;
                    }
                }
            }
            let outcome = repl::run(&mut input, chat, info, &interrupt)?;
            // The conversation and the project carry over to the next model.
            transcript = Some(chat.transcript());
            project = chat.take_project();
            Ok(outcome)
        })?;
        match outcome {
            repl::Outcome::Exit => return Ok(()),
            repl::Outcome::SwitchModel(spec) => model = Some(spec),
        }
    }
}

/// A model file with its tokenizer and chat template.
pub struct Loaded {
    path: PathBuf,
    file: ModelFile,
    pub(crate) tokenizer: Tokenizer,
    template: ChatTemplate,
}

impl Loaded {
    /// Opens the model `spec` names.
    pub fn open(spec: &str) -> anyhow::Result<Loaded> {
        let path = resolve_model(spec)?;
        let file = ModelFile::open_to_run(&path, &mut Bars::default())?;
        let tokenizer = Tokenizer::from_gguf(file.gguf())?;
        let template = ChatTemplate::from_gguf(file.gguf(), &tokenizer);
        Ok(Loaded {
            path,
            file,
            tokenizer,
            template,
        })
    }

    /// Loads its weights, with `lora`'s adapters attached.
    pub fn model(&self, lora: &LoraArg) -> anyhow::Result<Model<'_>> {
        lora.load(&self.file)
    }
}

/// Answers one question (pinning `pins` first): streamed to stdout with stats and sources on stderr, or as one JSON
/// object with `json`. Returns the answer. Ctrl-C stops the answer.
pub fn ask_once(session: &SessionArgs, question: &str, pins: &[String], json: bool) -> anyhow::Result<String> {
    // Checked before loading anything: an empty question should not cost a model load.
    if question.trim().is_empty() {
        anyhow::bail!("the question is empty");
    }
    session.threads.apply()?;
    let interrupt = Interrupt::install()?;
    let project = session.open_project(pins)?;
    let (answer, stats) = session.with_chat(
        session.model.model.as_deref(),
        session.settings()?,
        project,
        |chat, _| {
            for spec in pins {
                chat.pin(spec)?;
            }
            let stats = if json {
                chat.ask(question, |_| interrupted(&interrupt))?
            } else {
                let stdout = std::io::stdout();
                let mut renderer = Renderer::new(stdout.lock(), stdout.is_terminal());
                stream_answer(chat, question, &mut renderer, &interrupt)?
            };
            let answer = chat.turns().last().map(|t| t.answer.clone()).unwrap_or_default();
            Ok((answer, stats))
        },
    )?;
    if json {
        let json = serde_json::json!({ "answer": answer, "sources": stats.sources, "stats": stats_json(&stats) });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        if let Some(line) = sources_line(&stats.sources) {
            eprintln!("{line}");
        }
        eprintln!("{}", stats_line(&stats));
    }
    Ok(answer)
}

/// Asks and streams the answer through `renderer`.
fn stream_answer<W: Write>(
    chat: &mut Chat<'_>,
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

/// Break once Ctrl-C was pressed.
pub fn interrupted(interrupt: &Interrupt) -> ControlFlow<()> {
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
