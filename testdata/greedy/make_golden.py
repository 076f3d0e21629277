#!/usr/bin/env python3
"""Greedy continuations by llama.cpp (benches/llama-cpp/greedy.c against its libllama): for 20 prompts and one
model, the prompt's token ids and the next 64 greedy token ids.

    python3 testdata/greedy/make_golden.py LLAMA_BUILD_DIR LLAMA_SRC_DIR MODEL.gguf > testdata/greedy/NAME.llama-cpp.json
(LLAMA_BUILD_DIR/bin and the source tree come from benches/llama-cpp/build.sh)
"""
import json
import os
import subprocess
import sys
import tempfile

PROMPTS = [
    "def fibonacci(n):",
    "import numpy as np\n\ndef normalize(x):\n    \"\"\"Scale x to unit length.\"\"\"\n",
    "fn main() {\n    let args: Vec<String> = std::env::args().collect();\n",
    "// A binary search over a sorted slice\nfn binary_search(xs: &[i32], target: i32) -> Option<usize> {\n",
    "function debounce(fn, ms) {\n",
    "#include <stdio.h>\n\nint main(void) {\n",
    "SELECT customers.name, COUNT(orders.id)\nFROM customers\n",
    "package main\n\nimport \"fmt\"\n\nfunc main() {\n",
    "class Stack:\n    def __init__(self):\n",
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "Here is a list of the planets in the solar system:\n1.",
    "Q: What is the boiling point of water at sea level?\nA:",
    "The quick brown fox",
    "To install the package, run",
    "public static int factorial(int n) {\n",
    "<|im_start|>user\nExplain recursion in one sentence.<|im_end|>\n<|im_start|>assistant\n",
    "# Sorting algorithms\n\n## Quicksort\n\n",
    "Les fruits les plus populaires en France sont",
    "x = [1, 2, 3]\ny = [a * 2 for a in x]\nprint(y)\n# Output:",
]
N_PREDICT = 64


def escape(s):
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def main():
    build, src, model = sys.argv[1], sys.argv[2], sys.argv[3]
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "greedy")
        here = os.path.dirname(os.path.abspath(__file__))
        subprocess.run(["gcc", "-O2", "-o", exe, os.path.join(here, "../../benches/llama-cpp/greedy.c"),
                        "-I", f"{src}/include", "-I", f"{src}/ggml/include", "-L", f"{build}/bin",
                        "-lllama", "-lggml", "-lggml-base"], check=True)
        out = subprocess.run([exe, model, str(N_PREDICT), "2"], input="\n".join(escape(p) for p in PROMPTS) + "\n",
                             capture_output=True, text=True, check=True,
                             env=dict(os.environ, LD_LIBRARY_PATH=f"{build}/bin"))
    cases = []
    for prompt, line in zip(PROMPTS, out.stdout.strip().split("\n")):
        ids, cont = line.split("\t")
        cases.append({"prompt": prompt, "prompt_ids": [int(t) for t in ids.split()],
                      "continuation": [int(t) for t in cont.split()]})
    json.dump({"n_predict": N_PREDICT, "cases": cases}, sys.stdout, indent=0)
    print()


if __name__ == "__main__":
    main()
