"""``qtoolkit.requantize``: an F32/F16/BF16 GGUF file to a llama-quantize preset, streaming.

The input is read through the validating reader; the types come from the same
:func:`qtoolkit.presets.plan_types` as ``convert``; metadata is copied (with ``general.file_type``
and ``general.quantization_version`` set) and tensors are written in llama.cpp's file order.
Tensors that are already quantized are refused unless ``allow_requantize``.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterator, List, Optional

import numpy as np

from .errors import QtkFormatError, QtkValueError
from .formats import QuantType, default_threads, dequantize, type_info
from .gguf_read import GGUFFile, TensorEntry
from .gguf_stream import TensorOut, check_output, write_gguf
from .pipeline import quantize_stream
from .presets import ModelInfo, PlanOptions, TensorSpec, file_order, get_preset, plan_types

log = logging.getLogger(__name__)

_FLOAT = (QuantType.F32, QuantType.F16, QuantType.BF16)
_DROP_KEYS = {"general.file_type", "general.quantization_version", "split.no", "split.count", "split.tensors.count"}
SLAB_ELEMENTS = 1 << 20


def _first(v: Any) -> int:
    if isinstance(v, np.ndarray):
        return int(v.flat[0]) if v.size else 0
    if isinstance(v, list):
        return int(v[0]) if v else 0
    return int(v or 0)


def model_info(g: GGUFFile) -> ModelInfo:
    arch = g.get("general.architecture")
    if not isinstance(arch, str):
        raise QtkFormatError(f"{g.path}: no general.architecture")
    n_layer = _first(g.get(f"{arch}.block_count", 0))
    n_head = _first(g.get(f"{arch}.attention.head_count", 0))
    n_head_kv = _first(g.get(f"{arch}.attention.head_count_kv", n_head)) or n_head
    n_expert = _first(g.get(f"{arch}.expert_count", 0))
    return ModelInfo(arch, n_layer, n_head, n_head_kv, n_expert)


def requantize(in_path: str, out_path: Optional[str], qtype: str = "Q4_K_M", *, imatrix: Optional[str] = None,
               tensor_types=(), output_tensor_type=None, token_embedding_type=None, pure: bool = False,
               allow_requantize: bool = False, threads: Optional[int] = None, force: bool = False,
               dry_run: bool = False, progress=None, uncovered_experts: Optional[str] = None,
               min_expert_tokens: int = 1) -> Dict[str, Any]:
    from .converter.core import (DEFAULT_UNCOVERED_POLICY, ConvertOptions, _as_type, check_coverage, imatrix_report,
                                 parse_tensor_types, tensor_importance, uncovered_metadata)

    preset = get_preset(qtype)
    if not dry_run:
        if not out_path:
            raise QtkValueError("an output path is needed (or dry_run=True)")
        if os.path.abspath(out_path) == os.path.abspath(in_path):
            raise QtkValueError(f"{out_path}: the output cannot be the input file")
        check_output(out_path, force)
    t0 = time.perf_counter()
    nthreads = threads if threads is not None else default_threads()
    if isinstance(nthreads, bool) or not isinstance(nthreads, int) or nthreads < 1:
        raise QtkValueError(f"threads must be a positive integer, got {threads!r}")
    g = GGUFFile(in_path)
    try:
        minfo = model_info(g)
        entries = {t.name: t for t in g.tensors}
        specs = []
        for t in g.tensors:
            try:
                cur = QuantType(t.type_id)
            except ValueError:
                raise QtkFormatError(f"{in_path}: tensor {t.name} has type {t.type_name}, which qtoolkit cannot read") from None
            specs.append(TensorSpec(t.name, t.ne, cur))
        popts = PlanOptions(
            output_tensor_type=_as_type(output_tensor_type, "--output-tensor-type") if output_tensor_type else None,
            token_embedding_type=_as_type(token_embedding_type, "--token-embedding-type") if token_embedding_type else None,
            tensor_types=parse_tensor_types(tensor_types), pure=pure, has_imatrix=imatrix is not None,
        )
        types = plan_types(specs, preset, minfo, popts)
        im = None
        iminfo: Dict[str, Any] = {}
        opts = ConvertOptions(uncovered_experts=uncovered_experts or DEFAULT_UNCOVERED_POLICY,
                              min_expert_tokens=min_expert_tokens)
        if imatrix:
            from .imatrix import load_imatrix

            im = load_imatrix(imatrix)
            iminfo = imatrix_report(imatrix, im, opts)
        outs: List[TensorOut] = []
        producers: List[tuple] = []
        rows = []
        for name in file_order(types):
            e = entries[name]
            src = QuantType(e.type_id)
            dst = types[name]
            w = None
            if dst != src:
                if src not in _FLOAT and not allow_requantize:
                    raise QtkValueError(
                        f"{in_path}: tensor {name} is already {src.name}; re-quantizing loses quality "
                        "(pass --allow-requantize to do it anyway)"
                    )
                if type_info(dst).is_quantized and len(e.ne) >= 2:
                    n_mat = e.ne[2] if len(e.ne) > 2 else 1
                    w = tensor_importance(im, iminfo, name, dst, e.ne[0], n_mat, preset, opts)
            outs.append(TensorOut(name, e.ne, dst))
            producers.append((e, src, dst, w))
            rows.append({"name": name, "ne": list(e.ne), "from": src.name, "type": dst.name,
                         "bytes": outs[-1].nbytes, "elements": e.n_elements})
        check_coverage(iminfo, opts)
        md = [(kv.key, kv.value, kv.type, kv.subtype) for kv in g.kv.values()
              if kv.key not in _DROP_KEYS and kv.key != "general.architecture"]
        md += [("general.file_type", preset.ftype, 4, None), ("general.quantization_version", 2, 4, None)]
        if im is not None:
            md += [("quantize.imatrix.file", os.path.basename(im.path), 8, None),
                   ("quantize.imatrix.entries_count", len(im.entries), 4, None),
                   ("quantize.imatrix.chunks_count", int(im.chunk_count), 4, None)]
            if im.datasets:
                md.append(("quantize.imatrix.dataset", im.datasets[0], 8, None))
            md += uncovered_metadata(iminfo)
        report = _report(in_path, out_path, preset, rows, dry_run)
        report["imatrix"] = iminfo or None
        if dry_run:
            return report
        with ThreadPoolExecutor(max_workers=nthreads, thread_name_prefix="qtk-quantize") as pool:
            for t, args in zip(outs, producers):
                t.produce = _producer(g, *args, pool, nthreads)
            report["file_bytes"] = write_gguf(out_path, minfo.arch, md, outs, force=force, progress=progress)
        report["seconds"] = round(time.perf_counter() - t0, 3)
        return report
    finally:
        g.close()


def _producer(g: GGUFFile, e: TensorEntry, src: QuantType, dst: QuantType, w, pool, threads: int):
    def produce() -> Iterator[np.ndarray]:
        data = g.data(e)
        if src == dst:
            step = max(1, (1 << 26) // max(1, data.shape[-1]))
            flat = data.reshape(-1, data.shape[-1])
            for r in range(0, flat.shape[0], step):
                piece = np.array(flat[r:r + step])
                g.release(e)
                yield piece
            g.release(e)
            return
        n_mat = e.ne[2] if len(e.ne) > 2 else 1
        rows_per_mat = e.ne[1] if len(e.ne) > 1 else 1
        flat = data.reshape(n_mat * rows_per_mat, -1)
        step = max(1, SLAB_ELEMENTS // e.ne[0])

        def jobs():
            for m in range(n_mat):
                for r in range(0, rows_per_mat, step):
                    stop = min(rows_per_mat, r + step)
                    block = np.ascontiguousarray(flat[m * rows_per_mat + r: m * rows_per_mat + stop])
                    x = dequantize(block, src, threads=1)
                    if not np.isfinite(x).all():
                        raise QtkValueError(f"{g.path}: tensor {e.name} has NaN or Inf values (matrix {m}, rows {r}..{stop})")
                    yield (x.reshape(-1) if len(e.ne) == 1 else x), (w[m] if w is not None else None), m

        yield from quantize_stream(jobs(), dst, pool, threads, lambda _m: g.release(e))
        g.release(e)
    return produce


def _report(in_path, out_path, preset, rows, dry_run) -> Dict[str, Any]:
    by_type: Dict[str, Dict[str, Any]] = {}
    for r in rows:
        a = by_type.setdefault(r["type"], {"tensors": 0, "elements": 0, "bytes": 0})
        a["tensors"] += 1
        a["elements"] += r["elements"]
        a["bytes"] += r["bytes"]
    for a in by_type.values():
        a["bpw"] = round(8.0 * a["bytes"] / a["elements"], 4) if a["elements"] else 0.0
    tb = sum(r["bytes"] for r in rows)
    te = sum(r["elements"] for r in rows)
    return {"input": in_path, "output": out_path, "dry_run": dry_run, "preset": preset.name, "file_type": preset.ftype,
            "tensors": rows, "by_type": by_type,
            "totals": {"tensors": len(rows), "elements": te, "bytes": tb, "bpw": round(8.0 * tb / te, 4) if te else 0.0}}
