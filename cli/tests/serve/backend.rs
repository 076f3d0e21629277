//! `hearth chat`, `edit` and `complete` with `--backend URL`: the same commands, answered by a `hearth serve` on
//! loopback instead of the local model.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::SMOL;
use crate::common::hearth_in;
use crate::harness::Server;

/// A one-shot chat's JSON output, with `extra` arguments.
fn ask_json(dir: &Path, question: &str, extra: &[&str]) -> (bool, Value, String) {
    let mut args = vec![
        "chat",
        "-p",
        question,
        "--json",
        "--no-retrieval",
        "-n",
        "32",
        "--temp",
        "0",
    ];
    args.extend_from_slice(extra);
    let (ok, stdout, stderr) = hearth_in(dir, &args);
    (ok, serde_json::from_str(&stdout).unwrap_or(Value::Null), stderr)
}

#[test]
fn a_chat_through_a_backend_answers_as_the_local_model_does() {
    let server = Server::start(SMOL, &[]);
    let url = format!("http://{}/v1", server.addr);
    let dir = tempfile::tempdir().unwrap();
    let question = "What is a Python list?";
    let (ok, local, stderr) = ask_json(dir.path(), question, &["-m", SMOL]);
    assert!(ok, "{stderr}");
    // No -m: the server's first listed model.
    let (ok, remote, stderr) = ask_json(dir.path(), question, &["--backend", &url]);
    assert!(ok, "{stderr}");
    assert!(!local["answer"].as_str().unwrap().is_empty());
    assert_eq!(
        remote["answer"], local["answer"],
        "same model, same conversation, greedy"
    );
    for count in ["prompt_tokens", "generated_tokens"] {
        assert_eq!(remote["stats"][count], local["stats"][count], "{count}: {remote}");
    }

    let long = "Explain this again, please. ".repeat(400);
    let (ok, _, stderr) = ask_json(dir.path(), &long, &["--backend", &url]);
    assert!(
        !ok && stderr.contains("too long") && stderr.contains("context is 1024"),
        "{stderr}"
    );
    let (ok, _, stderr) = ask_json(dir.path(), question, &["--backend", "http://127.0.0.1:1"]);
    assert!(!ok && stderr.contains("cannot reach http://127.0.0.1:1"), "{stderr}");
    let (ok, _, stderr) = ask_json(dir.path(), question, &["--backend", "127.0.0.1:1"]);
    assert!(!ok && stderr.contains("is not an http:// or https:// URL"), "{stderr}");
}

#[test]
fn a_backend_that_wants_a_key_says_so() {
    let server = Server::start(SMOL, &["--api-key", "s3cret"]);
    let url = format!("http://{}", server.addr);
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = ask_json(dir.path(), "Hi", &["--backend", &url]);
    assert!(
        !ok && stderr.contains("HTTP 401") && stderr.contains("--api-key"),
        "{stderr}"
    );
    let (ok, _, stderr) = ask_json(dir.path(), "Hi", &["--backend", &url, "--api-key", "wrong"]);
    assert!(!ok && stderr.contains("HTTP 401"), "{stderr}");
    let (ok, reply, stderr) = ask_json(dir.path(), "Hi", &["--backend", &url, "--api-key", "s3cret"]);
    assert!(ok, "{stderr}");
    assert!(!reply["answer"].as_str().unwrap().is_empty(), "{reply}");
}

#[test]
fn edits_and_completions_through_a_backend_keep_hearths_safety() {
    let server = Server::start("qwen2.5-coder-1.5b-instruct", &["--slots", "1", "-c", "4096"]);
    let url = format!("http://{}/v1", server.addr);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir(root.join(".git")).unwrap();

    let original = "def ratio(a, b):\r\n    return a / b\r\n\r\n\r\nprint(ratio(6, 3))\r\n";
    fs::write(root.join("calc.py"), original).unwrap();
    let instruction = "Rename the function ratio to divide, also where it is called.";
    let edit = [
        "edit",
        "calc.py",
        "-p",
        instruction,
        "--yes",
        "--no-retrieval",
        "--backend",
        &url,
    ];
    let (ok, stdout, stderr) = hearth_in(root, &edit);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("+def divide(a, b):"), "the diff: {stdout}");
    let edited = fs::read_to_string(root.join("calc.py")).unwrap();
    assert!(edited.contains("print(divide(6, 3))\r\n"), "{edited:?}");
    assert_eq!(
        edited.matches('\n').count(),
        edited.matches("\r\n").count(),
        "CRLF kept"
    );
    let (ok, _, stderr) = hearth_in(root, &["undo"]);
    assert!(ok, "{stderr}");
    assert_eq!(fs::read_to_string(root.join("calc.py")).unwrap(), original);

    fs::write(
        root.join("helpers.py"),
        "def clamp_percentage(value):\n    \"\"\"Limits a percentage to 0..100.\"\"\"\n    return max(0, min(100, value))\n",
    )
    .unwrap();
    let shop = "from helpers import clamp_percentage\n\n\ndef discounted_price(price, percent):\n    \
                \"\"\"The price after a discount of `percent` percent (clamped to 0..100).\"\"\"\n    \n";
    fs::write(root.join("shop.py"), shop).unwrap();
    let (ok, stdout, stderr) = hearth_in(root, &["complete", "shop.py:6", "-n", "24", "--backend", &url]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("clamp_percentage(percent)"), "completion: {stdout}");
    assert_eq!(
        fs::read_to_string(root.join("shop.py")).unwrap(),
        shop,
        "printing must not write"
    );
}
