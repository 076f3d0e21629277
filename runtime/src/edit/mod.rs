//! Editing files with a model: it sees the files (pinned into a [`Chat`], with code retrieved for the
//! instruction), answers in an edit format, and its answer is applied in memory, checked, and fed back with
//! precise problems for another try (at most [`MAX_ATTEMPTS`] answers). Nothing touches the disk here: the caller
//! shows the resulting [`Proposal`] and writes it with [`Proposal::write`] (journaled, so that [`journal::undo`]
//! can take it back).

pub mod apply;
pub mod blocks;
pub mod files;
pub mod journal;

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use crate::chat::{Chat, ChatError, TurnStats};
use crate::generate::FinishReason;
use apply::Strategy;
use blocks::{ParseError, parse_replacements, parse_whole_files};
pub use files::{FileError, TextFile, lost_definitions, restore_lost_tail, syntax_errors};
pub use journal::{JournalError, Undone, undo};

/// Most answers per edit: the first and two retries with feedback.
pub const MAX_ATTEMPTS: usize = 3;

/// Files up to this many tokens (all together, as [`approximate_tokens`](crate::retrieval::approximate_tokens)
/// counts them) are edited whole by default: small models write whole files more reliably than they quote lines,
/// and definitions a whole-file answer leaves out are caught and sent back. Measured with the edit benchmark and
/// Qwen2.5-Coder-1.5B: on `slugify.py` (about 1,500 tokens) both SEARCH/REPLACE tasks failed (the model quoted most
/// of the file in SEARCH until the answer was cut off), both whole-file answers applied, in 2–4 minutes. Beyond
/// this size a whole answer takes longer than a user will wait, and a retry (file, two answers) no longer fits an
/// 8,192-token context.
pub const WHOLE_FILE_MAX_TOKENS: usize = 2000;

/// How the model writes its edit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EditFormat {
    /// SEARCH/REPLACE blocks (see [`blocks`]).
    SearchReplace,
    /// Each changed file's complete new text.
    WholeFile,
}

impl EditFormat {
    /// The better format for files of `tokens` tokens in all.
    pub fn for_size(tokens: usize) -> EditFormat {
        if tokens <= WHOLE_FILE_MAX_TOKENS {
            EditFormat::WholeFile
        } else {
            EditFormat::SearchReplace
        }
    }

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            EditFormat::SearchReplace => "diff",
            EditFormat::WholeFile => "whole",
        }
    }

    /// The system prompt that teaches the model this format.
    pub fn system_prompt(self) -> &'static str {
        match self {
            EditFormat::SearchReplace => SEARCH_REPLACE_SYSTEM,
            EditFormat::WholeFile => WHOLE_FILE_SYSTEM,
        }
    }
}

const SEARCH_REPLACE_SYSTEM: &str = "You are hearth, an expert software engineer who edits code precisely. The \
user's files are shown below. Make the change the user asks for by answering with one sentence saying what you \
change, then SEARCH/REPLACE blocks.

Each block is: the file's path alone on a line, an opening fence with the language, the line <<<<<<< SEARCH, lines \
copied exactly from the current file (same indentation and comments), the line =======, the lines that replace \
them, the line >>>>>>> REPLACE, and the closing fence. For example:

shapes.py
```python
<<<<<<< SEARCH
def area(w, h):
    return w * h
=======
def area(w, h):
    if w < 0 or h < 0:
        raise ValueError(\"negative size\")
    return w * h
>>>>>>> REPLACE
```

Rules: SEARCH holds the lines that change plus a line or two around them, enough to be unique in the file; use one \
block per place that changes. Never write \"...\" to skip lines. To create a new file, give its path and an empty \
SEARCH. Keep the file's style.";

const WHOLE_FILE_SYSTEM: &str = "You are hearth, an expert software engineer who edits code precisely. The user's \
files are shown below. Make the change the user asks for by answering with one sentence saying what you change, \
then the complete new text of each file you change: the file's path alone on a line, then a fenced code block with \
every line of the new file. For example:

shapes.py
```python
def area(w, h):
    if w < 0 or h < 0:
        raise ValueError(\"negative size\")
    return w * h
```

Rules: write out every line, including those that do not change; never write \"...\" or \"rest unchanged\". Keep \
the file's style. Change only what the user asks for.";

/// A file's new text, ready to show and write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileChange {
    /// The file as read (its path, old text, line ends).
    pub file: TextFile,
    /// The new text, with `\n` line ends.
    pub after: String,
    /// The loosest way a block had to be matched (None for whole files).
    pub strategy: Option<Strategy>,
    /// Lines (1-based) of syntax errors the change introduces (empty when it introduces none, or the language is
    /// not one hearth parses).
    pub new_syntax_errors: Vec<usize>,
}

/// One answer and what was wrong with it.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// The model's answer.
    pub answer: String,
    /// Problems that kept it from applying (empty: it applied cleanly).
    pub problems: Vec<String>,
    /// Prompt and generation figures.
    pub stats: TurnStats,
}

/// What an edit would do, after up to [`MAX_ATTEMPTS`] answers.
#[derive(Clone, Debug)]
pub struct Proposal {
    /// Files that change (empty when the edit did not apply).
    pub changes: Vec<FileChange>,
    /// Every answer, in order.
    pub attempts: Vec<Attempt>,
}

impl Proposal {
    /// Whether the last answer applied (possibly with syntax errors, see [`Proposal::introduces_syntax_errors`]).
    pub fn applies(&self) -> bool {
        !self.changes.is_empty()
    }

    /// Whether applying it would leave new syntax errors.
    pub fn introduces_syntax_errors(&self) -> bool {
        self.changes.iter().any(|c| !c.new_syntax_errors.is_empty())
    }

    /// The problems with the last answer.
    pub fn problems(&self) -> &[String] {
        self.attempts.last().map_or(&[], |a| a.problems.as_slice())
    }

    /// Writes the changed files under `root` (atomically, keeping permissions and line ends) after checking that
    /// none changed since it was read, and journals them for undo under `label`.
    pub fn write(&self, root: &Path, label: &str) -> Result<(), JournalError> {
        let bytes: Vec<Vec<u8>> = self.changes.iter().map(|c| c.file.encode(&c.after)).collect();
        let writes: Vec<journal::Write<'_>> = self
            .changes
            .iter()
            .zip(&bytes)
            .map(|(c, after)| journal::Write {
                path: &c.file.path,
                before: c.file.original.as_deref(),
                after,
            })
            .collect();
        journal::write(root, label, &writes)
    }
}

/// Why an edit could not be proposed at all.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The model or the conversation failed.
    #[error(transparent)]
    Chat(#[from] ChatError),
    /// A file may not be edited.
    #[error(transparent)]
    File(#[from] FileError),
    /// The user stopped the answer.
    #[error("the edit was cancelled")]
    Cancelled,
}

/// Drives a [`Chat`] to edit files under `root`.
#[derive(Debug)]
pub struct Editor<'c, 'b> {
    chat: &'c mut Chat<'b>,
    root: PathBuf,
    /// The files the user named, relative to `root`.
    files: Vec<String>,
    format: EditFormat,
}

impl<'c, 'b> Editor<'c, 'b> {
    /// An editor for `files` (relative to `root`, `/`-separated; ones that do not exist yet may be created). The
    /// chat should have been made with `format`'s [system prompt](EditFormat::system_prompt); the existing files
    /// are pinned into it here, after checking that each may be edited.
    pub fn new(chat: &'c mut Chat<'b>, root: &Path, files: Vec<String>, format: EditFormat) -> Result<Self, EditError> {
        for path in &files {
            let file = TextFile::read(root, path)?;
            if !file.is_new() {
                chat.pin(&root.join(path).to_string_lossy())?;
            }
        }
        Ok(Editor {
            chat,
            root: root.to_owned(),
            files,
            format,
        })
    }

    /// Asks for `instruction` and applies the answer in memory, retrying with feedback while it does not apply
    /// (or breaks the syntax). `on_text` gets the answers as they stream, and `on_retry` the feedback before each
    /// retry; either returning [`ControlFlow::Break`] cancels.
    pub fn propose(
        &mut self,
        instruction: &str,
        mut on_text: impl FnMut(&str) -> ControlFlow<()>,
        mut on_retry: impl FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Proposal, EditError> {
        let mut attempts: Vec<Attempt> = Vec::new();
        let mut message = self.first_message(instruction);
        loop {
            let stats = self.chat.ask(&message, &mut on_text)?;
            if stats.finish == FinishReason::Cancelled {
                return Err(EditError::Cancelled);
            }
            let answer = self.chat.turns().last().map(|t| t.answer.clone()).unwrap_or_default();
            let (changes, mut problems) = self.apply(instruction, &answer)?;
            if stats.finish == FinishReason::Length {
                problems.push(
                    "the answer was cut off at the token limit; change only what is needed, in short blocks".to_owned(),
                );
            }
            let applies = problems.is_empty();
            problems.extend(changes.iter().filter_map(syntax_problem));
            let clean = problems.is_empty();
            attempts.push(Attempt {
                answer,
                problems: problems.clone(),
                stats,
            });
            // Out of tries, an edit that applies but breaks the syntax is still proposed (flagged, for the user
            // to decide); one that does not apply is not.
            if clean || attempts.len() == MAX_ATTEMPTS {
                return Ok(Proposal {
                    changes: if applies { changes } else { Vec::new() },
                    attempts,
                });
            }
            message = feedback(&problems, self.format);
            if on_retry(&message).is_break() {
                return Err(EditError::Cancelled);
            }
        }
    }

    fn first_message(&self, instruction: &str) -> String {
        let new: Vec<&str> = self
            .files
            .iter()
            .filter(|p| !self.root.join(p).exists())
            .map(String::as_str)
            .collect();
        let mut message = format!("Change request: {}", instruction.trim());
        if !new.is_empty() {
            message.push_str(&format!("\n\nNew files to create: {}.", new.join(", ")));
        }
        // Small models hold on to the format better when it is restated right before they answer.
        message.push_str(match self.format {
            EditFormat::SearchReplace => "\n\nMake this change now. Answer with SEARCH/REPLACE blocks.",
            EditFormat::WholeFile => {
                "\n\nMake this change now. Answer with the path, then the complete changed file in a fenced code block."
            }
        });
        message
    }

    /// The changes `answer` makes to the files as they are on disk, and what kept parts of it from applying.
    fn apply(&self, instruction: &str, answer: &str) -> Result<(Vec<FileChange>, Vec<String>), EditError> {
        let mut problems = Vec::new();
        let mut working: BTreeMap<String, Working> = BTreeMap::new();
        match self.format {
            EditFormat::SearchReplace => match parse_replacements(answer, &self.files) {
                Ok(blocks) => {
                    for (i, block) in blocks.iter().enumerate() {
                        let applied = Working::open(&mut working, &self.root, &block.path).and_then(|entry| {
                            let (text, strategy) = apply::replace(&entry.text, &block.search, &block.replace)
                                .map_err(|e| e.to_string())?;
                            entry.text = text;
                            entry.strategy = entry.strategy.max(Some(strategy));
                            Ok(())
                        });
                        if let Err(e) = applied {
                            problems.push(format!("block {} ({}): {e}", i + 1, block.path));
                        }
                    }
                }
                Err(e) => problems.push(parse_problem(e, self.format)),
            },
            EditFormat::WholeFile => match parse_whole_files(answer, &self.files) {
                Ok(blocks) => {
                    for block in blocks {
                        match Working::open(&mut working, &self.root, &block.path) {
                            Ok(entry) => {
                                if let Some(line) = elided_line(&entry.file.text, &block.text) {
                                    problems.push(format!(
                                        "{}: the new text leaves lines out (`{line}`); write every line of the file",
                                        block.path
                                    ));
                                }
                                // Definitions may go only when the instruction names them. A file that stops after
                                // the changed part, losing only definitions the instruction does not name, gets the
                                // rest of the original back.
                                let named = |name: &String| instruction.contains(name.as_str());
                                let lost = lost_definitions(&block.path, &entry.file.text, &block.text);
                                let restored = if lost.iter().any(named) {
                                    None
                                } else {
                                    restore_lost_tail(&block.path, &entry.file.text, &block.text)
                                };
                                let text = restored.unwrap_or(block.text);
                                let lost: Vec<String> = lost_definitions(&block.path, &entry.file.text, &text)
                                    .into_iter()
                                    .filter(|name| !named(name))
                                    .map(|name| format!("`{name}`"))
                                    .collect();
                                if !lost.is_empty() {
                                    problems.push(format!(
                                        "{}: the new text leaves out {}; write the whole file, with every definition \
                                         that is not to be removed",
                                        block.path,
                                        lost.join(", ")
                                    ));
                                }
                                entry.text = text;
                            }
                            Err(e) => problems.push(format!("{}: {e}", block.path)),
                        }
                    }
                }
                Err(e) => problems.push(parse_problem(e, self.format)),
            },
        }
        let changes: Vec<FileChange> = working
            .into_values()
            .filter(|w| w.file.text != w.text)
            .map(|w| FileChange {
                new_syntax_errors: new_syntax_errors(&w.file.path, &w.file.text, &w.text),
                file: w.file,
                after: w.text,
                strategy: w.strategy,
            })
            .collect();
        if changes.is_empty() && problems.is_empty() {
            problems.push("the answer changes nothing; make the change the user asked for".to_owned());
        }
        Ok((changes, problems))
    }
}

/// A file as an answer leaves it.
struct Working {
    /// As read.
    file: TextFile,
    /// With the answer's changes so far.
    text: String,
    /// The loosest match a block needed.
    strategy: Option<Strategy>,
}

impl Working {
    /// The entry for `path`, read from disk on first use.
    fn open<'w>(
        working: &'w mut BTreeMap<String, Working>,
        root: &Path,
        path: &str,
    ) -> Result<&'w mut Working, String> {
        Ok(match working.entry(path.to_owned()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let file = TextFile::read(root, path).map_err(|e| e.to_string())?;
                let text = file.text.clone();
                entry.insert(Working {
                    file,
                    text,
                    strategy: None,
                })
            }
        })
    }
}

fn syntax_problem(change: &FileChange) -> Option<String> {
    let line = *change.new_syntax_errors.first()?;
    let text = change.after.lines().nth(line - 1).unwrap_or("").trim();
    Some(format!(
        "{}: the edit introduces a syntax error at line {line}: `{text}`",
        change.file.path
    ))
}

/// Lines of syntax errors in `after` when it has more than `before` (what the edit added; none for languages
/// hearth does not parse).
fn new_syntax_errors(path: &str, before: &str, after: &str) -> Vec<usize> {
    match (syntax_errors(path, before), syntax_errors(path, after)) {
        (Some(old), Some(new)) if new.len() > old.len() => new,
        _ => Vec::new(),
    }
}

/// A line of `new` that says lines were left out, unless the old text had it too.
fn elided_line<'t>(old: &str, new: &'t str) -> Option<&'t str> {
    new.lines()
        .find(|line| {
            let l = line.trim().to_ascii_lowercase();
            let says_elided = l.contains("...") || l.contains('…') || l.contains("rest of") || l.contains("unchanged");
            let comment = ["#", "//", "/*", "<!--", "--"].iter().any(|c| l.starts_with(c));
            comment && says_elided && !old.lines().any(|o| o.trim() == line.trim())
        })
        .map(str::trim)
}

fn parse_problem(error: ParseError, format: EditFormat) -> String {
    match (error, format) {
        (ParseError::Empty(_), EditFormat::SearchReplace) => {
            "the answer has no SEARCH/REPLACE blocks; answer with blocks in the format shown".to_owned()
        }
        (ParseError::Empty(_), EditFormat::WholeFile) => {
            "the answer has no file; give the path, then the whole file in a fenced code block".to_owned()
        }
        (e, _) => e.to_string(),
    }
}

/// The message that sends problems back to the model.
fn feedback(problems: &[String], format: EditFormat) -> String {
    let mut message = String::from("Your edit could not be applied, so no file was changed:\n");
    for problem in problems {
        message.push_str(&format!("- {problem}\n"));
    }
    message.push_str(match format {
        EditFormat::SearchReplace => {
            "\nAnswer again with all the SEARCH/REPLACE blocks, corrected. Copy SEARCH lines exactly from the \
             current file."
        }
        EditFormat::WholeFile => "\nAnswer again with the complete new text of each file you change, corrected.",
    });
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elided_whole_files_are_caught_but_real_comments_are_not() {
        let old = "a = 1\n# ... keep this\nb = 2\n";
        assert_eq!(
            elided_line(old, "a = 1\n# ... rest unchanged\n"),
            Some("# ... rest unchanged")
        );
        assert_eq!(elided_line(old, "a = 1\n# ... keep this\nb = 3\n"), None);
        assert_eq!(elided_line(old, "x = [1, 2]  # not a comment line ...\n"), None);
    }

    #[test]
    fn new_syntax_errors_count_only_what_the_edit_adds() {
        assert!(new_syntax_errors("a.py", "x = 1\n", "x = 2\n").is_empty());
        assert!(!new_syntax_errors("a.py", "x = 1\n", "x = (2\n").is_empty());
        // A file that was already broken is not the edit's fault unless it gets worse.
        assert!(new_syntax_errors("a.py", "x = (1\n", "x = (2\n").is_empty());
        assert!(new_syntax_errors("a.txt", "", "(((").is_empty());
    }
}
