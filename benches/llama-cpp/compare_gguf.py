#!/usr/bin/env python3
"""Compares the tensors of two GGUF files: names, types, shapes and bytes. Prints one line per tensor that differs
and a summary; with --hashes, prints `name type sha256` for every tensor of the first file instead.

    python3 benches/llama-cpp/compare_gguf.py A.gguf B.gguf
"""
import hashlib
import sys

import numpy as np
from gguf import GGUFReader


def tensors(path):
    return {t.name: t for t in GGUFReader(path, "r").tensors}


def main():
    if sys.argv[1] == "--hashes":
        for t in GGUFReader(sys.argv[2], "r").tensors:
            print(t.name, t.tensor_type.name, hashlib.sha256(np.asarray(t.data).tobytes()).hexdigest())
        return
    a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
    same = differ = 0
    for name, ta in a.items():
        tb = b.get(name)
        if tb is None:
            print(f"{name}: only in {sys.argv[1]}")
            differ += 1
            continue
        if ta.tensor_type != tb.tensor_type or list(ta.shape) != list(tb.shape):
            print(f"{name}: {ta.tensor_type.name}{list(ta.shape)} vs {tb.tensor_type.name}{list(tb.shape)}")
            differ += 1
            continue
        da, db = np.asarray(ta.data).tobytes(), np.asarray(tb.data).tobytes()
        if da != db:
            n = sum(x != y for x, y in zip(da, db))
            print(f"{name} ({ta.tensor_type.name}): {n} of {len(da)} bytes differ")
            differ += 1
        else:
            same += 1
    print(f"{same} tensors identical, {differ} differ")


if __name__ == "__main__":
    main()
