"""``qtoolkit inspect FILE.gguf``: metadata, tensor table, types, bytes and bits per weight."""

from __future__ import annotations

import json
from typing import Any, Dict

import numpy as np


def add_arguments(parser) -> None:
    parser.add_argument("path", help="a GGUF file")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-tensors", action="store_true", help="leave out the per-tensor table")


def _short(value: Any, limit: int = 8) -> Any:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list) and len(value) > limit:
        return {"length": len(value), "first": value[:limit]}
    if isinstance(value, str) and len(value) > 200:
        return value[:200] + f"... ({len(value)} chars)"
    return value


def inspect_file(path: str) -> Dict[str, Any]:
    from .gguf_read import GGUFFile, value_type_name

    with GGUFFile(path) as g:
        meta = []
        for kv in g.kv.values():
            t = value_type_name(kv.type)
            if kv.subtype is not None:
                t += f"[{value_type_name(kv.subtype)}]"
            meta.append({"key": kv.key, "type": t, "value": _short(kv.value)})
        tensors, by_type = [], {}
        for t in g.tensors:
            tensors.append({"name": t.name, "ne": list(t.ne), "type": t.type_name, "bytes": t.nbytes,
                            "elements": t.n_elements, "offset": t.data_offset})
            a = by_type.setdefault(t.type_name, {"tensors": 0, "elements": 0, "bytes": 0})
            a["tensors"] += 1
            a["elements"] += t.n_elements
            a["bytes"] += t.nbytes
        for a in by_type.values():
            a["bpw"] = round(8.0 * a["bytes"] / a["elements"], 4) if a["elements"] else 0.0
        tb = sum(t["bytes"] for t in tensors)
        te = sum(t["elements"] for t in tensors)
        return {"path": path, "version": g.version, "alignment": g.alignment, "file_bytes": g.size,
                "metadata": meta, "tensors": tensors, "by_type": by_type,
                "totals": {"tensors": len(tensors), "elements": te, "bytes": tb,
                           "bpw": round(8.0 * tb / te, 4) if te else 0.0}}


def run(args) -> int:
    info = inspect_file(args.path)
    if args.no_tensors:
        info.pop("tensors")
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"{info['path']}: GGUF v{info['version']}, {info['file_bytes']:,} bytes, alignment {info['alignment']}")
    print(f"\nmetadata ({len(info['metadata'])} keys):")
    for m in info["metadata"]:
        print(f"  {m['key']:45s} {m['type']:16s} {m['value']!r}")
    if "tensors" in info:
        print(f"\n{'tensor':40s} {'dims (ggml order)':24s} {'type':8s} {'bytes':>14s}")
        for t in info["tensors"]:
            print(f"  {t['name']:38s} {'x'.join(map(str, t['ne'])):24s} {t['type']:8s} {t['bytes']:14,d}")
    print("\nby type:")
    for name, a in sorted(info["by_type"].items(), key=lambda kv: -kv[1]["bytes"]):
        print(f"  {name:8s} {a['tensors']:5d} tensors {a['elements']:15,d} weights {a['bytes']:15,d} bytes {a['bpw']:7.3f} bpw")
    tot = info["totals"]
    print(f"total: {tot['tensors']} tensors, {tot['elements']:,} weights, {tot['bytes']:,} bytes, {tot['bpw']:.3f} bits per weight")
    return 0
