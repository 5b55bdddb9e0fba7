"""The model's one weight abstraction: a linear layer (``x @ W.T``) and a stack of experts.

Every matrix product of the forward pass goes through :class:`Linear` or :class:`Experts`, so the
kernel behind them can change without touching the model code:

* float32 weights (the Hugging Face reference, F32 GGUF tensors) use numpy's BLAS;
* quantized / F16 / BF16 weights use the C dequant-matmul kernels (``qtk_matmul``: a gemm for a
  chunk of tokens, a gemv for one; ``qtk_moe_ffn``: a whole MoE feed-forward in one call), which
  keep the weights in their quantized bytes and quantize the activations to Q8_0 / Q8_1 / Q8_K on
  the fly, as llama.cpp does on a CPU. Each weight is bound to its kernel once
  (``_clib.BoundMatmul`` / ``_clib.BoundMoeFFN``), so a call checks only the activation.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .._clib import BoundMatmul, BoundMoeFFN, wtype
from .._clib import moe_matmul as clib_moe_matmul
from ..errors import QtkValueError
from ..quants import MAX_THREADS, QuantType, dequantize


_FLOAT_TYPES = (QuantType.F32, QuantType.F16, QuantType.BF16)


def _nthreads(threads: Optional[int]) -> int:
    if threads is None:
        return 0  # the kernels' pool: one thread per available core
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= MAX_THREADS:
        raise QtkValueError(f"threads must be an integer from 1 to {MAX_THREADS} or None, got {threads!r}")
    return int(threads)


class Linear:
    """``y = x @ W.T (+ b)`` for a weight of ``rows`` outputs and ``cols`` inputs.

    ``data``: float32 ``[rows, cols]`` or the raw bytes of a GGUF tensor ``[rows, row_bytes]``
    (uint8) of ``qtype``. ``threads`` is passed to the kernel (None: one per core). ``act_f32``:
    float weights (BF16) run with float32 activations instead of ggml's companion format (the
    full-precision reference of a Hugging Face checkpoint)."""

    __slots__ = ("data", "qtype", "bias", "rows", "cols", "threads", "act_f32", "_f32", "_mm", "_nthreads")

    def __init__(self, data: np.ndarray, qtype: QuantType, cols: int, bias: Optional[np.ndarray] = None,
                 threads: Optional[int] = None, act_f32: bool = False):
        self.qtype = QuantType(qtype)
        self.cols = int(cols)
        self.bias = None if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
        self.threads = threads
        self.act_f32 = bool(act_f32) and self.qtype in _FLOAT_TYPES   # quantized weights: ggml's pairing
        if self.qtype == QuantType.F32:
            data = np.asarray(data)
            if data.dtype == np.uint8:
                data = data.view(np.float32)
            data = data.reshape(-1, self.cols)
        self.data = data
        self.rows = int(data.shape[0])
        self._f32 = data if self.qtype == QuantType.F32 else None
        self._mm = None
        if self.qtype != QuantType.F32:
            self._mm = BoundMatmul(int(self.qtype), np.ascontiguousarray(data), self.cols, act_f32=self.act_f32)
        self._nthreads = _nthreads(threads)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x``: float32 ``[tokens, cols]`` -> ``[tokens, rows]``."""
        if self._mm is not None:
            y = self._mm(np.ascontiguousarray(x, dtype=np.float32), self._nthreads)
        else:
            y = x @ self._f32.T
        if self.bias is not None:
            y += self.bias
        return y

    def rows_f32(self, ids: np.ndarray) -> np.ndarray:
        """Rows ``ids`` of W as float32 (the embedding lookup: only those rows are decoded)."""
        if self._f32 is not None:
            return self._f32[ids]
        return dequantize(np.ascontiguousarray(self.data[ids]), self.qtype, threads=1).reshape(len(ids), self.cols)


class Experts:
    """A stack of SwiGLU experts: ``out[t] = Σ_j w[t, j] · down_e(silu(gate_e x_t) ⊙ up_e x_t)``,
    ``e = ids[t, j]``. ``gate``/``up``: ``[E, ff, ·]``, ``down``: ``[E, n_embd, ·]``."""

    def __init__(self, gate: np.ndarray, up: np.ndarray, down: np.ndarray, qtypes: Sequence[QuantType],
                 n_embd: int, n_ff: int, threads: Optional[int] = None, act_f32: bool = False):
        self.qtypes = tuple(QuantType(q) for q in qtypes)
        self.act_f32 = bool(act_f32)
        self.n_embd, self.n_ff = int(n_embd), int(n_ff)
        self.threads = threads
        mats = []
        for data, q in zip((gate, up, down), self.qtypes):
            if q == QuantType.F32 and np.asarray(data).dtype == np.uint8:
                data = np.asarray(data).view(np.float32)
            mats.append(data)
        # float32 matrices get their element shape; each projection may have its own type
        shapes = ((self.n_ff, self.n_embd), (self.n_ff, self.n_embd), (self.n_embd, self.n_ff))
        for i, q in enumerate(self.qtypes):
            if q == QuantType.F32 and mats[i].ndim == 3:
                mats[i] = mats[i].reshape(mats[i].shape[0], *shapes[i])
        self.gate, self.up, self.down = mats
        all_f32 = all(q == QuantType.F32 for q in self.qtypes)
        self.n_expert = int(self.gate.shape[0])
        self._f32 = (self.gate, self.up, self.down) if all_f32 else None
        self._mm = None
        if not all_f32:
            self._mm = BoundMoeFFN([int(q) for q in self.qtypes], *(np.ascontiguousarray(m).view(np.uint8)
                                   for m in (self.gate, self.up, self.down)), self.n_embd, self.n_ff,
                                   act_f32=tuple(self._act(q) for q in self.qtypes))
        self._nthreads = _nthreads(threads)

    def _act(self, q: QuantType) -> bool:
        """Float32 activations for projection type ``q``: float weights of a checkpoint only."""
        return self.act_f32 and q in _FLOAT_TYPES

    @property
    def matrices(self):
        """``(gate, up, down)`` as stored: float32 ``[E, rows, cols]`` or quantized bytes."""
        return self.gate, self.up, self.down

    def expert_f32(self, e: int, j: int) -> np.ndarray:
        """Projection ``j`` (0 gate, 1 up, 2 down) of expert ``e`` as a float32 matrix (decoded
        when quantized)."""
        m, q = self.matrices[j], self.qtypes[j]
        rows, cols = ((self.n_ff, self.n_embd), (self.n_ff, self.n_embd), (self.n_embd, self.n_ff))[j]
        if self._f32 is not None:
            return m[e]
        return dequantize(np.ascontiguousarray(m[e]), q).reshape(rows, cols)

    def __call__(self, x: np.ndarray, ids: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """``x`` float32 ``[T, n_embd]``, ``ids`` int32 and ``weights`` float32 ``[T, k]`` -> ``[T, n_embd]``."""
        if self._mm is not None:
            return self._mm(np.ascontiguousarray(x, dtype=np.float32), ids, weights, self._nthreads)
        return _moe_numpy(self._f32, x, ids, weights)

    def forward_with_hidden(self, x: np.ndarray, ids: np.ndarray, weights: np.ndarray):
        """``(out, hidden)``: the output of :meth:`__call__` and the input of the down projection
        of every routed pair, ``hidden[t, j] = silu(gate_e x_t) ⊙ up_e x_t`` (float32 ``[T, k, n_ff]``).

        Only observers (``qtoolkit.model.taps``) call this. Quantized experts run unfused here,
        as llama.cpp's graph does (mul_mat_id for gate and up, SiLU ⊙ up, mul_mat_id for down),
        through the same dot kernels as the fused call; SiLU uses a correctly rounded exp."""
        ids = np.ascontiguousarray(ids, dtype=np.int32)
        weights = np.ascontiguousarray(weights, dtype=np.float32)
        if self._mm is None:
            hidden = np.empty((ids.shape[0], ids.shape[1], self.n_ff), dtype=np.float32)
            return _moe_numpy(self._f32, x, ids, weights, hidden), hidden
        x = np.ascontiguousarray(x, dtype=np.float32)
        T, k = ids.shape
        stacks = [np.ascontiguousarray(m).view(np.uint8).reshape(self.n_expert, m.shape[1], -1)
                  for m in (self.gate, self.up, self.down)]
        g = self._moe_matmul(stacks[0], self.qtypes[0], x, ids)
        u = self._moe_matmul(stacks[1], self.qtypes[1], x, ids)
        with np.errstate(over="ignore"):
            e = np.exp(-g.astype(np.float64)).astype(np.float32)
        hidden = g / (np.float32(1) + e) * u
        d = self._moe_matmul(stacks[2], self.qtypes[2], hidden.reshape(T * k, self.n_ff), ids.reshape(T * k, 1))
        d = d.reshape(T, k, self.n_embd)
        out = np.zeros((T, self.n_embd), dtype=np.float32)
        for j in range(k):  # j = 0..k-1 in order, as the fused kernel sums
            out += weights[:, j, None] * d[:, j]
        return out, hidden


    def _moe_matmul(self, stack: np.ndarray, q: QuantType, x: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """ggml's mul_mat_id on one stack: ``[tokens, k, rows]``, the fused call's dot products."""
        out = np.empty((x.shape[0], ids.shape[1], stack.shape[1]), dtype=np.float32)
        clib_moe_matmul(wtype(int(q), act_f32=self._act(q)), stack, x, np.ascontiguousarray(ids, dtype=np.int32), out,
                        self._nthreads)
        return out


def _moe_numpy(mats, x: np.ndarray, ids: np.ndarray, weights: np.ndarray,
               hidden: Optional[np.ndarray] = None) -> np.ndarray:
    """Float32 experts (the Hugging Face reference) with numpy: the tokens routed to one expert form
    one gemm. ``hidden`` (float32 ``[T, k, n_ff]``), when given, receives the down projection's inputs."""
    gate, up, down = mats
    T, k = ids.shape
    out = np.zeros((T, down.shape[1]), dtype=np.float32)
    flat = ids.reshape(-1)
    order = np.argsort(flat, kind="stable")
    bounds = np.searchsorted(flat[order], np.arange(gate.shape[0] + 1))
    ys = np.empty((T * k, down.shape[1]), dtype=np.float32)
    hflat = None if hidden is None else hidden.reshape(T * k, -1)
    for e in range(gate.shape[0]):
        sel = order[bounds[e]:bounds[e + 1]]
        if sel.size == 0:
            continue
        xe = x[sel // k]
        g = xe @ gate[e].T
        h = (g / (np.float32(1) + np.exp(-g))) * (xe @ up[e].T)
        if hflat is not None:
            hflat[sel] = h
        ys[sel] = h @ down[e].T
    ys = ys.reshape(T, k, -1) * weights[:, :, None].astype(np.float32)
    for j in range(k):  # j = 0..k-1 in order, as the kernel sums
        out += ys[:, j]
    return out

