//! `hearth init`: set a project up: a commented `.hearth/config.toml` and a first index.

use std::path::PathBuf;

use clap::Args;
use hearth_runtime::retrieval::Project;

use crate::config::{FILE_NAME, TEMPLATE};
use crate::progress::Bars;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Project directory.
    #[arg(default_value = ".")]
    path: PathBuf,
    /// Replace an existing .hearth/config.toml.
    #[arg(long)]
    force: bool,
}

pub fn run(args: InitArgs) -> anyhow::Result<()> {
    let (project, report) = Project::index(&args.path, &mut Bars::default())?;
    let file = project
        .root()
        .join(hearth_runtime::retrieval::HEARTH_DIR)
        .join(FILE_NAME);
    if file.exists() && !args.force {
        anyhow::bail!(
            "{} already exists (edit it, or pass --force to start over)",
            file.display()
        );
    }
    hearth_runtime::fsutil::write_atomic(&file, TEMPLATE.as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    println!(
        "wrote {} (every setting commented out: uncomment what you want to change)",
        file.display()
    );
    println!(
        "indexed {} files ({} chunks) in {:.2} s",
        report.files,
        report.chunks,
        report.elapsed.as_secs_f64()
    );
    Ok(())
}
