#!/usr/bin/env python3
"""Golden output of llama.cpp's quantizer for SmolLM2, per preset: each tensor's type and the SHA-256 of its data.
runtime/tests/quantize.rs checks that hearth's quantizer writes the same bytes.

The chain: the shipped Q4_1 model → F16 (llama-quantize --allow-requantize … F16) → each preset from that F16.

    python3 testdata/golden/make_quantize_golden.py LLAMA_BIN_DIR MODEL.gguf > testdata/golden/quantize-smollm2.json
(LLAMA_BIN_DIR from benches/llama-cpp/build.sh; MODEL from `hearth models path smollm2-135m-instruct`)
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGUFReader

PRESETS = ["F16", "Q8_0", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K"]


def quantize(bin_dir, src, dst, preset, requantize):
    env = dict(os.environ, LD_LIBRARY_PATH=bin_dir)
    args = [os.path.join(bin_dir, "llama-quantize")] + (["--allow-requantize"] if requantize else [])
    subprocess.run(args + [src, dst, preset, "2"], check=True, env=env, capture_output=True)


def digest(path):
    return {
        t.name: f"{t.tensor_type.name}:{hashlib.sha256(np.asarray(t.data).tobytes()).hexdigest()[:16]}"
        for t in GGUFReader(path, "r").tensors
    }


def main():
    bin_dir, model = sys.argv[1], sys.argv[2]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        f16 = os.path.join(tmp, "f16.gguf")
        quantize(bin_dir, model, f16, "F16", True)
        out["f16"] = digest(f16)
        for preset in PRESETS[1:]:
            dst = os.path.join(tmp, f"{preset}.gguf")
            quantize(bin_dir, f16, dst, preset, False)
            out[preset.lower()] = digest(dst)
    json.dump(out, sys.stdout, indent=0, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
