#!/usr/bin/env python3
"""Reference vectors for hearth's scalar block codecs, computed by the `gguf` Python package (llama.cpp's gguf-py,
whose numpy codecs are the reference here). Deterministic: fixed seeds, fixed tensors.

For each type T it writes
  T.blocks      raw blocks: 24 random ones (24 * 32 values for F16 and BF16) (scales drawn from sane ranges) followed, for the types the known models
                contain, by 8 real blocks taken from those models (first blocks of a fixed tensor)
  T.f32         gguf-py's dequantization of T.blocks (little-endian f32)
and, for the types gguf-py can quantize (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, BF16),
  T.quant_in.f32   32 blocks' worth of inputs (smooth + noisy + zeros + huge values)
  T.quant_out      gguf-py's quantization of them

    pip install gguf==0.19.0
    python3 testdata/quant/make_reference.py [STORE_MODELS_DIR]   # default: ~/.cache/hearth/models
"""
import os
import sys

import numpy as np
from gguf import GGUFReader, GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

OUT = os.path.dirname(os.path.abspath(__file__))
N_RANDOM = 24
N_REAL = 8

# (type, model file, tensor) for real blocks
REAL = {
    T.Q4_K: ("qwen2.5-coder-1.5b-instruct.gguf", "blk.0.attn_q.weight"),
    T.Q6_K: ("qwen2.5-coder-1.5b-instruct.gguf", "output.weight"),
    T.Q4_1: ("smollm2-135m-instruct.gguf", "blk.0.attn_q.weight"),
    T.Q8_0: ("smollm2-135m-instruct.gguf", "token_embd.weight"),
    T.Q5_0: ("gemma-3-270m.gguf", "blk.0.attn_q.weight"),
}


def f16_bytes(rng, n, lo, hi, signed):
    v = rng.uniform(lo, hi, n).astype(np.float32)
    if signed:
        v *= rng.choice([-1.0, 1.0], n).astype(np.float32)
    return v.astype(np.float16).view(np.uint8).reshape(n, 2)


def random_blocks(qtype, rng, n):
    """Random bytes everywhere, then the scale fields overwritten with finite, plausible f16 values."""
    block_len, block_bytes = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, (n, block_bytes), dtype=np.uint8)
    if qtype in (T.Q8_0, T.Q4_0, T.Q5_0):
        raw[:, 0:2] = f16_bytes(rng, n, 1e-4, 0.5, True)
    elif qtype in (T.Q4_1, T.Q5_1):
        raw[:, 0:2] = f16_bytes(rng, n, 1e-4, 0.5, False)
        raw[:, 2:4] = f16_bytes(rng, n, 1e-3, 2.0, True)
    elif qtype in (T.Q4_K, T.Q5_K):
        raw[:, 0:2] = f16_bytes(rng, n, 1e-4, 0.05, False)
        raw[:, 2:4] = f16_bytes(rng, n, 1e-4, 0.05, False)
    elif qtype == T.Q6_K:
        raw[:, 208:210] = f16_bytes(rng, n, 1e-5, 0.01, True)
    elif qtype == T.F16:
        raw[:, :] = f16_bytes(rng, n * block_len, 1e-3, 100.0, True).reshape(n, block_bytes)
    elif qtype == T.BF16:
        v = (rng.uniform(-100.0, 100.0, n * block_len).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
        raw[:, :] = v.view(np.uint8).reshape(n, block_bytes)
    return raw


def real_blocks(qtype, models_dir):
    model, tensor = REAL[qtype]
    reader = GGUFReader(os.path.join(models_dir, model), "r")
    t = next(t for t in reader.tensors if t.name == tensor)
    assert t.tensor_type == qtype, (tensor, t.tensor_type)
    block_bytes = GGML_QUANT_SIZES[qtype][1]
    return np.array(t.data, dtype=np.uint8).reshape(-1)[: N_REAL * block_bytes].reshape(N_REAL, block_bytes)


def quant_inputs(rng, block_len):
    n = 32 * max(block_len, 32)
    i = np.arange(n, dtype=np.float32)
    x = (0.1 + 2.0 * np.cos(i)).astype(np.float32)  # llama.cpp's test signal
    x[n // 4 : n // 2] = rng.normal(0, 0.02, n // 4).astype(np.float32)  # weight-like noise
    x[n // 2 : n // 2 + block_len] = 0.0  # an all-zero block
    x[-block_len:] *= 1e4  # large values
    return x


def main():
    models_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser("~/.cache/hearth/models")
    rng = np.random.default_rng(20261123)
    for qtype in (T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K):
        plain = GGML_QUANT_SIZES[qtype][0] == 1
        blocks = random_blocks(qtype, rng, N_RANDOM * (32 if plain else 1))
        if qtype in REAL:
            blocks = np.concatenate([blocks, real_blocks(qtype, models_dir)])
        values = dequantize(blocks.reshape(-1), qtype).astype(np.float32)
        blocks.tofile(os.path.join(OUT, f"{qtype.name}.blocks"))
        values.astype("<f4").tofile(os.path.join(OUT, f"{qtype.name}.f32"))
        if qtype in (T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.BF16):
            x = quant_inputs(rng, GGML_QUANT_SIZES[qtype][0])
            x.astype("<f4").tofile(os.path.join(OUT, f"{qtype.name}.quant_in.f32"))
            quantize(x, qtype).tofile(os.path.join(OUT, f"{qtype.name}.quant_out"))


if __name__ == "__main__":
    main()
