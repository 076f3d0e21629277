#!/usr/bin/env python3
"""Dumps what the `gguf` Python package (llama.cpp's gguf-py, the reference reader) sees in a GGUF file, as JSON in
the shape of `hearth inspect --json`: metadata (arrays as element type, length and first 8 elements) and tensors
(name, type, ne, absolute data offset, bytes). tests in cli/tests/inspect.rs compare hearth's output with these.

    pip install gguf==0.19.0
    python3 testdata/golden/gguf_py_dump.py MODEL.gguf > testdata/golden/NAME.gguf-py.json
(see testdata/README.md for the exact commands that made the committed files)
"""
import json
import sys

from gguf import GGUFReader, GGUFValueType

HEAD = 8


def scalar(v):
    if hasattr(v, "item"):
        v = v.item()
    return v


def field_json(field):
    vtype = field.types[0]
    if vtype == GGUFValueType.ARRAY:
        elem = field.types[1] if len(field.types) > 1 else None
        items = field.contents()
        return {
            "element_type": elem.name.lower() if elem is not None else None,
            "len": len(field.data),
            "head": [scalar(x) for x in items[:HEAD]],
        }
    return scalar(field.contents())


def main(path):
    r = GGUFReader(path, "r")
    metadata = {}
    for name, field in r.fields.items():
        if name.startswith("GGUF."):  # the header pseudo-fields gguf-py adds
            continue
        metadata[name] = field_json(field)
    tensors = [
        {
            "name": t.name,
            "type": t.tensor_type.name,
            "ne": [int(d) for d in t.shape],
            "abs_offset": int(t.data_offset),
            "bytes": int(t.n_bytes),
        }
        for t in r.tensors
    ]
    json.dump({"metadata": metadata, "tensors": tensors}, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
