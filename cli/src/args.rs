//! Arguments shared by several commands.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use hearth_runtime::lora::LoraAdapter;
use hearth_runtime::model::Model;
use hearth_runtime::retrieval::{IndexReport, Project, project_root};
use hearth_runtime::sampling::SamplerParams;
use hearth_runtime::store::DEFAULT_MODEL;
use hearth_runtime::{ModelFile, Store};

use crate::config;
use crate::progress::Bars;

/// Which model to use.
#[derive(Debug, Args)]
pub struct ModelArg {
    /// A known model name (see `hearth models list`; fetched on first use) or a path to a .gguf file [default:
    /// the settings files' `model`, else qwen2.5-coder-1.5b-instruct].
    #[arg(short = 'm', long = "model", env = "HEARTH_MODEL")]
    pub model: Option<String>,
}

impl ModelArg {
    /// The model as named by the flag, the environment or the settings files.
    pub fn spec(&self) -> anyhow::Result<String> {
        config::resolve(self.model.clone(), |c| c.model.clone(), DEFAULT_MODEL.to_owned())
    }

    /// The model's file, pulling it into the store first if it is a known model that is not there yet.
    pub fn resolve(&self) -> anyhow::Result<PathBuf> {
        resolve_model(&self.spec()?)
    }
}

/// The file of a model name or path, pulling a known model into the store first if it is not there yet.
pub fn resolve_model(spec: &str) -> anyhow::Result<PathBuf> {
    Ok(Store::from_env()?.resolve(spec, &mut Bars::default())?)
}

/// LoRA adapters to apply to the model.
#[derive(Debug, Default, Args)]
pub struct LoraArg {
    /// Apply a LoRA adapter (llama.cpp's adapter GGUF, e.g. from `hearth train`), scaled by SCALE [default: 1];
    /// repeatable, adapters add up.
    #[arg(long = "lora", value_name = "FILE[:SCALE]")]
    pub lora: Vec<String>,
}

impl LoraArg {
    /// Each adapter file with its scale: `FILE:SCALE` when what follows the last colon is a number, otherwise the
    /// whole text is the file (scale 1).
    pub fn specs(&self) -> Vec<(PathBuf, f32)> {
        self.lora
            .iter()
            .map(|spec| match spec.rsplit_once(':').map(|(p, s)| (p, s.parse::<f32>())) {
                Some((path, Ok(scale))) if scale.is_finite() => (PathBuf::from(path), scale),
                _ => (PathBuf::from(spec), 1.0),
            })
            .collect()
    }

    /// Loads the model in `file` with every adapter attached.
    pub fn load<'f>(&self, file: &'f ModelFile) -> anyhow::Result<Model<'f>> {
        let mut model = Model::load(file).context("loading the model")?;
        for (path, scale) in self.specs() {
            let adapter = ModelFile::open(&path).with_context(|| format!("opening the adapter {}", path.display()))?;
            LoraAdapter::from_gguf(adapter.gguf(), &model)
                .and_then(|lora| model.attach_lora(lora, scale))
                .with_context(|| format!("the adapter {} does not fit {}", path.display(), file.path().display()))?;
        }
        Ok(model)
    }
}

/// How many threads the kernels use.
#[derive(Debug, Args)]
pub struct ThreadsArg {
    /// Threads [default: the settings files' `threads`, else all cores].
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
}

impl ThreadsArg {
    /// Sizes the kernels' thread pool (call before any model work).
    pub fn apply(&self) -> anyhow::Result<()> {
        if let Some(n) = self.threads.or(config::current()?.get(|c| c.threads)) {
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
        Ok(Project::index(&self.root()?, &mut Bars::default())?)
    }

    /// The project directory (canonical).
    pub fn root(&self) -> anyhow::Result<PathBuf> {
        project_dir(self.project.as_deref())
    }
}

/// The project directory: `dir`, else the nearest directory at or above the current one holding .hearth/ or .git,
/// else the current directory; canonical, so that paths can be checked against it.
pub fn project_dir(dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir()?;
    let root = match dir {
        Some(dir) => dir.to_owned(),
        None => project_root(&cwd).unwrap_or(cwd),
    };
    root.canonicalize()
        .with_context(|| format!("the project directory {}", root.display()))
}

/// Context size.
#[derive(Debug, Args)]
pub struct ContextArg {
    /// Context size in tokens (the KV cache); 0 means the model's trained context, capped at 8192 [default: the
    /// settings files' `context`, else 0].
    #[arg(short = 'c', long = "ctx-size")]
    pub ctx_size: Option<usize>,
}

impl ContextArg {
    /// The context to allocate for `model`.
    pub fn size(&self, model: &Model<'_>) -> anyhow::Result<usize> {
        let size = config::resolve(self.ctx_size, |c| c.context, 0)?;
        Ok(if size > 0 {
            size
        } else {
            model.config().context_length.min(8192)
        })
    }
}

/// Sampling flags (llama.cpp's names and defaults); each falls back to the settings files' `[sampling]`.
#[derive(Debug, Args)]
pub struct SamplingArgs {
    /// Temperature; 0 is greedy [default: 0.8].
    #[arg(long = "temp")]
    pub temperature: Option<f32>,
    /// Top-k (0: off) [default: 40].
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Top-p (1: off) [default: 0.95].
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Min-p (0: off) [default: 0.05].
    #[arg(long)]
    pub min_p: Option<f32>,
    /// Repetition penalty (1: off) [default: 1].
    #[arg(long)]
    pub repeat_penalty: Option<f32>,
    /// Frequency penalty [default: 0].
    #[arg(long)]
    pub frequency_penalty: Option<f32>,
    /// Presence penalty [default: 0].
    #[arg(long)]
    pub presence_penalty: Option<f32>,
    /// Random seed (same seed, same output) [default: 24301].
    #[arg(short = 's', long)]
    pub seed: Option<u64>,
}

impl SamplingArgs {
    /// The sampler settings.
    pub fn params(&self) -> anyhow::Result<SamplerParams> {
        let d = SamplerParams::default();
        Ok(SamplerParams {
            temperature: config::resolve(self.temperature, |c| c.sampling.temperature, d.temperature)?,
            top_k: config::resolve(self.top_k, |c| c.sampling.top_k, d.top_k)?,
            top_p: config::resolve(self.top_p, |c| c.sampling.top_p, d.top_p)?,
            min_p: config::resolve(self.min_p, |c| c.sampling.min_p, d.min_p)?,
            repeat_penalty: config::resolve(self.repeat_penalty, |c| c.sampling.repeat_penalty, d.repeat_penalty)?,
            frequency_penalty: config::resolve(
                self.frequency_penalty,
                |c| c.sampling.frequency_penalty,
                d.frequency_penalty,
            )?,
            presence_penalty: config::resolve(
                self.presence_penalty,
                |c| c.sampling.presence_penalty,
                d.presence_penalty,
            )?,
            seed: config::resolve(self.seed, |c| c.sampling.seed, d.seed)?,
            ..d
        })
    }
}
