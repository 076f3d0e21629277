//! `hearth search`: the project's chunks that best match a query (BM25 over identifier-aware terms).

use clap::Args;

use crate::args::ProjectArg;

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// What to look for: words, identifiers, a question.
    query: String,
    /// How many results.
    #[arg(short, default_value_t = 10)]
    k: usize,
    /// Print results as JSON (with each chunk's full text).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    project: ProjectArg,
}

/// Lines of each result shown as a snippet.
const SNIPPET_LINES: usize = 4;

pub fn run(args: SearchArgs) -> anyhow::Result<()> {
    let (project, _) = args.project.open()?;
    let hits = project.search(&args.query, args.k);
    if args.json {
        let mut results = Vec::with_capacity(hits.len());
        for hit in &hits {
            results.push(serde_json::json!({
                "path": hit.path,
                "start_line": hit.chunk.lines.start,
                "end_line": hit.chunk.lines.end,
                "kind": hit.chunk.kind.name(),
                "symbol": hit.chunk.symbol,
                "score": hit.score,
                "text": project.quote(hit)?,
            }));
        }
        println!("{}", serde_json::to_string_pretty(&results)?);
        return Ok(());
    }
    if hits.is_empty() {
        println!("no matches");
    }
    for hit in &hits {
        let symbol = hit.chunk.symbol.as_deref().unwrap_or("");
        println!(
            "{}:{}-{}  {symbol}  ({}, score {:.2})",
            hit.path,
            hit.chunk.lines.start,
            hit.chunk.lines.end,
            hit.chunk.kind.name(),
            hit.score
        );
        let quote = project.quote(hit)?;
        for line in quote.lines().filter(|l| !l.trim().is_empty()).take(SNIPPET_LINES) {
            println!("    {line}");
        }
    }
    Ok(())
}
