//! `hearth chat` driven through a pseudo-terminal, as a person types it, on SmolLM2-135M with greedy sampling:
//! follow-ups reuse the cache (visible in the stats line), slash commands, multi-line input, Ctrl-C stopping an
//! answer without leaving, the overflow message, and one-shot answers.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use rexpect::session::{PtySession, spawn_command};

const TIMEOUT_MS: u64 = 120_000;

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join(".git")).unwrap();
    fs::write(
        dir.path().join("billing.py"),
        "def apply_discount(total, percent):\n    \"\"\"Reduces a total by a percentage, never below zero.\"\"\"\n    \
         return max(0.0, total * (1 - percent / 100))\n",
    )
    .unwrap();
    dir
}

/// Starts the chat in `dir` (history kept inside it, not in the user's home).
fn chat(dir: &Path, extra: &[&str]) -> PtySession {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hearth"));
    command
        .args(["chat", "-m", "smollm2-135m-instruct", "--temp", "0"])
        .args(extra)
        .current_dir(dir)
        .env("XDG_DATA_HOME", dir.join(".data"));
    let mut session = spawn_command(command, Some(TIMEOUT_MS)).expect("spawn hearth chat");
    session.exp_string("Ctrl-D leaves").expect("banner");
    session
}

/// Waits for a turn's stats line and returns (prompt tokens, cached tokens).
fn stats(session: &mut PtySession) -> (usize, usize) {
    let (_, matched) = session
        .exp_regex(r"\[prompt (\d+) tokens \((\d+) cached\)")
        .expect("stats line");
    let numbers: Vec<usize> = matched
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    (numbers[0], numbers[1])
}

#[test]
fn multi_turn_with_cache_reuse_commands_and_multi_line_input() {
    let dir = project();
    let mut p = chat(dir.path(), &["-n", "24"]);
    p.send_line("How is a discount applied?").unwrap();
    p.exp_string("sources: billing.py:1-3 (apply_discount)").unwrap();
    let (first_prompt, first_cached) = stats(&mut p);
    assert_eq!(first_cached, 0);

    // Typed ahead: both lines arrive in one read, and the second must survive the first's handling.
    p.send("/retrieval off\nCan it go below zero?\n").unwrap();
    p.exp_string("retrieval: off").unwrap();
    let (second_prompt, second_cached) = stats(&mut p);
    assert!(
        second_cached >= first_prompt,
        "turn 2 reused {second_cached} of {second_prompt}"
    );

    p.send_line("/add billing.py").unwrap();
    p.exp_string("pinned: billing.py").unwrap();
    p.send_line("/context").unwrap();
    let (_, line) = p.exp_regex(r"pinned files \d+").unwrap();
    assert_ne!(line, "pinned files 0");

    // A trailing backslash continues the question on the next line.
    p.send_line("Summarise the file \\").unwrap();
    p.send_line("in one sentence.").unwrap();
    stats(&mut p);
    p.send_line("/save talk.json").unwrap();
    p.exp_string("saved 3 turns to talk.json").unwrap();
    p.send_line("/clear").unwrap();
    p.exp_string("conversation cleared").unwrap();
    p.send_line("/load talk.json").unwrap();
    p.exp_string("loaded 3 turns from talk.json").unwrap();
    p.send_line("/nonsense").unwrap();
    p.exp_string("unknown command /nonsense").unwrap();
    p.send_line("/exit").unwrap();
    p.exp_eof().unwrap();

    let saved: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join("talk.json")).unwrap()).unwrap();
    assert_eq!(saved["turns"][2]["user"], "Summarise the file \nin one sentence.");
    assert_eq!(saved["pinned"][0], "billing.py");
    assert!(dir.path().join(".data/hearth/chat_history").is_file());
}

#[test]
fn ctrl_c_stops_the_answer_and_the_chat_goes_on() {
    let dir = project();
    let mut p = chat(dir.path(), &["-n", "2000", "--no-retrieval"]);
    // Greedy SmolLM2 writes over 600 tokens for this (about 20 s here): plenty of time to interrupt it.
    p.send_line("Write a long essay about the history of computing.")
        .unwrap();
    p.exp_string("history of computing.").unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    p.send_control('c').unwrap();
    // (rexpect reads bytes as Latin-1, so the stats line's "·" separators are not matched.)
    p.exp_string(" stopped]").unwrap();
    p.send_line("/clear").unwrap();
    p.exp_string("conversation cleared").unwrap();
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn overflow_is_a_clear_message_with_the_options() {
    let dir = project();
    let mut p = chat(dir.path(), &["-c", "160", "-n", "16", "--no-retrieval"]);
    p.send_line(&"Tell me about discounts and totals. ".repeat(20)).unwrap();
    p.exp_string("more than the context of 160").unwrap();
    p.exp_string("options: /drop pinned files, /clear the conversation, or /overflow drop-oldest")
        .unwrap();
    p.send_line("/exit").unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn one_shot_json_answer_with_sources() {
    let dir = project();
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args([
            "chat",
            "-m",
            "smollm2-135m-instruct",
            "--temp",
            "0",
            "-n",
            "16",
            "--json",
            "-p",
            "What does apply_discount return?",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!json["answer"].as_str().unwrap().is_empty());
    assert_eq!(json["sources"][0]["symbol"], "apply_discount");
    assert_eq!(json["stats"]["cached_tokens"], 0);
    assert!(json["stats"]["generated_tokens"].as_u64().unwrap() <= 16);

    let (ok, _, stderr) = common::hearth(&["chat", "--json"]);
    assert!(!ok && stderr.contains("the question is empty"), "{stderr}");
}
