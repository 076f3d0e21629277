//! `hearth serve` as clients use it: a real server on a loopback port with SmolLM2-135M (Qwen2.5-Coder for
//! fill-in-the-middle), spoken to over raw HTTP, with the official `openai` Python package, and by hearth's own
//! chat, edit and complete through `--backend`.

mod backend;
#[path = "../common/mod.rs"]
mod common;
mod harness;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use harness::Server;
use serde_json::{Value, json};

const SMOL: &str = "smollm2-135m-instruct";

fn chat(messages: Value, max_tokens: u64) -> Value {
    json!({"model": SMOL, "messages": messages, "temperature": 0, "max_tokens": max_tokens})
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

fn content(reply: &Value) -> &str {
    reply["choices"][0]["message"]["content"]
        .as_str()
        .expect("a message content")
}

#[test]
fn completions_match_llama_cpp_and_chat_follows_the_openai_format() {
    let server = Server::start(SMOL, &[]);
    // The prompt and llama.cpp's greedy answer to it (testdata/golden/kernel-example.json).
    let golden: Value = serde_json::from_str(include_str!("../../../testdata/golden/kernel-example.json")).unwrap();
    let body = json!({"prompt": golden["prompt"], "temperature": 0, "max_tokens": 32});
    let (status, reply) = server.post("/v1/completions", &body);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["object"], "text_completion");
    assert_eq!(reply["choices"][0]["text"], golden["llama_cpp_greedy_text"], "{reply}");
    assert_eq!(reply["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        reply["usage"]["prompt_tokens"],
        golden["prompt_ids"].as_array().unwrap().len()
    );

    let (status, reply) = server.post("/v1/chat/completions", &chat(user("What is 2+2?"), 32));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["object"], "chat.completion");
    assert!(reply["id"].as_str().unwrap().starts_with("chatcmpl-"), "{reply}");
    assert_eq!(reply["model"], SMOL);
    assert_eq!(reply["choices"][0]["message"]["role"], "assistant");
    assert!(content(&reply).contains('4'), "{reply}");
    let usage = &reply["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap())
    );

    let models = server.request("GET", "/v1/models", &[], "").json();
    assert_eq!(models["data"][0]["id"], SMOL, "{models}");
    assert_eq!(server.request("GET", "/health", &[], "").json()["status"], "ok");
}

#[test]
fn streams_carry_the_same_text_in_chunks_and_end_with_done() {
    let server = Server::start(SMOL, &[]);
    let request = chat(user("Name three colors."), 40);
    // The first answer fills the KV cache, so the two compared below both resume the prompt from it and run the same
    // arithmetic. (A prompt run afresh as one batch and one resumed from the cache may part at a near-tie: batched
    // prefill and one-token decode round differently, as in llama.cpp.)
    server.post("/v1/chat/completions", &request);
    let (_, whole) = server.post("/v1/chat/completions", &request);

    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let reply = server.request("POST", "/v1/chat/completions", &[], &streamed.to_string());
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.headers.contains("content-type: text/event-stream"),
        "{}",
        reply.headers
    );
    let events = reply.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, content(&whole));
    assert!(chunks.len() > 4, "{chunks:?}");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], whole["usage"]["completion_tokens"]);
    let finish = &chunks[chunks.len() - 2]["choices"][0];
    assert_eq!(finish["finish_reason"], whole["choices"][0]["finish_reason"]);
    assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"]));
}

#[test]
fn follow_up_requests_reuse_the_cached_prefix_across_slots() {
    let server = Server::start(SMOL, &["--slots", "2"]);
    let first = user("Write a haiku about rust.");
    let (_, a1) = server.post("/v1/chat/completions", &chat(first.clone(), 24));
    assert_eq!(a1["usage"]["prompt_tokens_details"]["cached_tokens"], 0, "{a1}");
    // Another conversation in between takes the other slot.
    server.post("/v1/chat/completions", &chat(user("Hello!"), 8));
    let mut follow_up = first.as_array().unwrap().clone();
    follow_up.push(json!({"role": "assistant", "content": content(&a1)}));
    follow_up.push(json!({"role": "user", "content": "Now one about cats."}));
    let (status, a2) = server.post("/v1/chat/completions", &chat(Value::Array(follow_up), 8));
    assert_eq!(status, 200, "{a2}");
    let cached = a2["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap();
    let first_prompt = a1["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(
        cached >= first_prompt,
        "cached {cached} of the first turn's {first_prompt}: {a2}"
    );
}

#[test]
fn stop_strings_and_token_limits_end_generation() {
    let server = Server::start(SMOL, &[]);
    let count = user("Count from 1 to 10, separated by commas.");
    let (_, free) = server.post("/v1/chat/completions", &chat(count.clone(), 48));
    let text = content(&free).to_owned();
    let cut = text.find('5').expect("the count reaches 5");

    let mut stopped = chat(count.clone(), 48);
    stopped["stop"] = json!(["5", "never appears"]);
    let (_, reply) = server.post("/v1/chat/completions", &stopped);
    assert_eq!(content(&reply), &text[..cut]);
    assert_eq!(reply["choices"][0]["finish_reason"], "stop");

    let (_, short) = server.post("/v1/chat/completions", &chat(count, 3));
    assert_eq!(short["choices"][0]["finish_reason"], "length");
    assert_eq!(short["usage"]["completion_tokens"], 3);
}

#[test]
fn bad_requests_get_clear_errors_and_the_server_keeps_serving() {
    let server = Server::start(SMOL, &[]);
    let long = "word ".repeat(2000);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("/v1/chat/completions", "{\"messages\": [".into(), 400, "not valid JSON"),
        ("/v1/chat/completions", "{}".into(), 400, "messages"),
        (
            "/v1/chat/completions",
            json!({"messages": user("hi"), "temperature": "hot"}).to_string(),
            400,
            "`temperature`",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": user("hi"), "temperature": 7}).to_string(),
            400,
            "between 0 and 2",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": []}).to_string(),
            400,
            "must not be empty",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "robot", "content": "hi"}]}).to_string(),
            400,
            "role `robot`",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}).to_string(),
            400,
            "only text",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": user("hi"), "n": 3}).to_string(),
            400,
            "`n`",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": user("hi"), "stop": 5}).to_string(),
            400,
            "`stop`",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": user(&long)}).to_string(),
            400,
            "context is 1024",
        ),
        ("/v1/completions", json!({"prompt": 12}).to_string(), 400, "`prompt`"),
        ("/v1/completions", json!({"prompt": ""}).to_string(), 400, "empty"),
        (
            "/v1/completions",
            json!({"prompt": "def f(", "suffix": "return x"}).to_string(),
            400,
            "fill-in-the-middle",
        ),
        ("/v1/nothing", "{}".into(), 404, "no route"),
    ];
    for (path, body, status, message) in cases {
        let reply = server.request("POST", path, &[], &body);
        let error = &reply.json()["error"];
        assert_eq!(reply.status, status, "{path} {body:.80}: {}", reply.body);
        assert!(
            error["message"].as_str().is_some_and(|m| m.contains(message)),
            "{path} {body:.80}: {}",
            reply.body
        );
        assert!(error["type"].is_string(), "{}", reply.body);
    }
    let overflow = server.post("/v1/chat/completions", &json!({"messages": user(&long)})).1;
    assert_eq!(overflow["error"]["code"], "context_length_exceeded");
    let (status, _) = server.post("/v1/chat/completions", &chat(user("Still there?"), 4));
    assert_eq!(status, 200, "{}", server.log());
}

#[test]
fn api_key_and_body_limit_are_enforced() {
    let server = Server::start(SMOL, &["--api-key", "sesame", "--max-body", "2000"]);
    assert_eq!(server.request("GET", "/health", &[], "").status, 200);
    let models = |headers: &[(&str, &str)]| server.request("GET", "/v1/models", headers, "");
    let missing = models(&[]);
    assert_eq!(missing.status, 401);
    assert!(missing.json()["error"]["message"].as_str().unwrap().contains("Bearer"));
    assert_eq!(models(&[("Authorization", "Bearer open")]).status, 401);
    assert_eq!(models(&[("Authorization", "Bearer sesame")]).status, 200);

    let auth = [("Authorization", "Bearer sesame")];
    let big = json!({"messages": user(&"x".repeat(3000))}).to_string();
    let reply = server.request("POST", "/v1/chat/completions", &auth, &big);
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2000 bytes")
    );
    let small = chat(user("hi"), 2).to_string();
    assert_eq!(
        server.request("POST", "/v1/chat/completions", &auth, &small).status,
        200
    );
    assert_eq!(server.request("POST", "/v1/chat/completions", &[], &small).status, 401);
}

#[test]
fn a_client_that_hangs_up_cancels_its_generation() {
    let server = Server::start(SMOL, &[]);
    let mut request = chat(user("Write a very long story about a dragon."), 900);
    request["stream"] = json!(true);
    let stream = server.send("POST", "/v1/chat/completions", &[], &request.to_string());
    let mut lines = BufReader::new(stream).lines();
    // Read until the first piece of text arrives, then hang up.
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains("\"content\":\""))
    );
    drop(lines);
    assert!(
        server.wait_for_log("Cancelled", Duration::from_secs(60)),
        "generation went on after the client left: {}",
        server.log()
    );
    let (status, _) = server.post("/v1/chat/completions", &chat(user("hi"), 2));
    assert_eq!(status, 200);
}

#[test]
fn a_client_that_hangs_up_during_its_prompt_stops_the_prompt_there() {
    let server = Server::start(SMOL, &["-c", "4096"]);
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/perplexity/textwrap.py.txt"))
            .unwrap();
    // About 3,500 tokens: seven of the prefill's batches, seconds of work.
    let question = user(&format!("Summarise this module:\n{}", &source[..14_000]));
    let mut request = chat(question.clone(), 8);
    request["stream"] = json!(true);
    let stream = server.send("POST", "/v1/chat/completions", &[], &request.to_string());
    std::thread::sleep(Duration::from_millis(500));
    drop(stream);
    assert!(
        server.wait_for_log("0 generated, Cancelled", Duration::from_secs(120)),
        "{}",
        server.log()
    );
    // The same prompt again reuses the batches that ran before the hang-up, and only those.
    let (status, reply) = server.post("/v1/chat/completions", &chat(question, 1));
    assert_eq!(status, 200, "{reply}");
    let usage = &reply["usage"];
    let (prompt, cached) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap(),
    );
    assert!(
        cached < prompt - 1,
        "the whole prompt ran after the client left ({cached} of {prompt} cached): {}",
        server.log()
    );
}

/// Four different greedy completions, sent one after another and then all at once: each gets the same text either
/// way, whether the requests wait for the one slot or decode together in four.
#[test]
fn concurrent_requests_are_queued_or_batched_without_mixing_outputs() {
    let prompts = [
        "The capital of France is",
        "def fibonacci(n):",
        "Once upon a time",
        "SELECT name FROM",
    ];
    let request = |p: &str| json!({"prompt": p, "temperature": 0, "max_tokens": 20});
    for slots in ["1", "4"] {
        let server = Server::start(SMOL, &["--slots", slots]);
        let alone: Vec<Value> = prompts
            .iter()
            .map(|p| server.post("/v1/completions", &request(p)).1["choices"][0]["text"].clone())
            .collect();
        let together: Vec<Value> = std::thread::scope(|s| {
            let handles: Vec<_> = prompts
                .iter()
                .map(|p| {
                    let (server, body) = (&server, request(p));
                    s.spawn(move || server.post("/v1/completions", &body).1["choices"][0]["text"].clone())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(alone, together, "--slots {slots}");
        assert!(
            alone.iter().all(|t| t.as_str().is_some_and(|t| !t.is_empty())),
            "{alone:?}"
        );
    }
}

#[test]
fn fill_in_the_middle_through_completions_and_infill() {
    let server = Server::start("qwen2.5-coder-1.5b-instruct", &["--slots", "1"]);
    let prefix = "def fibonacci(n):\n    ";
    let suffix = "\n\nprint(fibonacci(10))\n";
    let (status, completion) = server.post(
        "/v1/completions",
        &json!({"prompt": prefix, "suffix": suffix, "temperature": 0, "max_tokens": 40}),
    );
    assert_eq!(status, 200, "{completion}");
    let middle = completion["choices"][0]["text"].as_str().unwrap();
    assert!(middle.contains("return"), "{middle:?}");
    let (status, infill) = server.post(
        "/infill",
        &json!({"input_prefix": prefix, "input_suffix": suffix, "temperature": 0, "n_predict": 40}),
    );
    assert_eq!(status, 200, "{infill}");
    assert_eq!(infill["content"], middle, "{infill}");
    assert_eq!(
        infill["tokens_cached"],
        infill["tokens_evaluated"].as_u64().unwrap() - 1
    );
}

/// A virtual environment with the `openai` package, made once per target directory.
fn python_with_openai() -> std::path::PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("openai-venv");
    let python = venv.join("bin/python");
    let has_openai = |python: &Path| {
        Command::new(python)
            .args(["-c", "import openai"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has_openai(&python) {
        let made = Command::new("python3").args(["-m", "venv"]).arg(&venv).status();
        assert!(made.is_ok_and(|s| s.success()), "python3 -m venv failed");
        let pip = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "openai==3.54.0"])
            .status();
        assert!(pip.is_ok_and(|s| s.success()), "pip install openai failed");
    }
    python
}

#[test]
fn the_official_openai_python_client_works() {
    let python = python_with_openai();
    let server = Server::start(SMOL, &["--api-key", "test-key"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/serve/openai_client.py");
    let out = Command::new(python)
        .arg(script)
        .arg(format!("http://{}/v1", server.addr))
        .arg("test-key")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
}
