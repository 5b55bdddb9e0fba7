"""The bit allocator's calibration, error table and sensitivity probes in one streamed pass over
the checkpoint (docs/allocation.md, "One streamed pass").

The full-precision model runs layer by layer on the layer-major runner (:mod:`qtoolkit.model.runner`):
one block resident at a time, in its stored dtype. While block ``l`` is resident:

1. the calibration chunks go through it, and the observer records what enters each matrix (the
   error weights: :func:`~.calibration.error_weights`);
2. each of its free tensors is widened to float32 once, its error table computed
   (:func:`~.error_table.tensor_errors`), and the probes that change it built from it;
3. **probe streams** go through it: a probe of a band (the same tensor kind in a few consecutive
   layers) is a copy of the hidden states of a few probe chunks, taken as they enter the band's
   first layer, that then passes every later layer with the band's tensors replaced (quantized to
   the probe type and run in float32, or on the kernels, or put back to the checkpoint's own
   weights for the null probe of a GGUF reference); streams that change nothing in a block pass it
   together, as one batch.

At the end the output head gives the base logits of the probe chunks and every stream's, and each
probe's KL divergence from the base. So the checkpoint is read once (the embedding and head twice),
memory holds one block, one tensor in float32 with its probe copy, and the hidden states of the
calibration chunks and the streams (spilled to a file above ``max_memory``), and the compute is the
base pass plus the streams: about ``probes x probe_chunks / chunks / 2`` base passes, which
:func:`plan_streams` keeps within a budget by choosing the probe chunks and the band width.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import QtkValueError
from ..model.chunks import chunk_plan, chunk_tokens, log_softmax64
from ..model.forward import rms_norm
from ..model.runner import GROUP_TOKENS, HiddenStates, StreamedModel, available_memory, peak_rss, run_block
from ..model.tensors import ATTR_OF, EXPERT_STACKS, linear_of, replace_in_layer, split_name
from ..quants import QuantType, dequantize, quantize
from .calibration import StatsObserver, error_weights, start_layer
from .error_table import tensor_errors
from .probes import Spec, apply_probes, bands, probe_specs, quantizer_importance

log = logging.getLogger(__name__)

COMPUTE_BUDGET = 9.0   # the streams' compute, in base passes (with the base pass: <= 10)
_FLOAT = (QuantType.F32, QuantType.F16, QuantType.BF16)


@dataclass
class _Stream:
    band: int
    spec: Spec
    start: int                  # the first layer it passes changed (-1: the embedding, n_layer: the head only)
    slot: int = -1              # its first chunk in the stream store
    changed: set = field(default_factory=set)   # layers it has passed (changed) so far


def layer_units(hp, n_ff_or_expert: Tuple[int, int]) -> float:
    """Multiply-adds per token of one block (attention projections + the active feed-forward)."""
    F, F_moe = n_ff_or_expert
    D = hp.n_embd
    attn = D * hp.head_dim * (2 * hp.n_head) + D * hp.head_dim * 2 * hp.n_head_kv
    ffn = 3 * D * (F_moe * hp.n_expert_used + F) if hp.is_moe else 3 * D * F
    return float(attn + ffn)


def model_layer_units(hp, free: Sequence) -> float:
    """:func:`layer_units` of a model, its feed-forward widths read off the free tensors' shapes."""
    moe_ff = 0
    if hp.is_moe:
        gates = [tp.ne[1] for tp in free if tp.name.endswith("ffn_gate_exps.weight")]
        moe_ff = max(gates) if gates else hp.n_embd
    dense_ff = max([tp.ne[1] for tp in free if tp.name.endswith(".ffn_gate.weight")] or [0])
    return layer_units(hp, (dense_ff, moe_ff))


@dataclass
class StreamPlan:
    band: int
    groups: List[List]
    probe_chunks: int
    streams: int
    cost: float        # the streams' compute in base passes (estimated)


def stream_cost(groups: List[List], n_layer: int, n_specs: Callable[[List], int], head_layers: float,
                chunks: int, probe_chunks: int) -> float:
    """Estimated compute of the probe streams, in base passes (a base pass: ``chunks`` chunks
    through ``n_layer`` blocks and the head, ``head_layers`` blocks' worth)."""
    units = 0.0
    for members in groups:
        s = min(start_layer(tp.name, n_layer, False) for tp in members)
        units += n_specs(members) * (n_layer - max(s, 0) + head_layers)
    return units * probe_chunks / (chunks * (n_layer + head_layers))


def plan_streams(free: Sequence, n_layer: int, n_specs: Callable[[List], int], head_layers: float, chunks: int,
                 band: Optional[int], probe_chunks: Optional[int], budget: float = COMPUTE_BUDGET,
                 max_probes: int = 256) -> StreamPlan:
    """Band width and probe chunks: the most probe chunks (up to all) that keep the streams within
    ``budget`` base passes, widening the bands (1, 2, 4 ... layers) while even one chunk would not."""
    b = band or 1
    while True:
        groups = bands(free, b)
        n = sum(n_specs(g) for g in groups)
        c1 = stream_cost(groups, n_layer, n_specs, head_layers, chunks, 1)
        if band is not None or probe_chunks is not None or (c1 <= budget and n <= max_probes * 4):
            break
        nxt = bands(free, b * 2)
        if len(nxt) == len(groups):
            break
        b *= 2
    pc = probe_chunks or max(1, min(chunks, int(budget // max(c1, 1e-12))))
    pc = min(pc, chunks)
    return StreamPlan(b, groups, pc, n, c1 * pc)


def pass_plan(hp, n_vocab: int, free: Sequence, n_chunks: int, reference: bool, probe_bpw, probe_layers: Optional[int],
              probe_chunks: Optional[int], budget: float, max_probes: int, n_anchors: int) -> Tuple[StreamPlan, float]:
    """The streams of a pass over ``n_chunks`` calibration chunks (:func:`plan_streams`; every
    anchor is one stream on all chunks, about one base pass, taken from the budget), and the
    head's compute in blocks' worth. ``hp``: the model's widths (n_layer, n_embd, head_dim,
    n_head, n_head_kv, is_moe, n_expert_used)."""
    per_layer = model_layer_units(hp, free)
    head_layers = n_vocab * hp.n_embd * 0.5 / per_layer   # the head on half the positions
    kw = {"probe_bpw": tuple(probe_bpw)} if probe_bpw is not None else {}

    def n_specs(members) -> int:
        return len(probe_specs(members, reference=reference, errors=[0.0] * len(members[0].types), **kw))

    plan = plan_streams(free, hp.n_layer, n_specs, head_layers, n_chunks, probe_layers, probe_chunks,
                        max(budget - n_anchors, 0.5), max_probes)
    return plan, head_layers


class StreamedCalibration:
    """The pass (module doc). ``source``: the Hugging Face folder (or a GGUF reference) to run;
    ``weights_of(name)``: a tensor's full-precision float32 weights from the checkpoint, read when
    the resident block does not hold them in a float dtype (a GGUF reference); ``free``: the
    allocator's free tensor plans (their ``error`` and probe fields are filled); ``q_ims``: the
    quantizer's importance weights per tensor."""

    def __init__(self, source: str, text: str, free: Sequence, q_ims: Dict[str, Optional[np.ndarray]],
                 weights_of: Callable[[str], np.ndarray], reference: bool = False, ctx: int = 512,
                 chunks: Optional[int] = 16, probe_bpw=None, probe_layers: Optional[int] = None,
                 probe_chunks: Optional[int] = None, max_rows: int = 4096, max_probes: int = 256,
                 threads: Optional[int] = None, max_memory: Optional[int] = None, spill_dir: Optional[str] = None,
                 budget: float = COMPUTE_BUDGET, progress: Optional[Callable[[str, int, int], None]] = None,
                 anchors: Optional[Dict[str, Dict[str, QuantType]]] = None,
                 shapes: Optional[Dict[str, Tuple[int, ...]]] = None):
        self.t0 = time.perf_counter()
        self.anchors = dict(anchors or {})
        self._ne = {**(shapes or {}), **{tp.name: tuple(tp.ne) for tp in free}}   # GGUF ne of every tensor
        self.sm = StreamedModel(source, threads=threads)
        try:
            self._setup(text, free, q_ims, weights_of, reference, ctx, chunks, probe_bpw, probe_layers,
                        probe_chunks, max_rows, max_probes, threads, max_memory, spill_dir, budget, progress)
        except BaseException:
            self.sm.close()
            raise

    def _setup(self, text, free, q_ims, weights_of, reference, ctx, chunks, probe_bpw, probe_layers, probe_chunks,
               max_rows, max_probes, threads, max_memory, spill_dir, budget, progress) -> None:
        m = self.sm.model
        if m.tokenizer is None:
            raise QtkValueError("the calibration model has no tokenizer")
        tokens = m.tokenizer.encode(text)
        n = chunk_plan(len(tokens), ctx, chunks)
        self.ctx, self.first = ctx, ctx // 2
        self.chunks = [chunk_tokens(tokens, c, ctx, m.tokenizer) for c in range(n)]
        self.n_tokens = n * ctx
        self.scored = n * (ctx - 1 - self.first)
        self.free, self.q_ims, self.weights_of = list(free), q_ims, weights_of
        self.reference, self.max_rows, self.threads = reference, max_rows, threads
        self.probe_bpw = tuple(probe_bpw) if probe_bpw is not None else None
        self.progress = progress or (lambda phase, done, total: None)
        self.stats = StatsObserver()
        hp = m.hp
        self.n_layer = hp.n_layer
        self.tied = m.output is m.tok_embd
        self.plan, self.head_layers = pass_plan(hp, m.n_vocab, self.free, n, reference, self.probe_bpw, probe_layers,
                                                probe_chunks, budget, max_probes, len(self.anchors))
        self.groups = self.plan.groups
        self.probe_at = np.unique(np.linspace(0, n - 1, self.plan.probe_chunks).round().astype(np.int64)).tolist()
        need = (n * (1 + len(self.anchors)) + self.plan.streams * len(self.probe_at)) * ctx * hp.n_embd * 4
        if max_memory is None:
            avail = available_memory()
            max_memory = int(0.5 * avail) if avail is not None else need
        spill = need > max_memory
        self.H = HiddenStates(n, ctx, hp.n_embd, spill, spill_dir)
        self.S = HiddenStates(max(1, self.plan.streams * len(self.probe_at)), ctx, hp.n_embd, spill, spill_dir)
        self.A = HiddenStates(max(1, n * len(self.anchors)), ctx, hp.n_embd, spill, spill_dir)
        self.anchor_kld: Dict[str, Dict[str, float]] = {}
        self.anchor_seconds = self.verify_seconds = 0.0
        self.passes = 1
        self._spill_dir = spill_dir
        self.hidden_bytes, self.spilled = need, spill
        self.n_probes = 0
        self.base_seconds = self.stream_seconds = self.error_seconds = 0.0
        self.extra_bytes = 0

    # -- helpers ---------------------------------------------------------------------------------
    def _f32(self, L, name: str) -> np.ndarray:
        """Tensor ``name`` as float32: widened from the resident block when it holds it in a float
        dtype (the checkpoint itself), else read from the checkpoint."""
        il, short = split_name(name)
        arr = qt = None
        if L is not None:
            if short in EXPERT_STACKS:
                j = EXPERT_STACKS.index(short)
                arr, qt = L.experts.matrices[j], L.experts.qtypes[j]
            else:
                lin = getattr(L, ATTR_OF[short])
                arr, qt = lin.data, lin.qtype
        elif name in ("token_embd.weight", "output.weight"):
            lin = self.sm.model.tok_embd if name == "token_embd.weight" else self.sm.model.output
            arr, qt = lin.data, lin.qtype
        ne = self._ne[name]
        shape = tuple(reversed(ne)) if len(ne) == 3 else (ne[1], ne[0])
        if arr is not None and qt in _FLOAT and not self.reference:
            if qt == QuantType.F32:
                return np.ascontiguousarray(arr, dtype=np.float32).reshape(shape)
            return dequantize(np.ascontiguousarray(arr).view(np.uint8), qt, threads=self.threads).reshape(shape)
        w = self.weights_of(name)
        self.extra_bytes += w.size * 2
        return w

    def _replacement(self, w: np.ndarray, name: str, spec: Spec) -> Tuple[np.ndarray, QuantType]:
        mode, t = spec
        if mode == "null":
            return w, QuantType.F32
        q = quantize(w, t, imatrix=quantizer_importance(self.q_ims.get(name), w), threads=self.threads)
        if mode == "weights":
            return dequantize(q, t, threads=self.threads).reshape(w.shape), QuantType.F32
        return q, t

    def _errors(self, tp, w: np.ndarray) -> None:
        t0 = time.perf_counter()
        col_w, row_w = error_weights(self.stats, self.tied, tp.name, w.shape[-2])
        tp.error = tensor_errors(w, tp.types, col_w, row_w, self.q_ims.get(tp.name), self.max_rows, self.threads)
        self.error_seconds += time.perf_counter() - t0

    def _specs(self, members) -> List[Spec]:
        kw = {"probe_bpw": self.probe_bpw} if self.probe_bpw is not None else {}
        return probe_specs(members, reference=self.reference, **kw)

    def _slots(self, s: _Stream) -> range:
        return range(s.slot, s.slot + len(self.probe_at))

    def _start(self, gi: int, x_in: Optional[np.ndarray]) -> None:
        """The streams of band ``gi``: their specs (the lead's errors are known now), their slots
        filled with the band's input hidden states ``x_in`` (None: head-only)."""
        members = self.groups[gi]
        s0 = min(start_layer(tp.name, self.n_layer, self.tied) for tp in members)
        for spec in self._specs(members):
            s = _Stream(gi, spec, s0)
            if x_in is not None:
                s.slot = self._next_slot
                self._next_slot += len(self.probe_at)
                self.S.write(s.slot, x_in)
            self.streams.append(s)

    def _run(self, il: int, L, slots: List[int], store: Optional[HiddenStates] = None) -> None:
        """Block ``L`` on stream chunks ``slots`` of ``store`` (default: the probe streams'),
        batched as the base chunks are."""
        store = store if store is not None else self.S
        step = max(1, GROUP_TOKENS // self.ctx)
        for a in range(0, len(slots), step):
            part = slots[a:a + step]
            X = np.stack([store.read(c, c + 1)[0] for c in part])
            run_block(self.sm.model, L, il, X)
            for j, c in enumerate(part):
                store.write(c, X[j:j + 1])

    def _anchor_layer(self, il: int, L) -> None:
        """Every anchor through block ``L`` on all chunks, with the block's tensors at the anchor's
        types (quantized, run on the kernels as the file will be), one anchor at a time."""
        n = len(self.chunks)
        for ai, types in enumerate(self.anchors.values()):
            t0 = time.perf_counter()
            undos = []
            try:
                for name, t in types.items():
                    at, short = split_name(name)
                    if at != il:
                        continue
                    w = self._f32(L, name)
                    rep, qt = self._replacement(w, name, ("kernels", t))
                    del w
                    undos.append(replace_in_layer(L, short, rep, qt))
                    del rep
                self._run(il, L, list(range(ai * n, ai * n + n)), self.A)
            finally:
                for undo in reversed(undos):
                    undo()
            self.anchor_seconds += time.perf_counter() - t0

    def _anchor_start(self, w_emb: Optional[np.ndarray]) -> None:
        """The anchors' hidden states entering layer 0: the embedding rows at the anchor's type
        (``w_emb``: its float32 weights when the embedding is free), else the base's."""
        m, n = self.sm.model, len(self.chunks)
        step = max(1, GROUP_TOKENS // self.ctx)
        for ai, types in enumerate(self.anchors.values()):
            t0 = time.perf_counter()
            t = types.get("token_embd.weight")
            if t is not None and w_emb is None:
                w_emb = self._f32(None, "token_embd.weight")
            if t is None:
                for c0 in range(0, n, step):
                    c1 = min(n, c0 + step)
                    self.A.write(ai * n + c0, self.H.read(c0, c1))
            else:
                rep, qt = self._replacement(w_emb, "token_embd.weight", ("kernels", t))
                lin = linear_of(rep, qt, m.hp.n_embd, threads=m.tok_embd.threads)
                for c in range(n):
                    self.A.write(ai * n + c, lin.rows_f32(self.chunks[c])[None])
                del rep, lin
            self.anchor_seconds += time.perf_counter() - t0

    def _anchor_heads(self, head_name: str) -> None:
        """Each anchor's mean KL divergence from the base on all chunks, and on the probe chunks
        alone (what separates the probe chunks' sampling from the sum over tensors)."""
        m, hp = self.sm.model, self.sm.model.hp
        n = len(self.chunks)
        for ai, (label, types) in enumerate(self.anchors.items()):
            t0 = time.perf_counter()
            t = types.get(head_name)
            lin = m.output
            if t is not None:
                rep, qt = self._replacement(self._f32(None, head_name), head_name, ("kernels", t))
                lin = linear_of(rep, qt, hp.n_embd, threads=m.output.threads)
                del rep
            tot = [0.0, 0.0]
            cnt = [0, 0]
            for c in range(n):
                lb = log_softmax64(m.head(self.H.read(c, c + 1)[0][self.first:self.ctx - 1]))
                X = self.A.read(ai * n + c, ai * n + c + 1)[0]
                lq = log_softmax64(lin(rms_norm(X[self.first:self.ctx - 1], m.output_norm, hp.eps)))
                k = float(np.sum(np.exp(lb) * (lb - lq)))
                tot[0] += k
                cnt[0] += lb.shape[0]
                if c in self.probe_at:
                    tot[1] += k
                    cnt[1] += lb.shape[0]
            self.anchor_kld[label] = {"kld": max(tot[0] / cnt[0], 0.0),
                                      "kld_probe_chunks": max(tot[1] / max(cnt[1], 1), 0.0)}
            del lin
            self.anchor_seconds += time.perf_counter() - t0

    # -- the pass --------------------------------------------------------------------------------
    def run(self) -> "StreamedCalibration":
        m, hp, sm = self.sm.model, self.sm.model.hp, self.sm
        n, n_layer = len(self.chunks), self.n_layer
        self._tp = {tp.name: tp for tp in self.free}
        band_of = {tp.name: gi for gi, g in enumerate(self.groups) for tp in g}
        self.streams: List[_Stream] = []
        self._next_slot = 0
        step = max(1, GROUP_TOKENS // self.ctx)
        t0 = time.perf_counter()
        for c in range(n):   # the embedding's lookups
            self.stats.lookup("token_embd.weight", m.tok_embd, self.chunks[c])
        for c0 in range(0, n, step):
            c1 = min(n, c0 + step)
            self.H.write(c0, np.stack([m.tok_embd.rows_f32(self.chunks[c]) for c in range(c0, c1)]))
        self.base_seconds += time.perf_counter() - t0
        # the embedding's probes: streams from changed embedding rows
        emb = self._tp.get("token_embd.weight")
        if emb is not None:
            w = self._f32(None, emb.name)
            if self.tied:   # its weights are the head's input statistics, known at the end; now: unweighted
                emb.error = tensor_errors(w, emb.types, None, None, self.q_ims.get(emb.name), self.max_rows, self.threads)
            else:
                self._errors(emb, w)
            gi = band_of[emb.name]
            self._start(gi, np.zeros((len(self.probe_at), self.ctx, hp.n_embd), dtype=np.float32))
            for s in self.streams:
                if s.band != gi:
                    continue
                rep, qt = self._replacement(w, emb.name, s.spec)
                lin = linear_of(rep, qt, hp.n_embd, threads=m.tok_embd.threads)
                for j, c in enumerate(self.probe_at):
                    self.S.write(s.slot + j, lin.rows_f32(self.chunks[c])[None])
                del rep, lin
            if self.anchors:
                self._anchor_start(w)
            del w
        elif self.anchors:
            self._anchor_start(None)
        sm.release_outer()
        sm.prefetch(0)
        for il in range(n_layer):
            self.progress("layers", il, n_layer)
            L = sm.layer(il)
            sm.prefetch(il + 1)
            layer_free = [tp for tp in self.free if split_name(tp.name)[0] == il]
            starting = [band_of[tp.name] for tp in layer_free
                        if min(start_layer(x.name, n_layer, self.tied) for x in self.groups[band_of[tp.name]]) == il]
            x_in = np.stack([self.H.read(c, c + 1)[0] for c in self.probe_at]) if starting else None
            t0 = time.perf_counter()
            for c0 in range(0, n, step):
                X = self.H.read(c0, min(n, c0 + step))
                run_block(m, L, il, X, self.stats)
                self.H.write(c0, X)
            self.base_seconds += time.perf_counter() - t0
            for tp in layer_free:
                w = self._f32(L, tp.name)
                self._errors(tp, w)
                gi = band_of[tp.name]
                if gi in starting:
                    self._start(gi, x_in)
                _, short = split_name(tp.name)
                for s in self.streams:
                    if s.band != gi:
                        continue
                    rep, qt = self._replacement(w, tp.name, s.spec)
                    undo = replace_in_layer(L, short, rep, qt)
                    try:
                        t1 = time.perf_counter()
                        self._run(il, L, list(self._slots(s)))
                        self.stream_seconds += time.perf_counter() - t1
                    finally:
                        undo()
                    del rep
                    s.changed.add(il)
                del w
            rest = [c for s in self.streams if s.slot >= 0 and s.start <= il and il not in s.changed
                    for c in self._slots(s)]
            t1 = time.perf_counter()
            if rest:
                self._run(il, L, rest)
            self.stream_seconds += time.perf_counter() - t1
            if self.anchors:
                self._anchor_layer(il, L)
            del L
            sm.release(il)
        self.progress("layers", n_layer, n_layer)
        self._heads()
        sm.check_unchanged()
        self.seconds = time.perf_counter() - self.t0
        return self

    def _heads(self) -> None:
        m, hp = self.sm.model, self.sm.model.hp
        n = len(self.chunks)
        head_name = "token_embd.weight" if self.tied else "output.weight"
        t0 = time.perf_counter()
        for c in range(n):   # the head's input statistics over every scored position
            x = self.H.read(c, c + 1)[0][self.first:self.ctx - 1]
            self.stats.dense(head_name, rms_norm(x, m.output_norm, hp.eps))
        base = {c: log_softmax64(m.head(self.H.read(c, c + 1)[0][self.first:self.ctx - 1])) for c in self.probe_at}
        self.base_seconds += time.perf_counter() - t0

        def kld_of(lin, slot: Optional[int]) -> float:
            total, cnt = 0.0, 0
            for j, c in enumerate(self.probe_at):
                X = self.H.read(c, c + 1)[0] if slot is None else self.S.read(slot + j, slot + j + 1)[0]
                lq = log_softmax64(lin(rms_norm(X[self.first:self.ctx - 1], m.output_norm, hp.eps)))
                lb = base[c]
                total += float(np.sum(np.exp(lb) * (lb - lq)))
                cnt += lb.shape[0]
            self.n_probes += 1
            return max(total / cnt, 0.0)

        klds: Dict[Tuple[int, Spec], float] = {}
        t1 = time.perf_counter()
        for s in self.streams:
            if s.slot >= 0 and not (self.tied and s.start < 0):
                klds[(s.band, s.spec)] = kld_of(m.output, s.slot)
        self.stream_seconds += time.perf_counter() - t1
        # the head's own tensors: the output matrix (head only) and a tied embedding (both roles)
        for name in ("output.weight", "token_embd.weight"):
            tp = self._tp.get(name)
            if tp is None or (name == "token_embd.weight" and not self.tied):
                continue
            w = self._f32(None, name)
            self._errors(tp, w)
            gi = [i for i, g in enumerate(self.groups) if tp in g][0]
            if name == "output.weight":
                self._start(gi, None)
            t1 = time.perf_counter()
            for s in self.streams:
                if s.band != gi:
                    continue
                rep, qt = self._replacement(w, name, s.spec)
                lin = linear_of(rep, qt, hp.n_embd, threads=m.output.threads)
                klds[(s.band, s.spec)] = kld_of(lin, s.slot if s.slot >= 0 else None)
                del rep, lin
            self.stream_seconds += time.perf_counter() - t1
            del w
        if self.anchors:
            self._anchor_heads(head_name)
        self.sm.release_outer()
        for gi, members in enumerate(self.groups):
            specs = [s.spec for s in self.streams if s.band == gi]
            apply_probes(members, specs, {spec: klds[(gi, spec)] for spec in specs})

    def measure_file(self, types: Dict[str, QuantType], label: str = "file") -> Dict[str, float]:
        """A second pass over the checkpoint: the file whose tensors have ``types`` (those not named
        stay as in the checkpoint) on every calibration chunk, on the kernels, its mean KL
        divergence from the base pass's final hidden states (still held). Run after :meth:`run`."""
        t0 = time.perf_counter()
        sm, n = self.sm, len(self.chunks)
        self.anchors = {label: dict(types)}
        if self.A.shape[0] < n:
            self.A.close()
            self.A = HiddenStates(n, self.ctx, self.sm.model.hp.n_embd, self.spilled, self._spill_dir)
        self._anchor_start(None)
        sm.release_outer()
        sm.prefetch(0)
        for il in range(self.n_layer):
            L = sm.layer(il)
            sm.prefetch(il + 1)
            self._anchor_layer(il, L)
            del L
            sm.release(il)
        self._anchor_heads("token_embd.weight" if self.tied else "output.weight")
        sm.release_outer()
        sm.check_unchanged()
        self.extra_bytes += sm.outer_bytes   # the embedding and head read again
        self.verify_seconds = time.perf_counter() - t0
        self.passes = 2
        return self.anchor_kld[label]

    # -- what it found and spent -----------------------------------------------------------------
    def expert_counts(self) -> Dict[int, np.ndarray]:
        return {int(k): t.count for k, t in self.stats.expert_stats.items()}

    def figures(self) -> Dict[str, object]:
        ck = sum(self.sm.src.nbytes(nm) for nm in self.sm.src.names()) if self.sm.src is not None else 0
        read = self.sm.bytes_read + self.extra_bytes
        return {"passes": self.passes, "bytes_read": read, "checkpoint_bytes": ck,
                "reads_of_checkpoint": round(read / ck, 3) if ck else None,
                "seconds": round(self.seconds, 3), "base_seconds": round(self.base_seconds, 3),
                "stream_seconds": round(self.stream_seconds, 3), "error_seconds": round(self.error_seconds, 3),
                "read_seconds": round(self.sm.read_seconds, 3),
                "stream_compute_ratio": round(self.stream_seconds / self.base_seconds, 3) if self.base_seconds else None,
                "estimated_stream_ratio": round(self.plan.cost, 3),
                "probe_chunks": len(self.probe_at), "probe_layers": self.plan.band, "streams": self.plan.streams,
                "anchor_seconds": round(self.anchor_seconds, 3), "verify_seconds": round(self.verify_seconds, 3),
                "hidden_bytes": self.hidden_bytes, "hidden_spilled": self.spilled, "peak_rss_bytes": peak_rss()}

    def close(self) -> None:
        self.H.close()
        self.S.close()
        self.A.close()
        self.sm.close()
