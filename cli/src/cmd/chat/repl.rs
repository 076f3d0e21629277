//! The interactive loop: line editing and history (rustyline), multi-line input, slash commands, streamed answers.

use std::borrow::Cow;
use std::fs;
use std::io::IsTerminal;
use std::path::PathBuf;

use hearth_runtime::chat::{Chat, ChatError, Transcript};
use hearth_runtime::conversation::OverflowPolicy;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Editor, Helper};

use super::render::{Renderer, sources_line, stats_line};
use super::{Interrupt, stream_answer};

/// The model the chat runs on, for the banner and `/model`.
#[derive(Debug)]
pub struct ModelInfo {
    /// As the user named it (or, on a server, as the server names it).
    pub name: String,
    /// Its file, or the server's URL.
    pub place: String,
    /// Context size in tokens, when it is known here (a server's is not).
    pub context: Option<usize>,
}

impl ModelInfo {
    fn context_line(&self) -> String {
        match self.context {
            Some(tokens) => format!("context {tokens} tokens"),
            None => "context set by the server".to_owned(),
        }
    }
}

/// How the loop ended.
#[derive(Debug)]
pub enum Outcome {
    /// `/exit` or Ctrl-D.
    Exit,
    /// `/model NAME`: reload with another model and carry the conversation over.
    SwitchModel(String),
}

const PROMPT: &str = ">>> ";
const CONTINUATION_HINT: &str = "(end a line with \\ to continue it; ``` opens a block that ends at the next ```)";

/// Every slash command with its help line (also what Tab completes).
const COMMANDS: &[(&str, &str)] = &[
    ("/help", "this list"),
    (
        "/add PATH|DIR|GLOB",
        "pin files into the conversation (their current text goes with every question)",
    ),
    ("/drop [PATH|GLOB]", "unpin files (all of them without an argument)"),
    ("/files", "list pinned files"),
    ("/context", "how the context is spent, in tokens"),
    ("/retrieval on|off", "retrieve project code for each question"),
    (
        "/overflow error|drop-oldest",
        "when the conversation outgrows the context: refuse, or drop the oldest turns",
    ),
    ("/clear", "forget the conversation (pinned files stay)"),
    ("/system [TEXT]", "show or replace the system prompt"),
    ("/save FILE", "save the conversation as JSON"),
    ("/load FILE", "load a conversation saved with /save"),
    (
        "/model [NAME|PATH]",
        "show the model, or switch to another (the conversation carries over)",
    ),
    ("/exit", "leave (Ctrl-D also leaves; Ctrl-C stops an answer)"),
];

/// The line editor with the chat's history (kept across model switches).
pub struct Input {
    editor: Editor<InputHelper, DefaultHistory>,
    history: Option<PathBuf>,
}

impl Input {
    /// An editor with the history of earlier chats loaded.
    pub fn new() -> anyhow::Result<Self> {
        let mut editor: Editor<InputHelper, DefaultHistory> = Editor::new()?;
        editor.set_helper(Some(InputHelper));
        let history = dirs::data_dir().map(|d| d.join("hearth").join("chat_history"));
        if let Some(path) = &history {
            // No history yet is the normal first run.
            let _ = editor.load_history(path);
        }
        Ok(Input { editor, history })
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        if let Some(path) = &self.history {
            if let Some(dir) = path.parent() {
                let _ = fs::create_dir_all(dir);
            }
            // Losing history is not worth an error on the way out.
            let _ = self.editor.save_history(path);
        }
    }
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("history", &self.history)
            .finish_non_exhaustive()
    }
}

/// Runs the chat until the user leaves or switches model.
pub fn run(
    input: &mut Input,
    chat: &mut Chat<'_>,
    model: &ModelInfo,
    interrupt: &Interrupt,
) -> anyhow::Result<Outcome> {
    let editor = &mut input.editor;
    let colour = std::io::stdout().is_terminal();
    println!(
        "hearth chat · {}{} · {} · {}",
        model.name,
        match model.context {
            Some(_) => String::new(),
            None => format!(" on {}", model.place),
        },
        model.context_line(),
        project_line(chat)
    );
    println!("/help lists commands; Ctrl-C stops an answer, Ctrl-D leaves. {CONTINUATION_HINT}");
    let outcome = loop {
        let input = match editor.readline(PROMPT) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break Outcome::Exit,
            Err(e) => return Err(e.into()),
        };
        let input = join_continuations(&input);
        if input.trim().is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(input.as_str());
        let mut renderer = Renderer::new(std::io::stdout().lock(), colour);
        if let Some(command) = input
            .strip_prefix('/')
            .filter(|c| c.starts_with(|ch: char| ch.is_ascii_alphabetic()))
        {
            match command_result(chat, model, command, &mut renderer) {
                Ok(Some(outcome)) => break outcome,
                Ok(None) => {}
                Err(e) => renderer.status(&format!("error: {e:#}"))?,
            }
            continue;
        }
        match stream_answer(chat, &input, &mut renderer, interrupt) {
            Ok(stats) => {
                if let Some(line) = sources_line(&stats.sources) {
                    renderer.status(&line)?;
                }
                renderer.status(&stats_line(&stats))?;
            }
            Err(e) => match e.downcast_ref::<ChatError>() {
                Some(ChatError::Overflow(_)) => renderer.status(&format!(
                    "error: {e}\n  options: /drop pinned files, /clear the conversation, or /overflow drop-oldest"
                ))?,
                _ => renderer.status(&format!("error: {e:#}"))?,
            },
        }
    };
    Ok(outcome)
}

fn project_line(chat: &Chat<'_>) -> String {
    match chat.project() {
        Some(project) => format!(
            "project {} ({} files, retrieval {})",
            project.root().display(),
            project.files().iter().filter(|f| f.skipped.is_none()).count(),
            if chat.retrieval() { "on" } else { "off" }
        ),
        None => "no project (run inside a git repository or pass --project to retrieve code)".to_owned(),
    }
}

/// Runs a slash command (without its `/`); `Some` ends the loop.
fn command_result(
    chat: &mut Chat<'_>,
    model: &ModelInfo,
    command: &str,
    out: &mut Renderer<impl std::io::Write>,
) -> anyhow::Result<Option<Outcome>> {
    let (name, arg) = match command.split_once(char::is_whitespace) {
        Some((name, arg)) => (name, Some(arg.trim()).filter(|a| !a.is_empty())),
        None => (command.trim(), None),
    };
    let need = |what: &str| anyhow::anyhow!("/{name} needs {what}");
    match name {
        "help" => {
            for (usage, help) in COMMANDS {
                out.status(&format!("{usage:<30} {help}"))?;
            }
        }
        "add" => {
            let added = chat.pin(arg.ok_or_else(|| need("a path, directory or glob"))?)?;
            let list = if added.is_empty() {
                "already pinned".to_owned()
            } else {
                added.join(", ")
            };
            out.status(&format!("pinned: {list}"))?;
        }
        "drop" => {
            let removed = chat.unpin(arg)?;
            let list = if removed.is_empty() {
                "nothing matched".to_owned()
            } else {
                removed.join(", ")
            };
            out.status(&format!("unpinned: {list}"))?;
        }
        "files" => {
            if chat.pinned().is_empty() {
                out.status("no pinned files (/add PATH pins one)")?;
            }
            for path in chat.pinned() {
                out.status(path)?;
            }
        }
        "context" => {
            let b = chat.budget()?;
            let spent = format!(
                "system {} · pinned files {} · conversation {} · retrieval up to {} · answer up to {}",
                b.system, b.files, b.history, b.retrieval, b.answer
            );
            out.status(&match (b.capacity, b.free()) {
                (Some(capacity), Some(free)) => format!("context {capacity} tokens: {spent} · free {free}"),
                _ => format!("tokens (estimated; the server's context is its own): {spent}"),
            })?;
        }
        "retrieval" => {
            let on = match arg {
                Some("on") => true,
                Some("off") => false,
                _ => return Err(need("on or off")),
            };
            if !chat.set_retrieval(on) {
                anyhow::bail!("no project to retrieve from (start hearth chat in a git repository or with --project)");
            }
            out.status(&format!("retrieval: {}", if on { "on" } else { "off" }))?;
        }
        "overflow" => {
            let policy = match arg {
                Some("error") => OverflowPolicy::Error,
                Some("drop-oldest") => OverflowPolicy::DropOldestTurns,
                _ => return Err(need("error or drop-oldest")),
            };
            chat.set_overflow(policy);
            out.status(&format!("overflow: {}", arg.unwrap_or_default()))?;
        }
        "clear" => {
            chat.clear();
            out.status("conversation cleared")?;
        }
        "system" => match arg {
            Some(text) => {
                chat.set_system(text);
                out.status("system prompt replaced")?;
            }
            None => out.status(&chat.transcript().system)?,
        },
        "save" => {
            let path = arg.ok_or_else(|| need("a file name"))?;
            let json = serde_json::to_string_pretty(&chat.transcript())?;
            hearth_runtime::fsutil::write_atomic(path.as_ref(), json.as_bytes())?;
            out.status(&format!("saved {} turns to {path}", chat.turns().len()))?;
        }
        "load" => {
            let path = arg.ok_or_else(|| need("a file name"))?;
            let text = fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
            let transcript: Transcript =
                serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{path} is not a saved conversation: {e}"))?;
            chat.restore(transcript)?;
            out.status(&format!("loaded {} turns from {path}", chat.turns().len()))?;
        }
        "model" => match arg {
            Some(spec) => return Ok(Some(Outcome::SwitchModel(spec.to_owned()))),
            None => out.status(&format!(
                "{} ({}), {}; /model NAME switches (hearth models list shows the known ones)",
                model.name,
                model.place,
                model.context_line()
            ))?,
        },
        "exit" | "quit" => return Ok(Some(Outcome::Exit)),
        _ => anyhow::bail!("unknown command /{name} (/help lists them)"),
    }
    Ok(None)
}

/// Joins lines ended with a backslash (the validator lets the user keep typing after one).
fn join_continuations(input: &str) -> String {
    input.replace("\\\n", "\n")
}

/// Multi-line input and command completion for rustyline.
struct InputHelper;

impl Validator for InputHelper {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        let input = ctx.input();
        let open_fence = input.lines().filter(|l| l.trim_start().starts_with("```")).count() % 2 == 1;
        if input.ends_with('\\') || open_fence {
            Ok(ValidationResult::Incomplete)
        } else {
            Ok(ValidationResult::Valid(None))
        }
    }
}

impl Completer for InputHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let typed = &line[..pos];
        if !typed.starts_with('/') || typed.contains(char::is_whitespace) {
            return Ok((pos, Vec::new()));
        }
        let matches = COMMANDS
            .iter()
            .map(|(usage, _)| usage.split(' ').next().unwrap_or(usage))
            .filter(|name| name.starts_with(typed))
            .map(|name| Pair {
                display: name.to_owned(),
                replacement: format!("{name} "),
            })
            .collect();
        Ok((0, matches))
    }
}

impl Hinter for InputHelper {
    type Hint = String;
}

impl Highlighter for InputHelper {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(&'s self, prompt: &'p str, _default: bool) -> Cow<'b, str> {
        Cow::Borrowed(prompt)
    }
}

impl Helper for InputHelper {}
