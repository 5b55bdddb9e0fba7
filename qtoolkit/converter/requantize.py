"""``qtoolkit.converter.requantize``: an F32/F16/BF16 GGUF file to a llama-quantize preset, streaming.

The input is read through the validating reader; the types come from the same
:func:`qtoolkit.presets.choose_types` as ``convert``; metadata is copied (with ``general.file_type``
and ``general.quantization_version`` set) and tensors are written in llama.cpp's file order.
Tensors that are already quantized are refused unless ``allow_requantize``.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from .convert import check_threads
from .importance import (DEFAULT_UNCOVERED_POLICY, Coverage, check_coverage, imatrix_metadata, imatrix_report,
                                   load_imatrix, tensor_importance)
from .plan import ConvertOptions, type_options
from .source import QUANTIZATION_VERSION, Metadata
from ..errors import QtkError, QtkFormatError, QtkValueError
from ..quants import QuantType, dequantize, type_info
from ..io.gguf_reader import GGUFFile, TensorEntry
from ..io.gguf_writer import TensorOut, write_gguf
from ..io.output import check_output
from .quantize_stream import quantize_stream
from ..presets import ModelInfo, TensorSpec, choose_types, file_order, get_preset

log = logging.getLogger(__name__)

_FLOAT = (QuantType.F32, QuantType.F16, QuantType.BF16)
_DROP_KEYS = {"general.file_type", "general.quantization_version", "split.no", "split.count", "split.tensors.count"}
SLAB_ELEMENTS = 1 << 20


def _count(g: GGUFFile, key: str, default: int) -> int:
    """A count the mixture rules use: an integer (or per-layer integers: the first) in [0, 2^31)."""
    kv = g.kv.get(key)
    if kv is None:
        return default
    v = kv.value
    if isinstance(v, (list, np.ndarray)):
        v = v[0] if len(v) else None
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or not 0 <= v < 1 << 31:
        raise QtkFormatError(f"{g.path}: {key} (offset {kv.offset}) = {_short(kv.value)} is not a count")
    return int(v)


def _short(v: Any) -> str:
    r = repr(v.tolist() if isinstance(v, np.ndarray) else v)
    return r if len(r) <= 60 else r[:57] + "..."


def model_info(g: GGUFFile) -> ModelInfo:
    arch = g.get("general.architecture")
    if not isinstance(arch, str):
        raise QtkFormatError(f"{g.path}: no general.architecture")
    n_layer = _count(g, f"{arch}.block_count", 0)
    n_head = _count(g, f"{arch}.attention.head_count", 0)
    n_head_kv = _count(g, f"{arch}.attention.head_count_kv", n_head) or n_head
    n_expert = _count(g, f"{arch}.expert_count", 0)
    return ModelInfo(arch, n_layer, n_head, n_head_kv, n_expert)


def requantize(in_path: str, out_path: Optional[str], qtype: str = "Q4_K_M", *, allow_requantize: bool = False,
               **options) -> Dict[str, Any]:
    """Re-quantize ``in_path`` to the preset ``qtype``; returns the report (a JSON-ready dict).
    ``options``: those of :func:`qtoolkit.converter.convert` (``imatrix``, ``uncovered_experts``,
    ``min_expert_tokens``, ``tensor_types``, ``output_tensor_type``, ``token_embedding_type``,
    ``pure``, ``threads``, ``force``, ``dry_run``, ``progress``); ``allow_requantize``: also
    re-quantize tensors that are already quantized."""
    opts = ConvertOptions(qtype=qtype, **options)
    preset = get_preset(opts.qtype)
    if not opts.dry_run:
        if not out_path:
            raise QtkValueError("an output path is needed (or dry_run=True)")
        check_output(out_path, opts.force, [in_path, opts.imatrix, *opts.inputs])
    t0 = time.perf_counter()
    nthreads = check_threads(opts.threads)
    g = GGUFFile(in_path)
    try:
        minfo = model_info(g)
        types = _types(g, preset, minfo, opts)
        cov = Coverage(opts.uncovered_experts or DEFAULT_UNCOVERED_POLICY, opts.min_expert_tokens)
        im = load_imatrix(opts.imatrix) if opts.imatrix else None
        iminfo: Dict[str, Any] = imatrix_report(im.path, im, cov) if im is not None else {}
        jobs = _jobs(g, types, preset, im, iminfo, cov, allow_requantize)
        check_coverage(iminfo, cov)
        md, empty = _metadata(g, preset, im, iminfo)
        report = _report(in_path, out_path, preset, [j.row for j in jobs], opts.dry_run)
        if empty:
            report["dropped_keys"] = empty
        report["imatrix"] = iminfo or None
        if opts.dry_run:
            return report
        with ThreadPoolExecutor(max_workers=nthreads, thread_name_prefix="qtk-quantize") as pool:
            outs = [TensorOut(j.entry.name, j.entry.ne, j.dst, _producer(g, j, pool, nthreads)) for j in jobs]
            report["file_bytes"] = write_gguf(out_path, minfo.arch, md, outs, force=opts.force, progress=opts.progress,
                                              inputs=[in_path, opts.imatrix, *opts.inputs])
        report["seconds"] = round(time.perf_counter() - t0, 3)
        return report
    finally:
        g.close()


def _types(g: GGUFFile, preset, minfo: ModelInfo, opts: ConvertOptions) -> Dict[str, QuantType]:
    """Every tensor's type under the preset and the overrides (llama-quantize's rules)."""
    specs = []
    for t in g.tensors:
        try:
            cur = QuantType(t.type_id)
        except ValueError:
            raise QtkFormatError(f"{g.path}: tensor {t.name} has type {t.type_name}, which qtoolkit cannot read") from None
        specs.append(TensorSpec(t.name, t.ne, cur))
    try:
        return choose_types(specs, preset, minfo, type_options(opts))
    except QtkValueError as exc:  # e.g. a tensor of a layer beyond block_count
        raise type(exc)(f"{g.path}: {exc}") from None


@dataclass
class _Job:
    entry: TensorEntry
    src: QuantType
    dst: QuantType
    weights: Optional[np.ndarray]   # importance weights (n_mat, ne0), or None
    row: Dict[str, Any]             # the report's line


def _jobs(g: GGUFFile, types: Dict[str, QuantType], preset, im, iminfo: Dict[str, Any], cov: Coverage,
          allow_requantize: bool) -> List[_Job]:
    """What to do with each tensor, in llama.cpp's file order: copy it, or convert it (with its
    importance weights); an already quantized tensor is refused unless ``allow_requantize``."""
    jobs: List[_Job] = []
    for name in file_order(types):
        e = g.tensor(name)
        src, dst = QuantType(e.type_id), types[name]
        w = None
        if dst != src:
            if src not in _FLOAT and not allow_requantize:
                raise QtkValueError(
                    f"{g.path}: tensor {name} is already {src.name}; re-quantizing loses quality "
                    "(pass --allow-requantize to do it anyway)"
                )
            if type_info(dst).is_quantized and len(e.ne) >= 2:
                n_mat = e.ne[2] if len(e.ne) > 2 else 1
                w = tensor_importance(im, iminfo, name, dst, e.ne[0], n_mat, preset, cov)
        row = {"name": name, "ne": list(e.ne), "from": src.name, "type": dst.name,
               "bytes": TensorOut(name, e.ne, dst).nbytes, "elements": e.n_elements}
        jobs.append(_Job(e, src, dst, w, row))
    return jobs


def _metadata(g: GGUFFile, preset, im, iminfo: Dict[str, Any]) -> Tuple[Metadata, List[str]]:
    """The input's metadata with the new file type (and the importance matrix's keys), and the keys
    that could not be copied."""
    md = [(kv.key, kv.value, kv.type, kv.subtype) for kv in g.kv.values()
          if kv.key not in _DROP_KEYS and kv.key != "general.architecture"]
    empty = [k for k, v, t, _ in md if t == 9 and len(v) == 0]
    if empty:  # gguf-py cannot write an empty array; an absent key reads the same to llama.cpp's loader
        log.warning("%s: empty metadata arrays are not copied: %s", g.path, ", ".join(empty))
        md = [m for m in md if m[0] not in empty]
    md += [("general.file_type", preset.ftype, 4, None), ("general.quantization_version", QUANTIZATION_VERSION, 4, None)]
    if im is not None:
        md += imatrix_metadata(im, iminfo)
    return md, empty


def _producer(g: GGUFFile, job: _Job, pool, threads: int):
    e, src, dst, w = job.entry, job.src, job.dst, job.weights

    def produce() -> Iterator[np.ndarray]:
        try:
            yield from _produce()
        except QtkError as exc:  # quantizer errors do not know the file and the tensor
            if g.path in str(exc):
                raise
            raise type(exc)(f"{g.path}: tensor {e.name}: {exc}") from None

    def _produce() -> Iterator[np.ndarray]:
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
