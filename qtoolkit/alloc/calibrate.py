"""The calibration run of the bit allocator: the full-precision model on a calibration text.

One pass over ``chunks`` chunks of ``ctx`` tokens (each from an empty cache, as docs/METHODS.md
evaluates) records

* the base model's log-probabilities at the scored positions (the second half of each chunk),
  the reference every sensitivity probe's KL divergence is measured against;
* the hidden state entering every layer and leaving the last one, so that a probe that changes
  one tensor of layer ``l`` re-runs only layers ``l ..`` (layers before it are unchanged);
* activation statistics, the weights of the quantization error (``error_weights``): for a linear
  layer the mean square of each input column over all tokens (what an importance matrix holds);
  for a stack of experts, per expert, ``sum over the tokens routed to it of gate_weight² · x²``
  divided by *all* tokens, so an expert's error counts as often as the expert fires and as much as
  its router weight scales its output (MoE-aware); for an embedding, how often each row is looked up.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, List, Optional

import numpy as np

from ..errors import QtkValueError
from ..formats import QuantType
from ..model.evaluate import _log_softmax64, chunk_plan
from ..model.forward import Model, silu
from ..model.linear import Experts, Linear

log = logging.getLogger(__name__)

# GGUF tensor suffix -> attribute of a layer
LAYER_ATTRS = {
    "attn_q": "wq", "attn_k": "wk", "attn_v": "wv", "attn_output": "wo",
    "ffn_gate": "ffn_gate", "ffn_up": "ffn_up", "ffn_down": "ffn_down",
    "ffn_gate_shexp": "shexp_gate", "ffn_up_shexp": "shexp_up", "ffn_down_shexp": "shexp_down",
}
EXPERT_PROJ = {"ffn_gate_exps": 0, "ffn_up_exps": 1, "ffn_down_exps": 2}
UNUSED_EXPERT_FLOOR = 0.01  # an expert calibration never routed to still counts 1 % of the average


class _LinearTap:
    """Stands in for a :class:`Linear` during the calibration pass and sums its inputs' squares."""

    def __init__(self, lin: Linear):
        self.lin = lin
        self.sum_x2 = np.zeros(lin.cols, dtype=np.float64)
        self.n = 0
        self.row_counts: Optional[np.ndarray] = None

    def __getattr__(self, name):  # rows, cols, qtype, ...
        return getattr(self.lin, name)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x64 = x.astype(np.float64)
        self.sum_x2 += np.einsum("ti,ti->i", x64, x64)
        self.n += x.shape[0]
        return self.lin(x)

    def rows_f32(self, ids: np.ndarray) -> np.ndarray:
        if self.row_counts is None:
            self.row_counts = np.zeros(self.lin.rows, dtype=np.float64)
        np.add.at(self.row_counts, np.asarray(ids, dtype=np.int64), 1.0)
        return self.lin.rows_f32(ids)


class _ExpertsTap:
    """Stands in for :class:`Experts`: per expert, gate-weighted input squares of the gate/up
    projections and of the down projection, and routing counts."""

    def __init__(self, ex: Experts):
        self.ex = ex
        E = ex.n_expert
        self.sum_in = np.zeros((E, ex.n_embd), dtype=np.float64)
        self.sum_mid = np.zeros((E, ex.n_ff), dtype=np.float64)
        self.count = np.zeros(E, dtype=np.float64)
        self.n_tokens = 0

    def __getattr__(self, name):
        return getattr(self.ex, name)

    def _mats(self, e: int):
        if self.ex._f32 is not None:
            return self.ex._f32[0][e], self.ex._f32[1][e]
        from ..formats import dequantize

        g = dequantize(np.ascontiguousarray(self.ex.gate[e]), self.ex.qtypes[0]).reshape(self.ex.n_ff, self.ex.n_embd)
        u = dequantize(np.ascontiguousarray(self.ex.up[e]), self.ex.qtypes[1]).reshape(self.ex.n_ff, self.ex.n_embd)
        return g, u

    def __call__(self, x: np.ndarray, ids: np.ndarray, weights: np.ndarray) -> np.ndarray:
        T, k = ids.shape
        self.n_tokens += T
        flat = ids.reshape(-1)
        wflat = weights.reshape(-1).astype(np.float64)
        for e in np.unique(flat):
            sel = np.nonzero(flat == e)[0]
            xe = x[sel // k]
            w2 = wflat[sel] ** 2
            x64 = xe.astype(np.float64)
            sq = x64 * x64
            self.sum_in[e] += w2 @ sq
            g, u = self._mats(int(e))
            mid = (silu(xe @ g.T) * (xe @ u.T)).astype(np.float64)
            sq = mid * mid
            self.sum_mid[e] += w2 @ sq
            self.count[e] += sel.size
        return self.ex(x, ids, weights)


class Calibration:
    """Runs ``model`` (full precision) over the calibration text once; then :meth:`kld` measures how
    far the (modified) model is from it, re-running only the layers from a given one."""

    def __init__(self, model: Model, text: str, ctx: int = 512, chunks: Optional[int] = 16):
        if model.tokenizer is None:
            raise QtkValueError("the calibration model has no tokenizer")
        self.model = model
        tokens = model.tokenizer.encode(text)
        n = chunk_plan(len(tokens), ctx, chunks)
        self.ctx = ctx
        self.first = ctx // 2
        self.chunks: List[np.ndarray] = []
        for c in range(n):
            chunk = np.asarray(tokens[c * ctx:(c + 1) * ctx], dtype=np.int64)
            if model.tokenizer.add_bos:
                chunk = chunk.copy()
                chunk[0] = model.tokenizer.bos_id
            self.chunks.append(chunk)
        self.n_tokens = n * ctx
        self.scored = n * (ctx - 1 - self.first)
        self.inputs: List[List[np.ndarray]] = []   # per chunk: the input of every layer, then the final hidden state
        self.base_logits: List[np.ndarray] = []
        self.stats: Dict[str, Any] = {}
        self.seconds = 0.0
        self.probe_seconds = 0.0
        self.n_probes = 0
        self._run()

    # -- the base pass -------------------------------------------------------------------------
    def _run(self) -> None:
        m = self.model
        t0 = time.perf_counter()
        taps: Dict[str, Any] = {}
        saved = []

        def tap(obj, attr, name, cls):
            cur = getattr(obj, attr)
            if cur is None:
                return
            t = cls(cur)
            saved.append((obj, attr, cur))
            setattr(obj, attr, t)
            taps[name] = t

        tied = m.output is m.tok_embd
        tap(m, "tok_embd", "token_embd.weight", _LinearTap)
        if tied:  # one tensor in both roles: one tap sees the lookups and the head's inputs
            saved.append((m, "output", m.output))
            m.output = taps["token_embd.weight"]
        else:
            tap(m, "output", "output.weight", _LinearTap)
        for il, L in enumerate(m.layers):
            for suffix, attr in LAYER_ATTRS.items():
                tap(L, attr, f"blk.{il}.{suffix}.weight", _LinearTap)
            if L.experts is not None:
                tap(L, "experts", f"blk.{il}.experts", _ExpertsTap)
        try:
            for chunk in self.chunks:
                cache = m.new_cache(self.ctx)
                x = m.tok_embd.rows_f32(chunk)
                inputs: List[np.ndarray] = []
                x = m.run_layers(x, cache, 0, inputs=inputs)
                inputs.append(x)
                self.inputs.append(inputs)
                # the float32 logits (not float32 log-probabilities: those would round to a KLD floor)
                self.base_logits.append(m.head(x[self.first:self.ctx - 1]))
        finally:
            for obj, attr, cur in reversed(saved):
                setattr(obj, attr, cur)
        self.stats = taps
        self.seconds = time.perf_counter() - t0
        log.info("calibration pass: %d chunks of %d tokens in %.1f s", len(self.chunks), self.ctx, self.seconds)

    # -- what the error of each tensor is weighted by ---------------------------------------------
    def error_weights(self, name: str, n_cols: int, n_mat: int, n_rows: int):
        """(column weights [n_mat, n_cols] float32 or None, row weights [n_rows] float64 or None)
        of a GGUF tensor's quantization error (see the module doc)."""
        m = self.model
        tied = m.output is m.tok_embd
        if name == "token_embd.weight":
            t = self.stats["token_embd.weight"]
            if tied:  # the output role: column weights of the head's input
                return (t.sum_x2 / max(t.n, 1)).astype(np.float32)[None, :], None
            counts = t.row_counts if t.row_counts is not None else np.zeros(n_rows)
            return None, counts / max(counts.sum(), 1.0)
        if name == "output.weight":
            t = self.stats["output.weight"]
            return (t.sum_x2 / max(t.n, 1)).astype(np.float32)[None, :], None
        parts = name.split(".")
        suffix = parts[2]
        if suffix in EXPERT_PROJ:
            t: _ExpertsTap = self.stats[f"blk.{parts[1]}.experts"]
            s = t.sum_mid if suffix == "ffn_down_exps" else t.sum_in
            w = s / max(t.n_tokens, 1)
            w = w + UNUSED_EXPERT_FLOOR * w.mean(axis=0, keepdims=True)
            return w.astype(np.float32), None
        t = self.stats.get(name)
        if t is None:
            return None, None
        return (t.sum_x2 / max(t.n, 1)).astype(np.float32)[None, :], None

    def expert_counts(self) -> Dict[int, np.ndarray]:
        """Routed slots per expert of every MoE layer over the calibration tokens."""
        return {int(k.split(".")[1]): t.count for k, t in self.stats.items() if isinstance(t, _ExpertsTap)}

    # -- probes ---------------------------------------------------------------------------------
    def kld(self, start: int) -> float:
        """Mean KL divergence of the (modified) model from the base, re-running layers ``start ..``
        from the recorded inputs; ``start = -1`` re-runs everything from the embeddings and
        ``start = n_layer`` only the output head."""
        m = self.model
        t0 = time.perf_counter()
        total = 0.0
        n = 0
        for c, chunk in enumerate(self.chunks):
            if start < 0:
                x = m.run_layers(m.tok_embd.rows_f32(chunk), m.new_cache(self.ctx), 0)
            elif start < len(m.layers):
                x = m.run_layers(self.inputs[c][start], m.new_cache(self.ctx), 0, start=start)
            else:
                x = self.inputs[c][-1]
            lq = _log_softmax64(m.head(x[self.first:self.ctx - 1]))
            lb = _log_softmax64(self.base_logits[c])
            total += float(np.sum(np.exp(lb) * (lb - lq)))
            n += lb.shape[0]
        self.probe_seconds += time.perf_counter() - t0
        self.n_probes += 1
        return max(total / n, 0.0)


def replace_tensor(model: Model, name: str, w: np.ndarray, qtype: QuantType = QuantType.F32, cols: int = 0):
    """Put weights ``w`` in place of tensor ``name``: float32 in the tensor's numpy shape, or, with
    ``qtype``, its quantized bytes (rows of ``cols`` elements; ``[n_expert, rows, row_bytes]`` for
    experts) run by the kernels as the quantized file will be. Returns an undo function."""
    def linear(cols_of, bias=None, threads=None):
        if qtype == QuantType.F32:
            return Linear(np.ascontiguousarray(w, dtype=np.float32), QuantType.F32, cols_of, bias=bias, threads=threads)
        return Linear(np.ascontiguousarray(w).reshape(w.shape[-2] if w.ndim == 3 else w.shape[0], -1), qtype, cols_of,
                      bias=bias, threads=threads)

    if name in ("token_embd.weight", "output.weight"):
        old_embd, old_out = model.tok_embd, model.output
        lin = linear(cols or w.shape[1], threads=old_embd.threads)
        if name == "token_embd.weight":
            model.tok_embd = lin
            if old_out is old_embd:
                model.output = lin
        else:
            model.output = lin

        def undo():
            model.tok_embd, model.output = old_embd, old_out
        return undo
    parts = name.split(".")
    il, suffix = int(parts[1]), parts[2]
    L = model.layers[il]
    if suffix in EXPERT_PROJ:
        old = L.experts
        # the other two projections stay as they are (float32, or quantized in a GGUF reference)
        mats = list(old._f32) if old._f32 is not None else [old.gate, old.up, old.down]
        qtypes = list(old.qtypes)
        j = EXPERT_PROJ[suffix]
        mats[j] = np.ascontiguousarray(w, dtype=np.float32) if qtype == QuantType.F32 else np.ascontiguousarray(w)
        qtypes[j] = qtype
        L.experts = Experts(*mats, qtypes, old.n_embd, old.n_ff, threads=old.threads)

        def undo():
            L.experts = old
        return undo
    attr = LAYER_ATTRS[suffix]
    old = getattr(L, attr)
    setattr(L, attr, linear(old.cols, bias=old.bias, threads=old.threads))

    def undo():
        setattr(L, attr, old)
    return undo


def start_layer(name: str, n_layer: int, tied: bool) -> int:
    """The first layer a change of tensor ``name`` affects (-1: the embeddings, n_layer: the head)."""
    if name == "token_embd.weight":
        return -1
    if name == "output.weight":
        return n_layer
    return int(name.split(".")[1])
