#!/usr/bin/env python3
"""Side by side: llama.cpp's llama-bench and `hearth bench` on the same model file, same threads, interleaved
repetitions (llama-bench, hearth, llama-bench, hearth, …) so drift in machine load hits both alike. Prints each
workload's mean tokens/s for both tools and the ratio hearth / llama.cpp as a Markdown table.

    python3 benches/llama-cpp/compare.py --llama-build /tmp/llamacpp/build -m MODEL.gguf [-m MODEL2.gguf]
        [-t 2] [-r 5] [--tests pp512,tg128,tg64@d4096]

llama.cpp is built by benches/llama-cpp/build.sh; hearth is built here with `cargo build --release -p hearth`.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "../.."))


def parse_test(spec):
    """'pp512' / 'tg128' / 'tg64@d4096' -> (n_prompt, n_gen, depth)."""
    name, _, depth = spec.partition("@d")
    n = int(name[2:])
    return (n, 0, int(depth or 0)) if name.startswith("pp") else (0, n, int(depth or 0))


def llama_bench(build, model, threads, n_prompt, n_gen, depth):
    out = subprocess.run([f"{build}/bin/llama-bench", "-m", model, "-t", str(threads), "-p", str(n_prompt),
                          "-n", str(n_gen), "-d", str(depth), "-r", "1", "-o", "json"],
                         capture_output=True, text=True, check=True,
                         env=dict(os.environ, LD_LIBRARY_PATH=f"{build}/bin"))
    rows = json.loads(out.stdout)
    return rows[0]["avg_ts"]


def hearth_bench(hearth, model, threads, n_prompt, n_gen, depth):
    out = subprocess.run([hearth, "bench", "-m", model, "-t", str(threads), "-p", str(n_prompt), "-n", str(n_gen),
                          "-d", str(depth), "-r", "1", "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[0])["avg_ts"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-build", required=True)
    ap.add_argument("-m", "--model", action="append", required=True)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-r", "--reps", type=int, default=5)
    ap.add_argument("--tests", default="pp512,tg128,tg64@d4096")
    args = ap.parse_args()
    hearth = os.path.join(ROOT, "target/release/hearth")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "hearth"], cwd=ROOT, check=True)

    print(f"threads: {args.threads}, repetitions: {args.reps} (interleaved, each after its tool's warm-up run)\n")
    print("| model | test | llama.cpp t/s | hearth t/s | hearth / llama.cpp |")
    print("|---|---|---:|---:|---:|")
    for model in args.model:
        for spec in args.tests.split(","):
            n_prompt, n_gen, depth = parse_test(spec)
            theirs, ours = [], []
            for _ in range(args.reps):
                theirs.append(llama_bench(args.llama_build, model, args.threads, n_prompt, n_gen, depth))
                ours.append(hearth_bench(hearth, model, args.threads, n_prompt, n_gen, depth))
            a, b = statistics.mean(theirs), statistics.mean(ours)
            sa = statistics.stdev(theirs) if len(theirs) > 1 else 0.0
            sb = statistics.stdev(ours) if len(ours) > 1 else 0.0
            print(f"| {os.path.basename(model)} | {spec} | {a:.2f} ± {sa:.2f} | {b:.2f} ± {sb:.2f} | {b / a:.2f} |",
                  flush=True)


if __name__ == "__main__":
    sys.exit(main())
