//! `hearth explain`, `hearth debug`, `hearth gen`: one-shot questions with a prompt written for the job, over the
//! same machinery as `hearth chat -p` (retrieval, pinned files, streaming, stats).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use hearth_runtime::fsutil::read_text_file;
use hearth_runtime::retrieval::Lang;

use super::chat::{SessionArgs, ask_once};

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// What to explain: `PATH`, `PATH:LINE` or `PATH:FIRST-LAST` (lines count from 1).
    target: String,
    #[command(flatten)]
    session: SessionArgs,
}

#[derive(Debug, Args)]
pub struct DebugArgs {
    /// The file the error comes from.
    path: PathBuf,
    /// The error message or traceback (default: read from standard input).
    #[arg(short, long)]
    error: Option<String>,
    #[command(flatten)]
    session: SessionArgs,
}

#[derive(Debug, Args)]
pub struct GenArgs {
    /// What the code should do.
    description: String,
    /// Language to write it in [default: from --output's extension, else the model's choice].
    #[arg(long)]
    lang: Option<String>,
    /// Write the answer's code block to this file (refuses to replace an existing file without --force).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Replace an existing --output file.
    #[arg(long, requires = "output")]
    force: bool,
    #[command(flatten)]
    session: SessionArgs,
}

pub fn explain(args: ExplainArgs) -> anyhow::Result<()> {
    let (path, lines) = parse_target(&args.target)?;
    let text = read_source(&path)?;
    let total = text.lines().count();
    let (first, last) = lines.unwrap_or((1, total));
    if first == 0 || first > last || last > total {
        anyhow::bail!(
            "{}: lines {first}-{last} are not in the file ({total} lines)",
            path.display()
        );
    }
    let excerpt: String = text
        .lines()
        .skip(first - 1)
        .take(last + 1 - first)
        .map(|l| format!("{l}\n"))
        .collect();
    let question = format!(
        "Explain what this code does and how it works, step by step, and point out anything surprising or risky.\n\n\
         {}:{first}-{last}\n```{}\n{excerpt}```",
        path.display(),
        Lang::fence_of(&path)
    );
    ask_once(&args.session, &question, &[], false).map(drop)
}

pub fn debug(args: DebugArgs) -> anyhow::Result<()> {
    read_source(&args.path)?;
    let error = crate::args::prompt_text(args.error.as_deref())?;
    if error.trim().is_empty() {
        anyhow::bail!("no error given (--error TEXT, or a traceback on standard input)");
    }
    let question = format!(
        "Running the code in {} fails with the error below. Find the cause in the code, explain it briefly, and give \
         a minimal fix as a code block.\n\n```\n{}\n```",
        args.path.display(),
        error.trim_end()
    );
    ask_once(
        &args.session,
        &question,
        &[args.path.to_string_lossy().into_owned()],
        false,
    )
    .map(drop)
}

pub fn gen_code(args: GenArgs) -> anyhow::Result<()> {
    if let Some(output) = &args.output
        && output.exists()
        && !args.force
    {
        anyhow::bail!("{} already exists (pass --force to replace it)", output.display());
    }
    let lang = args.lang.clone().or_else(|| {
        let lang = Lang::of_path(args.output.as_deref()?)?;
        Some(lang.fence().to_owned())
    });
    let question = match &lang {
        Some(lang) => format!(
            "Write {lang} code that does this: {}\nAnswer with one complete code block.",
            args.description
        ),
        None => format!(
            "Write code that does this: {}\nAnswer with one complete code block.",
            args.description
        ),
    };
    let answer = ask_once(&args.session, &question, &[], false)?;
    if let Some(output) = &args.output {
        let code = first_code_block(&answer).context("the answer has no code block; nothing was written")?;
        hearth_runtime::fsutil::write_atomic(output, code.as_bytes())
            .with_context(|| format!("writing {}", output.display()))?;
        eprintln!("wrote {} ({} lines)", output.display(), code.lines().count());
    }
    Ok(())
}

/// `PATH`, `PATH:LINE` or `PATH:FIRST-LAST` (a `:` followed by something other than a line range is part of the path).
fn parse_target(target: &str) -> anyhow::Result<(PathBuf, Option<(usize, usize)>)> {
    let Some((path, range)) = target.rsplit_once(':') else {
        return Ok((PathBuf::from(target), None));
    };
    if range.is_empty() || !range.chars().all(|c| c.is_ascii_digit() || c == '-') {
        return Ok((PathBuf::from(target), None));
    }
    let number = |s: &str| {
        s.parse::<usize>()
            .with_context(|| format!("`{range}` is not a line or a FIRST-LAST range"))
    };
    let lines = match range.split_once('-') {
        Some((first, last)) => (number(first)?, number(last)?),
        None => (number(range)?, number(range)?),
    };
    Ok((PathBuf::from(path), Some(lines)))
}

fn read_source(path: &Path) -> anyhow::Result<String> {
    read_text_file(path).map_err(|reason| anyhow::anyhow!("reading {}: {reason}", path.display()))
}

/// The body of the first fenced code block in Markdown text (a block cut off by the answer limit counts).
fn first_code_block(text: &str) -> Option<String> {
    let mut lines = text.lines().skip_while(|l| !l.trim_start().starts_with("```"));
    lines.next()?;
    let body: String = lines
        .take_while(|l| !l.trim_start().starts_with("```"))
        .map(|l| format!("{l}\n"))
        .collect();
    (!body.trim().is_empty()).then_some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_with_and_without_line_ranges() {
        assert_eq!(parse_target("src/a.rs").unwrap(), (PathBuf::from("src/a.rs"), None));
        assert_eq!(
            parse_target("src/a.rs:7").unwrap(),
            (PathBuf::from("src/a.rs"), Some((7, 7)))
        );
        assert_eq!(
            parse_target("src/a.rs:3-9").unwrap(),
            (PathBuf::from("src/a.rs"), Some((3, 9)))
        );
        assert_eq!(
            parse_target("C:notes.txt").unwrap(),
            (PathBuf::from("C:notes.txt"), None)
        );
        assert!(parse_target("a.rs:3-").is_err());
    }

    #[test]
    fn the_first_code_block_is_taken_even_when_cut_off() {
        assert_eq!(
            first_code_block("Here:\n```python\ndef f():\n    pass\n```\nDone").as_deref(),
            Some("def f():\n    pass\n")
        );
        assert_eq!(first_code_block("```\nx = 1\n").as_deref(), Some("x = 1\n"));
        assert_eq!(first_code_block("no code here"), None);
        assert_eq!(first_code_block("```\n```"), None);
    }
}
