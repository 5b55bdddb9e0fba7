"""Valid sample files and mutations of them, shared by the fuzz tests and tools/fuzz/fuzz.py.

Every mutation yields bytes that a reader must either parse correctly or refuse with a QtkError
naming the file: never a crash, a hang, an unrelated Python exception or an allocation larger
than the file.
"""

from __future__ import annotations

import json
import struct
from typing import Optional

import numpy as np

EXTREME_INTS = [0, 1, -1, 7, 255, 2**31 - 1, 2**31, 2**32, 2**32 + 1, 2**53, 2**62, 2**63 - 1, 2**63, 2**64 - 1, -(2**63)]


def safetensors_sample(rng: np.random.Generator) -> bytes:
    """A small valid .safetensors file with a few tensors of different dtypes."""
    tensors = []
    for i in range(int(rng.integers(1, 5))):
        dtype = ["F32", "F16", "BF16", "I32", "U8"][int(rng.integers(0, 5))]
        shape = [int(s) for s in rng.integers(0, 5, int(rng.integers(0, 3)))]
        itemsize = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "U8": 1}[dtype]
        nbytes = int(np.prod(shape, dtype=np.int64)) * itemsize
        tensors.append((f"t{i}.weight", dtype, shape, rng.integers(0, 256, nbytes, dtype=np.uint8).tobytes()))
    header = {"__metadata__": {"format": "pt"}}
    pos = 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [pos, pos + len(data)]}
        pos += len(data)
    return pack_safetensors(header, b"".join(t[3] for t in tensors))


def pack_safetensors(header: dict, data: bytes, header_len=None) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw) if header_len is None else header_len % 2**64) + raw + data


def flip_bits(blob: bytes, rng: np.random.Generator, most: int, within: Optional[int] = None) -> bytes:
    """``blob`` with 1 to ``most - 1`` random bits flipped among its first ``within`` bytes (all
    of them by default)."""
    b = bytearray(blob)
    span = len(b) if within is None else within
    for _ in range(int(rng.integers(1, most))):
        i = int(rng.integers(0, span))
        b[i] ^= 1 << int(rng.integers(0, 8))
    return bytes(b)


def mutate_safetensors(blob: bytes, rng: np.random.Generator) -> bytes:
    kind = int(rng.integers(0, 6))
    if kind == 0:  # bit flips anywhere
        return flip_bits(blob, rng, 8)
    if kind == 1:  # truncation
        return blob[: int(rng.integers(0, len(blob)))]
    if kind == 2:  # an absurd header length
        return struct.pack("<Q", [len(blob), 2**63, 2**64 - 1, 9, 10**9][int(rng.integers(0, 5))]) + blob[8:]
    (hlen,) = struct.unpack("<Q", blob[:8])
    try:
        header = json.loads(blob[8:8 + hlen])
    except (ValueError, RecursionError):  # an already mutated file: flip a bit instead
        b = bytearray(blob)
        if b:
            b[int(rng.integers(0, len(b)))] ^= 1 << int(rng.integers(0, 8))
        return bytes(b)
    if not isinstance(header, dict):
        return blob[:-1]
    data = blob[8 + hlen:]
    names = [k for k in header if k != "__metadata__"]
    if not names:
        return blob[:-1]
    name = names[int(rng.integers(0, len(names)))]
    entry = header[name]
    if not isinstance(entry, dict):  # broken by an earlier mutation
        return blob[:-1]
    if kind == 3:  # extreme offsets
        entry["data_offsets"] = [EXTREME_INTS[int(rng.integers(0, len(EXTREME_INTS)))], EXTREME_INTS[int(rng.integers(0, len(EXTREME_INTS)))]]
    elif kind == 4:  # extreme or malformed shapes
        choice = int(rng.integers(0, 4))
        if choice == 0:
            entry["shape"] = [EXTREME_INTS[int(rng.integers(0, len(EXTREME_INTS)))] for _ in range(int(rng.integers(1, 4)))]
        elif choice == 1:
            entry["shape"] = "not a list"
        elif choice == 2:
            entry["shape"] = [[1], 2]
        else:
            entry["shape"] = [1.5]
    else:  # swapped or unknown dtype, or a broken entry
        choice = int(rng.integers(0, 3))
        if choice == 0:
            entry["dtype"] = ["F64", "I8", "BOOL", "F8_E4M3", "Q4", ""][int(rng.integers(0, 6))]
        elif choice == 1:
            header[name] = [1, 2, 3]
        else:
            header["__metadata__"] = [1]
    return pack_safetensors(header, data)
