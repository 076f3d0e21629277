#!/usr/bin/env python3
"""Token ids of every corpus string, by llama.cpp's llama-tokenize (special tokens parsed, BOS/EOS as the model
asks, and again with --no-parse-special), for one model.

    python3 testdata/tokenizer/make_golden.py LLAMA_BIN_DIR MODEL.gguf > testdata/tokenizer/NAME.llama-cpp.json
"""
import json
import os
import subprocess
import sys


def tokenize(bin_dir, model, text, extra):
    env = dict(os.environ, LD_LIBRARY_PATH=bin_dir)
    out = subprocess.run([os.path.join(bin_dir, "llama-tokenize"), "-m", model, "-p", text, "--ids", "--log-disable", "--no-escape"] + extra,
                         env=env, capture_output=True, check=True)
    return json.loads(out.stdout.decode().strip().splitlines()[-1])


def main():
    bin_dir, model = sys.argv[1], sys.argv[2]
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus.json"), encoding="utf-8") as f:
        corpus = json.load(f)
    golden = [{"parse_special": tokenize(bin_dir, model, t, []), "no_parse_special": tokenize(bin_dir, model, t, ["--no-parse-special"])} for t in corpus]
    json.dump(golden, sys.stdout, separators=(",", ":"))
    print()


if __name__ == "__main__":
    main()
