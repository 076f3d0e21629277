//! The model thread. One thread owns the model and a few KV-cache slots and serves jobs strictly in arrival order, so
//! outputs never mix and the HTTP side never blocks on inference. Each job runs in the slot whose cached tokens share
//! the longest prefix with its prompt (see `Engine::run` for the exact rule), so a follow-up request — the next turn
//! of a chat, the next keystroke's completion — only runs its new tokens.

use std::cmp::Reverse;
use std::ops::ControlFlow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::Context as _;
use hearth_kernel::ops::kv::KvType;
use hearth_runtime::ModelFile;
use hearth_runtime::fim::{ContextFile, FimRequest, fim_prompt};
use hearth_runtime::generate::{FinishReason, StopConditions, generate};
use hearth_runtime::model::Model;
use hearth_runtime::sampling::{Sampler, SamplerParams};
use hearth_runtime::session::Session;
use hearth_runtime::template::{ChatTemplate, Message};
use hearth_runtime::tokenizer::Tokenizer;
use tokio::sync::mpsc::UnboundedSender;

use super::openai::ApiError;

/// What a job asks the model to continue.
#[derive(Debug)]
pub enum Prompt {
    /// A conversation, rendered with the model's chat template.
    Chat(Vec<Message>),
    /// Raw text (BOS added as the model asks; special-token text is parsed, as llama.cpp's server does).
    Text(String),
    /// Fill-in-the-middle: the text around the cursor, other files as context, and text already typed at the cursor.
    Fim {
        /// Text before the cursor.
        prefix: String,
        /// Text after the cursor.
        suffix: String,
        /// Other files shown first.
        context: Vec<ContextFile>,
        /// Text after the middle token.
        middle: String,
    },
}

/// One request for the model thread.
#[derive(Debug)]
pub struct Job {
    /// What to continue.
    pub prompt: Prompt,
    /// Sampler settings.
    pub sampling: SamplerParams,
    /// Most tokens to generate (none: until an end token or a full context).
    pub max_tokens: Option<usize>,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Where progress goes; dropping the receiver cancels the job.
    pub events: UnboundedSender<Event>,
    /// For the log line.
    pub label: &'static str,
}

/// Progress of a job, in order: `Started`, any number of `Text`, then `Finished`; or `Failed` at any point.
#[derive(Debug)]
pub enum Event {
    /// The prompt is in the cache; generation begins.
    Started {
        /// Tokens in the prompt.
        prompt_tokens: usize,
        /// Of those, tokens reused from the cache.
        cached_tokens: usize,
    },
    /// The next piece of the answer.
    Text(String),
    /// Generation ended.
    Finished {
        /// Tokens generated.
        completion_tokens: usize,
        /// Why it ended.
        finish: FinishReason,
    },
    /// The job could not be done.
    Failed(ApiError),
}

/// What the model thread reports once the model is loaded.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    /// Context size of each slot.
    pub context: usize,
    /// Whether the model has fill-in-the-middle tokens.
    pub fim: bool,
}

/// Starts the model thread and waits until the model is loaded (or failed to load).
pub fn spawn(path: PathBuf, context: usize, slots: usize) -> anyhow::Result<(ModelInfo, mpsc::Sender<Job>)> {
    let (jobs, queue) = mpsc::channel();
    let (ready_tx, ready) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("hearth-model".into())
        .spawn(move || {
            if let Err(e) = serve(path, context, slots, &ready_tx, queue) {
                // Only a load failure can reach here; the receiver is gone only if startup was abandoned.
                let _ = ready_tx.send(Err(e));
            }
        })
        .context("starting the model thread")?;
    let info = ready.recv().context("the model thread ended while loading")??;
    Ok((info, jobs))
}

/// A KV-cache slot and when it last served a job.
struct Slot<'m, 'a> {
    session: Session<'m, 'a>,
    last_used: u64,
}

/// The loaded model and what turns requests into tokens.
struct Engine<'a> {
    tokenizer: &'a Tokenizer,
    template: &'a ChatTemplate,
}

fn serve(
    path: PathBuf,
    context: usize,
    slots: usize,
    ready: &mpsc::SyncSender<anyhow::Result<ModelInfo>>,
    queue: mpsc::Receiver<Job>,
) -> anyhow::Result<()> {
    let file = ModelFile::open(path)?;
    let tokenizer = Tokenizer::from_gguf(file.gguf())?;
    let model = Model::load(&file).context("loading the model")?;
    let template = ChatTemplate::from_gguf(file.gguf(), &tokenizer);
    let context = if context > 0 {
        context
    } else {
        model.config().context_length.min(8192)
    };
    let mut slots = (0..slots.max(1))
        .map(|_| {
            Ok(Slot {
                session: Session::new(&model, context, KvType::F16)?,
                last_used: 0,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let fim = tokenizer.fim();
    let info = ModelInfo {
        context,
        fim: fim.prefix.is_some() && fim.suffix.is_some() && fim.middle.is_some(),
    };
    if ready.send(Ok(info)).is_err() {
        return Ok(());
    }
    let engine = Engine {
        tokenizer: &tokenizer,
        template: &template,
    };
    for (clock, job) in (1..).zip(queue) {
        // A client that left while its job waited needs nothing.
        if job.events.is_closed() {
            continue;
        }
        let start = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| engine.run(&mut slots, clock, &job)));
        let result = outcome.unwrap_or_else(|_| {
            // A bug, not bad input: the cache may be half-written, so forget it, and keep serving.
            slots.iter_mut().for_each(|s| s.session.clear());
            Err(ApiError::internal(
                "the model failed while generating (a bug in hearth; see the server log)",
            ))
        });
        let seconds = start.elapsed().as_secs_f64();
        match result {
            Ok(summary) => eprintln!("{}: {summary} in {seconds:.2} s", job.label),
            Err(e) => {
                eprintln!("{}: failed with {} in {seconds:.2} s", job.label, e.status());
                let _ = job.events.send(Event::Failed(e));
            }
        }
    }
    Ok(())
}

impl Engine<'_> {
    fn prompt_tokens(&self, prompt: &Prompt) -> Result<Vec<u32>, ApiError> {
        let tokens = match prompt {
            Prompt::Chat(messages) => self
                .template
                .prompt(self.tokenizer, messages)
                .map_err(|e| ApiError::invalid(format!("the chat template rejected the messages: {e}"), None))?,
            Prompt::Text(text) => self.tokenizer.encode(text, true, true),
            Prompt::Fim {
                prefix,
                suffix,
                context,
                middle,
            } => {
                let request = FimRequest {
                    prefix,
                    suffix,
                    context,
                    path: None,
                    repo_name: None,
                };
                let mut tokens = fim_prompt(self.tokenizer, &request)
                    .map_err(|e| ApiError::invalid(e.to_string(), Some("suffix")))?;
                tokens.extend(self.tokenizer.encode(middle, false, false));
                tokens
            }
        };
        if tokens.is_empty() {
            return Err(ApiError::invalid("the prompt is empty", Some("prompt")));
        }
        Ok(tokens)
    }

    /// Runs `job` in the best slot; returns a line for the log.
    fn run(&self, slots: &mut [Slot<'_, '_>], clock: u64, job: &Job) -> Result<String, ApiError> {
        let prompt = self.prompt_tokens(&job.prompt)?;
        let capacity = slots[0].session.capacity();
        let reserve = job.max_tokens.unwrap_or(1);
        if prompt.len().saturating_add(reserve) > capacity {
            return Err(ApiError::context_length(prompt.len(), reserve, capacity));
        }
        // A slot is worth taking when it keeps at least as many tokens as it throws away (an empty slot always is):
        // then the longest reuse wins, then the least recently used. A short new chat sharing only the system
        // prompt with a long cached conversation takes an empty slot rather than destroy that conversation.
        let slot = slots
            .iter_mut()
            .max_by_key(|s| {
                let shared = s.session.shared_prefix(&prompt);
                let discarded = s.session.tokens().len() - shared;
                (shared >= discarded, shared, Reverse(s.last_used))
            })
            .expect("at least one slot");
        slot.last_used = clock;
        let model_error = |e: hearth_runtime::model::ModelError| ApiError::internal(e.to_string());
        let cached = slot.session.prefill(&prompt).map_err(model_error)?;
        let send = |event| job.events.send(event).is_ok();
        send(Event::Started {
            prompt_tokens: prompt.len(),
            cached_tokens: cached,
        });
        let mut sampler = Sampler::new(job.sampling.clone());
        let stop = StopConditions {
            max_tokens: job.max_tokens.unwrap_or(usize::MAX),
            strings: job.stop.clone(),
            ..StopConditions::default()
        };
        let generation = generate(&mut slot.session, self.tokenizer, &mut sampler, &stop, |text| {
            if send(Event::Text(text.to_owned())) {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        })
        .map_err(model_error)?;
        send(Event::Finished {
            completion_tokens: generation.tokens,
            finish: generation.finish,
        });
        Ok(format!(
            "prompt {} tokens ({cached} cached), {} generated, {:?}",
            prompt.len(),
            generation.tokens,
            generation.finish
        ))
    }
}
