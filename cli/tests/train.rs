//! `hearth train` as a user runs it: on a small project with SmolLM2-135M, then the adapter in `hearth run`, a
//! resumed run, and the errors for what cannot work.

mod common;

use common::hearth_in;

const MODEL: &str = "smollm2-135m-instruct";

#[test]
fn trains_an_adapter_on_a_project_resumes_it_and_runs_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("shop");
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::write(
        project.join("src/cart.py"),
        "def total(items):\n    return sum(i.price * i.count for i in items)\n\n\ndef empty(items):\n    \
         return not items\n\n\nclass Cart:\n    def __init__(self):\n        self.items = []\n\n    def add(self, \
         item):\n        self.items.append(item)\n",
    )
    .unwrap();
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "-m",
            MODEL,
            "--data",
            "shop",
            "-o",
            "cart.gguf",
            "--seq-len",
            "16",
            "--grad-accum",
            "1",
            "--rank",
            "2",
            "--targets",
            "q,v",
        ];
        args.extend_from_slice(extra);
        hearth_in(dir.path(), &args)
    };
    // The mined samples, for a GPU trainer: one `{"text": …}` per definition, headed by its path.
    let (ok, _, err) = hearth_in(
        dir.path(),
        &["train", "--data", "shop", "--export-dataset", "shop.jsonl"],
    );
    assert!(ok && err.contains("wrote 5 sample(s) of project shop"), "{err}");
    let jsonl = std::fs::read_to_string(dir.path().join("shop.jsonl")).unwrap();
    let texts: Vec<String> = jsonl
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(texts.len(), 5);
    assert!(texts[0].starts_with("src/cart.py\ndef total(items):"), "{texts:?}");

    let (ok, _, err) = train(&["--max-steps", "2"]);
    assert!(ok, "{err}");
    assert!(err.contains("data: project shop — 1 file(s), 5 sample(s)"), "{err}");
    assert!(err.contains("trained 2 steps"), "{err}");
    // Its stderr is a pipe, where the bar is hidden: the first step's progress is a line.
    assert!(err.contains("step 1/2 · loss "), "{err}");
    for file in ["cart.gguf", "cart.checkpoint.gguf", "cart.loss.svg"] {
        assert!(dir.path().join(file).is_file(), "{file} is missing: {err}");
    }

    // The checkpoint carries the run on, and only a run with the same options may take it.
    let (ok, _, err) = train(&["--max-steps", "3", "--resume"]);
    assert!(ok, "{err}");
    assert!(
        err.contains("resuming at step 2") && err.contains("trained 1 steps"),
        "{err}"
    );
    let (ok, _, err) = train(&["--max-steps", "4", "--resume", "--lr", "1e-3"]);
    assert!(
        !ok && err.contains("the checkpoint was made with") && err.contains("lr 0.0002"),
        "{err}"
    );

    let (ok, out, err) = hearth_in(
        dir.path(),
        &[
            "run",
            "-m",
            MODEL,
            "--lora",
            "cart.gguf:0.5",
            "-p",
            "def total(",
            "-n",
            "4",
        ],
    );
    assert!(ok && !out.is_empty(), "{err}");
    let (ok, _, err) = hearth_in(
        dir.path(),
        &["run", "-m", MODEL, "--lora", "cart.loss.svg", "-p", "x", "-n", "1"],
    );
    assert!(!ok && err.contains("cart.loss.svg"), "{err}");

    // A time budget fits the schedule to the measured step time and stops on time.
    let started = std::time::Instant::now();
    let (ok, _, err) = hearth_in(
        dir.path(),
        &[
            "train",
            "-m",
            MODEL,
            "--data",
            "shop",
            "-o",
            "timed.gguf",
            "--seq-len",
            "16",
            "--grad-accum",
            "1",
            "--time-budget",
            "8s",
        ],
    );
    assert!(ok && err.contains("trained "), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "{err}");
    let curve = std::fs::read_to_string(dir.path().join("timed.loss.svg")).unwrap();
    assert!(!curve.contains("(1 steps)"), "{err}");

    // Baked in, the adapter needs no --lora.
    let (ok, _, err) = hearth_in(
        dir.path(),
        &["merge", "-m", MODEL, "--lora", "cart.gguf", "-o", "merged.gguf"],
    );
    assert!(ok && err.contains("wrote merged.gguf"), "{err}");
    let (ok, out, err) = hearth_in(dir.path(), &["run", "-m", "merged.gguf", "-p", "def total(", "-n", "4"]);
    assert!(ok && !out.is_empty(), "{err}");
    let (ok, _, err) = hearth_in(dir.path(), &["merge", "-m", MODEL, "-o", "none.gguf"]);
    assert!(!ok && err.contains("name at least one adapter"), "{err}");
}

#[test]
fn refuses_unknown_targets_and_missing_data_before_loading_anything() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = hearth_in(
        dir.path(),
        &[
            "train",
            "-m",
            MODEL,
            "--data",
            "x.txt",
            "-o",
            "a.gguf",
            "--targets",
            "q,ffn",
        ],
    );
    assert!(
        !ok && err.contains("unknown projection 'ffn' (known: q, k, v, o, gate, up, down)"),
        "{err}"
    );
    let (ok, _, err) = hearth_in(dir.path(), &["train", "-m", MODEL, "--data", "x.txt", "-o", "a.gguf"]);
    assert!(!ok && err.contains("x.txt"), "{err}");
    let (ok, _, err) = hearth_in(
        dir.path(),
        &[
            "train",
            "-m",
            MODEL,
            "--data",
            "x.txt",
            "-o",
            "a.gguf",
            "--time-budget",
            "8",
        ],
    );
    assert!(!ok && err.contains("give a positive duration with its unit"), "{err}");
}

#[test]
fn a_run_killed_at_any_moment_resumes_from_its_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..60)
        .map(|i| format!("def f{i}(x):\n    return x * {i}\n\n"))
        .collect();
    std::fs::write(dir.path().join("code.txt"), text).unwrap();
    let args = [
        "train",
        "-m",
        MODEL,
        "--data",
        "code.txt",
        "-o",
        "code.gguf",
        "--seq-len",
        "16",
        "--grad-accum",
        "1",
        "--rank",
        "2",
        "--targets",
        "v",
        "--checkpoint-every",
        "1",
    ];
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .args(["--max-steps", "1000"])
        .current_dir(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it (SIGKILL: no chance to clean up) once a few checkpoints have been written over one another.
    let checkpoint = dir.path().join("code.checkpoint.gguf");
    let mut seen = std::collections::HashSet::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while seen.len() < 3 && std::time::Instant::now() < deadline {
        if let Ok(meta) = std::fs::metadata(&checkpoint) {
            seen.insert(meta.modified().unwrap());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(seen.len() >= 3, "no checkpoints within 5 minutes");
    // The same options resume (asking for no more steps than it has, so it stops at once).
    let mut resumed = args.to_vec();
    resumed.extend(["--max-steps", "1", "--resume"]);
    let (ok, _, err) = hearth_in(dir.path(), &resumed);
    assert!(ok, "{err}");
    let step: u64 = err
        .split("resuming at step ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    assert!(step >= 2, "{err}");
    assert!(err.contains("trained 0 steps"), "{err}");
}
