"""Hugging Face checkpoint folders for the fuzzers: tiny valid folders (config.json,
tokenizer.json, tokenizer_config.json, model.safetensors or shards with an index) and mutations of
any one of their files: JSON values replaced by hostile ones (extreme or huge integers, floats
that JSON can only spell as Infinity/NaN, wrong types, deep nesting), keys removed, or the
safetensors files mutated as in ``mutators.py``."""

from __future__ import annotations

import functools
import json
import os
import tempfile
from typing import Any, Dict, List

import numpy as np

from tests.fuzz.mutators import EXTREME_INTS, mutate_safetensors

VARIANTS = [
    ("llama", dict(hidden=64, layers=1, heads=2, kv_heads=1, ff=96, vocab=300, dtype="bf16")),
    ("qwen3moe", dict(hidden=64, layers=1, heads=2, kv_heads=1, experts=4, top_k=2, moe_ff=32, vocab=300,
                      dtype="f16", fused_experts=True)),
    ("qwen2moe", dict(hidden=64, layers=1, heads=2, kv_heads=1, experts=4, top_k=2, moe_ff=32, shared_ff=64,
                      vocab=300, dtype="f32", shards=2)),
    ("mixtral", dict(hidden=64, layers=1, heads=2, kv_heads=1, ff=64, experts=4, top_k=2, vocab=300, dtype="bf16")),
]
PRESETS = ["Q8_0", "F16", "Q4_K_M", "Q4_0"]


@functools.lru_cache(maxsize=None)
def folder(variant: int) -> Dict[str, bytes]:
    """The files of a tiny checkpoint, by name; made once per process."""
    from tools.fixtures.synth_checkpoint import make_checkpoint

    arch, kw = VARIANTS[variant]
    with tempfile.TemporaryDirectory() as d:
        make_checkpoint(d, arch, seed=variant, **kw)
        out = {}
        for name in sorted(os.listdir(d)):
            with open(os.path.join(d, name), "rb") as f:
                out[name] = f.read()
        return out


ODD_VALUES = [10**20, -(10**20), 2**32, -1, 1e308, float("inf"), float("nan"), -0.5, "12", "", None, True]


def _hostile_value(rng: np.random.Generator) -> Any:
    if rng.random() < 0.3:
        return int(EXTREME_INTS[int(rng.integers(0, len(EXTREME_INTS)))])
    return ODD_VALUES[int(rng.integers(0, len(ODD_VALUES)))]


def _paths(obj: Any, prefix=(), limit: int = 4000) -> List[tuple]:
    """Paths to every value in a JSON document (breadth-limited for big vocabularies)."""
    out, todo = [], [(prefix, obj)]
    while todo and len(out) < limit:
        path, o = todo.pop()
        if isinstance(o, dict):
            for k, v in o.items():
                out.append(path + (k,))
                todo.append((path + (k,), v))
        elif isinstance(o, list):
            for i, v in enumerate(o[:50]):
                out.append(path + (i,))
                todo.append((path + (i,), v))
    return out


def mutate_json(raw: bytes, rng: np.random.Generator) -> bytes:
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):  # mutated before: keep it as it is
        return raw
    kind = int(rng.integers(0, 10))
    if kind == 0:
        return raw[: int(rng.integers(0, len(raw) + 1))]
    if kind == 1:
        return b"[" * int(rng.integers(1000, 100000))
    if kind == 2:
        return json.dumps(["not", "an", "object"]).encode()
    paths = _paths(doc)
    if not paths:
        return raw
    path = paths[int(rng.integers(0, len(paths)))]
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    last = path[-1]
    if kind == 3 and isinstance(parent, dict):
        del parent[last]
    elif kind == 4:
        parent[last] = [_hostile_value(rng)] if rng.random() < 0.5 else {"x": _hostile_value(rng)}
    else:
        parent[last] = _hostile_value(rng)
    return json.dumps(doc).encode()  # Infinity / NaN as Python writes them


def checkpoint_case(rng: np.random.Generator) -> Dict[str, bytes]:
    """A mutated checkpoint folder (file name -> bytes); the key '.preset' holds the preset to convert to."""
    files = dict(folder(int(rng.integers(0, len(VARIANTS)))))
    names = sorted(files)
    for _ in range(int(rng.integers(1, 3))):
        name = names[int(rng.integers(0, len(names)))]
        if name.endswith(".safetensors"):
            files[name] = mutate_safetensors(files[name], rng)
        else:
            files[name] = mutate_json(files[name], rng)
    files[".preset"] = PRESETS[int(rng.integers(0, len(PRESETS)))].encode()
    return files
