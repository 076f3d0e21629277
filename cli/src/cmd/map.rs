//! `hearth map`: the project's most important definitions, one line each, fitted to a token budget.

use clap::Args;
use hearth_runtime::retrieval::{Focus, approximate_tokens};

use crate::args::ProjectArg;

#[derive(Debug, Args)]
pub struct MapArgs {
    /// Token budget (estimated at four characters per token).
    #[arg(long, default_value_t = 1024)]
    budget: usize,
    /// Files in play (paths relative to the project): the map leans toward what they use and leaves them out.
    #[arg(long = "focus", value_name = "FILE")]
    focus: Vec<String>,
    /// Conversation text: identifiers in it weigh more.
    #[arg(long, default_value = "")]
    query: String,
    /// Print the listed definitions as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    project: ProjectArg,
}

pub fn run(args: MapArgs) -> anyhow::Result<()> {
    let (project, _) = args.project.open()?;
    let focus = Focus {
        files: &args.focus,
        text: &args.query,
    };
    for file in &args.focus {
        if !project.files().iter().any(|r| &r.path == file) {
            anyhow::bail!("--focus {file}: not an indexed file of {}", project.root().display());
        }
    }
    let map = project.repo_map(&focus, args.budget, &approximate_tokens);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&map.entries)?);
    } else {
        print!("{}", map.text);
    }
    Ok(())
}
