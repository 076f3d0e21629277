//! `hearth complete PATH:LINE[:COL]`: fill in code at a place in a file with the model's fill-in-the-middle tokens,
//! with code from elsewhere in the project as repo-level context; print it, or insert it with `--apply`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use hearth_kernel::ops::kv::KvType;
use hearth_runtime::edit::{TextFile, journal};
use hearth_runtime::fim::{ContextFile, Cursor, FimRequest, fim_prompt, trim_repeated_suffix, window};
use hearth_runtime::generate::{StopConditions, generate};
use hearth_runtime::retrieval::{Project, approximate_tokens};
use hearth_runtime::sampling::{Sampler, SamplerParams};
use hearth_runtime::session::Session;

use super::chat::{Interrupt, Loaded, interrupted};
use crate::args::{ContextArg, LoraArg, ModelArg, SamplingArgs, ThreadsArg, project_dir};
use crate::progress::Bars;
use crate::remote::BackendArgs;

#[derive(Debug, Args)]
pub struct CompleteArgs {
    /// Where to complete: PATH:LINE or PATH:LINE:COL (1-based; COL counts characters; without it, the end of the
    /// line).
    #[arg(value_name = "PATH:LINE[:COL]")]
    position: String,
    /// Insert the completion into the file (journaled: `hearth undo` takes it back).
    #[arg(long)]
    apply: bool,
    /// Most tokens to generate.
    #[arg(short = 'n', long = "max-tokens", default_value_t = 128)]
    max_tokens: usize,
    /// Tokens of the file before the cursor to show the model (whole lines).
    #[arg(long, default_value_t = 1536)]
    prefix_tokens: usize,
    /// Tokens of the file after the cursor to show the model (whole lines).
    #[arg(long, default_value_t = 512)]
    suffix_tokens: usize,
    /// Tokens of code from other project files to show first (0: none).
    #[arg(long, default_value_t = 512)]
    retrieval_budget: usize,
    /// Project directory [default: the nearest directory at or above the current one holding .hearth/ or .git,
    /// else the current directory].
    #[arg(long, value_name = "DIR")]
    project: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArg,
    #[command(flatten)]
    lora: LoraArg,
    #[command(flatten)]
    context: ContextArg,
    #[command(flatten)]
    threads: ThreadsArg,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    backend: BackendArgs,
}

/// `PATH:LINE[:COL]` split into its parts (the path may itself contain `:`).
fn parse_position(position: &str) -> anyhow::Result<(PathBuf, Cursor)> {
    let bad = || anyhow::anyhow!("`{position}` is not PATH:LINE or PATH:LINE:COL");
    let number = |s: &str| s.parse::<usize>().ok().filter(|&n| n > 0);
    let (rest, last) = position.rsplit_once(':').ok_or_else(bad)?;
    let last = number(last).ok_or_else(bad)?;
    let (path, cursor) = match rest.rsplit_once(':').and_then(|(p, l)| Some((p, number(l)?))) {
        Some((path, line)) => (
            path,
            Cursor {
                line,
                column: Some(last),
            },
        ),
        None => (
            rest,
            Cursor {
                line: last,
                column: None,
            },
        ),
    };
    if path.is_empty() {
        return Err(bad());
    }
    Ok((PathBuf::from(path), cursor))
}

pub fn run(args: CompleteArgs) -> anyhow::Result<()> {
    let (path, cursor) = parse_position(&args.position)?;
    let root = project_dir(args.project.as_deref())?;
    let relative = super::edit::relative_paths(&root, std::slice::from_ref(&path))?.remove(0);
    let file = TextFile::read(&root, &relative)?;
    if file.is_new() {
        anyhow::bail!("{}: no such file", path.display());
    }
    let offset = cursor
        .offset(&file.text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let (prefix, suffix) = window(&file.text, offset, args.prefix_tokens, args.suffix_tokens);
    let context = if args.retrieval_budget > 0 {
        let (project, _) = Project::index(&root, &mut Bars::default())?;
        related_code(&project, &relative, prefix, suffix, args.retrieval_budget)?
    } else {
        Vec::new()
    };
    let mut sampler = args.sampling.params()?;
    if args.sampling.temperature.is_none() {
        // Completion is greedy unless asked otherwise: the most likely code is the one to offer.
        sampler.temperature = 0.0;
    }
    let request = FimRequest {
        prefix,
        suffix,
        repo_name: root.file_name().and_then(|n| n.to_str()),
        path: Some(&relative),
        context: &context,
    };
    let (text, tokens) = match args.backend.connect(args.model.model.as_deref())? {
        Some(_) if !args.lora.lora.is_empty() => {
            anyhow::bail!("--lora applies adapters to a local model; with --backend, load them in the server")
        }
        Some(remote) => {
            let infill = remote.infill(prefix, suffix, &context, args.max_tokens, &sampler)?;
            if !infill.with_context && !context.is_empty() {
                eprintln!(
                    "note: {} has no /infill endpoint, so the related code from other files was not sent",
                    remote.url()
                );
            }
            (infill.text, infill.tokens)
        }
        None => complete_locally(&args, &request, sampler)?,
    };
    let completion = trim_repeated_suffix(&text, suffix);
    if !args.apply {
        let mut stdout = std::io::stdout();
        stdout.write_all(completion.as_bytes())?;
        if !completion.ends_with('\n') {
            stdout.write_all(b"\n")?;
        }
        return Ok(());
    }
    if completion.is_empty() {
        eprintln!("the model offered nothing here; {} is unchanged", relative);
        return Ok(());
    }
    let mut after = file.text.clone();
    after.insert_str(offset, completion);
    let write = journal::Write {
        path: &relative,
        before: file.original.as_deref(),
        after: &file.encode(&after),
    };
    journal::write(&root, &format!("complete {}", args.position), &[write]).context("inserting the completion")?;
    eprintln!(
        "inserted {} lines ({} tokens) into {relative} (`hearth undo` takes it back)",
        completion.lines().count(),
        tokens
    );
    Ok(())
}

/// The completion for `request` from the local model, and how many tokens it took. Ctrl-C stops it early.
fn complete_locally(
    args: &CompleteArgs,
    request: &FimRequest<'_>,
    sampler: SamplerParams,
) -> anyhow::Result<(String, usize)> {
    args.threads.apply()?;
    let interrupt = Interrupt::install()?;
    let loaded = Loaded::open(&args.model.spec()?)?;
    let model = loaded.model(&args.lora)?;
    let tokens = fim_prompt(&loaded.tokenizer, request)?;
    let capacity = args.context.size(&model)?;
    if tokens.len() + args.max_tokens > capacity {
        anyhow::bail!(
            "the prompt ({} tokens) and {} tokens of completion do not fit the context of {capacity}; lower \
             --prefix-tokens/--suffix-tokens/--retrieval-budget or raise --ctx-size",
            tokens.len(),
            args.max_tokens
        );
    }
    let mut session = Session::new(&model, capacity, KvType::F16)?;
    session.prefill(&tokens)?;
    let fim = loaded.tokenizer.fim();
    let stop = StopConditions {
        max_tokens: args.max_tokens,
        tokens: [fim.prefix, fim.suffix, fim.middle, fim.file_sep, fim.repo]
            .into_iter()
            .flatten()
            .collect(),
        ..StopConditions::default()
    };
    interrupt.reset();
    let generation = generate(
        &mut session,
        &loaded.tokenizer,
        &mut Sampler::new(sampler),
        &stop,
        |_| interrupted(&interrupt),
    )?;
    Ok((generation.text, generation.tokens))
}

/// Code from other files of the project that shares names with the text around the cursor, up to `budget` tokens.
fn related_code(
    project: &Project,
    path: &str,
    prefix: &str,
    suffix: &str,
    budget: usize,
) -> anyhow::Result<Vec<ContextFile>> {
    // The lines nearest the cursor say best what is being written.
    let near: Vec<&str> = prefix.lines().rev().take(30).chain(suffix.lines().take(10)).collect();
    let mut files: Vec<ContextFile> = Vec::new();
    let mut spent = 0;
    for hit in project.search(&near.join("\n"), 8) {
        if hit.path == path {
            continue;
        }
        let text = project.quote(&hit)?;
        let cost = approximate_tokens(&text) + approximate_tokens(&hit.path) + 2;
        if spent + cost > budget {
            continue;
        }
        spent += cost;
        match files.iter_mut().find(|f| f.path == hit.path) {
            Some(file) => file.text.push_str(&format!("\n{text}")),
            None => files.push(ContextFile {
                path: hit.path.clone(),
                text,
            }),
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_split_from_the_right() {
        let p = |s: &str| parse_position(s).map(|(p, c)| (p.to_string_lossy().into_owned(), c.line, c.column));
        assert_eq!(p("src/a.py:12").unwrap(), ("src/a.py".into(), 12, None));
        assert_eq!(p("src/a.py:12:5").unwrap(), ("src/a.py".into(), 12, Some(5)));
        assert_eq!(p("odd:name.py:3").unwrap(), ("odd:name.py".into(), 3, None));
        for bad in ["a.py", "a.py:", "a.py:x", ":3", "a.py:0"] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }
}
