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
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..errors import QtkValueError
from ..model.chunks import chunk_plan, chunk_tokens, log_softmax64
from ..model.forward import Model, silu
from ..model.linear import Experts
from ..model.runner import Run, StreamedModel
from ..model.taps import observe
from ..model.tensors import EXPERT_STACKS, split_name

log = logging.getLogger(__name__)

UNUSED_EXPERT_FLOOR = 0.01  # an expert calibration never routed to still counts 1 % of the average


class _DenseStats:
    """What entered one matrix: the sum of squares of every input column, the row count, and for
    an embedding how often each row was looked up."""

    def __init__(self):
        self.sum_x2: Optional[np.ndarray] = None
        self.n = 0
        self.row_counts: Optional[np.ndarray] = None


class _ExpertStats:
    """Per expert of a stack: gate-weighted input squares of the gate/up projections and of the
    down projection, and routing counts."""

    def __init__(self, stack: Experts):
        E = stack.n_expert
        self.sum_in = np.zeros((E, stack.n_embd), dtype=np.float64)
        self.sum_mid = np.zeros((E, stack.n_ff), dtype=np.float64)
        self.count = np.zeros(E, dtype=np.float64)
        self.n_tokens = 0


class StatsObserver:
    """The observer (:func:`qtoolkit.model.taps.observe`) of the calibration pass: every matrix's
    inputs, the embedding's lookups, and per expert the router-weighted statistics."""

    wants_hidden = False   # the experts run their usual kernel; the down inputs are computed here

    def __init__(self):
        self.dense_stats: Dict[str, _DenseStats] = {}
        self.expert_stats: Dict[str, _ExpertStats] = {}

    def _dense(self, name: str) -> _DenseStats:
        st = self.dense_stats.get(name)
        if st is None:
            st = self.dense_stats[name] = _DenseStats()
        return st

    def dense(self, name: str, x: np.ndarray) -> None:
        st = self._dense(name)
        x64 = x.astype(np.float64)
        s = np.einsum("ti,ti->i", x64, x64)
        st.sum_x2 = s if st.sum_x2 is None else st.sum_x2 + s
        st.n += x.shape[0]

    def lookup(self, name: str, table, ids: np.ndarray) -> None:
        st = self._dense(name)
        if st.row_counts is None:
            st.row_counts = np.zeros(table.rows, dtype=np.float64)
        np.add.at(st.row_counts, np.asarray(ids, dtype=np.int64), 1.0)

    def experts(self, names, stack: Experts, x: np.ndarray, ids: np.ndarray, weights: np.ndarray, hidden) -> None:
        layer = names[0].split(".")[1]
        st = self.expert_stats.get(layer)
        if st is None:
            st = self.expert_stats[layer] = _ExpertStats(stack)
        T, k = ids.shape
        st.n_tokens += T
        flat = ids.reshape(-1)
        wflat = weights.reshape(-1).astype(np.float64)
        for e in np.unique(flat):
            sel = np.nonzero(flat == e)[0]
            xe = x[sel // k]
            w2 = wflat[sel] ** 2
            x64 = xe.astype(np.float64)
            sq = x64 * x64
            st.sum_in[e] += w2 @ sq
            g, u = stack.expert_f32(int(e), 0), stack.expert_f32(int(e), 1)
            mid = (silu(xe @ g.T) * (xe @ u.T)).astype(np.float64)
            sq = mid * mid
            st.sum_mid[e] += w2 @ sq
            st.count[e] += sel.size


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
        self.chunks: List[np.ndarray] = [chunk_tokens(tokens, c, ctx, model.tokenizer) for c in range(n)]
        self.n_tokens = n * ctx
        self.scored = n * (ctx - 1 - self.first)
        self.inputs: List[List[np.ndarray]] = []   # per chunk: the input of every layer, then the final hidden state
        self.base_logits: List[np.ndarray] = []
        self.stats = StatsObserver()
        self.seconds = 0.0
        self.probe_seconds = 0.0
        self.n_probes = 0
        self._run()

    # -- the base pass -------------------------------------------------------------------------
    def _run(self) -> None:
        m = self.model
        t0 = time.perf_counter()
        n, n_layer = len(self.chunks), len(m.layers)
        inputs: List[List[Optional[np.ndarray]]] = [[None] * (n_layer + 1) for _ in range(n)]
        # every matrix's inputs, the head's (under token_embd.weight when tied) and the lookups, on
        # the layer-major runner (the experts of a layer see the tokens of all chunks at once)
        with observe(m, self.stats, head=True, lookups=True):
            with Run([StreamedModel(m)], self.chunks) as run:

                def keep(il: int) -> None:   # the input of layer il of every chunk
                    for c in range(n):
                        inputs[c][il] = run.hidden_of(0, c)

                run.layers(before_layer=keep)
                keep(n_layer)
                # the float32 logits (not float32 log-probabilities: those would round to a KLD floor)
                self.base_logits = [lg for (lg,) in run.heads(self.first, self.ctx - 1)]
        self.inputs = inputs
        self.seconds = time.perf_counter() - t0
        log.info("calibration pass: %d chunks of %d tokens in %.1f s", len(self.chunks), self.ctx, self.seconds)

    # -- what the error of each tensor is weighted by ---------------------------------------------
    def error_weights(self, name: str, n_cols: int, n_mat: int, n_rows: int):
        """(column weights [n_mat, n_cols] float32 or None, row weights [n_rows] float64 or None)
        of a GGUF tensor's quantization error (see the module doc)."""
        return error_weights(self.stats, self.model.output is self.model.tok_embd, name, n_rows)

    def expert_counts(self) -> Dict[int, np.ndarray]:
        """Routed slots per expert of every MoE layer over the calibration tokens."""
        return {int(k): t.count for k, t in self.stats.expert_stats.items()}

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
            lq = log_softmax64(m.head(x[self.first:self.ctx - 1]))
            lb = log_softmax64(self.base_logits[c])
            total += float(np.sum(np.exp(lb) * (lb - lq)))
            n += lb.shape[0]
        self.probe_seconds += time.perf_counter() - t0
        self.n_probes += 1
        return max(total / n, 0.0)


def error_weights(stats: "StatsObserver", tied: bool, name: str, n_rows: int):
    """(column weights ``[n_mat or 1, n_cols]`` float32 or None, row weights ``[n_rows]`` float64
    or None) of tensor ``name``'s quantization error, from the calibration statistics (module doc)."""
    dense = stats.dense_stats
    if name == "token_embd.weight":
        t = dense.get("token_embd.weight")
        if tied:   # the output role: column weights of the head's input
            return (_mean_squares(t), None) if t is not None and t.sum_x2 is not None else (None, None)
        counts = t.row_counts if t is not None and t.row_counts is not None else np.zeros(n_rows)
        return None, counts / max(counts.sum(), 1.0)
    il, short = split_name(name)
    if short in EXPERT_STACKS:
        t = stats.expert_stats[str(il)]
        s = t.sum_mid if short == "ffn_down_exps" else t.sum_in
        w = s / max(t.n_tokens, 1)
        w = w + UNUSED_EXPERT_FLOOR * w.mean(axis=0, keepdims=True)
        return w.astype(np.float32), None
    t = dense.get(name)
    if t is None:
        return None, None
    return _mean_squares(t), None


def start_layer(name: str, n_layer: int, tied: bool) -> int:
    """The first layer a change of tensor ``name`` affects (-1: the embeddings, n_layer: the head)."""
    if name == "token_embd.weight":
        return -1
    if name == "output.weight":
        return n_layer
    return int(name.split(".")[1])


def _mean_squares(t: _DenseStats) -> np.ndarray:
    """Mean square of each input column, ``[1, n]`` float32."""
    return (t.sum_x2 / max(t.n, 1)).astype(np.float32)[None, :]


def unreached_experts(stats: "StatsObserver", free: Sequence) -> Dict[str, Any]:
    """The experts the calibration text never routed a token to, and what the allocation did with
    them: their error is weighted at ``UNUSED_EXPERT_FLOOR`` of the layer's average expert (so a
    type is still chosen for them as for rarely used experts, never "free to destroy"), and their
    share of each expert stack's predicted loss, estimated by their share of the stack's error
    weights (``tp.loss`` of the chosen type times that share)."""
    layers = []
    total = 0.0
    for tp in free:
        il, short = split_name(tp.name)
        if short not in EXPERT_STACKS or tp.chosen is None:
            continue
        st = stats.expert_stats.get(str(il))
        if st is None:
            continue
        unreached = [int(e) for e in np.nonzero(st.count == 0)[0]]
        w, _ = error_weights(stats, False, tp.name, 0)
        mass = w.astype(np.float64).mean(axis=1)
        share = float(mass[unreached].sum() / mass.sum()) if unreached and mass.sum() > 0 else 0.0
        loss = tp.loss[tp.types.index(tp.chosen)] * share
        total += loss
        if unreached:
            layers.append({"tensor": tp.name, "experts": unreached, "of": int(st.count.size),
                           "weight_share": share, "predicted_kld": loss, "type": tp.chosen.name})
    return {"policy": f"error weighted at {UNUSED_EXPERT_FLOOR:g} x the layer's average expert", "tensors": layers,
            "predicted_kld": total}
