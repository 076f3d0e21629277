//! Arguments shared by several commands.

use std::io::Read;
use std::path::PathBuf;

use clap::Args;
use hearth_runtime::Store;
use hearth_runtime::model::Model;
use hearth_runtime::retrieval::{IndexReport, Project, project_root};
use hearth_runtime::sampling::SamplerParams;
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
            None => {
                let cwd = std::env::current_dir()?;
                project_root(&cwd).unwrap_or(cwd)
            }
        };
        Ok(Project::index(&root, &mut Bars::default())?)
    }
}

/// Context size.
#[derive(Debug, Args)]
pub struct ContextArg {
    /// Context size in tokens (the KV cache); 0 means the model's trained context, capped at 8192.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 0)]
    pub ctx_size: usize,
}

impl ContextArg {
    /// The context to allocate for `model`.
    pub fn size(&self, model: &Model<'_>) -> usize {
        if self.ctx_size > 0 {
            self.ctx_size
        } else {
            model.config().context_length.min(8192)
        }
    }
}

/// Sampling flags (llama.cpp's names and defaults).
#[derive(Debug, Args)]
pub struct SamplingArgs {
    /// Temperature; 0 is greedy.
    #[arg(long = "temp", default_value_t = SamplerParams::default().temperature)]
    pub temperature: f32,
    /// Top-k (0: off).
    #[arg(long, default_value_t = SamplerParams::default().top_k)]
    pub top_k: usize,
    /// Top-p (1: off).
    #[arg(long, default_value_t = SamplerParams::default().top_p)]
    pub top_p: f32,
    /// Min-p (0: off).
    #[arg(long, default_value_t = SamplerParams::default().min_p)]
    pub min_p: f32,
    /// Repetition penalty (1: off).
    #[arg(long, default_value_t = SamplerParams::default().repeat_penalty)]
    pub repeat_penalty: f32,
    /// Frequency penalty.
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// Presence penalty.
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    /// Random seed (same seed, same output).
    #[arg(short = 's', long, default_value_t = SamplerParams::default().seed)]
    pub seed: u64,
}

impl SamplingArgs {
    /// The sampler settings.
    pub fn params(&self) -> SamplerParams {
        SamplerParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            seed: self.seed,
            ..SamplerParams::default()
        }
    }
}
