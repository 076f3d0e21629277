//! Settings files: `~/.config/hearth/config.toml` (the user's) and `.hearth/config.toml` in the project of the current
//! directory. A flag beats an environment variable, which beats the project file, which beats the user file, which
//! beats the built-in default.

use std::fmt::Display;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hearth_runtime::retrieval::{HEARTH_DIR, project_root};
use serde::Deserialize;

/// File name of both settings files.
pub const FILE_NAME: &str = "config.toml";

/// One settings file. Every field is optional: what a file leaves out falls through to the next layer.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Model name or path.
    pub model: Option<String>,
    /// Kernel threads.
    pub threads: Option<usize>,
    /// Context size in tokens.
    pub context: Option<usize>,
    /// Sampling.
    #[serde(default)]
    pub sampling: Sampling,
    /// `hearth chat`.
    #[serde(default)]
    pub chat: ChatConfig,
}

/// `[sampling]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // The flags of the same names document them.
pub struct Sampling {
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub seed: Option<u64>,
}

/// `[chat]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // The flags of the same names document them.
pub struct ChatConfig {
    pub retrieval: Option<bool>,
    pub retrieval_budget: Option<usize>,
    pub max_tokens: Option<usize>,
    pub system: Option<String>,
    pub drop_oldest: Option<bool>,
}

/// Where a setting came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// The project's `.hearth/config.toml`.
    Project,
    /// The user's `config.toml`.
    User,
}

/// The settings files that apply here, project first.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Files read (or looked for), with their layer and contents when they exist.
    pub files: Vec<(Layer, PathBuf, Option<Config>)>,
}

impl Loaded {
    /// The first layer that sets a value, with the layer.
    pub fn pick<T: Clone>(&self, field: impl Fn(&Config) -> Option<T>) -> Option<(T, Layer)> {
        self.files
            .iter()
            .find_map(|(layer, _, config)| config.as_ref().and_then(&field).map(|v| (v, *layer)))
    }

    /// The first layer's value of a setting.
    pub fn get<T: Clone>(&self, field: impl Fn(&Config) -> Option<T>) -> Option<T> {
        self.pick(field).map(|(value, _)| value)
    }
}

/// The user's settings file.
pub fn user_file() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("hearth").join(FILE_NAME))
}

/// The project settings file for `dir` (in the project `dir` belongs to, or `dir` itself).
pub fn project_file(dir: &Path) -> PathBuf {
    project_root(dir)
        .unwrap_or_else(|| dir.to_owned())
        .join(HEARTH_DIR)
        .join(FILE_NAME)
}

/// Reads the settings files that apply in `dir`.
pub fn load(dir: &Path) -> anyhow::Result<Loaded> {
    let mut loaded = Loaded::default();
    let candidates = [(Layer::Project, Some(project_file(dir))), (Layer::User, user_file())];
    for (layer, path) in candidates {
        let Some(path) = path else { continue };
        let config = match fs::read_to_string(&path) {
            Ok(text) => Some(toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => anyhow::bail!("{}: {e}", path.display()),
        };
        loaded.files.push((layer, path, config));
    }
    Ok(loaded)
}

/// The settings for this process (the current directory's), read once.
pub fn current() -> anyhow::Result<&'static Loaded> {
    static CURRENT: OnceLock<Result<Loaded, String>> = OnceLock::new();
    let loaded = CURRENT.get_or_init(|| {
        let dir = std::env::current_dir().map_err(|e| format!("current directory: {e}"))?;
        load(&dir).map_err(|e| format!("{e:#}"))
    });
    loaded.as_ref().map_err(|e| anyhow::anyhow!("{e}"))
}

/// A flag's value, else the settings files', else `default`.
pub fn resolve<T: Clone>(flag: Option<T>, field: impl Fn(&Config) -> Option<T>, default: T) -> anyhow::Result<T> {
    Ok(match flag {
        Some(value) => value,
        None => current()?.get(field).unwrap_or(default),
    })
}

/// One line of `hearth config show`: `key = value  # source`.
pub fn show_line<T: Display + Clone>(
    loaded: &Loaded,
    key: &str,
    field: impl Fn(&Config) -> Option<T>,
    default: impl Display,
) -> String {
    match loaded.pick(field) {
        Some((value, Layer::Project)) => format!("{key} = {value}  # project file"),
        Some((value, Layer::User)) => format!("{key} = {value}  # user file"),
        None => format!("{key} = {default}  # default"),
    }
}

/// The commented project file `hearth init` writes.
pub const TEMPLATE: &str = r#"# hearth settings for this project. Flags and environment variables (HEARTH_MODEL) win over this file;
# this file wins over your own ~/.config/hearth/config.toml. Uncomment what you want to change.

# Model: a known name (hearth models list) or a path to a .gguf file.
# model = "qwen2.5-coder-1.5b-instruct"
# threads = 4            # kernel threads (default: all cores)
# context = 8192         # context size in tokens (default: the model's, capped at 8192)

[sampling]
# temperature = 0.8      # 0 is greedy
# top_k = 40
# top_p = 0.95
# min_p = 0.05
# repeat_penalty = 1.0
# seed = 24301

[chat]
# retrieval = true       # retrieve project code for each question
# retrieval_budget = 1536  # tokens of retrieved code per question
# max_tokens = 1024      # longest answer
# drop_oldest = false    # when the conversation outgrows the context, drop the oldest turns instead of refusing
# system = "You are hearth, a coding assistant …"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_parses_and_sets_nothing() {
        let config: Config = toml::from_str(TEMPLATE).unwrap();
        assert!(config.model.is_none() && config.sampling.temperature.is_none() && config.chat.system.is_none());
        let uncommented: String = TEMPLATE
            .lines()
            .map(|l| l.strip_prefix("# ").filter(|l| l.contains(" = ")).unwrap_or(l))
            .map(|l| format!("{}\n", l.split("  #").next().unwrap_or(l)))
            .collect();
        let config: Config = toml::from_str(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        assert_eq!(config.model.as_deref(), Some("qwen2.5-coder-1.5b-instruct"));
        assert_eq!(config.chat.retrieval_budget, Some(1536));
    }

    #[test]
    fn the_project_layer_wins_and_unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join(".git")).unwrap();
        fs::create_dir_all(dir.path().join(".hearth")).unwrap();
        fs::create_dir_all(dir.path().join("src")).unwrap();
        fs::write(
            dir.path().join(".hearth/config.toml"),
            "threads = 3\n[chat]\nmax_tokens = 99\n",
        )
        .unwrap();
        let loaded = load(&dir.path().join("src")).unwrap();
        assert_eq!(loaded.pick(|c| c.threads), Some((3, Layer::Project)));
        assert_eq!(loaded.get(|c| c.chat.max_tokens), Some(99));
        assert_eq!(loaded.get(|c| c.sampling.seed), None);

        fs::write(dir.path().join(".hearth/config.toml"), "treads = 3\n").unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("config.toml") && err.contains("unknown field `treads`"),
            "{err}"
        );
    }
}
