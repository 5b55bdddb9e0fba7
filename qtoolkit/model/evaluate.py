"""Perplexity and quantized-vs-base comparison, measured exactly as docs/METHODS.md states it
(llama-perplexity's method): tokenize once with the model's BOS rule, non-overlapping chunks of
``ctx`` tokens each evaluated from an empty cache, only the second half scored, float64 sums.

Both run on the layer-major runner (:mod:`.runner`), so a model bigger than memory is measured
reading each file once. :func:`compare` advances both models layer by layer together and keeps
only per-position scalars (never anything of size tokens x vocabulary): KL divergence, top-token
agreement, Δp, and per MoE layer the overlap of the routed expert sets.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from ..errors import QtkValueError
from .chunks import ROWS_PER_BLOCK, chunk_plan, chunk_tokens, log_softmax64, read_text
from .forward import Model
from .runner import LayerProgress, Run, StreamedModel

log = logging.getLogger(__name__)

Progress = Callable[[int, int, Dict[str, Any]], None]   # (chunks done, chunks, running figures)


def _chunks(tokens: Sequence[int], n_chunk: int, ctx: int, tokenizer) -> List[np.ndarray]:
    return [chunk_tokens(tokens, c, ctx, tokenizer) for c in range(n_chunk)]


def perplexity(model: Union[str, Model], file: Optional[str] = None, text: Optional[str] = None, ctx: int = 512,
               chunks: Optional[int] = None, threads: Optional[int] = None, progress: Optional[Progress] = None,
               max_memory: Optional[int] = None, spill_dir: Optional[str] = None,
               layer_progress: Optional[LayerProgress] = None) -> Dict[str, Any]:
    """Perplexity of ``model`` (a path or a loaded model) on ``file`` or ``text`` (METHODS.md), on the
    layer-major runner (:mod:`.runner`: one layer in memory at a time for a file; ``max_memory`` /
    ``spill_dir`` for the hidden states; ``layer_progress(done, layers, figures)`` per layer).

    Returns ``{"ppl", "ppl_stderr", "nll", "tokens", "scored", "chunks", "ctx", "seconds",
    "tok_per_s", "model", "file_type", "run"}``; ``tokens`` counts the evaluated tokens (chunks x ctx),
    ``run`` what the run read and spent (:class:`~.runner.RunFigures`)."""
    t_load = time.perf_counter()
    sm = StreamedModel(model, threads)
    try:
        m = sm.model
        body = read_text(text, file)
        tokens = m.tokenizer.encode(body)
        n_chunk = chunk_plan(len(tokens), ctx, chunks)
        first = ctx // 2
        cks = _chunks(tokens, n_chunk, ctx, m.tokenizer)
        t0 = time.perf_counter()
        nll_sum = nll2_sum = 0.0
        n_scored = 0
        with Run([sm], cks, max_memory=max_memory, spill_dir=spill_dir) as run:
            run.layers(progress=layer_progress)
            for c, (lg,) in enumerate(run.heads(first, ctx - 1)):
                targets = cks[c][first + 1:]
                for r in range(0, lg.shape[0], ROWS_PER_BLOCK):
                    lp = log_softmax64(lg[r:r + ROWS_PER_BLOCK])
                    nll = -lp[np.arange(lp.shape[0]), targets[r:r + lp.shape[0]]]
                    nll_sum += float(nll.sum())
                    nll2_sum += float(np.square(nll).sum())
                    n_scored += nll.size
                if progress is not None:
                    progress(c + 1, n_chunk, {"ppl": math.exp(nll_sum / n_scored)})
        seconds = time.perf_counter() - t0
    finally:
        sm.close()
    mean = nll_sum / n_scored
    var = max(nll2_sum / n_scored - mean * mean, 0.0)
    stderr_nll = math.sqrt(var / max(n_scored - 1, 1))
    ppl = math.exp(mean)
    return {
        "model": m.path, "file_type": m.file_type, "architecture": m.hp.arch,
        "ppl": ppl, "ppl_stderr": ppl * stderr_nll, "nll": mean,
        "tokens": n_chunk * ctx, "scored": n_scored, "text_tokens": len(tokens), "chunks": n_chunk, "ctx": ctx,
        "add_bos": bool(m.tokenizer.add_bos), "seconds": round(seconds, 3),
        "load_seconds": round(t0 - t_load, 3), "tok_per_s": round(n_chunk * ctx / seconds, 1) if seconds else None,
        "run": run.figures.report(),
    }


def router_overlap(base_ids: np.ndarray, quant_ids: np.ndarray) -> np.ndarray:
    """|top-k(base) ∩ top-k(quant)| / k per position, from two [T, k] arrays of distinct expert ids."""
    k = base_ids.shape[1]
    return (base_ids[:, :, None] == quant_ids[:, None, :]).any(axis=2).sum(axis=1) / k


def _percentile(sorted_vals: np.ndarray, q: float) -> float:
    return float(np.percentile(sorted_vals, q)) if sorted_vals.size else float("nan")


def compare(base: Union[str, Model], quant: Union[str, Model], file: Optional[str] = None,
            text: Optional[str] = None, ctx: int = 512, chunks: Optional[int] = None,
            threads: Optional[int] = None, progress: Optional[Progress] = None,
            report: Optional[str] = None, max_memory: Optional[int] = None, spill_dir: Optional[str] = None,
            layer_progress: Optional[LayerProgress] = None, report_force: bool = False) -> Dict[str, Any]:
    """How far ``quant`` is from ``base`` on the same tokens (METHODS.md, "Comparing two models").

    Both are paths (a Hugging Face folder or a GGUF file) or loaded models; they advance layer by
    layer together on the layer-major runner (:mod:`.runner`), the router agreement of every MoE
    layer measured in the same pass, the output heads run chunk by chunk at the end. Returns a
    JSON-ready dict: ``ppl_base``, ``ppl_quant``, ``ppl_ratio``, ``kld_mean``, ``kld_median``,
    ``kld_p99``, ``kld_p999``, ``kld_max``, ``top1_agree``, ``rms_dp``, for MoE models
    ``router_agree`` (overall) and ``router_agree_layers``, and ``run`` (what the run read and
    spent). ``report``: a folder for a markdown summary and PNG plots (needs matplotlib); files of
    an earlier report there are replaced only with ``report_force``."""
    inputs = [p if isinstance(p, str) else getattr(p, "path", None) for p in (base, quant)] + [file]
    if report:
        from .report import check_report

        check_report(report, report_force, inputs)
    t_load = time.perf_counter()
    sb = StreamedModel(base, threads)
    try:
        sq = StreamedModel(quant, threads)
    except BaseException:
        sb.close()
        raise
    try:
        return _compare(sb, sq, read_text(text, file), ctx, chunks, progress, report, max_memory, spill_dir,
                        layer_progress, t_load, (report_force, inputs))
    finally:
        sb.close()
        sq.close()


def _compare(sb: StreamedModel, sq: StreamedModel, body: str, ctx: int, chunks: Optional[int], progress, report,
             max_memory, spill_dir, layer_progress, t_load: float, report_how=(False, ())) -> Dict[str, Any]:
    mb, mq = sb.model, sq.model
    if mb.n_vocab != mq.n_vocab:
        raise QtkValueError(f"the models have different vocabularies ({mb.n_vocab} vs {mq.n_vocab} tokens)")
    tokens = mb.tokenizer.encode(body)
    if mq.tokenizer is not None and mq.tokenizer.encode(body) != tokens:
        log.warning("the two models tokenize the text differently; the base model's tokens are used for both")
    n_chunk = chunk_plan(len(tokens), ctx, chunks)
    first = ctx // 2
    cks = _chunks(tokens, n_chunk, ctx, mb.tokenizer)
    moe = mb.hp.is_moe and mq.hp.is_moe and (mb.hp.n_expert, mb.hp.n_expert_used) == (mq.hp.n_expert, mq.hp.n_expert_used)
    router_sum = np.zeros(mb.hp.n_layer) if moe else None

    def on_route(il: int, c: int, ids: List[np.ndarray]) -> None:
        if moe:
            router_sum[il] += float(router_overlap(ids[0], ids[1]).sum())

    kld_all: List[np.ndarray] = []
    dp_all: List[np.ndarray] = []
    nll_b = nll_q = 0.0
    same_top = 0
    n_scored = 0
    t0 = time.perf_counter()
    with Run([sb, sq], cks, max_memory=max_memory, spill_dir=spill_dir) as run:
        run.layers(on_route=on_route, progress=layer_progress)
        for c, (lb, lq) in enumerate(run.heads(first, ctx - 1)):
            targets = cks[c][first + 1:]
            for r in range(0, lb.shape[0], ROWS_PER_BLOCK):
                pb = log_softmax64(lb[r:r + ROWS_PER_BLOCK])
                pq = log_softmax64(lq[r:r + ROWS_PER_BLOCK])
                rows = np.arange(pb.shape[0])
                tgt = targets[r:r + pb.shape[0]]
                P = np.exp(pb)
                kld_all.append(np.sum(P * (pb - pq), axis=-1))
                nll_b -= float(pb[rows, tgt].sum())
                nll_q -= float(pq[rows, tgt].sum())
                dp_all.append(np.exp(pq[rows, tgt]) - P[rows, tgt])
                same_top += int(np.count_nonzero(pb.argmax(axis=-1) == pq.argmax(axis=-1)))
                n_scored += pb.shape[0]
            if progress is not None:
                progress(c + 1, n_chunk, {"kld": float(np.concatenate(kld_all).mean()),
                                          "ppl_q/ppl_b": math.exp((nll_q - nll_b) / n_scored)})
    seconds = time.perf_counter() - t0
    kld = np.sort(np.concatenate(kld_all))
    kld = np.maximum(kld, 0.0)  # rounding can make a near-zero divergence slightly negative
    dp = np.concatenate(dp_all)
    ppl_b, ppl_q = math.exp(nll_b / n_scored), math.exp(nll_q / n_scored)
    out: Dict[str, Any] = {
        "base": mb.path, "quant": mq.path, "base_type": mb.file_type, "quant_type": mq.file_type,
        "ctx": ctx, "chunks": n_chunk, "tokens": n_chunk * ctx, "scored": n_scored,
        "ppl_base": ppl_b, "ppl_quant": ppl_q, "ppl_ratio": ppl_q / ppl_b,
        "kld_mean": float(kld.mean()), "kld_median": _percentile(kld, 50), "kld_p99": _percentile(kld, 99),
        "kld_p999": _percentile(kld, 99.9), "kld_max": float(kld.max()),
        "top1_agree": same_top / n_scored, "rms_dp": float(np.sqrt(np.mean(dp * dp))),
        "seconds": round(seconds, 3), "load_seconds": round(t0 - t_load, 3), "run": run.figures.report(),
    }
    if moe:
        layers = (router_sum / (n_chunk * ctx)).tolist()
        out["router_agree"] = float(np.mean(layers))
        out["router_agree_layers"] = layers
    if report:
        from .report import write_report

        out["report"] = write_report(report, out, kld, *report_how)
    return out
