#!/usr/bin/env python3
"""Load on an OpenAI-compatible server: N concurrent clients, each sending streamed chat requests one after another.

Reports per request the time to first token (from sending the request to the first content chunk) and, overall,
generated tokens per second across all clients. Works against `hearth serve` or llama.cpp's `llama-server` (any
server that streams chat completions with `stream_options.include_usage`). Standard library only.

    hearth serve -m qwen2.5-coder-1.5b-instruct --port 8080 --slots 4 &
    python3 benches/serve/load.py --url http://127.0.0.1:8080 --clients 4 --requests 3 --max-tokens 64
"""

import argparse
import http.client
import json
import statistics
import threading
import time
import urllib.parse

QUESTIONS = [
    "Write a Python function that checks whether a string is a palindrome.",
    "Explain what a Rust lifetime is in two sentences.",
    "Write a SQL query that returns the ten most recent orders.",
    "What does `git rebase -i` do?",
    "Write a JavaScript function that debounces another function.",
    "How do I read a file line by line in Go?",
]


def stream_chat(url, question, max_tokens, key):
    """One streamed request: (seconds to first content, total seconds, completion tokens)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    body = json.dumps({
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    })
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    start = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, headers)
    response = conn.getresponse()
    if response.status != 200:
        raise RuntimeError(f"{response.status}: {response.read()[:200]!r}")
    first, tokens = None, 0
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
        if first is None and any(c.get("delta", {}).get("content") for c in chunk.get("choices", [])):
            first = time.perf_counter() - start
    conn.close()
    return first if first is not None else float("nan"), time.perf_counter() - start, tokens


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=3, help="requests per client, one after another")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--api-key")
    args = parser.parse_args()

    # One request first, so the model's pages are warm and the figures are steady state.
    stream_chat(args.url, QUESTIONS[0], 8, args.api_key)

    results, errors = [], []

    def client(index):
        for r in range(args.requests):
            question = QUESTIONS[(index + r * args.clients) % len(QUESTIONS)]
            try:
                results.append(stream_chat(args.url, question, args.max_tokens, args.api_key))
            except Exception as e:  # reported below; one failing client must not hide the others' figures
                errors.append(repr(e))

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start

    ttft = sorted(r[0] for r in results)
    tokens = sum(r[2] for r in results)
    print(f"{args.clients} clients x {args.requests} requests, max_tokens {args.max_tokens}: {len(results)} done, "
          f"{len(errors)} failed, {wall:.1f} s")
    print(f"throughput: {tokens / wall:.2f} generated tokens/s ({tokens} tokens)")
    print(f"time to first token: median {statistics.median(ttft):.2f} s, "
          f"min {ttft[0]:.2f} s, max {ttft[-1]:.2f} s")
    for e in errors:
        print("error:", e)


if __name__ == "__main__":
    main()
