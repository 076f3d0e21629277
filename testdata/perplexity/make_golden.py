#!/usr/bin/env python3
"""Perplexity by llama.cpp's `llama-perplexity` over textwrap.py.txt (CPython 3.11's Lib/textwrap.py, PSF licence),
with the context size and chunk count the test uses: the running perplexity after each chunk and the final estimate.

    python3 testdata/perplexity/make_golden.py LLAMA_BUILD_DIR MODEL.gguf CHUNKS > testdata/perplexity/NAME.llama-cpp.json
(LLAMA_BUILD_DIR/bin comes from benches/llama-cpp/build.sh)
"""
import json
import os
import re
import subprocess
import sys

N_CTX = 512


def main():
    build, model, chunks = sys.argv[1], sys.argv[2], int(sys.argv[3])
    text = os.path.join(os.path.dirname(os.path.abspath(__file__)), "textwrap.py.txt")
    out = subprocess.run([f"{build}/bin/llama-perplexity", "-m", model, "-f", text, "-c", str(N_CTX),
                          "--chunks", str(chunks), "-t", "2"], capture_output=True, text=True, check=True)
    log = out.stdout + out.stderr
    running = [float(v) for v in re.findall(r"\[\d+\]([0-9.]+),", log)]
    final = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", log)
    assert len(running) == chunks and final, log
    json.dump({"file": "textwrap.py.txt", "n_ctx": N_CTX, "chunks": chunks, "running_ppl": running,
               "ppl": float(final.group(1)), "ppl_stderr": float(final.group(2))}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
