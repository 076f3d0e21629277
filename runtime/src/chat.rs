//! A chat about a project: turns, files pinned into the conversation, code retrieved for each question, and a
//! prompt that keeps the KV cache useful from turn to turn.
//!
//! The prompt is laid out so that what changes least comes first:
//! ```text
//! system: instructions + pinned files (re-read each turn)    ← changes only on /add, /drop, /system or a file edit
//! user:   retrieved code + question 1
//! assistant: answer 1                                        ← earlier turns are kept exactly as sent
//! user:   retrieved code + question N                        ← only this is new: a follow-up prefills just it
//! ```
//! When the conversation outgrows the context, the code retrieved for earlier questions goes first (it can be found
//! again), then — only under [`OverflowPolicy::DropOldestTurns`] — whole old turns; otherwise the turn is refused with
//! a message that says what to do. Never silent truncation.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::conversation::{ConversationError, OverflowPolicy};
use crate::fsutil::read_text_file;
use crate::generate::FinishReason;
use crate::model::ModelError;
use crate::retrieval::{ContextRequest, Hit, Project, RetrievalError};
use crate::sampling::SamplerParams;
use crate::template::Message;

/// The system prompt when none is configured.
pub const DEFAULT_SYSTEM: &str = "You are hearth, a coding assistant that runs locally. Answer precisely and \
concisely. Put code in Markdown code blocks tagged with the language. When project code is shown, refer to it by \
file path, and say so when it does not contain what is needed instead of guessing.";

/// How a chat behaves.
#[derive(Clone, Debug)]
pub struct ChatSettings {
    /// The system prompt (pinned files are appended to it).
    pub system: String,
    /// Most tokens per answer; this much of the context is kept free for it.
    pub max_answer_tokens: usize,
    /// Sampling.
    pub sampler: SamplerParams,
    /// Tokens of retrieved code per question (0: none).
    pub retrieval_budget: usize,
    /// What to do when the conversation does not fit.
    pub overflow: OverflowPolicy,
}

impl Default for ChatSettings {
    fn default() -> Self {
        ChatSettings {
            system: DEFAULT_SYSTEM.to_owned(),
            max_answer_tokens: 1024,
            sampler: SamplerParams::default(),
            retrieval_budget: 1536,
            overflow: OverflowPolicy::Error,
        }
    }
}

/// Where a piece of retrieved code came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    /// File, relative to the project root.
    pub path: String,
    /// First line.
    pub start_line: u32,
    /// Last line.
    pub end_line: u32,
    /// Qualified symbol, when the chunk is a definition.
    pub symbol: Option<String>,
}

impl From<&Hit> for SourceRef {
    fn from(hit: &Hit) -> Self {
        SourceRef {
            path: hit.path.clone(),
            start_line: hit.chunk.lines.start,
            end_line: hit.chunk.lines.end,
            symbol: hit.chunk.symbol.clone(),
        }
    }
}

/// One question and its answer, as sent to the model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// What the user wrote.
    pub user: String,
    /// Retrieved code sent with it (dropped first when the context fills up).
    pub context: Option<String>,
    /// Where that code came from.
    pub sources: Vec<SourceRef>,
    /// The answer (as far as it got, if it was stopped).
    pub answer: String,
}

/// A conversation as saved by `/save` and read by `/load`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transcript {
    /// The system prompt.
    pub system: String,
    /// Pinned files (relative to the project root).
    pub pinned: Vec<String>,
    /// The turns, oldest first.
    pub turns: Vec<Turn>,
}

/// What one turn cost and produced.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TurnStats {
    /// Tokens of the whole prompt.
    pub prompt_tokens: usize,
    /// Of those, how many the KV cache already held.
    pub cached_tokens: usize,
    /// From the question to the first answer token (retrieval, prefill and one decode step); to the end of the turn
    /// when no token came.
    pub first_token: Duration,
    /// Tokens generated.
    pub generated: usize,
    /// Time spent generating after the first token.
    pub generation_time: Duration,
    /// Why the answer ended.
    #[serde(serialize_with = "finish_name")]
    pub finish: FinishReason,
    /// Code retrieved for this question.
    pub sources: Vec<SourceRef>,
    /// Earlier turns whose retrieved code was dropped to make room.
    pub contexts_dropped: usize,
    /// Earlier turns dropped whole to make room (only under the drop-oldest policy).
    pub turns_dropped: usize,
}

impl TurnStats {
    /// Generation speed after the first token.
    pub fn tokens_per_second(&self) -> f64 {
        self.generated.saturating_sub(1) as f64 / self.generation_time.as_secs_f64().max(1e-9)
    }
}

fn finish_name<S: serde::Serializer>(finish: &FinishReason, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(finish.name())
}

/// How the context is spent, in tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Budget {
    /// The whole context, when it is known here (a server's is not).
    pub capacity: Option<usize>,
    /// System prompt.
    pub system: usize,
    /// Pinned files.
    pub files: usize,
    /// Earlier turns (questions, their retrieved code and answers).
    pub history: usize,
    /// Retrieved code allowed per question.
    pub retrieval: usize,
    /// Kept free for the answer.
    pub answer: usize,
}

impl Budget {
    /// What is left for the next question itself, when the context is known.
    pub fn free(&self) -> Option<usize> {
        self.capacity
            .map(|c| c.saturating_sub(self.system + self.files + self.history + self.retrieval + self.answer))
    }
}

/// Why a chat operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The server answering for the model failed (the message says how).
    #[error("{0}")]
    Backend(String),
    /// The conversation does not fit (the message says what to do).
    #[error("{0}")]
    Overflow(ConversationError),
    /// Indexing or reading the project failed.
    #[error(transparent)]
    Retrieval(#[from] RetrievalError),
    /// A file could not be pinned or read.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A chat with one model, optionally about one project.
#[derive(Debug)]
pub struct Chat<'b> {
    backend: Box<dyn Backend + 'b>,
    settings: ChatSettings,
    project: Option<Project>,
    retrieval: bool,
    pinned: Vec<String>,
    turns: Vec<Turn>,
}

impl<'b> Chat<'b> {
    /// A chat answered by `backend`; with a project, retrieval is on.
    pub fn new(backend: Box<dyn Backend + 'b>, settings: ChatSettings, project: Option<Project>) -> Self {
        Chat {
            backend,
            retrieval: project.is_some() && settings.retrieval_budget > 0,
            settings,
            project,
            pinned: Vec::new(),
            turns: Vec::new(),
        }
    }

    /// Asks a question: retrieves code for it, fits the conversation into the context, and streams the answer to
    /// `on_text` (returning [`ControlFlow::Break`] stops it; what was said so far is kept). `on_text` also gets ""
    /// while the prompt is being read; a question stopped before its first word leaves no turn behind.
    pub fn ask(
        &mut self,
        text: &str,
        mut on_text: impl FnMut(&str) -> ControlFlow<()>,
    ) -> Result<TurnStats, ChatError> {
        let started = Instant::now();
        let (context, sources) = self.retrieve(text)?;
        self.turns.push(Turn {
            user: text.to_owned(),
            context,
            sources: sources.clone(),
            answer: String::new(),
        });
        let system = match self.system_message() {
            Ok(system) => system,
            Err(e) => {
                self.turns.pop();
                return Err(e);
            }
        };
        let mut room = Room::default();
        let mut first_token = None;
        let answer = loop {
            let messages = self.messages(&system, room.turns_dropped);
            let answered = self.backend.answer(
                &messages,
                self.settings.max_answer_tokens,
                &self.settings.sampler,
                &mut |piece| {
                    if !piece.is_empty() {
                        first_token.get_or_insert_with(|| started.elapsed());
                    }
                    on_text(piece)
                },
            );
            match answered {
                Ok(answer) => break answer,
                Err(ChatError::Overflow(_)) if self.make_room(&mut room) => {}
                Err(e) => {
                    self.turns.pop();
                    return Err(e);
                }
            }
        };
        let first_token = first_token.unwrap_or_else(|| started.elapsed());
        if answer.finish == FinishReason::Cancelled && answer.text.is_empty() {
            // Stopped before anything was said: the question was not asked, as far as the conversation goes, and
            // the turns counted out to make room for it stay.
            self.turns.pop();
            room.turns_dropped = 0;
        } else {
            self.turns.drain(..room.turns_dropped);
            if let Some(turn) = self.turns.last_mut() {
                turn.answer = answer.text;
            }
        }
        Ok(TurnStats {
            prompt_tokens: answer.prompt_tokens,
            cached_tokens: answer.cached_tokens,
            first_token,
            generated: answer.generated,
            generation_time: started.elapsed().saturating_sub(first_token),
            finish: answer.finish,
            sources,
            contexts_dropped: room.contexts_dropped,
            turns_dropped: room.turns_dropped,
        })
    }

    /// Shortens the conversation after the backend found it too long, as the module docs describe: the retrieved
    /// code of an earlier turn (oldest first), else — under the drop-oldest policy — the oldest turn (counted in
    /// `room`; the turns go only once an answer came). False when nothing more may go.
    fn make_room(&mut self, room: &mut Room) -> bool {
        let newest = self.turns.len() - 1;
        let earlier = &mut self.turns[room.turns_dropped..newest];
        if let Some(turn) = earlier.iter_mut().find(|t| t.context.is_some()) {
            turn.context = None;
            room.contexts_dropped += 1;
            return true;
        }
        if self.settings.overflow == OverflowPolicy::DropOldestTurns && !earlier.is_empty() {
            room.turns_dropped += 1;
            return true;
        }
        false
    }

    /// Code for a question (with the previous question, so that follow-ups keep their topic), fitted to the
    /// retrieval budget; the project index is refreshed first so that edits made during the chat are seen.
    fn retrieve(&mut self, text: &str) -> Result<(Option<String>, Vec<SourceRef>), ChatError> {
        let Some(project) = self.project.as_mut().filter(|_| self.retrieval) else {
            return Ok((None, Vec::new()));
        };
        project.refresh(&mut crate::NoProgress)?;
        let query = match self.turns.last() {
            Some(previous) => format!("{text}\n{}", previous.user),
            None => text.to_owned(),
        };
        let backend = &self.backend;
        let count = |s: &str| backend.count_tokens(s);
        let request = ContextRequest {
            query: &query,
            files: &self.pinned,
            budget: self.settings.retrieval_budget,
        };
        let context = project.context(&request, &count);
        if context.text.is_empty() {
            return Ok((None, Vec::new()));
        }
        Ok((
            Some(context.text),
            context.sources.iter().map(SourceRef::from).collect(),
        ))
    }

    /// The system prompt with the pinned files' current text.
    fn system_message(&self) -> Result<Message, ChatError> {
        let mut text = self.settings.system.clone();
        if !self.pinned.is_empty() {
            text.push_str("\n\nFiles the user added to the conversation:\n");
            for path in &self.pinned {
                let content = read_text_file(&self.resolve(path)).map_err(|reason| ChatError::File {
                    path: path.clone(),
                    reason: format!("{reason} (/drop it)"),
                })?;
                let fence = crate::retrieval::Lang::fence_of(Path::new(path));
                text.push_str(&format!("\n{path}\n```{fence}\n{content}"));
                if !content.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str("```\n");
            }
        }
        Ok(Message::new("system", text))
    }

    /// The messages for the backend: the system prompt, then the turns after the first `skip`.
    fn messages(&self, system: &Message, skip: usize) -> Vec<Message> {
        let turns = &self.turns[skip..];
        let mut messages = Vec::with_capacity(1 + 2 * turns.len());
        if !system.content.is_empty() {
            messages.push(system.clone());
        }
        for (i, turn) in turns.iter().enumerate() {
            let user = match &turn.context {
                Some(context) => format!(
                    "Code from the project that may be relevant (found by search; it may be incomplete):\n\n\
                     {context}---\n\n{}",
                    turn.user
                ),
                None => turn.user.clone(),
            };
            messages.push(Message::new("user", user));
            if i + 1 < turns.len() {
                messages.push(Message::new("assistant", turn.answer.as_str()));
            }
        }
        messages
    }

    fn resolve(&self, path: &str) -> PathBuf {
        match &self.project {
            Some(project) => project.root().join(path),
            None => PathBuf::from(path),
        }
    }

    /// Pins files into the conversation: a path, a directory (its indexed files) or a glob over the project's
    /// indexed files. Returns the files added.
    pub fn pin(&mut self, spec: &str) -> Result<Vec<String>, ChatError> {
        let bad = |reason: &str| ChatError::File {
            path: spec.to_owned(),
            reason: reason.to_owned(),
        };
        let mut added = Vec::new();
        let as_path = self.relative(spec);
        let candidates: Vec<String> = match (&self.project, &as_path) {
            (_, Some(path)) if self.resolve(path).is_file() => vec![path.clone()],
            (Some(project), Some(dir)) if self.resolve(dir).is_dir() => {
                let prefix = if dir.is_empty() {
                    String::new()
                } else {
                    format!("{dir}/")
                };
                indexed(project).filter(|p| p.starts_with(&prefix)).collect()
            }
            (Some(project), _) => {
                let glob = globset::Glob::new(spec)
                    .map_err(|e| bad(&e.to_string()))?
                    .compile_matcher();
                indexed(project).filter(|p| glob.is_match(p)).collect()
            }
            (None, _) => return Err(bad("no such file")),
        };
        if candidates.is_empty() {
            return Err(bad("matches no file of the project"));
        }
        for path in candidates {
            read_text_file(&self.resolve(&path)).map_err(|reason| ChatError::File {
                path: path.clone(),
                reason,
            })?;
            if !self.pinned.contains(&path) {
                self.pinned.push(path.clone());
                added.push(path);
            }
        }
        Ok(added)
    }

    /// `spec` as a path relative to the project root (None when it points outside the project).
    fn relative(&self, spec: &str) -> Option<String> {
        let Some(project) = &self.project else {
            return Some(spec.to_owned());
        };
        let path = Path::new(spec);
        let absolute = if path.is_absolute() {
            path.to_owned()
        } else {
            std::env::current_dir().ok()?.join(path)
        };
        let absolute = absolute.canonicalize().unwrap_or(absolute);
        let relative = absolute.strip_prefix(project.root()).ok()?;
        let parts: Option<Vec<&str>> = relative.components().map(|c| c.as_os_str().to_str()).collect();
        Some(parts?.join("/"))
    }

    /// Unpins files matching `spec` (a pinned path or a glob), or all of them with `None`. Returns those removed.
    pub fn unpin(&mut self, spec: Option<&str>) -> Result<Vec<String>, ChatError> {
        let Some(spec) = spec else {
            return Ok(std::mem::take(&mut self.pinned));
        };
        let relative = self.relative(spec).unwrap_or_else(|| spec.to_owned());
        let glob = globset::Glob::new(spec)
            .map_err(|e| ChatError::File {
                path: spec.to_owned(),
                reason: e.to_string(),
            })?
            .compile_matcher();
        let (removed, kept) = std::mem::take(&mut self.pinned)
            .into_iter()
            .partition(|p| *p == relative || glob.is_match(p));
        self.pinned = kept;
        Ok(removed)
    }

    /// Files pinned into the conversation.
    pub fn pinned(&self) -> &[String] {
        &self.pinned
    }

    /// The turns so far.
    pub fn turns(&self) -> &[Turn] {
        &self.turns
    }

    /// Forgets the turns (pinned files and the system prompt stay).
    pub fn clear(&mut self) {
        self.turns.clear();
    }

    /// Replaces the system prompt.
    pub fn set_system(&mut self, text: &str) {
        self.settings.system = text.to_owned();
    }

    /// Turns retrieval on or off; returns false when there is no project to retrieve from.
    pub fn set_retrieval(&mut self, on: bool) -> bool {
        self.retrieval = on && self.project.is_some();
        self.retrieval == on
    }

    /// Whether retrieval is on.
    pub fn retrieval(&self) -> bool {
        self.retrieval
    }

    /// Sets what happens when the conversation outgrows the context.
    pub fn set_overflow(&mut self, policy: OverflowPolicy) {
        self.settings.overflow = policy;
    }

    /// The current overflow policy.
    pub fn overflow(&self) -> OverflowPolicy {
        self.settings.overflow
    }

    /// Takes the project out of the chat (to carry it over to a chat with another model); retrieval ends.
    pub fn take_project(&mut self) -> Option<Project> {
        self.retrieval = false;
        self.project.take()
    }

    /// The project, if the chat has one.
    pub fn project(&self) -> Option<&Project> {
        self.project.as_ref()
    }

    /// How the context is spent now.
    pub fn budget(&self) -> Result<Budget, ChatError> {
        let count = |s: &str| self.backend.count_tokens(s);
        let system = count(&self.settings.system);
        let with_files = count(&self.system_message()?.content);
        let history = self
            .turns
            .iter()
            .map(|t| count(t.context.as_deref().unwrap_or("")) + count(&t.user) + count(&t.answer))
            .sum();
        Ok(Budget {
            capacity: self.backend.capacity(),
            system,
            files: with_files - system.min(with_files),
            history,
            retrieval: if self.retrieval {
                self.settings.retrieval_budget
            } else {
                0
            },
            answer: self.settings.max_answer_tokens,
        })
    }

    /// The conversation, for saving.
    pub fn transcript(&self) -> Transcript {
        Transcript {
            system: self.settings.system.clone(),
            pinned: self.pinned.clone(),
            turns: self.turns.clone(),
        }
    }

    /// Replaces the conversation with a saved one (pinned files must still be readable).
    pub fn restore(&mut self, transcript: Transcript) -> Result<(), ChatError> {
        for path in &transcript.pinned {
            read_text_file(&self.resolve(path)).map_err(|reason| ChatError::File {
                path: path.clone(),
                reason,
            })?;
        }
        self.settings.system = transcript.system;
        self.pinned = transcript.pinned;
        self.turns = transcript.turns;
        Ok(())
    }
}

/// What was dropped to fit one question in.
#[derive(Default)]
struct Room {
    contexts_dropped: usize,
    turns_dropped: usize,
}

fn indexed(project: &Project) -> impl Iterator<Item = String> + '_ {
    project
        .files()
        .iter()
        .filter(|r| r.skipped.is_none())
        .map(|r| r.path.clone())
}
