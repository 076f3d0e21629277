//! `hearth edit` (the model changes files; the user sees a diff and says yes) and `hearth undo`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Component, Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use hearth_runtime::chat::ChatSettings;
use hearth_runtime::edit::{EditFormat, Editor, FileChange, Proposal, TextFile, undo};
use hearth_runtime::retrieval::{Project, approximate_tokens};
use similar::TextDiff;

use super::chat::{Interrupt, SessionArgs, interrupted};
use crate::args::ProjectArg;
use crate::progress::Bars;

const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const CYAN: &str = "\x1b[36m";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// Retrieved code per edit, by default: the files being edited are the context that matters.
const EDIT_RETRIEVAL_BUDGET: usize = 512;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FormatArg {
    /// Whole files when the files are small (up to 2,000 tokens together), else SEARCH/REPLACE blocks.
    Auto,
    /// SEARCH/REPLACE blocks.
    Diff,
    /// Each changed file written out whole.
    Whole,
}

#[derive(Debug, Args)]
pub struct EditArgs {
    /// Files to edit; a path that does not exist yet is a file the edit may create.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// What to change (`-` reads standard input).
    #[arg(short = 'p', long = "prompt", required = true)]
    prompt: String,
    /// How the model writes its edit.
    #[arg(long, value_enum, default_value = "auto")]
    format: FormatArg,
    /// Apply without asking (an edit that would introduce syntax errors is still not applied).
    #[arg(short = 'y', long)]
    yes: bool,
    /// Only show the diff.
    #[arg(long, conflicts_with = "yes")]
    dry_run: bool,
    /// Do not show the model's answers as they stream.
    #[arg(short = 'q', long)]
    quiet: bool,
    #[command(flatten)]
    session: SessionArgs,
}

pub fn run(args: EditArgs) -> anyhow::Result<()> {
    let instruction = crate::args::prompt_text(Some(&args.prompt))?;
    if instruction.trim().is_empty() {
        anyhow::bail!("the instruction is empty");
    }
    let session = &args.session;
    let root = session.root()?;
    let files = relative_paths(&root, &args.paths)?;
    // Every file is checked (inside the root, text, readable) before the model is loaded.
    let mut tokens = 0;
    for path in &files {
        tokens += approximate_tokens(&TextFile::read(&root, path)?.text);
    }
    let format = match args.format {
        FormatArg::Auto => EditFormat::for_size(tokens),
        FormatArg::Diff => EditFormat::SearchReplace,
        FormatArg::Whole => EditFormat::WholeFile,
    };
    session.threads.apply()?;
    let interrupt = Interrupt::install()?;
    let (project, _) = Project::index(&root, &mut Bars::default())?;
    let defaults = ChatSettings::default();
    let mut settings = session.settings_over(ChatSettings {
        retrieval_budget: EDIT_RETRIEVAL_BUDGET,
        max_answer_tokens: match format {
            // A whole-file answer rewrites the files (the estimate of their tokens can be low by a
            // quarter); SEARCH/REPLACE blocks hold only the changed lines, and a longer budget
            // would only let a rambling answer crowd a retry out of the context.
            EditFormat::WholeFile => defaults.max_answer_tokens.max(tokens + tokens / 2 + 256),
            EditFormat::SearchReplace => defaults.max_answer_tokens,
        },
        ..defaults
    })?;
    settings.system = match &settings.system {
        system if system.as_str() == ChatSettings::default().system => format.system_prompt().to_owned(),
        extra => format!("{}\n\n{extra}", format.system_prompt()),
    };
    if session.sampling.temperature.is_none() {
        // Edits are greedy unless asked otherwise: the most likely edit is the one to review.
        settings.sampler.temperature = 0.0;
    }
    let model = session.model.model.as_deref();
    let proposal = session.with_chat(model, settings, Some(project), |chat, _| {
        let mut editor = Editor::new(chat, &root, files, format)?;
        let mut stderr = std::io::stderr();
        let colour = stderr.is_terminal();
        eprintln!("asking for the edit ({} format)…", format.name());
        interrupt.reset();
        let proposal = editor.propose(
            &instruction,
            |text| {
                if !args.quiet {
                    let _ = write!(
                        stderr,
                        "{}{text}{}",
                        if colour { DIM } else { "" },
                        if colour { RESET } else { "" }
                    );
                    let _ = stderr.flush();
                }
                interrupted(&interrupt)
            },
            |feedback| {
                eprintln!(
                    "\n{}",
                    paint(colour, BOLD, "hearth: the edit did not apply; asking again:")
                );
                eprintln!("{feedback}");
                interrupted(&interrupt)
            },
        )?;
        Ok(proposal)
    })?;
    eprintln!();
    report_attempts(&proposal);
    if !proposal.applies() {
        anyhow::bail!(
            "the edit did not apply after {} answers; no file was changed:\n  {}",
            proposal.attempts.len(),
            proposal.problems().join("\n  ")
        );
    }
    let stdout = std::io::stdout();
    let colour = stdout.is_terminal();
    let mut out = stdout.lock();
    for change in &proposal.changes {
        write_diff(&mut out, change, colour)?;
    }
    out.flush()?;
    if proposal.introduces_syntax_errors() {
        eprintln!(
            "{}",
            paint(
                std::io::stderr().is_terminal(),
                RED,
                &format!(
                    "warning: this edit introduces syntax errors:\n  {}",
                    proposal.problems().join("\n  ")
                )
            )
        );
    }
    if args.dry_run {
        return Ok(());
    }
    let confirmed = if args.yes {
        if proposal.introduces_syntax_errors() {
            anyhow::bail!("not applied: the edit introduces syntax errors (run without --yes to review and decide)");
        }
        true
    } else {
        confirm(if proposal.introduces_syntax_errors() {
            "Apply it anyway? [y/N] "
        } else {
            "Apply these changes? [y/N] "
        })?
    };
    if !confirmed {
        eprintln!("not applied");
        return Ok(());
    }
    proposal.write(&root, instruction.trim())?;
    let paths: Vec<&str> = proposal.changes.iter().map(|c| c.file.path.as_str()).collect();
    eprintln!("applied to {} (`hearth undo` takes it back)", paths.join(", "));
    Ok(())
}

/// `paths` (as the user typed them, relative to the current directory) relative to `root`, `/`-separated.
pub fn relative_paths(root: &Path, paths: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    let cwd = std::env::current_dir()?;
    let mut relative: Vec<String> = Vec::with_capacity(paths.len());
    for path in paths {
        let absolute = normalize(&cwd.join(path));
        // Resolve symbolic links in the part that exists, so that a path through a link is judged by where it goes.
        let existing = absolute.ancestors().find(|p| p.exists()).unwrap_or(&absolute);
        let resolved = match existing.canonicalize() {
            Ok(real) => real.join(absolute.strip_prefix(existing).unwrap_or(Path::new(""))),
            Err(_) => absolute.clone(),
        };
        let inside = resolved
            .strip_prefix(root)
            .map_err(|_| anyhow::anyhow!("{}: outside the project root {}", path.display(), root.display()))?;
        let parts: Option<Vec<&str>> = inside.components().map(|c| c.as_os_str().to_str()).collect();
        let name = parts
            .filter(|p| !p.is_empty())
            .with_context(|| format!("{}: not a file path inside the project", path.display()))?
            .join("/");
        if !relative.contains(&name) {
            relative.push(name);
        }
    }
    Ok(relative)
}

/// `path` with `.` and `..` resolved lexically (the path may not exist yet).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn paint(colour: bool, code: &str, text: &str) -> String {
    if colour {
        format!("{code}{text}{RESET}")
    } else {
        text.to_owned()
    }
}

/// One line per answer: how it went, with the figures.
fn report_attempts(proposal: &Proposal) {
    for (i, attempt) in proposal.attempts.iter().enumerate() {
        let outcome = if attempt.problems.is_empty() {
            "applies".to_owned()
        } else {
            format!("{} problem(s)", attempt.problems.len())
        };
        eprintln!(
            "answer {}: {outcome} · prompt {} tokens ({} cached) · {} tokens at {:.1} t/s",
            i + 1,
            attempt.stats.prompt_tokens,
            attempt.stats.cached_tokens,
            attempt.stats.generated,
            attempt.stats.tokens_per_second()
        );
    }
}

/// A unified diff of one change, coloured when `colour`.
fn write_diff(out: &mut impl Write, change: &FileChange, colour: bool) -> std::io::Result<()> {
    let path = &change.file.path;
    let old_name = if change.file.is_new() {
        "/dev/null".to_owned()
    } else {
        format!("a/{path}")
    };
    let diff = TextDiff::from_lines(change.file.text.as_str(), change.after.as_str());
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header(&old_name, &format!("b/{path}"))
        .to_string();
    for line in text.lines() {
        let code = match line.as_bytes().first() {
            Some(b'+') if line.starts_with("+++") => BOLD,
            Some(b'-') if line.starts_with("---") => BOLD,
            Some(b'+') => GREEN,
            Some(b'-') => RED,
            Some(b'@') => CYAN,
            _ => "",
        };
        if colour && !code.is_empty() {
            writeln!(out, "{code}{line}{RESET}")?;
        } else {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

/// Asks a yes/no question on the terminal; anything but yes is no. Without a terminal there is nobody to ask.
fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("not applied: there is no terminal to confirm on (pass --yes to apply, --dry-run to only show)");
    }
    eprint!("{question}");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

#[derive(Debug, Args)]
pub struct UndoArgs {
    #[command(flatten)]
    project: ProjectArg,
}

/// Takes back the last applied edit (or `complete --apply`).
pub fn undo_last(args: UndoArgs) -> anyhow::Result<()> {
    let root = args.project.root()?;
    let undone = undo(&root)?;
    eprintln!("undid \"{}\"", undone.label);
    for path in &undone.restored {
        eprintln!("  restored {path}");
    }
    for path in &undone.removed {
        eprintln!("  removed {path} (the edit had created it)");
    }
    Ok(())
}
