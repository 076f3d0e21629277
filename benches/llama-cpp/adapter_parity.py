#!/usr/bin/env python3
"""Does llama.cpp read hearth's LoRA adapters as hearth applies them? Runs llama.cpp's llama-perplexity and
`hearth perplexity` on the same model file, text, context size, chunks and threads, without and then with the adapter
(`--lora`), and prints both perplexities and their ratio. Perplexity is computed from every scored token's logits,
so agreement within the base model's own margin means llama.cpp computes the adapted logits hearth does.

    python3 benches/llama-cpp/adapter_parity.py --llama-build /tmp/llamacpp/build -m MODEL.gguf \\
        --lora ADAPTER.gguf [-f TEXT] [-c 512] [--chunks 4] [-t 2] [--tolerance 0.01]

Exits non-zero when a ratio is off by more than --tolerance. llama.cpp is built by benches/llama-cpp/build.sh;
an adapter comes from `hearth train`.
"""
import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "../.."))
FINAL = re.compile(r"Final estimate: PPL = ([0-9.]+)")


def final_ppl(output, tool):
    match = FINAL.search(output)
    if not match:
        sys.exit(f"{tool} printed no final estimate:\n{output[-2000:]}")
    return float(match.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-build", required=True)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--lora", required=True)
    ap.add_argument("-f", "--file", default=os.path.join(ROOT, "testdata/perplexity/textwrap.py.txt"))
    ap.add_argument("-c", "--ctx-size", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--tolerance", type=float, default=0.01)
    args = ap.parse_args()
    hearth = os.path.join(ROOT, "target/release/hearth")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "hearth"], cwd=ROOT, check=True)
    common = ["-m", args.model, "-f", args.file, "-c", str(args.ctx_size), "--chunks", str(args.chunks),
              "-t", str(args.threads)]

    print(f"model {os.path.basename(args.model)}, adapter {os.path.basename(args.lora)}, "
          f"{os.path.basename(args.file)}, -c {args.ctx_size}, {args.chunks} chunks, {args.threads} threads\n")
    print("| adapter | llama.cpp PPL | hearth PPL | hearth / llama.cpp |")
    print("|---|---:|---:|---:|")
    worst = 0.0
    for label, extra in (("none", []), ("--lora", ["--lora", args.lora])):
        llama = subprocess.run([f"{args.llama_build}/bin/llama-perplexity", *common, *extra],
                               capture_output=True, text=True,
                               env=dict(os.environ, LD_LIBRARY_PATH=f"{args.llama_build}/bin"))
        ours = subprocess.run([hearth, "perplexity", *common, *extra], capture_output=True, text=True)
        llama_ppl = final_ppl(llama.stdout + llama.stderr, "llama-perplexity")
        hearth_ppl = final_ppl(ours.stdout + ours.stderr, "hearth perplexity")
        ratio = hearth_ppl / llama_ppl
        worst = max(worst, abs(ratio - 1))
        print(f"| {label} | {llama_ppl:.4f} | {hearth_ppl:.4f} | {ratio:.4f} |")
    if worst > args.tolerance:
        sys.exit(f"\nhearth and llama.cpp differ by {worst:.2%}, more than {args.tolerance:.2%}")


if __name__ == "__main__":
    main()
