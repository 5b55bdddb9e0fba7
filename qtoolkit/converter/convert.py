"""``qtoolkit convert``: a Hugging Face checkpoint to a llama.cpp GGUF file in one streaming pass.

:func:`convert` plans (:func:`~.plan.build_plan`: headers only) and then :func:`write_plan` writes:
tensors in llama.cpp's file order, each produced matrix by matrix (one expert at a time for
stacked experts, in row slabs for big matrices) from the memory-mapped checkpoint: widen to
float32, check for NaN/Inf, quantize on a thread pool, write, release the source pages. Peak
memory is a few slabs per thread, whatever the model size.

A conversion to a size or bits-per-weight target is the bit allocator's job
(:func:`qtoolkit.alloc.convert_to_budget`), which plans with its own types and calls
:func:`write_plan` too.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterator, Optional, Sequence

import numpy as np

from ..errors import QtkValueError
from ..quants import MAX_THREADS, default_threads, quantize
from ..io.gguf_writer import Progress, TensorOut, write_gguf
from ..io.output import check_output
from .quantize_stream import quantize_stream
from .plan import ConvertOptions, Plan, PlannedTensor, build_plan, plan_report
from .source import rows_f32


def check_threads(threads: Optional[int]) -> int:
    """``threads`` (None: one per core) as a positive int, or a QtkValueError."""
    n = threads if threads is not None else default_threads()
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_THREADS:
        raise QtkValueError(f"threads must be an integer from 1 to {MAX_THREADS}, got {threads!r}")
    return n


def convert(model_dir: str, out_path: Optional[str], qtype: Optional[str] = None, **options) -> Dict[str, Any]:
    """Convert a Hugging Face model folder to a GGUF file; returns the report (a JSON-ready dict).

    ``qtype``: a llama-quantize preset (default Q4_K_M). Options (:class:`~.plan.ConvertOptions`):
    ``imatrix`` (path), ``uncovered_experts``, ``min_expert_tokens``, ``tensor_types``
    (["REGEX=TYPE", ...]), ``output_tensor_type``, ``token_embedding_type``, ``pure``, ``dry_run``,
    ``threads``, ``force``, ``tokenizer_pre``, ``progress`` (a :class:`qtoolkit.io.gguf_writer.Progress`).
    """
    opts = ConvertOptions(qtype=qtype or "Q4_K_M", **options)
    if not opts.dry_run:
        if not out_path:
            raise QtkValueError("an output path is needed (or dry_run=True)")
        check_output(out_path, opts.force, [model_dir, opts.imatrix, *opts.inputs])
    t0 = time.perf_counter()
    plan = build_plan(model_dir, opts)
    try:
        return run_plan(plan, out_path, opts, t0)
    finally:
        plan.close()


def run_plan(plan: Plan, out_path: Optional[str], opts: ConvertOptions, t0: float,
             extra: Optional[Dict[str, Any]] = None, inputs: Sequence[Optional[str]] = ()) -> Dict[str, Any]:
    """The report of ``plan`` (with ``extra`` entries), and unless ``opts.dry_run`` the file
    written: ``file_bytes`` and ``seconds`` since ``t0`` join the report. The output is never
    one of the inputs: the model folder's files, the imatrix, ``opts.inputs`` and ``inputs``."""
    report = plan_report(plan, out_path, opts.dry_run)
    report.update(extra or {})
    if opts.dry_run:
        return report
    report["file_bytes"] = write_plan(plan, out_path, opts.threads, opts.force, opts.progress,
                                      [plan.model_dir, opts.imatrix, *opts.inputs, *inputs])
    report["seconds"] = round(time.perf_counter() - t0, 3)
    return report


def write_plan(plan: Plan, out_path: str, threads: Optional[int] = None, force: bool = False,
               progress: Optional[Progress] = None, inputs: Sequence[Optional[str]] = ()) -> int:
    """Write the planned file (see the module doc); returns its size in bytes. ``inputs``: the
    files (or folders) the output must not be (the model folder is always one)."""
    n = check_threads(threads)
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="qtk-convert") as pool:
        outs = [TensorOut(pt.out.name, pt.out.ne, pt.type, _producer(plan, pt, pool, n)) for pt in plan.tensors]
        return write_gguf(out_path, plan.arch.gguf_arch, plan.metadata, outs, force=force, progress=progress,
                          inputs=[plan.model_dir, *inputs])


def _producer(plan: Plan, pt: PlannedTensor, pool, threads: int):
    ckpt = plan.checkpoint

    def produce() -> Iterator[np.ndarray]:
        out = pt.out
        if out.const is not None:
            yield quantize(np.ascontiguousarray(out.const, dtype=np.float32), pt.type, threads=1)
            return

        def jobs():
            for e, part in enumerate(out.parts):
                for x in rows_f32(ckpt, part, out.name):
                    yield x, (pt.imatrix[e] if pt.imatrix is not None else None), e

        def done(e):
            ckpt.release(out.parts[e].source)  # keep mapped pages from piling up

        try:
            yield from quantize_stream(jobs(), pt.type, pool, threads, done)
        except QtkValueError as exc:  # the quantizer's errors (values too large for a scale) know no tensor
            if ckpt.file_of(out.parts[0].source) in str(exc):
                raise
            srcs = sorted({p.source for p in out.parts})
            sources = srcs[0] + (f" (and {len(srcs) - 1} more)" if len(srcs) > 1 else "")
            raise type(exc)(f"{ckpt.file_of(out.parts[0].source)}: tensor {sources} -> {out.name} "
                            f"({pt.type.name}): {exc}") from None
        for part in out.parts:
            ckpt.release(part.source)
    return produce
