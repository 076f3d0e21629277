//! `hearth index`, `search` and `map` as a user runs them on a small project: JSON output, finding the project from
//! a subdirectory, incremental re-runs and clear errors.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::hearth;
use serde_json::Value;

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join(".git")).unwrap();
    fs::create_dir_all(root.join("src/net")).unwrap();
    fs::write(
        root.join("src/net/retry.rs"),
        "/// Waits longer after each failed attempt.\npub fn backoff_delay(attempt: u32) -> u64 {\n    100 << attempt\n}\n",
    )
    .unwrap();
    fs::write(
        root.join("src/main.rs"),
        "mod net;\nfn main() {\n    let d = net::retry::backoff_delay(3);\n    println!(\"{d}\");\n}\n",
    )
    .unwrap();
    dir
}

fn json(args: &[&str]) -> Value {
    let (ok, stdout, stderr) = hearth(args);
    assert!(ok, "hearth {args:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn index_search_and_map_on_a_project() {
    let dir = project();
    let root = dir.path().to_str().unwrap();
    let report = json(&["index", root, "--json"]);
    assert_eq!(
        (report["files"].as_u64(), report["parsed"].as_u64()),
        (Some(2), Some(2))
    );
    let report = json(&["index", root, "--json"]);
    assert_eq!(
        (report["parsed"].as_u64(), report["reused"].as_u64()),
        (Some(0), Some(2))
    );
    assert!(report["written_bytes"].is_null());

    let hits = json(&[
        "search",
        "delay after a failed attempt",
        "--project",
        root,
        "--json",
        "-k",
        "1",
    ]);
    let hit = &hits[0];
    assert_eq!(
        (hit["path"].as_str(), hit["symbol"].as_str()),
        (Some("src/net/retry.rs"), Some("backoff_delay"))
    );
    assert_eq!(
        (hit["start_line"].as_u64(), hit["end_line"].as_u64()),
        (Some(1), Some(4))
    );
    assert!(hit["text"].as_str().unwrap().starts_with("/// Waits longer"));

    let map = json(&["map", "--project", root, "--focus", "src/main.rs", "--json"]);
    assert_eq!(map[0]["name"], "backoff_delay");
    assert_eq!(map[0]["signature"], "pub fn backoff_delay(attempt: u32) -> u64 {");
}

#[test]
fn search_finds_the_project_root_from_a_subdirectory() {
    let dir = project();
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["search", "backoff"])
        .current_dir(dir.path().join("src/net"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("src/net/retry.rs:1-4  backoff_delay  (function, score "),
        "{stdout}"
    );
    assert!(Path::new(&dir.path().join(".hearth/index.bin")).is_file());
}

#[test]
fn bad_arguments_are_clear_errors() {
    let (ok, _, stderr) = hearth(&["index", "/no/such/dir"]);
    assert!(!ok && stderr.contains("/no/such/dir is not a directory"), "{stderr}");
    let dir = project();
    let root = dir.path().to_str().unwrap();
    let (ok, _, stderr) = hearth(&["map", "--project", root, "--focus", "nope.rs"]);
    assert!(
        !ok && stderr.contains("--focus nope.rs: not an indexed file"),
        "{stderr}"
    );
}
