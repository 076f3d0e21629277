//! `hearth explain`, `debug` and `gen` on SmolLM2-135M (greedy): each answers, `gen -o` writes exactly the answer's
//! code block, and bad targets are clear errors before any model is loaded.

mod common;

use common::hearth_in;
use std::fs;

const SMOL: [&str; 4] = ["-m", "smollm2-135m-instruct", "--temp", "0"];

fn with_model<'a>(args: &[&'a str]) -> Vec<&'a str> {
    args.iter().copied().chain(SMOL).collect()
}

fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("calc.py"),
        "def ratio(a, b):\n    return a / b\n\nprint(ratio(1, 0))\n",
    )
    .unwrap();
    dir
}

#[test]
fn explain_and_debug_answer_with_stats() {
    let dir = workdir();
    let (ok, stdout, stderr) = hearth_in(dir.path(), &with_model(&["explain", "calc.py:1-2", "-n", "16"]));
    assert!(ok, "{stderr}");
    assert!(!stdout.trim().is_empty());
    assert!(stderr.contains("[prompt "), "{stderr}");
    let (ok, stdout, stderr) = hearth_in(
        dir.path(),
        &with_model(&[
            "debug",
            "calc.py",
            "--error",
            "ZeroDivisionError: division by zero",
            "-n",
            "16",
        ]),
    );
    assert!(ok, "{stderr}");
    assert!(!stdout.trim().is_empty());
}

#[test]
fn gen_writes_the_code_block_of_its_answer() {
    let dir = workdir();
    let (ok, stdout, stderr) = hearth_in(
        dir.path(),
        &with_model(&[
            "gen",
            "a Python function that returns the sum of two numbers",
            "-n",
            "120",
            "-o",
            "out.py",
        ]),
    );
    assert!(ok, "{stderr}");
    let written = fs::read_to_string(dir.path().join("out.py")).unwrap();
    let block: String = stdout
        .lines()
        .skip_while(|l| !l.starts_with("```"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(written, block);
    assert!(written.contains("def "), "{written}");
    assert!(
        stderr.contains(&format!("wrote out.py ({} lines)", written.lines().count())),
        "{stderr}"
    );
}

#[test]
fn bad_targets_fail_before_loading_a_model() {
    let dir = workdir();
    let (ok, _, stderr) = hearth_in(dir.path(), &with_model(&["explain", "calc.py:5-9"]));
    assert!(
        !ok && stderr.contains("lines 5-9 are not in the file (4 lines)"),
        "{stderr}"
    );
    let (ok, _, stderr) = hearth_in(dir.path(), &with_model(&["explain", "missing.py"]));
    assert!(!ok && stderr.contains("reading missing.py"), "{stderr}");
    let (ok, _, stderr) = hearth_in(dir.path(), &with_model(&["gen", "anything", "-o", "calc.py"]));
    assert!(
        !ok && stderr.contains("calc.py already exists (pass --force to replace it)"),
        "{stderr}"
    );
    assert!(
        fs::read_to_string(dir.path().join("calc.py"))
            .unwrap()
            .starts_with("def ratio")
    );
}
