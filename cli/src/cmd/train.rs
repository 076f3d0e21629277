//! `hearth train`: a LoRA adapter on a project, conversations or text, written in llama.cpp's adapter format.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use hearth_kernel::simd::Isa;
use hearth_runtime::ModelFile;
use hearth_runtime::model::{Model, Projection};
use hearth_runtime::template::ChatTemplate;
use hearth_runtime::tokenizer::Tokenizer;
use hearth_trainer::step::{InputGradients, Memory};
use hearth_trainer::train::{Run, TrainOptions};
use hearth_trainer::{checkpoint, data};
use indicatif::{HumanDuration, ProgressBar, ProgressStyle};

use crate::args::{ModelArg, ThreadsArg};
use crate::cmd::chat::Interrupt;
use crate::progress::Bars;

/// How often a run whose stderr is not a terminal prints its progress line.
const LOG_LINE_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    model: ModelArg,
    /// What to learn from: a project directory (its functions and classes), a .jsonl file of conversations
    /// (`{"messages": [...]}`, only the assistant's turns learned) or texts (`{"text": ...}`), or a text file.
    #[arg(long, value_name = "PATH")]
    data: PathBuf,
    /// Where to write the adapter (llama.cpp's LoRA GGUF; use it with --lora). Its checkpoint and loss curve go
    /// next to it (NAME.checkpoint.gguf, NAME.loss.svg).
    #[arg(
        short = 'o',
        long = "out",
        value_name = "ADAPTER.gguf",
        required_unless_present = "export_dataset"
    )]
    out: Option<PathBuf>,
    /// Do not train: write the samples mined from --data as JSONL for GPU trainers (TRL, axolotl, Unsloth):
    /// `{"text": …}` per definition or text, `{"messages": […]}` per conversation.
    #[arg(long, value_name = "FILE.jsonl", conflicts_with = "out")]
    export_dataset: Option<PathBuf>,
    /// Rank of each adapter pair.
    #[arg(long, default_value_t = 8)]
    rank: usize,
    /// Scale numerator: updates are scaled by alpha / rank.
    #[arg(long, default_value_t = 16.0)]
    alpha: f32,
    /// Projections to adapt, comma-separated, from q, k, v, o, gate, up, down.
    #[arg(long, value_delimiter = ',', default_value = "q,k,v,o,gate,up,down", value_parser = parse_target)]
    targets: Vec<Projection>,
    /// Tokens predicted per example.
    #[arg(long, default_value_t = 512)]
    seq_len: usize,
    /// Examples per micro-batch.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 4)]
    grad_accum: usize,
    /// Passes over the training examples [default: 1, unless --max-steps or --time-budget is given].
    #[arg(long, conflicts_with_all = ["max_steps", "time_budget"])]
    epochs: Option<f64>,
    /// Optimizer steps to take.
    #[arg(long, conflicts_with = "time_budget")]
    max_steps: Option<u64>,
    /// Train for this long (e.g. 8h, 45m, 1h30m); the learning-rate schedule is fitted to it as steps are timed.
    #[arg(long, value_parser = parse_duration)]
    time_budget: Option<Duration>,
    /// Peak learning rate (after a linear warmup; then a cosine down to a tenth of it).
    #[arg(long, default_value_t = 2e-4)]
    lr: f32,
    /// Warmup steps [default: a twentieth of the run, at least 1].
    #[arg(long)]
    warmup: Option<u64>,
    /// Seed of the adapter's initialisation and the data order (same seed, same run).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Share of the samples held out to measure on.
    #[arg(long, default_value_t = 0.05)]
    held_out: f64,
    /// Share of a project's definitions that also become fill-in-the-middle samples (cut at two points; the middle is
    /// learned as `hearth complete` asks for it) [default: 0.5 when the model has FIM tokens]; 0 makes none.
    #[arg(long, value_name = "SHARE")]
    fim: Option<f64>,
    /// Write a checkpoint every this many steps [default: every ten minutes].
    #[arg(long, value_name = "STEPS")]
    checkpoint_every: Option<u64>,
    /// Continue from the checkpoint next to --out (it must come from the same options and data).
    #[arg(long)]
    resume: bool,
    /// Keep every block's activations instead of recomputing them in the backward pass (faster, far more memory).
    #[arg(long)]
    no_grad_checkpointing: bool,
    /// Sum gradients through the frozen weights in f32 instead of as int8 products of their transposes requantized
    /// to 8 bits (slower, but no rounding of the gradients and no transposed copy of the weights in memory).
    #[arg(long)]
    float_input_gradients: bool,
    #[command(flatten)]
    threads: ThreadsArg,
}

fn parse_target(name: &str) -> Result<Projection, String> {
    Projection::from_name(name).ok_or_else(|| {
        let known: Vec<&str> = Projection::ALL.iter().map(|p| p.name()).collect();
        format!("unknown projection '{name}' (known: {})", known.join(", "))
    })
}

/// `8h`, `45m`, `90s`, `1h30m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let mut seconds = 0u64;
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => {
                return Err(format!(
                    "'{text}': use hours, minutes and seconds such as 8h, 45m or 1h30m"
                ));
            }
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("'{text}': a number must come before '{c}'"))?;
        seconds += n * unit;
        digits.clear();
    }
    if !digits.is_empty() || seconds == 0 {
        return Err(format!(
            "'{text}': give a positive duration with its unit, such as 8h, 45m or 1h30m"
        ));
    }
    Ok(Duration::from_secs(seconds))
}

/// `dir/name.gguf` → `dir/name.<suffix>`.
fn beside(out: &Path, suffix: &str) -> PathBuf {
    let stem = out
        .file_stem()
        .map_or_else(|| "adapter".into(), |s| s.to_string_lossy().into_owned());
    out.with_file_name(format!("{stem}.{suffix}"))
}

/// The process's peak resident memory, where the system reports it (Linux).
fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Writes the documents of `data` as JSONL to `out`.
fn export_dataset(data: &Path, out: &Path) -> anyhow::Result<()> {
    let found = data::documents(data, &mut Bars::default())
        .with_context(|| format!("reading training data from {}", data.display()))?;
    let mut jsonl = String::new();
    for document in &found.documents {
        jsonl.push_str(&document.to_json_line());
        jsonl.push('\n');
    }
    hearth_runtime::fsutil::write_atomic(out, jsonl.as_bytes())
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "wrote {} sample(s) of {} {} ({} file(s){}) to {}",
        found.documents.len(),
        found.kind,
        data.display(),
        found.files,
        if found.duplicates > 0 {
            format!(", {} copies left out", found.duplicates)
        } else {
            String::new()
        },
        out.display()
    );
    Ok(())
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    args.threads.apply()?;
    anyhow::ensure!(args.data.exists(), "--data: {} does not exist", args.data.display());
    let out = match (&args.export_dataset, &args.out) {
        (Some(export), _) => return export_dataset(&args.data, export),
        (None, Some(out)) => out,
        (None, None) => anyhow::bail!("--out is required"),
    };
    anyhow::ensure!(args.rank > 0, "--rank must be at least 1");
    anyhow::ensure!(args.seq_len >= 8, "--seq-len must be at least 8");
    anyhow::ensure!(
        args.batch > 0 && args.grad_accum > 0,
        "--batch and --grad-accum must be at least 1"
    );
    anyhow::ensure!(args.lr > 0.0 && args.lr.is_finite(), "--lr must be a positive number");
    anyhow::ensure!(
        (0.0..0.5).contains(&args.held_out),
        "--held-out must be a share below 0.5"
    );
    anyhow::ensure!(
        args.fim.is_none_or(|f| (0.0..=1.0).contains(&f)),
        "--fim must be a share from 0 to 1"
    );
    anyhow::ensure!(!args.targets.is_empty(), "--targets names no projection");
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        anyhow::ensure!(parent.is_dir(), "{} is not a directory", parent.display());
    }
    let checkpoint_path = beside(out, "checkpoint.gguf");
    anyhow::ensure!(
        !args.resume || checkpoint_path.exists(),
        "--resume: there is no checkpoint at {}",
        checkpoint_path.display()
    );

    let path = args.model.resolve()?;
    let file = ModelFile::open_to_run(&path, &mut Bars::default())?;
    let tokenizer = Tokenizer::from_gguf(file.gguf())?;
    let template = ChatTemplate::from_gguf(file.gguf(), &tokenizer);
    let model = Model::load(&file).context("loading the model")?;
    let has_fim = tokenizer.fim().infill().is_some();
    let fim = match args.fim {
        Some(share) if share > 0.0 && !has_fim => {
            anyhow::bail!("--fim: {} has no fill-in-the-middle tokens", path.display())
        }
        Some(share) => share,
        None if has_fim => 0.5,
        None => 0.0,
    };
    let options = data::DataOptions {
        seq_len: args.seq_len,
        held_out: args.held_out,
        fim,
    };
    let dataset = data::build(&args.data, &tokenizer, &template, options, &mut Bars::default())
        .with_context(|| format!("building training data from {}", args.data.display()))?;
    let report = &dataset.report;
    eprintln!(
        "data: {} {} — {} file(s), {} sample(s){}{}; {} held out",
        report.kind,
        args.data.display(),
        report.files,
        report.samples,
        if report.fim_samples > 0 {
            format!(" ({} fill-in-the-middle)", report.fim_samples)
        } else {
            String::new()
        },
        if report.duplicates > 0 {
            format!(" ({} copies left out)", report.duplicates)
        } else {
            String::new()
        },
        report.held_out_samples,
    );
    eprintln!(
        "      {} training tokens in {} examples, {} held-out tokens in {}",
        report.train_tokens,
        dataset.train.len(),
        report.held_out_tokens,
        dataset.held_out.len()
    );

    let per_step = args.batch * args.grad_accum;
    let planned_steps = match (args.max_steps, args.time_budget) {
        (Some(steps), _) => steps,
        // A time budget sets the length and the warmup once the first step has been timed (that step, not yet on
        // the schedule, updates at a near-zero rate).
        (None, Some(_)) => u64::MAX,
        (None, None) => {
            let epochs = args.epochs.unwrap_or(1.0);
            anyhow::ensure!(epochs > 0.0, "--epochs must be positive");
            ((epochs * dataset.train.len() as f64) / per_step as f64)
                .ceil()
                .max(1.0) as u64
        }
    };
    let warmup = |total: u64| args.warmup.unwrap_or((total / 20).max(1));
    let options = TrainOptions {
        rank: args.rank,
        alpha: args.alpha,
        targets: args.targets.clone(),
        batch: args.batch,
        grad_accum: args.grad_accum,
        lr: args.lr,
        warmup: warmup(planned_steps),
        total_steps: planned_steps,
        max_grad_norm: 1.0,
        weight_decay: 0.0,
        seed: args.seed,
        memory: if args.no_grad_checkpointing {
            Memory::KeepAll
        } else {
            Memory::Checkpointed
        },
        input_gradients: if args.float_input_gradients {
            InputGradients::Float
        } else {
            InputGradients::Int8
        },
    };
    let targets: Vec<&str> = args.targets.iter().map(|t| t.name()).collect();
    // What a checkpoint must share with the run that resumes it.
    let fingerprint = format!(
        "model {}, data {} ({} examples, {} tokens), seq-len {}, rank {}, alpha {}, targets {}, batch {}, grad-accum {}, \
         lr {}, seed {}, fim {}",
        path.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        args.data.display(),
        dataset.train.len(),
        report.train_tokens,
        args.seq_len,
        args.rank,
        args.alpha,
        targets.join(","),
        args.batch,
        args.grad_accum,
        args.lr,
        args.seed,
        fim,
    );
    let isa = Isa::selected();
    crate::malloc::keep_freed_memory();
    let transposes = options.input_gradients == InputGradients::Int8;
    let mut run = if args.resume {
        let checkpoint = checkpoint::load(&checkpoint_path, &model, &fingerprint, 0.0)
            .with_context(|| format!("resuming from {}", checkpoint_path.display()))?;
        let state = &checkpoint.state;
        eprintln!("resuming at step {} ({:.2} epochs done)", state.step, {
            state.cursor as f64 / dataset.train.len() as f64
        });
        Run::resume(&model, isa, &dataset.train, options, checkpoint, &mut Bars::default())?
    } else {
        Run::new(&model, isa, &dataset.train, options, &mut Bars::default())?
    };
    // The backward now reads the transposes and the forward the grouped cache (on AMX, its own tiles): the file's
    // rows need not stay resident (about 1 GB for Qwen2.5-Coder-1.5B).
    if transposes && file.grouped().is_some() {
        file.release_resident_pages()
            .context("releasing the model file's pages")?;
    }
    eprintln!(
        "training {} adapter values (rank {}, alpha {}, on {}) on {}{}",
        run.adapter.parameter_count(),
        args.rank,
        args.alpha,
        targets.join(","),
        path.display(),
        if args.no_grad_checkpointing {
            ", without gradient checkpointing"
        } else {
            ""
        }
    );

    let held_out_before = if dataset.held_out.is_empty() {
        None
    } else {
        eprintln!("measuring the held-out loss…");
        Some(run.loss_over(&dataset.held_out)?)
    };
    if let Some(loss) = held_out_before {
        eprintln!("held-out loss {loss:.4} (perplexity {:.2})", loss.exp());
    }

    let interrupt = Interrupt::install()?;
    let bar = ProgressBar::new(if planned_steps == u64::MAX { 0 } else { planned_steps }).with_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} steps · eta {eta}").expect("valid template"),
    );
    bar.set_position(run.progress.step);
    let arch = model.config().arch.name();
    let save_checkpoint = |run: &Run<'_, '_, '_>| {
        checkpoint::save(
            &checkpoint_path,
            arch,
            &fingerprint,
            &run.adapter,
            &run.optimizer,
            &run.progress,
        )
        .with_context(|| format!("writing the checkpoint {}", checkpoint_path.display()))
    };
    let started = Instant::now();
    let mut last_checkpoint = Instant::now();
    let mut tokens = 0usize;
    let first_step = run.progress.step;
    let mut stopped_early = false;
    let mut last_line = Instant::now();
    while run.progress.step < run.options().total_steps {
        let report = run.step()?;
        tokens += report.tokens;
        if let Some(budget) = args.time_budget {
            // Fit the schedule to the measured step time (refitted after 1, 2, 4, 8, … steps, as the average
            // settles), and stop when the time is up.
            let done = run.progress.step - first_step;
            let elapsed = started.elapsed();
            if elapsed >= budget {
                break;
            }
            if done.is_power_of_two() {
                let per_step = elapsed.as_secs_f64() / done as f64;
                let total = run.progress.step + ((budget - elapsed).as_secs_f64() / per_step).floor() as u64;
                run.set_schedule(total, warmup(total));
                bar.set_length(total);
            }
        }
        let rate = tokens as f64 / started.elapsed().as_secs_f64();
        let status = format!(
            "loss {:.3}{} · {rate:.0} tok/s",
            report.loss,
            if report.skipped { " (skipped: not finite)" } else { "" }
        );
        bar.set_position(run.progress.step);
        // A log (stderr not a terminal, as in an overnight `nohup`) gets the bar's line after the first step and then
        // every minute, instead of nothing until the end.
        if bar.is_hidden() && (run.progress.step == first_step + 1 || last_line.elapsed() >= LOG_LINE_EVERY) {
            let total = bar.length().unwrap_or_default();
            let per_step = started.elapsed().as_secs_f64() / (run.progress.step - first_step) as f64;
            let eta = Duration::from_secs_f64(per_step * total.saturating_sub(run.progress.step) as f64);
            eprintln!(
                "step {}/{total} · {status} · eta {}",
                run.progress.step,
                HumanDuration(eta)
            );
            last_line = Instant::now();
        }
        bar.set_message(status);
        let due = match args.checkpoint_every {
            Some(every) => run.progress.step.is_multiple_of(every.max(1)),
            None => last_checkpoint.elapsed() >= Duration::from_secs(600),
        };
        if due {
            save_checkpoint(&run)?;
            last_checkpoint = Instant::now();
        }
        if interrupt.is_set() {
            stopped_early = true;
            break;
        }
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    save_checkpoint(&run)?;
    run.adapter
        .save(out, arch)
        .with_context(|| format!("writing {}", out.display()))?;
    let curve = beside(out, "loss.svg");
    hearth_runtime::fsutil::write_atomic(&curve, loss_curve_svg(&run.progress.losses).as_bytes())
        .with_context(|| format!("writing {}", curve.display()))?;

    eprintln!(
        "{} {} steps in {:.0?} ({:.1} tokens/s){}",
        if stopped_early {
            "stopped by Ctrl-C after"
        } else {
            "trained"
        },
        run.progress.step - first_step,
        elapsed,
        tokens as f64 / elapsed.as_secs_f64(),
        peak_memory().map_or_else(String::new, |b| format!(
            ", peak memory {:.0} MiB",
            b as f64 / (1 << 20) as f64
        )),
    );
    if run.progress.skipped > 0 {
        eprintln!(
            "{} step(s) were skipped for a non-finite loss or gradient",
            run.progress.skipped
        );
    }
    if let Some(before) = held_out_before {
        let after = run.loss_over(&dataset.held_out)?;
        eprintln!(
            "held-out loss {before:.4} → {after:.4} (perplexity {:.2} → {:.2})",
            before.exp(),
            after.exp()
        );
    }
    eprintln!(
        "adapter: {} (use it with --lora {0}); loss curve: {}; checkpoint: {}{}",
        out.display(),
        curve.display(),
        checkpoint_path.display(),
        if stopped_early { " (continue with --resume)" } else { "" }
    );
    Ok(())
}

/// The training loss per step as an SVG line chart, with a moving average over it.
fn loss_curve_svg(losses: &[f32]) -> String {
    const W: f32 = 640.0;
    const H: f32 = 320.0;
    const PAD: f32 = 40.0;
    let finite: Vec<f32> = losses.iter().copied().filter(|l| l.is_finite()).collect();
    let (low, high) = finite.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &l| {
        (lo.min(l), hi.max(l))
    });
    let (low, high) = if finite.is_empty() {
        (0.0, 1.0)
    } else {
        (low, high.max(low + 1e-3))
    };
    let x = |i: usize| PAD + (W - 2.0 * PAD) * i as f32 / (losses.len().max(2) - 1) as f32;
    let y = |l: f32| H - PAD - (H - 2.0 * PAD) * (l - low) / (high - low);
    let points = |values: &mut dyn Iterator<Item = f32>| -> String {
        values
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(i, l)| format!("{:.1},{:.1}", x(i), y(l)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let window = (losses.len() / 20).max(1);
    let mut average = losses.iter().enumerate().map(|(i, _)| {
        let part = &losses[i.saturating_sub(window - 1)..=i];
        part.iter().sum::<f32>() / part.len() as f32
    });
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<line x1="{PAD}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="black"/>
<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{bottom}" stroke="black"/>
<text x="{PAD}" y="{label}">training loss per step ({n} steps), moving average over {window}</text>
<text x="2" y="{top}">{high:.2}</text>
<text x="2" y="{bottom}">{low:.2}</text>
<polyline fill="none" stroke="#9bb" stroke-width="1" points="{raw}"/>
<polyline fill="none" stroke="#c40" stroke-width="2" points="{smooth}"/>
</svg>
"##,
        bottom = H - PAD,
        right = W - PAD,
        label = PAD - 15.0,
        top = PAD + 4.0,
        n = losses.len(),
        raw = points(&mut losses.iter().copied()),
        smooth = points(&mut average),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("8h"), Ok(Duration::from_secs(8 * 3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("8").is_err() && parse_duration("h").is_err() && parse_duration("8x").is_err());
        assert!(parse_duration("0m").is_err());
    }

    #[test]
    fn the_loss_curve_plots_every_step_and_its_average() {
        let svg = loss_curve_svg(&[3.0, 2.5, f32::NAN, 2.0]);
        assert!(svg.starts_with("<svg") && svg.contains("4 steps"));
        // Three finite points in the raw line; the first one at the left edge, highest.
        let raw = svg.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(raw.split(' ').count(), 3);
        assert!(raw.starts_with("40.0,40.0"), "{raw}");
    }
}
