//! `hearth edit`, `hearth undo` and `hearth complete` on real files: unsafe targets are refused before any model
//! is loaded, and with Qwen2.5-Coder-1.5B (greedy) an edit is applied keeping line ends and permissions, a
//! completion is inserted, and undo restores the exact bytes.

mod common;

use common::hearth_in;
use std::fs;

const QWEN: &str = "qwen2.5-coder-1.5b-instruct";

/// A project directory (it has .git, so it is its own root) inside a directory that holds a file outside it.
fn project() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("project");
    fs::create_dir_all(root.join(".git")).unwrap();
    fs::write(dir.path().join("outside.py"), "x = 1\n").unwrap();
    (dir, root)
}

#[test]
fn unsafe_targets_are_refused_before_a_model_is_loaded() {
    let (dir, root) = project();
    fs::write(root.join("logo.png"), b"\x89PNG\r\n\x1a\n\0\0\0").unwrap();
    fs::write(root.join("latin1.py"), b"s = 'caf\xe9'\n").unwrap();
    // The model does not exist: every refusal must come before it would be needed.
    let model = ["-m", "no-such-model.gguf", "-p", "change it", "--yes"];
    for (path, expected) in [
        ("../outside.py", "outside the project root"),
        ("logo.png", "binary file"),
        ("latin1.py", "not UTF-8"),
    ] {
        let args: Vec<&str> = ["edit", path].into_iter().chain(model).collect();
        let (ok, _, stderr) = hearth_in(&root, &args);
        assert!(!ok && stderr.contains(expected), "{path}: {stderr}");
    }
    assert_eq!(fs::read(dir.path().join("outside.py")).unwrap(), b"x = 1\n");
    assert_eq!(fs::read(root.join("latin1.py")).unwrap(), b"s = 'caf\xe9'\n");
    let (ok, _, stderr) = hearth_in(&root, &["complete", "logo.png:1", "-m", "no-such-model.gguf"]);
    assert!(!ok && stderr.contains("binary file"), "{stderr}");
    let (ok, _, stderr) = hearth_in(&root, &["complete", "missing.py:3", "-m", "no-such-model.gguf"]);
    assert!(!ok && stderr.contains("no such file"), "{stderr}");
    let (ok, _, stderr) = hearth_in(&root, &["undo"]);
    assert!(!ok && stderr.contains("no edit to undo"), "{stderr}");
}

#[test]
fn an_edit_keeps_crlf_and_permissions_and_undo_restores_the_bytes() {
    let (_dir, root) = project();
    let original = "def ratio(a, b):\r\n    return a / b\r\n\r\n\r\nprint(ratio(6, 3))\r\n";
    let path = root.join("calc.py");
    fs::write(&path, original).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o750)).unwrap();
    }
    let (ok, stdout, stderr) = hearth_in(
        &root,
        &[
            "edit",
            "calc.py",
            "-p",
            "Rename the function ratio to divide, also where it is called.",
            "--yes",
            "--no-retrieval",
            "-m",
            QWEN,
        ],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("+def divide(a, b):"), "the diff: {stdout}");
    let edited = fs::read_to_string(&path).unwrap();
    assert!(
        edited.contains("def divide(a, b):") && edited.contains("print(divide(6, 3))"),
        "{edited}"
    );
    assert_eq!(
        edited.matches('\n').count(),
        edited.matches("\r\n").count(),
        "line ends: {edited:?}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o750);
    }
    let (ok, _, stderr) = hearth_in(&root, &["undo"]);
    assert!(ok && stderr.contains("restored calc.py"), "{stderr}");
    assert_eq!(fs::read_to_string(&path).unwrap(), original);
}

#[test]
fn a_completion_is_inserted_at_the_cursor_and_undone() {
    let (_dir, root) = project();
    let original = "def fibonacci(n):\n    \"\"\"The n-th Fibonacci number.\"\"\"\n    \n\nprint(fibonacci(10))\n";
    let path = root.join("fib.py");
    fs::write(&path, original).unwrap();
    let (ok, stdout, stderr) = hearth_in(&root, &["complete", "fib.py:3", "-n", "48", "-m", QWEN]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("return"), "completion: {stdout}");
    assert_eq!(fs::read_to_string(&path).unwrap(), original, "printing must not write");
    let (ok, _, stderr) = hearth_in(&root, &["complete", "fib.py:3:5", "-n", "48", "--apply", "-m", QWEN]);
    assert!(ok, "{stderr}");
    let completed = fs::read_to_string(&path).unwrap();
    assert!(completed.starts_with("def fibonacci(n):\n    \"\"\"The n-th Fibonacci number.\"\"\"\n    "));
    assert!(
        completed.ends_with("\n\nprint(fibonacci(10))\n") && completed.len() > original.len(),
        "{completed}"
    );
    let (ok, _, stderr) = hearth_in(&root, &["undo"]);
    assert!(ok, "{stderr}");
    assert_eq!(fs::read_to_string(&path).unwrap(), original);
}
