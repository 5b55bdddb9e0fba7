"""``qtoolkit errors``: quantize one tensor to every type and print the error table.

The input is a ``.npy`` file, a ``.safetensors`` file or a Hugging Face model directory (the
tensor is picked with ``--tensor``, default: the largest 2-D tensor whose rows fit every block
size). Error columns: relative squared error sum((x - q)^2) / sum(x^2), its importance-weighted
form when ``--imatrix-random`` is used, and the largest absolute error.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from ..errors import QtkFileNotFoundError, QtkValueError
from ..quants import CustomQuant, QuantType, dequantize, quantize, type_info

DEFAULT_TYPES = [
    "IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "Q2_K", "IQ3_XXS", "IQ3_S", "Q3_K", "TQ2_0", "IQ4_XS",
    "IQ4_NL", "Q4_0", "Q4_1", "Q4_K", "Q5_0", "Q5_1", "Q5_K", "Q6_K", "Q8_0", "F16", "BF16",
]
DEFAULT_CUSTOM = [CustomQuant(2, 32), CustomQuant(3, 64), CustomQuant(4, 64), CustomQuant(5, 64), CustomQuant(6, 128)]


def add_arguments(parser) -> None:
    parser.add_argument("path", help=".npy, .safetensors, or a model directory")
    parser.add_argument("--tensor", help="tensor name inside a .safetensors file or model directory")
    parser.add_argument("--types", help="comma-separated types (default: every 1-8 bit ggml type plus F16/BF16)")
    parser.add_argument("--custom", action="store_true", help="also list a few CustomQuant bit-widths")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def load_tensor(path: str, name=None):
    """(name, float32 2-D array) from a .npy, a .safetensors file or a model directory."""
    if not os.path.exists(path):
        raise QtkFileNotFoundError(f"{path}: no such file or directory")
    if path.endswith(".npy"):
        x = np.load(path)
        return os.path.basename(path), _as_matrix(x, path)
    from ..io.safetensors_reader import SafetensorsFile, open_model_tensors

    if os.path.isdir(path):
        files = open_model_tensors(path)
    else:
        files = {path: SafetensorsFile(path)}
    best = None
    for fname, sf in files.items():
        for tname, info in sf.tensors.items():
            if name is not None:
                if tname == name:
                    return tname, _as_matrix(sf.read(tname), fname)
                continue
            if len(info.shape) == 2 and info.shape[1] % 256 == 0:
                size = info.shape[0] * info.shape[1]
                if best is None or size > best[0]:
                    best = (size, tname, sf, fname)
    if name is not None:
        raise QtkValueError(f"{path}: no tensor named {name!r}")
    if best is None:
        raise QtkValueError(f"{path}: no 2-D tensor whose rows are a multiple of 256; pick one with --tensor")
    _, tname, sf, fname = best
    return tname, _as_matrix(sf.read(tname), fname)


def _as_matrix(x, where):
    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 2:
        raise QtkValueError(f"{where}: the tensor must have at least 2 dimensions, got shape {x.shape}")
    return np.ascontiguousarray(x.reshape(-1, x.shape[-1]))


def error_table(x: np.ndarray, types, threads=None):
    rows = []
    denom = float(np.sum(x.astype(np.float64) ** 2)) or 1.0
    for t in types:
        info = type_info(t)
        if x.shape[1] % info.block_size:
            rows.append({"type": info.name, "bpw": info.bits_per_weight, "skipped": f"row length not a multiple of {info.block_size}"})
            continue
        if info.requires_imatrix:
            rows.append({"type": info.name, "bpw": info.bits_per_weight, "skipped": "needs an importance matrix"})
            continue
        t0 = time.perf_counter()
        q = quantize(x, t, threads=threads)
        t1 = time.perf_counter()
        y = dequantize(q, t, threads=threads)
        diff = x.astype(np.float64) - y
        rows.append({
            "type": info.name,
            "bpw": round(info.bits_per_weight, 4),
            "bytes": int(q.nbytes),
            "rel_sq_error": float(np.sum(diff * diff) / denom),
            "max_abs_error": float(np.max(np.abs(diff))),
            "quantize_mb_s": round(x.nbytes / 1e6 / max(t1 - t0, 1e-9), 1),
        })
    return rows


def run(args) -> int:
    name, x = load_tensor(args.path, args.tensor)
    if args.types:
        types = [t.strip() for t in args.types.split(",") if t.strip()]
    else:
        types = list(DEFAULT_TYPES)
    resolved = [QuantType[t.upper()] if isinstance(t, str) and t.upper() in QuantType.__members__ else t for t in types]
    if args.custom:
        resolved += DEFAULT_CUSTOM
    rows = error_table(x, resolved, args.threads)
    if args.json:
        print(json.dumps({"tensor": name, "shape": list(x.shape), "types": rows}))
        return 0
    print(f"{name}  shape {x.shape[0]} x {x.shape[1]}  ({x.size:,} weights)")
    print(f"{'type':22s} {'bpw':>7s} {'rel sq error':>13s} {'max |err|':>10s} {'quantize MB/s':>14s}")
    for r in sorted(rows, key=lambda r: r["bpw"]):
        if "skipped" in r:
            print(f"{r['type']:22s} {r['bpw']:7.3f}  skipped: {r['skipped']}")
            continue
        print(f"{r['type']:22s} {r['bpw']:7.3f} {r['rel_sq_error']:13.3e} {r['max_abs_error']:10.3e} {r['quantize_mb_s']:14.1f}")
    return 0
