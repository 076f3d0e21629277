//! `hearth index`: build or update a project's retrieval index (`.hearth/index.bin`).

use std::path::PathBuf;

use clap::Args;
use hearth_runtime::retrieval::{IndexReport, MAX_FILE_BYTES, Project};

use crate::progress::Bars;

#[derive(Debug, Args)]
#[command(after_help = format!(
    "Files are found as git would (.gitignore, .ignore and .hearthignore files are honoured, hidden files and \
     symlinks skipped); files over {} KiB, binary files and lock files are left out. Only files whose size or \
     modification time changed are read again.",
    MAX_FILE_BYTES >> 10
))]
pub struct IndexArgs {
    /// Project directory.
    #[arg(default_value = ".")]
    path: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// List every skipped file with the reason.
    #[arg(short, long)]
    verbose: bool,
}

pub fn run(args: IndexArgs) -> anyhow::Result<()> {
    let (project, report) = Project::index(&args.path, &mut Bars::default())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report_json(&project, &report))?);
        return Ok(());
    }
    let written = match report.written_bytes {
        Some(bytes) => format!("wrote {:.1} MiB", bytes as f64 / (1 << 20) as f64),
        None => "unchanged".to_owned(),
    };
    println!(
        "{}: {} files, {} chunks ({} read, {} unchanged, {} removed, {} skipped) in {:.2} s; index {written}",
        project.root().display(),
        report.files,
        report.chunks,
        report.parsed,
        report.reused,
        report.removed,
        report.skipped.len(),
        report.elapsed.as_secs_f64(),
    );
    let shown = if args.verbose { report.skipped.len() } else { 5 };
    for skipped in report.skipped.iter().take(shown) {
        println!(
            "  skipped {}: {}",
            skipped.path.as_deref().unwrap_or("(walk)"),
            skipped.reason
        );
    }
    if report.skipped.len() > shown {
        println!("  … and {} more (-v lists them)", report.skipped.len() - shown);
    }
    Ok(())
}

fn report_json(project: &Project, report: &IndexReport) -> serde_json::Value {
    serde_json::json!({
        "root": project.root(),
        "files": report.files,
        "chunks": report.chunks,
        "parsed": report.parsed,
        "reused": report.reused,
        "removed": report.removed,
        "skipped": report.skipped,
        "written_bytes": report.written_bytes,
        "seconds": report.elapsed.as_secs_f64(),
    })
}
