"""``qtoolkit inspect FILE``: a GGUF model's metadata, tensor table, types, bytes and bits per
weight; for an importance matrix (GGUF or legacy ``.dat``), its entries and expert coverage."""

from __future__ import annotations

import json
from typing import Any, Dict

import numpy as np


def add_arguments(parser) -> None:
    parser.add_argument("path", help="a GGUF file (model or importance matrix) or a legacy .dat importance matrix")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-tensors", action="store_true", help="leave out the per-tensor table")
    parser.add_argument("--min-tokens", type=int, default=1, metavar="N",
                        help="importance matrices: list the experts that fewer than N tokens reached (default 1)")


def _short(value: Any, limit: int = 8) -> Any:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list) and len(value) > limit:
        return {"length": len(value), "first": value[:limit]}
    if isinstance(value, str) and len(value) > 200:
        return value[:200] + f"... ({len(value)} chars)"
    return value


def inspect_file(path: str) -> Dict[str, Any]:
    from ..io.gguf_reader import GGUFFile, value_type_name

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


def is_imatrix(path: str) -> bool:
    """A GGUF file with ``general.type = imatrix`` (or llama-imatrix's keys), or any non-GGUF file
    (read as a legacy ``.dat`` importance matrix)."""
    import os

    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            return True
    from ..io.gguf_reader import GGUFFile

    with GGUFFile(path) as g:
        return g.get("general.type") == "imatrix" or ("imatrix.datasets" in g.kv and "general.architecture" not in g.kv)


def inspect_imatrix(path: str, min_tokens: int = 1) -> Dict[str, Any]:
    from ..imatrix.coverage import coverage
    from ..io.imatrix_file import read_imatrix

    st = read_imatrix(path)
    entries = []
    for name in st.names():
        e = {"name": name, "values": int(st.sums[name].size)}
        if not st.legacy:
            c = st.expert_counts(name)
            e.update(n=int(st.sums[name].shape[1]), n_mat=int(c.size), counts=[int(v) for v in c])
        else:
            e.update(ncall=int(st.counts[name][0]))
        entries.append(e)
    return {"path": path, "kind": "imatrix", "format": st.format, "datasets": st.datasets,
            "chunk_count": st.chunk_count, "chunk_size": st.chunk_size, "entries": entries,
            "coverage": coverage(st, min_tokens=min_tokens)}


def _run_imatrix(args) -> int:
    from ..imatrix.coverage import format_coverage

    info = inspect_imatrix(args.path, args.min_tokens)
    if args.no_tensors:
        info.pop("entries")
    if args.json:
        print(json.dumps(info))
        return 0
    fmt = "GGUF" if info["format"] == "gguf" else "legacy .dat"
    print(f"{info['path']}: importance matrix ({fmt}), {info['coverage']['entries']} entries, "
          f"{info['chunk_count']} chunks" + (f" of {info['chunk_size']} tokens" if info["chunk_size"] else ""))
    print(f"datasets: {', '.join(info['datasets']) or '(none)'}")
    if "entries" in info:
        if info["format"] == "gguf":
            print(f"\n{'tensor':40s} {'columns':>8s} {'matrices':>8s} {'tokens (min..max)':>20s}")
            for e in info["entries"]:
                lo, hi = min(e["counts"]), max(e["counts"])
                span = f"{lo}" if lo == hi else f"{lo}..{hi}"
                print(f"  {e['name']:38s} {e['n']:8d} {e['n_mat']:8d} {span:>20s}")
        else:
            print(f"\n{'tensor':40s} {'values':>10s} {'calls':>6s}")
            for e in info["entries"]:
                print(f"  {e['name']:38s} {e['values']:10d} {e['ncall']:6d}")
    print()
    for line in format_coverage(info["coverage"]):
        print(line)
    return 0


def run(args) -> int:
    if is_imatrix(args.path):
        return _run_imatrix(args)
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
