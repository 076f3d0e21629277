//! Arguments shared by several commands.

use std::io::Read;
use std::path::PathBuf;

use clap::Args;
use hearth_runtime::Store;
use hearth_runtime::retrieval::{IndexReport, Project, find_project_root};
use hearth_runtime::store::DEFAULT_MODEL;

use crate::progress::Bars;

/// Which model to use.
#[derive(Debug, Args)]
pub struct ModelArg {
    /// A known model name (see `hearth models list`; fetched on first use) or a path to a .gguf file.
    #[arg(short = 'm', long = "model", env = "HEARTH_MODEL", default_value = DEFAULT_MODEL)]
    pub model: String,
}

impl ModelArg {
    /// The model's file, pulling it into the store first if it is a known model that is not there yet.
    pub fn resolve(&self) -> anyhow::Result<PathBuf> {
        Ok(Store::from_env()?.resolve(&self.model, &mut Bars::default())?)
    }
}

/// How many threads the kernels use.
#[derive(Debug, Args)]
pub struct ThreadsArg {
    /// Threads (default: all cores).
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
}

impl ThreadsArg {
    /// Sizes the kernels' thread pool (call before any model work).
    pub fn apply(&self) -> anyhow::Result<()> {
        if let Some(n) = self.threads {
            hearth_runtime::set_threads(n).map_err(|e| anyhow::anyhow!("cannot use {n} threads: {e}"))?;
        }
        Ok(())
    }
}

/// The text of a `-p/--prompt` argument: its value, or standard input when it is `-` or absent.
pub fn prompt_text(arg: Option<&str>) -> anyhow::Result<String> {
    match arg {
        Some("-") | None => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            Ok(text)
        }
        Some(text) => Ok(text.to_owned()),
    }
}

/// Which project to work on.
#[derive(Debug, Args)]
pub struct ProjectArg {
    /// Project directory [default: the nearest directory at or above the current one holding .hearth/ or .git,
    /// else the current directory].
    #[arg(long = "project", value_name = "DIR")]
    pub project: Option<PathBuf>,
}

impl ProjectArg {
    /// Opens the project and brings its index up to date (only changed files are re-read).
    pub fn open(&self) -> anyhow::Result<(Project, IndexReport)> {
        let root = match &self.project {
            Some(dir) => dir.clone(),
            None => find_project_root(&std::env::current_dir()?),
        };
        Ok(Project::index(&root, &mut Bars::default())?)
    }
}
