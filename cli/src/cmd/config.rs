//! `hearth config show`: the settings in effect here and where each comes from.

use clap::Subcommand;
use hearth_runtime::chat::ChatSettings;
use hearth_runtime::sampling::SamplerParams;
use hearth_runtime::store::DEFAULT_MODEL;

use crate::config::{self, show_line};

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the settings in effect in this directory, each with its source (project file, user file, default).
    Show,
}

pub fn run(command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Show => show(),
    }
}

fn show() -> anyhow::Result<()> {
    let loaded = config::current()?;
    println!("# settings files, the first wins (flags and HEARTH_MODEL win over both):");
    for (_, path, config) in &loaded.files {
        println!(
            "#   {} ({})",
            path.display(),
            if config.is_some() { "read" } else { "not present" }
        );
    }
    let quoted = |s: &str| format!("{s:?}");
    match std::env::var("HEARTH_MODEL") {
        Ok(model) => println!("model = {}  # environment (HEARTH_MODEL)", quoted(&model)),
        Err(_) => println!(
            "{}",
            show_line(
                loaded,
                "model",
                |c| c.model.as_deref().map(quoted),
                quoted(DEFAULT_MODEL)
            )
        ),
    }
    println!(
        "{}",
        show_line(
            loaded,
            "threads",
            |c| c.threads,
            format!("{} (all cores)", hearth_runtime::threads())
        )
    );
    println!(
        "{}",
        show_line(loaded, "context", |c| c.context, "0 (the model's, capped at 8192)")
    );
    let s = SamplerParams::default();
    println!("\n[sampling]");
    println!(
        "{}",
        show_line(loaded, "temperature", |c| c.sampling.temperature, s.temperature)
    );
    println!("{}", show_line(loaded, "top_k", |c| c.sampling.top_k, s.top_k));
    println!("{}", show_line(loaded, "top_p", |c| c.sampling.top_p, s.top_p));
    println!("{}", show_line(loaded, "min_p", |c| c.sampling.min_p, s.min_p));
    println!(
        "{}",
        show_line(
            loaded,
            "repeat_penalty",
            |c| c.sampling.repeat_penalty,
            s.repeat_penalty
        )
    );
    println!(
        "{}",
        show_line(
            loaded,
            "frequency_penalty",
            |c| c.sampling.frequency_penalty,
            s.frequency_penalty
        )
    );
    println!(
        "{}",
        show_line(
            loaded,
            "presence_penalty",
            |c| c.sampling.presence_penalty,
            s.presence_penalty
        )
    );
    println!("{}", show_line(loaded, "seed", |c| c.sampling.seed, s.seed));
    let chat = ChatSettings::default();
    println!("\n[chat]");
    println!("{}", show_line(loaded, "retrieval", |c| c.chat.retrieval, true));
    println!(
        "{}",
        show_line(
            loaded,
            "retrieval_budget",
            |c| c.chat.retrieval_budget,
            chat.retrieval_budget
        )
    );
    println!(
        "{}",
        show_line(loaded, "max_tokens", |c| c.chat.max_tokens, chat.max_answer_tokens)
    );
    println!("{}", show_line(loaded, "drop_oldest", |c| c.chat.drop_oldest, false));
    println!(
        "{}",
        show_line(
            loaded,
            "system",
            |c| c.chat.system.as_deref().map(quoted),
            quoted(&chat.system)
        )
    );
    Ok(())
}
