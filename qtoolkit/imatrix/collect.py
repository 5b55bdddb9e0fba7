"""``qtoolkit imatrix``: run a calibration text through a model and collect, for every weight
matrix, the per-column sums of squared input activations and the number of tokens seen; for an
expert stack, per expert, counting only the tokens routed to it (docs/imatrix.md).

What is collected follows llama-imatrix (ggml-formats.md §5): the inputs of every matrix product
whose weight lives in a block (``blk.N.…``; the output projection only with ``process_output``);
a dense product of fewer than 16 tokens is ignored; expert products are always counted, one
activation row per routed (token, slot) pair. The text is cut as llama-imatrix and
llama-perplexity cut it (docs/METHODS.md): tokenized once with the model's BOS rule,
non-overlapping chunks of ``ctx`` tokens each from an empty cache, BOS put first in each chunk if
the model adds one. The perplexity of the second halves is reported as llama-imatrix prints it.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any, Callable, Dict, Optional, Tuple, Union

import numpy as np

from ..errors import QtkValueError
from ..io.imatrix_file import FORMATS, ImatrixStats, write_imatrix
from ..io.output import check_output
from ..model.chunks import ROWS_PER_BLOCK, chunk_plan, chunk_tokens, log_softmax64, read_text
from ..model.forward import Model
from ..model.runner import LayerProgress, Run, StreamedModel
from ..model.taps import observe_head
from .coverage import coverage

log = logging.getLogger(__name__)

MIN_DENSE_TOKENS = 16   # llama-imatrix ignores dense products of fewer tokens


class ImatrixCollector:
    """The observer of :func:`qtoolkit.model.taps.observe` that accumulates importance statistics
    (float64 sums; counts as integers)."""

    wants_hidden = True   # the down projections' inputs, as the model computed them

    def __init__(self):
        self.sums: Dict[str, np.ndarray] = {}
        self.counts: Dict[str, np.ndarray] = {}
        self._last: Tuple[Any, Optional[np.ndarray]] = (None, None)

    def _squares(self, x: np.ndarray) -> np.ndarray:
        """Σ_t x[t]² per column in float64 (q, k and v share one input: computed once)."""
        if self._last[0] is x:
            return self._last[1]
        x64 = x.astype(np.float64)
        s = np.einsum("tj,tj->j", x64, x64)
        self._last = (x, s)
        return s

    def dense(self, name: str, x: np.ndarray) -> None:
        if x.shape[0] < MIN_DENSE_TOKENS:
            return
        s = self._squares(x)
        acc = self.sums.get(name)
        if acc is None:
            acc = self.sums[name] = np.zeros((1, x.shape[1]), dtype=np.float64)
            self.counts[name] = np.zeros(1, dtype=np.int64)
        acc[0] += s
        self.counts[name][0] += x.shape[0]

    def experts(self, names, stack, x: np.ndarray, ids: np.ndarray, weights: np.ndarray, hidden: np.ndarray) -> None:
        gate, up, down = names
        n_expert = stack.n_expert
        T, k = ids.shape
        if gate not in self.sums:
            self.sums[gate] = np.zeros((n_expert, x.shape[1]), dtype=np.float64)
            self.sums[up] = self.sums[gate]                 # the same input, the same routing
            self.sums[down] = np.zeros((n_expert, hidden.shape[2]), dtype=np.float64)
            self.counts[gate] = np.zeros(n_expert, dtype=np.int64)
            self.counts[up] = self.counts[gate]
            self.counts[down] = np.zeros(n_expert, dtype=np.int64)
        flat = ids.reshape(-1)
        order = np.argsort(flat, kind="stable")
        bounds = np.searchsorted(flat[order], np.arange(n_expert + 1))
        hflat = hidden.reshape(T * k, -1)
        sg, sd = self.sums[gate], self.sums[down]
        for e in np.nonzero(np.diff(bounds))[0]:
            sel = order[bounds[e]:bounds[e + 1]]            # routed pairs (t, j) as t * k + j
            xe = x[sel // k].astype(np.float64)
            he = hflat[sel].astype(np.float64)
            sg[e] += np.einsum("tj,tj->j", xe, xe)
            sd[e] += np.einsum("tj,tj->j", he, he)
        n = np.diff(bounds)
        self.counts[gate] += n
        self.counts[down] += n

    def check_finite(self, where: str) -> None:
        for name, s in self.sums.items():
            if not np.all(np.isfinite(s)):
                raise QtkValueError(f"non-finite activations entering {name} ({where}); the model's output is not usable")

    def stats(self, datasets, chunk_count: int, chunk_size: int) -> ImatrixStats:
        sums = {n: s.astype(np.float32) for n, s in self.sums.items()}
        counts = {n: c.astype(np.float64) for n, c in self.counts.items()}
        return ImatrixStats(sums, counts, list(datasets), int(chunk_count), int(chunk_size))


Progress = Callable[[int, int, Dict[str, Any]], None]


def collect_imatrix(model: Union[str, Model], file: Optional[str] = None, text: Optional[str] = None,
                    ctx: int = 512, chunks: Optional[int] = None, threads: Optional[int] = None,
                    process_output: bool = False, compute_ppl: bool = True, dataset: Optional[str] = None,
                    progress: Optional[Progress] = None, max_memory: Optional[int] = None,
                    spill_dir: Optional[str] = None,
                    layer_progress: Optional[LayerProgress] = None) -> Tuple[ImatrixStats, Dict[str, Any]]:
    """Run the calibration text through ``model`` (a GGUF file, a Hugging Face folder or a loaded
    model) on the layer-major runner (:mod:`qtoolkit.model.runner`: one layer of a file in memory at
    a time), a collector observing each layer as it runs; returns the statistics and a JSON-ready
    summary of the run.

    ``dataset``: the name stored in ``imatrix.datasets`` (default: ``file`` as given)."""
    t_load = time.perf_counter()
    sm = StreamedModel(model, threads)
    try:
        m = sm.model
        body = read_text(text, file)
        tokens = m.tokenizer.encode(body)
        n_chunk = chunk_plan(len(tokens), ctx, chunks)
        first = ctx // 2
        cks = [chunk_tokens(tokens, c, ctx, m.tokenizer) for c in range(n_chunk)]
        collector = ImatrixCollector()
        nll_sum, n_scored = 0.0, 0
        t0 = time.perf_counter()
        # llama-imatrix records the output projection only when the model has its own (not a tied embedding)
        head = process_output and m.output is not m.tok_embd
        with Run([sm], cks, max_memory=max_memory, spill_dir=spill_dir) as run:
            run.layers(observers=[collector], on_layer=lambda il: collector.check_finite(f"layer {il}"),
                       progress=layer_progress)
            if compute_ppl or head:
                # every position's logits when the output projection is observed (llama-imatrix asks
                # for all of them); otherwise only the scored second half
                start = 0 if head else first
                with observe_head(m, collector) if head else _nothing():
                    for c, (lg,) in enumerate(run.heads(start, ctx - 1 if not head else ctx)):
                        if head:
                            collector.check_finite(f"chunk {c}")
                        if compute_ppl:
                            lg = lg[first - start: ctx - 1 - start]
                            targets = cks[c][first + 1:]
                            for r in range(0, lg.shape[0], ROWS_PER_BLOCK):
                                lp = log_softmax64(lg[r:r + ROWS_PER_BLOCK])
                                nll_sum -= float(lp[np.arange(lp.shape[0]), targets[r:r + lp.shape[0]]].sum())
                                n_scored += lp.shape[0]
                        if progress is not None:
                            progress(c + 1, n_chunk, {"ppl": math.exp(nll_sum / n_scored)} if n_scored else {})
        seconds = time.perf_counter() - t0
    finally:
        sm.close()
    name = dataset if dataset is not None else (file if file is not None else "<text>")
    stats = collector.stats([name], n_chunk, ctx)
    info = {
        "model": m.path, "file_type": m.file_type, "architecture": m.hp.arch,
        "dataset": name, "ctx": ctx, "chunks": n_chunk, "tokens": n_chunk * ctx, "text_tokens": len(tokens),
        "add_bos": bool(m.tokenizer.add_bos),
        "ppl": math.exp(nll_sum / n_scored) if n_scored else None,
        "entries": len(stats.sums),
        "seconds": round(seconds, 3), "load_seconds": round(t0 - t_load, 3),
        "tok_per_s": round(n_chunk * ctx / seconds, 1) if seconds else None,
        "run": run.figures.report(),
    }
    return stats, info


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def compute_imatrix(model: Union[str, Model], file: Optional[str] = None, text: Optional[str] = None,
                    output: Optional[str] = None, ctx: int = 512, chunks: Optional[int] = None,
                    threads: Optional[int] = None, process_output: bool = False, compute_ppl: bool = True,
                    output_format: Optional[str] = None, force: bool = False, min_tokens: int = 1,
                    dataset: Optional[str] = None, progress: Optional[Progress] = None,
                    max_memory: Optional[int] = None, spill_dir: Optional[str] = None,
                    layer_progress: Optional[LayerProgress] = None) -> Dict[str, Any]:
    """Compute an importance matrix (:func:`collect_imatrix`), write it to ``output`` (GGUF; a
    ``.dat`` suffix or ``output_format="dat"`` for the legacy format; None: write nothing) and
    return the JSON-ready report: the run's summary, ``output``, ``format``, ``file_bytes`` and
    ``coverage`` (:func:`qtoolkit.imatrix.coverage.coverage` with ``min_tokens``)."""
    if output_format is not None and output_format not in FORMATS:
        raise QtkValueError(f"imatrix output format must be one of {', '.join(FORMATS)}, got {output_format!r}")
    inputs = [model if isinstance(model, str) else getattr(model, "path", None), file]
    if output is not None:
        check_output(output, force, inputs)   # fail before the long run, not after it
    stats, report = collect_imatrix(model, file=file, text=text, ctx=ctx, chunks=chunks, threads=threads,
                                    process_output=process_output, compute_ppl=compute_ppl, dataset=dataset,
                                    progress=progress, max_memory=max_memory, spill_dir=spill_dir,
                                    layer_progress=layer_progress)
    report.update(output=output, format=None, file_bytes=None)
    if output is not None:
        fmt = output_format or ("dat" if os.fspath(output).endswith(".dat") else "gguf")
        report["file_bytes"] = write_imatrix(output, stats, fmt, force=force, inputs=inputs)
        report["format"] = fmt
    report["coverage"] = coverage(stats, min_tokens=min_tokens)
    return report
