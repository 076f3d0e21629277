//! The model thread. One thread owns the model and its KV-cache slots; the HTTP side never blocks on inference.
//! Jobs are admitted in arrival order while a slot is free, each into the slot whose cached tokens share the longest
//! prefix with its prompt (see `Engine::admit` for the exact rule), so a follow-up request — the next turn of a chat,
//! the next keystroke's completion — only runs its new tokens. Active jobs decode together: each step samples one
//! token per job and runs all of them in one batched forward pass (continuous batching), which costs little more than
//! one job's step because decoding is bound by reading the weights. Every job keeps its own cache, sampler and
//! stop conditions, so outputs never mix.

use std::cmp::Reverse;
use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::Context as _;
use hearth_kernel::ops::kv::KvType;
use hearth_runtime::ModelFile;
use hearth_runtime::fim::{ContextFile, FimRequest, fim_prompt};
use hearth_runtime::generate::{FinishReason, Generator, StopConditions};

use hearth_runtime::sampling::{Sampler, SamplerParams};
use hearth_runtime::session::Session;
use hearth_runtime::template::{ChatTemplate, Message};
use hearth_runtime::tokenizer::Tokenizer;
use tokio::sync::mpsc::UnboundedSender;

use super::openai::ApiError;
use crate::args::LoraArg;
use crate::progress::Bars;

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
pub fn spawn(
    path: PathBuf,
    lora: LoraArg,
    context: usize,
    slots: usize,
) -> anyhow::Result<(ModelInfo, mpsc::Sender<Job>)> {
    let (jobs, queue) = mpsc::channel();
    let (ready_tx, ready) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("hearth-model".into())
        .spawn(move || {
            if let Err(e) = serve(path, &lora, context, slots, &ready_tx, queue) {
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

/// A job being generated in a slot.
struct Active<'t> {
    job: Job,
    slot: usize,
    sampler: Sampler,
    generator: Generator<'t>,
    prompt_tokens: usize,
    cached_tokens: usize,
    started: Instant,
}

/// Where [`Engine::admit`] put a job's prompt.
struct Admission {
    /// The slot it runs in.
    slot: usize,
    /// Tokens in the prompt.
    prompt_tokens: usize,
    /// Of those, tokens reused from the slot's cache.
    cached_tokens: usize,
    /// The client left while the prompt ran, which stopped it.
    client_left: bool,
}

/// Runs `f`, turning a panic (a bug) into an error so that the server keeps serving.
fn guarded<T>(f: impl FnOnce() -> Result<T, ApiError>) -> Result<T, ApiError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(ApiError::internal(
            "the model failed while generating (a bug in hearth; see the server log)",
        ))
    })
}

fn serve(
    path: PathBuf,
    lora: &LoraArg,
    context: usize,
    slots: usize,
    ready: &mpsc::SyncSender<anyhow::Result<ModelInfo>>,
    queue: mpsc::Receiver<Job>,
) -> anyhow::Result<()> {
    let file = ModelFile::open_to_run(path, &mut Bars::default())?;
    let tokenizer = Tokenizer::from_gguf(file.gguf())?;
    let model = lora.load(&file)?;
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
    let info = ModelInfo {
        context,
        fim: tokenizer.fim().infill().is_some(),
    };
    if ready.send(Ok(info)).is_err() {
        return Ok(());
    }
    let engine = Engine {
        tokenizer: &tokenizer,
        template: &template,
    };
    let mut waiting = VecDeque::new();
    let mut active: Vec<Active<'_>> = Vec::new();
    let mut clock = 0;
    loop {
        if active.is_empty() && waiting.is_empty() {
            match queue.recv() {
                Ok(job) => waiting.push_back(job),
                // Every sender is gone: the server is shutting down.
                Err(_) => return Ok(()),
            }
        }
        waiting.extend(queue.try_iter());
        // Admit waiting jobs, oldest first, while slots are free.
        while active.len() < slots.len() {
            let Some(job) = waiting.pop_front() else { break };
            // A client that left while its job waited needs nothing.
            if job.events.is_closed() {
                continue;
            }
            clock += 1;
            let busy: Vec<usize> = active.iter().map(|a| a.slot).collect();
            let started = Instant::now();
            match guarded(|| engine.admit(&mut slots, &busy, clock, &job)) {
                Ok(admission) => {
                    let admitted = Active {
                        sampler: Sampler::new(job.sampling.clone()),
                        generator: Generator::new(engine.tokenizer, job.stop_conditions()),
                        job,
                        slot: admission.slot,
                        prompt_tokens: admission.prompt_tokens,
                        cached_tokens: admission.cached_tokens,
                        started,
                    };
                    let end = match admission.client_left {
                        true => Some(FinishReason::Cancelled),
                        false => admitted.generator.done_before_start(),
                    };
                    match end {
                        Some(reason) => admitted.finish(reason),
                        None => active.push(admitted),
                    }
                }
                Err(e) => fail(&job, e, started),
            }
        }
        if active.is_empty() {
            continue;
        }
        if let Err(e) = guarded(|| engine.step(&mut slots, &mut active)) {
            // The batch's state is unknown: fail its jobs and forget the caches.
            for a in active.drain(..) {
                fail(&a.job, e.clone(), a.started);
            }
            slots.iter_mut().for_each(|s| s.session.clear());
        }
    }
}

fn fail(job: &Job, error: ApiError, started: Instant) {
    eprintln!(
        "{}: failed with {} in {:.2} s",
        job.label,
        error.status(),
        started.elapsed().as_secs_f64()
    );
    let _ = job.events.send(Event::Failed(error));
}

impl Job {
    fn stop_conditions(&self) -> StopConditions {
        StopConditions {
            max_tokens: self.max_tokens.unwrap_or(usize::MAX),
            strings: self.stop.clone(),
            ..StopConditions::default()
        }
    }
}

impl Active<'_> {
    /// Sends the rest of the answer and the finish event, and logs the job.
    fn finish(self, reason: FinishReason) {
        let (tail, generation) = self.generator.finish(reason);
        let events = &self.job.events;
        if !tail.is_empty() {
            let _ = events.send(Event::Text(tail));
        }
        let _ = events.send(Event::Finished {
            completion_tokens: generation.tokens,
            finish: generation.finish,
        });
        eprintln!(
            "{}: prompt {} tokens ({} cached), {} generated, {:?} in {:.2} s",
            self.job.label,
            self.prompt_tokens,
            self.cached_tokens,
            generation.tokens,
            generation.finish,
            self.started.elapsed().as_secs_f64()
        );
    }
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

    /// Puts `job`'s prompt into the best free slot (not in `busy`) and announces the start. A client that leaves
    /// while its prompt runs stops it between batches (a long prompt takes a laptop tens of seconds); the slot keeps
    /// the batches already run, for a retry to reuse.
    fn admit(&self, slots: &mut [Slot<'_, '_>], busy: &[usize], clock: u64, job: &Job) -> Result<Admission, ApiError> {
        let prompt = self.prompt_tokens(&job.prompt)?;
        let capacity = slots[0].session.capacity();
        let reserve = job.max_tokens.unwrap_or(1);
        if prompt.len().saturating_add(reserve) > capacity {
            return Err(ApiError::context_length(prompt.len(), reserve, capacity));
        }
        // A slot is worth taking when it keeps at least as many tokens as it throws away (an empty slot always is):
        // then the longest reuse wins, then the least recently used. A short new chat sharing only the system
        // prompt with a long cached conversation takes an empty slot rather than destroy that conversation.
        let (index, slot) = slots
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| !busy.contains(i))
            .max_by_key(|(_, s)| {
                let shared = s.session.shared_prefix(&prompt);
                let discarded = s.session.tokens().len() - shared;
                (shared >= discarded, shared, Reverse(s.last_used))
            })
            .expect("admit is only called with a free slot");
        slot.last_used = clock;
        let prefilled = slot
            .session
            .prefill_unless(&prompt, || match job.events.is_closed() {
                true => ControlFlow::Break(()),
                false => ControlFlow::Continue(()),
            })
            .map_err(|e| ApiError::internal(e.to_string()))?;
        if !prefilled.stopped {
            let _ = job.events.send(Event::Started {
                prompt_tokens: prompt.len(),
                cached_tokens: prefilled.reused,
            });
        }
        Ok(Admission {
            slot: index,
            prompt_tokens: prompt.len(),
            cached_tokens: prefilled.reused,
            client_left: prefilled.stopped,
        })
    }

    /// One token for every active job: sample each, finish those that end (or whose client left), and run the rest's
    /// new tokens through the model in one batched forward pass.
    fn step(&self, slots: &mut [Slot<'_, '_>], active: &mut Vec<Active<'_>>) -> Result<(), ApiError> {
        let mut pushes = Vec::new();
        for mut a in std::mem::take(active) {
            let session = &slots[a.slot].session;
            let next = session.sample(&mut a.sampler);
            let (shown, end) = a.generator.accept(next, session.tokens().len() < session.capacity());
            let gone = !shown.is_empty() && a.job.events.send(Event::Text(shown)).is_err();
            match (gone, end) {
                (true, _) => a.finish(FinishReason::Cancelled),
                (false, Some(reason)) => a.finish(reason),
                (false, None) => {
                    pushes.push((a.slot, next));
                    active.push(a);
                }
            }
        }
        // Sessions in slot order, each with its token.
        pushes.sort_unstable();
        let tokens: Vec<u32> = pushes.iter().map(|&(_, token)| token).collect();
        let mut sessions: Vec<&mut Session<'_, '_>> = slots
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| pushes.iter().any(|&(slot, _)| slot == *i))
            .map(|(_, s)| &mut s.session)
            .collect();
        Session::push_each(&mut sessions, &tokens).map_err(|e| ApiError::internal(e.to_string()))
    }
}
