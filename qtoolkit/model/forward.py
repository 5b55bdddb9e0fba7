"""The decoder forward pass as llama.cpp computes it (docs/inference.md; ggml-formats.md §7).

One call processes a chunk of tokens at once (a gemm per weight matrix; a gemv when the chunk is
one token) and appends its keys and values to a :class:`KVCache`. Attention, norms and RoPE are
vectorised numpy in float32; every matrix product goes through :mod:`qtoolkit.model.linear`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import QtkValueError
from ..quants import default_threads
from .hparams import HParams
from .linear import Experts, Linear


ATTN_BLOCK_ELEMENTS = 1 << 24  # attention scores computed per block of queries: at most 64 MiB
ATTN_MIN_WORK = 1 << 22        # score elements below which attention stays on the calling thread

_pools: Dict[int, ThreadPoolExecutor] = {}


def _attention_pool(n: int) -> ThreadPoolExecutor:
    if n not in _pools:
        _pools[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="qtk-attn")
    return _pools[n]


def _head_parts(n_head_kv: int, threads: Optional[int]) -> List[Tuple[int, int]]:
    """KV-head ranges attention is split into: one per thread (each head's result is the same
    whatever the split: every head is its own matrix product)."""
    n = min(n_head_kv, threads if threads is not None else default_threads())
    bounds = [n_head_kv * i // n for i in range(n + 1)]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


class Layer:
    """The tensors of one block; attributes that an architecture lacks stay None."""

    attn_norm: np.ndarray
    wq: Linear
    wk: Linear
    wv: Linear
    wo: Linear
    q_norm: Optional[np.ndarray] = None
    k_norm: Optional[np.ndarray] = None
    ffn_norm: np.ndarray
    ffn_gate: Optional[Linear] = None
    ffn_up: Optional[Linear] = None
    ffn_down: Optional[Linear] = None
    router: Optional[Linear] = None
    experts: Optional[Experts] = None
    shexp_gate: Optional[Linear] = None
    shexp_up: Optional[Linear] = None
    shexp_down: Optional[Linear] = None
    shexp_inp: Optional[np.ndarray] = None


class KVCache:
    """Keys and values of every layer for up to ``n_ctx`` positions (float32)."""

    def __init__(self, hp: HParams, n_ctx: int):
        self.n_ctx = int(n_ctx)
        self.k = np.zeros((hp.n_layer, hp.n_head_kv, self.n_ctx, hp.head_dim), dtype=np.float32)
        self.v = np.zeros((hp.n_layer, hp.n_head_kv, self.n_ctx, hp.head_dim_v), dtype=np.float32)
        self.n_past = 0

    def clear(self) -> None:
        self.n_past = 0


def rms_norm(x: np.ndarray, w: Optional[np.ndarray], eps: float) -> np.ndarray:
    """``x / sqrt(mean(x²) + eps) ⊙ w`` over the last axis, in float32."""
    ss = np.add.reduce(x * x, axis=-1, keepdims=True)
    scale = np.float32(1.0) / np.sqrt(ss * np.float32(1.0 / x.shape[-1]) + np.float32(eps))
    y = x * scale
    if w is not None:
        y *= w
    return y


def silu(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return x / (np.float32(1.0) + np.exp(-x))


class Model:
    """A loaded decoder: ``forward(tokens, cache)`` -> logits. Made by :func:`qtoolkit.load`."""

    def __init__(self, hp: HParams, tok_embd: Linear, output: Linear, output_norm: np.ndarray, layers: List[Layer],
                 rope_freqs: Optional[np.ndarray] = None, metadata: Optional[Dict[str, Any]] = None,
                 threads: Optional[int] = None):
        self.hp = hp
        self.tok_embd = tok_embd
        self.output = output
        self.output_norm = output_norm
        self.layers = layers
        self.rope_freqs = rope_freqs
        self.metadata = metadata or {}
        self.threads = threads
        self.n_vocab = output.rows
        self.tokenizer = None
        self.source = self.file_type = self.path = None
        self._rope_cache = (0, None, None)
        hd = hp.n_rot
        inv = hp.rope_base ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
        if rope_freqs is not None:
            inv = inv / rope_freqs.astype(np.float64)
        self._inv_freq = inv * hp.rope_freq_scale
        self._kq_scale = np.float32(hp.attn_scale or 1.0 / np.sqrt(hp.head_dim))

    # -- helpers ---------------------------------------------------------------------------
    def new_cache(self, n_ctx: int) -> KVCache:
        return KVCache(self.hp, n_ctx)

    def _rope_tables(self, end: int):
        """cos and signed-sin tables [positions, n_rot] laid out for ``x·C + partner(x)·S``."""
        n, C, S = self._rope_cache
        if end > n:
            n = max(end, 2 * n, 64)
            ang = np.arange(n, dtype=np.float64)[:, None] * self._inv_freq[None, :]
            c, s = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
            if self.hp.rope_neox:      # pairs (i, i + n_rot/2)
                C, S = np.concatenate([c, c], axis=1), np.concatenate([-s, s], axis=1)
            else:                      # pairs (2i, 2i + 1)
                C = np.repeat(c, 2, axis=1)
                S = np.stack([-s, s], axis=2).reshape(n, -1)
            self._rope_cache = (n, C, S)
        return C, S

    def _rope(self, x: np.ndarray, start: int) -> np.ndarray:
        """``x`` [T, heads, hd] rotated for positions start..start+T-1 (a new array)."""
        T = x.shape[0]
        C, S = self._rope_tables(start + T)
        C = C[start:start + T, None, :]
        S = S[start:start + T, None, :]
        r = self.hp.n_rot
        xr = x[..., :r]
        if self.hp.rope_neox:
            partner = np.concatenate([xr[..., r // 2:], xr[..., : r // 2]], axis=-1)
        else:
            partner = xr.reshape(*xr.shape[:-1], r // 2, 2)[..., ::-1].reshape(xr.shape)
        out = xr * C + partner * S
        if r < x.shape[-1]:
            out = np.concatenate([out, x[..., r:]], axis=-1)
        return out

    # -- the pass ----------------------------------------------------------------------------
    def forward(self, tokens, cache: Optional[KVCache] = None, logits_from: int = 0,
                trace: Optional[Dict[str, Any]] = None) -> np.ndarray:
        """Logits (float32 ``[T - logits_from, n_vocab]``) of the chunk ``tokens`` appended to
        ``cache`` (a fresh cache of len(tokens) positions when None).

        ``trace``: a dict that receives ``"experts"``, a list (one per MoE layer) of the routed
        expert ids ``[T, k]`` of this chunk."""
        hp = self.hp
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        T = tokens.size
        if T == 0:
            raise QtkValueError("forward() needs at least one token")
        if tokens.min() < 0 or tokens.max() >= self.tok_embd.rows:
            raise QtkValueError(f"token ids must lie in [0, {self.tok_embd.rows}), got {tokens.min()}..{tokens.max()}")
        if cache is None:
            cache = self.new_cache(T)
        p0 = cache.n_past
        if p0 + T > cache.n_ctx:
            raise QtkValueError(f"the KV cache holds {cache.n_ctx} positions; {p0} used, {T} more requested")
        if trace is not None:
            trace["experts"] = []
        x = self.tok_embd.rows_f32(tokens)
        x = self.run_layers(x, cache, p0, trace=trace)
        cache.n_past = p0 + T
        return self.head(x[logits_from:])

    def run_layers(self, x: np.ndarray, cache: KVCache, p0: int, start: int = 0, trace: Optional[Dict[str, Any]] = None,
                   inputs: Optional[List[np.ndarray]] = None) -> np.ndarray:
        """The hidden states ``x`` [T, n_embd] entering layer ``start`` through the remaining layers
        (the cache's n_past is not advanced). ``inputs``: a list that receives the input of every
        layer run (the bit allocator re-runs a model from a layer on, see qtoolkit.alloc)."""
        hp = self.hp
        for il in range(start, len(self.layers)):
            L = self.layers[il]
            if inputs is not None:
                inputs.append(x)
            h = rms_norm(x, L.attn_norm, hp.eps)
            x = x + self.attend(L, h, cache.k[il], cache.v[il], p0)
            h = rms_norm(x, L.ffn_norm, hp.eps)
            x = x + (self._moe(L, h, trace) if L.experts is not None else self.ffn(L, h))
        return x

    def head(self, x: np.ndarray) -> np.ndarray:
        """Logits of final hidden states: output norm, then the output matrix."""
        return self.output(rms_norm(x, self.output_norm, self.hp.eps))

    def attend(self, L: Layer, h: np.ndarray, k_store: np.ndarray, v_store: np.ndarray, p0: int) -> np.ndarray:
        """Self-attention of layer ``L`` for the normed hidden states ``h`` [T, n_embd] at positions
        p0 .. p0+T-1 (output projection included). ``k_store`` / ``v_store`` ``[n_head_kv, >= p0+T,
        head_dim]`` hold the keys and values of positions before p0 and receive this chunk's."""
        hp = self.hp
        T = h.shape[0]
        H, Hkv, hd, hdv = hp.n_head, hp.n_head_kv, hp.head_dim, hp.head_dim_v
        q = L.wq(h).reshape(T, H, hd)
        k = L.wk(h).reshape(T, Hkv, hd)
        v = L.wv(h).reshape(T, Hkv, hdv)
        if L.q_norm is not None:
            q = rms_norm(q, L.q_norm, hp.eps)
        if L.k_norm is not None:
            k = rms_norm(k, L.k_norm, hp.eps)
        q = self._rope(q, p0)
        k = self._rope(k, p0)
        S = p0 + T
        k_store[:, p0:S] = k.transpose(1, 0, 2)
        v_store[:, p0:S] = v.transpose(1, 0, 2)
        K = k_store[:, :S]                           # [Hkv, S, hd]
        V = v_store[:, :S]
        g = H // Hkv
        qg = q.transpose(1, 0, 2).reshape(Hkv, g, T, hd)   # query head j uses KV head j // g
        out = np.empty((Hkv, g, T, hdv), dtype=np.float32)
        parts = _head_parts(Hkv, self.threads)
        if len(parts) == 1 or H * T * S < ATTN_MIN_WORK:
            self._attend_heads(qg, K, V, out, p0)
        else:   # KV-head groups on the helper threads (numpy's matmul releases the GIL), same bits
            list(_attention_pool(len(parts)).map(
                lambda ab: self._attend_heads(qg[ab[0]:ab[1]], K[ab[0]:ab[1]], V[ab[0]:ab[1]], out[ab[0]:ab[1]], p0),
                parts))
        out = out.transpose(2, 0, 1, 3).reshape(T, H * hdv)
        return L.wo(out)

    def _attend_heads(self, qg: np.ndarray, K: np.ndarray, V: np.ndarray, out: np.ndarray, p0: int) -> None:
        """Softmax attention of the query groups ``qg`` [h, g, T, hd] over keys/values [h, S, ·] into
        ``out`` [h, g, T, hdv]; queries in blocks so that the scores stay below ATTN_BLOCK_ELEMENTS
        floats (long prompts)."""
        h, g, T, hd = qg.shape
        S = K.shape[1]
        step = max(1, min(T, ATTN_BLOCK_ELEMENTS // max(1, self.hp.n_head * S)))
        for t0 in range(0, T, step):
            t1 = min(T, t0 + step)
            n = t1 - t0
            scores = np.matmul(qg[:, :, t0:t1].reshape(h, g * n, hd), K.transpose(0, 2, 1)).reshape(h, g, n, S)
            scores *= self._kq_scale
            if p0 + t0 + 1 < S:
                # query t (position p0 + t) sees keys 0 .. p0 + t
                mask = np.arange(S)[None, :] > (p0 + np.arange(t0, t1))[:, None]
                scores[:, :, mask] = -np.inf
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            out[:, :, t0:t1] = np.matmul(scores.reshape(h, g * n, S), V).reshape(h, g, n, V.shape[2])

    def ffn(self, L: Layer, h: np.ndarray) -> np.ndarray:
        """The dense SwiGLU feed-forward of layer ``L`` on normed hidden states ``h``."""
        return L.ffn_down(silu(L.ffn_gate(h)) * L.ffn_up(h))

    def route(self, L: Layer, h: np.ndarray):
        """(expert ids int32 [T, k] by decreasing probability, their weights float32 [T, k])."""
        hp = self.hp
        logits = L.router(h)
        p = np.exp(logits - logits.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        top = np.argsort(-p, axis=-1, kind="stable")[:, :hp.n_expert_used]
        w = np.take_along_axis(p, top, axis=-1)
        if hp.norm_topk:
            w /= np.maximum(w.sum(axis=-1, keepdims=True), np.float32(6.103515625e-5))
        return top.astype(np.int32), w

    def _moe(self, L: Layer, h: np.ndarray, trace) -> np.ndarray:
        ids, w = self.route(L, h)
        if trace is not None:
            trace["experts"].append(ids)
        return self.experts(L, h, ids, w)

    def experts(self, L: Layer, h: np.ndarray, ids: np.ndarray, w: np.ndarray) -> np.ndarray:
        """The MoE feed-forward of layer ``L`` for tokens ``h`` routed to ``ids`` with weights
        ``w`` (:meth:`route`), plus the shared expert where the layer has one. Every token's result
        is the same whatever tokens it is computed with (the layer-major runner batches all chunks)."""
        out = L.experts(h, ids, w)
        if L.shexp_gate is not None:
            s = L.shexp_down(silu(L.shexp_gate(h)) * L.shexp_up(h))
            z = h @ L.shexp_inp
            with np.errstate(over="ignore"):
                gate = np.float32(1.0) / (np.float32(1.0) + np.exp(-z))
            out = out + s * gate[:, None]
        return out

    # -- conveniences ------------------------------------------------------------------------
    def logits(self, tokens) -> np.ndarray:
        """Logits of every position of ``tokens`` evaluated from an empty cache."""
        return self.forward(tokens)

    def describe(self) -> Dict[str, Any]:
        hp = self.hp
        return {"architecture": hp.arch, "source": self.source, "file_type": self.file_type, "n_layer": hp.n_layer,
                "n_embd": hp.n_embd, "n_vocab": self.n_vocab, "n_expert": hp.n_expert, "n_expert_used": hp.n_expert_used}
