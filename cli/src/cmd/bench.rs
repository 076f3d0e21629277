//! `hearth bench`: llama-bench's workloads (pp, tg, at a depth) with mean ± stdev tokens/s, and generation as a
//! fraction of the machine's measured memory read bandwidth.

use std::path::Path;

use clap::Args;
use hearth_kernel::simd::Isa;
use hearth_runtime::ModelFile;
use hearth_runtime::bench::{Workload, bytes_per_token, measure, read_bandwidth};
use hearth_runtime::tokenizer::Tokenizer;
use serde_json::json;

use crate::args::{LoraArg, ModelArg, ThreadsArg};
use crate::progress::Bars;

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    model: ModelArg,
    #[command(flatten)]
    lora: LoraArg,
    /// Prompt-processing test: tokens in one prompt (0: skip).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    n_prompt: usize,
    /// Generation test: tokens generated one at a time (0: skip).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    n_gen: usize,
    /// Run both tests after a context of this many tokens.
    #[arg(short = 'd', long = "n-depth", default_value_t = 0)]
    depth: usize,
    /// Timed repetitions of each test (after one warm-up run).
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    reps: usize,
    /// Print JSON (one object per test) instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    threads: ThreadsArg,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    args.threads.apply()?;
    anyhow::ensure!(args.reps > 0, "--repetitions must be at least 1");
    let path = args.model.resolve()?;
    let file = ModelFile::open_to_run(&path, &mut Bars::default())?;
    let tokenizer = Tokenizer::from_gguf(file.gguf())?;
    let model = args.lora.load(&file)?;
    let bos = tokenizer.added_bos();
    let isa = Isa::selected();
    let threads = hearth_runtime::threads();
    let name = model_name(&path);
    let size = std::fs::metadata(&path)?.len();
    let size_gib = size as f64 / (1u64 << 30) as f64;

    let mut workloads = Vec::new();
    if args.n_prompt > 0 {
        workloads.push(Workload::Prompt(args.n_prompt));
    }
    if args.n_gen > 0 {
        workloads.push(Workload::Generate(args.n_gen));
    }
    anyhow::ensure!(!workloads.is_empty(), "nothing to run: both -p and -n are 0");
    let bandwidth = workloads
        .iter()
        .any(|w| matches!(w, Workload::Generate(_)))
        .then(read_bandwidth);

    if !args.json {
        println!("| model | size | isa | threads | test | t/s | of read bandwidth |");
        println!("|---|---:|---|---:|---|---:|---:|");
    }
    for workload in workloads {
        let m = measure(&model, workload, args.depth, args.reps, bos)?;
        let test = workload.name(args.depth);
        // Generation reads every weight once per token: tokens/s × bytes/token over what memory can deliver.
        let fraction = match (workload, bandwidth) {
            (Workload::Generate(_), Some(bw)) => Some(m.mean() * bytes_per_token(&model, args.depth) as f64 / bw),
            _ => None,
        };
        if args.json {
            let (n_prompt, n_gen) = match workload {
                Workload::Prompt(n) => (n, 0),
                Workload::Generate(n) => (0, n),
            };
            let row = json!({
                "model": name, "model_size": size, "isa": isa.name(), "n_threads": threads,
                "test": test, "n_prompt": n_prompt, "n_gen": n_gen, "n_depth": args.depth,
                "avg_ts": m.mean(), "stddev_ts": m.stdev(), "samples_ts": m.samples,
                "read_bandwidth_bytes_per_s": bandwidth, "bandwidth_fraction": fraction,
            });
            println!("{row}");
        } else {
            let fraction = fraction.map_or(String::new(), |f| format!("{:.0}%", f * 100.0));
            println!(
                "| {name} | {size_gib:.2} GiB | {isa} | {threads} | {test} | {:.2} ± {:.2} | {fraction} |",
                m.mean(),
                m.stdev()
            );
        }
    }
    if let (false, Some(bw)) = (args.json, bandwidth) {
        println!("\nmemory read bandwidth: {:.1} GB/s", bw / 1e9);
    }
    Ok(())
}

fn model_name(path: &Path) -> String {
    path.file_stem()
        .map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned())
}
