#!/usr/bin/env python3
"""Writes testdata/gguf/malformed/: small GGUF files, each broken in one way, and expected.tsv, which names the
fault each file carries as a phrase the reader's error must contain. Standard library only; deterministic.

Run from anywhere: python3 testdata/gguf/make_malformed.py
The same files seed the fuzz corpus (kernel/fuzz/README.md).
"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "malformed")

# GGUF metadata value type ids
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
# GGML tensor type ids
T_F32, T_Q8_0 = 0, 8


def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, payload):
    return gstr(key) + struct.pack("<I", vtype) + payload


def tensor_info(name, ne, ttype, offset):
    return gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne) + struct.pack("<IQ", ttype, offset)


def gguf(kvs, infos, data=b"", version=3, n_tensors=None, n_kv=None, align=32, magic=b"GGUF"):
    head = magic + struct.pack("<I", version)
    head += struct.pack("<QQ", len(infos) if n_tensors is None else n_tensors, len(kvs) if n_kv is None else n_kv)
    head += b"".join(kvs) + b"".join(infos)
    head += b"\0" * (-len(head) % align)
    return head + data


ARCH = kv("general.architecture", STRING, gstr("test"))
# A valid file: an f32 vector of 4 at offset 0 and a 2-row Q8_0 matrix (2 blocks of 34 bytes) at offset 32.
GOOD_INFOS = [tensor_info("a", [4], T_F32, 0), tensor_info("b", [32, 2], T_Q8_0, 32)]
GOOD_DATA = bytes(16) + bytes(16) + bytes(68)

CASES = {
    "empty": (b"", "file is truncated"),
    "bad_magic": (gguf([ARCH], GOOD_INFOS, GOOD_DATA, magic=b"GGML"), "not a GGUF file"),
    "version_1": (gguf([ARCH], GOOD_INFOS, GOOD_DATA, version=1), "GGUF version 1 is not supported"),
    "big_endian": (b"GGUF" + struct.pack(">I", 3) + bytes(16), "big-endian GGUF files are not supported"),
    "truncated_header": (b"GGUF" + struct.pack("<I", 3) + bytes(5), "file is truncated"),
    "huge_tensor_count": (gguf([ARCH], GOOD_INFOS, GOOD_DATA, n_tensors=1 << 60), "tensor count 1152921504606846976 is impossible"),
    "huge_kv_count": (gguf([ARCH], GOOD_INFOS, GOOD_DATA, n_kv=1 << 40), "metadata entry count 1099511627776 is impossible"),
    "huge_string_len": (gguf([struct.pack("<Q", 1 << 62) + b"x" * 16], []), "string length 4611686018427387904 exceeds"),
    "truncated_string": (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 100) + b"general.a", "file is truncated"),
    "invalid_utf8_key": (gguf([kv(b"general.\xff\xfe", U32, struct.pack("<I", 1))], []), "not valid UTF-8"),
    "unknown_value_type": (gguf([ARCH, kv("x.y", 13, struct.pack("<I", 1))], []), "unknown metadata value type 13"),
    "bad_bool": (gguf([ARCH, kv("x.flag", BOOL, b"\x02")], []), "bool value must be 0 or 1, found 2"),
    "huge_array_len": (gguf([ARCH, kv("x.arr", ARRAY, struct.pack("<IQ", U32, 1 << 50) + bytes(8))], []), "array element count 1125899906842624 is impossible"),
    "deep_nesting": (
        gguf([ARCH, kv("x.deep", ARRAY, b"".join(struct.pack("<IQ", ARRAY, 1) for _ in range(9)) + struct.pack("<IQ", U8, 0))], []),
        "arrays nested deeper than 8 levels",
    ),
    "duplicate_key": (gguf([ARCH, ARCH], []), "metadata key 'general.architecture' appears more than once"),
    "alignment_not_pow2": (gguf([ARCH, kv("general.alignment", U32, struct.pack("<I", 24))], []), "24 is not a power of two"),
    "alignment_wrong_type": (gguf([ARCH, kv("general.alignment", U64, struct.pack("<Q", 32))], []), "must be uint32, found uint64"),
    "unknown_tensor_type": (gguf([ARCH], [tensor_info("a", [4], 99, 0)], bytes(32)), "unknown tensor type id 99"),
    "too_many_dims": (gguf([ARCH], [tensor_info("a", [1, 1, 1, 1, 4], T_F32, 0)], bytes(32)), "tensor has 5 dimensions"),
    "zero_dims": (gguf([ARCH], [tensor_info("a", [], T_F32, 0)], bytes(32)), "tensor has 0 dimensions"),
    "zero_extent": (gguf([ARCH], [tensor_info("a", [4, 0], T_F32, 0)], bytes(32)), "a dimension is 0"),
    "overflowing_shape": (gguf([ARCH], [tensor_info("a", [1 << 40, 1 << 40], T_F32, 0)], bytes(32)), "element count overflows"),
    "ragged_row": (gguf([ARCH], [tensor_info("a", [33, 2], T_Q8_0, 0)], bytes(96)), "row of 33 elements is not a multiple of the Q8_0 block of 32"),
    "long_tensor_name": (gguf([ARCH], [tensor_info("t" * 100, [4], T_F32, 0)], bytes(32)), "string length 100 exceeds the limit of 63"),
    "misaligned_tensor": (gguf([ARCH], [tensor_info("a", [4], T_F32, 4)], bytes(32)), "offset 4 is not a multiple of the alignment 32"),
    "tensor_out_of_range": (gguf([ARCH], [tensor_info("a", [4], T_F32, 1 << 20)], bytes(32)), "past the end"),
    "offset_overflow": (gguf([ARCH], [tensor_info("a", [4], T_F32, (1 << 64) - 32)], bytes(32)), "past the end"),
    "overlapping_tensors": (
        gguf([ARCH], [tensor_info("a", [16], T_F32, 0), tensor_info("b", [4], T_F32, 32)], bytes(96)),
        "tensor data overlaps that of 'a'",
    ),
    "duplicate_tensor_name": (
        gguf([ARCH], [tensor_info("a", [4], T_F32, 0), tensor_info("a", [4], T_F32, 32)], bytes(64)),
        "tensor name 'a' appears more than once",
    ),
    "truncated_tensor_data": (gguf([ARCH], GOOD_INFOS, GOOD_DATA[:-1]), "past the end"),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for old in os.listdir(OUT):
        os.remove(os.path.join(OUT, old))
    with open(os.path.join(OUT, "expected.tsv"), "w") as manifest:
        manifest.write("# file\tphrase the error must contain (made by make_malformed.py)\n")
        for name, (data, phrase) in sorted(CASES.items()):
            with open(os.path.join(OUT, name + ".gguf"), "wb") as f:
                f.write(data)
            manifest.write(f"{name}.gguf\t{phrase}\n")
    # The valid file the broken ones derive from, so tests can check the base itself parses.
    with open(os.path.join(OUT, "..", "valid_small.gguf"), "wb") as f:
        f.write(gguf([ARCH, kv("general.alignment", U32, struct.pack("<I", 32))], GOOD_INFOS, GOOD_DATA))


if __name__ == "__main__":
    main()
