//! Settings files as a user meets them: `hearth init` writes a commented project file, `hearth config show` says where
//! each setting comes from, the project file beats the user file, a flag beats both, and mistakes are clear errors.

use std::fs;
use std::path::Path;
use std::process::Command;

/// Runs hearth in `dir` with its own user config directory: (success, stdout, stderr).
fn hearth_in(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .current_dir(dir)
        .env("XDG_CONFIG_HOME", dir.join(".user-config"))
        .env_remove("HEARTH_MODEL")
        .output()
        .expect("run hearth");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn init_show_and_layering() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::write(root.join("main.py"), "def main():\n    pass\n").unwrap();
    let (ok, stdout, stderr) = hearth_in(root, &["init"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("indexed 1 files"), "{stdout}");
    let (ok, _, stderr) = hearth_in(root, &["init"]);
    assert!(!ok && stderr.contains("already exists"), "{stderr}");

    let (ok, stdout, _) = hearth_in(root, &["config", "show"]);
    assert!(ok);
    assert!(
        stdout.contains("model = \"qwen2.5-coder-1.5b-instruct\"  # default"),
        "{stdout}"
    );

    fs::create_dir_all(root.join(".user-config/hearth")).unwrap();
    fs::write(
        root.join(".user-config/hearth/config.toml"),
        "model = \"qwen2.5-coder-1.5b-instruct\"\nthreads = 1\n",
    )
    .unwrap();
    fs::write(
        root.join(".hearth/config.toml"),
        "model = \"smollm2-135m-instruct\"\n[chat]\nmax_tokens = 77\n",
    )
    .unwrap();
    let (_, stdout, _) = hearth_in(root, &["config", "show"]);
    assert!(
        stdout.contains("model = \"smollm2-135m-instruct\"  # project file"),
        "{stdout}"
    );
    assert!(stdout.contains("threads = 1  # user file"), "{stdout}");
    assert!(stdout.contains("max_tokens = 77  # project file"), "{stdout}");

    // The project's model is the one used; a flag still wins.
    let ids = |args: &[&str]| {
        let (ok, stdout, stderr) = hearth_in(root, args);
        assert!(ok, "{stderr}");
        stdout
    };
    let configured = ids(&["tokenize", "-p", "fn main() {}", "--ids"]);
    assert_eq!(
        configured,
        ids(&["tokenize", "-m", "smollm2-135m-instruct", "-p", "fn main() {}", "--ids"])
    );
    assert_ne!(
        configured,
        ids(&[
            "tokenize",
            "-m",
            "qwen2.5-coder-1.5b-instruct",
            "-p",
            "fn main() {}",
            "--ids"
        ])
    );

    fs::write(root.join(".hearth/config.toml"), "[sampling]\ntemprature = 0.1\n").unwrap();
    let (ok, _, stderr) = hearth_in(root, &["tokenize", "-p", "x"]);
    assert!(!ok && stderr.contains("unknown field `temprature`"), "{stderr}");
}
