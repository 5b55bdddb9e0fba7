"""Hyper-parameters of a decoder model, read from GGUF metadata keys (``{arch}.block_count`` ...).

A Hugging Face folder is described by the same keys: the converter's architecture registry writes
them (:func:`qtoolkit.model.loader.load_hf`), so both kinds of model are configured by one parser
and run by one forward pass. Per-architecture behaviour that llama.cpp hard-codes (RoPE style,
top-k renormalisation) is hard-coded here the same way; see docs/inference.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..errors import QtkFormatError, QtkNotImplementedError

# gguf architecture -> (NEOX rope, renormalise the top-k router weights)
ARCHS = {
    "llama": (False, True),      # Llama, Mistral, Mixtral (MoE when expert_count > 0)
    "qwen2": (True, True),
    "qwen3": (True, True),
    "qwen3moe": (True, True),
    "qwen2moe": (True, False),
}


@dataclass
class HParams:
    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int             # of q and k
    head_dim_v: int
    n_rot: int                # rotated dimensions per head
    rope_neox: bool           # rotate (i, i + n_rot/2) pairs; else adjacent (2i, 2i+1) pairs
    rope_base: float
    rope_freq_scale: float    # positions are multiplied by this (linear rope scaling: 1/factor)
    eps: float
    n_ctx_train: int
    n_expert: int = 0
    n_expert_used: int = 0
    norm_topk: bool = True
    attn_scale: float = 0.0   # 0: 1/sqrt(head_dim)

    @property
    def is_moe(self) -> bool:
        return self.n_expert > 0

    @classmethod
    def from_metadata(cls, md: Mapping[str, Any], where: str) -> "HParams":
        arch = md.get("general.architecture")
        if not isinstance(arch, str) or arch not in ARCHS:
            raise QtkNotImplementedError(
                f"{where}: architecture {arch!r} is not supported for inference; supported: {', '.join(sorted(ARCHS))}"
            )
        n_layer = None

        def get(key, default=None, kind=int, lo=None, hi=None):
            """``{arch}.key`` checked as llama.cpp reads it: an integer (or a per-layer array of
            block_count integers, all equal here) or a finite float, within [lo, hi]."""
            full = f"{arch}.{key}"
            v = md.get(full, default)
            if v is None:
                raise QtkFormatError(f"{where}: metadata key {full} is missing")
            if isinstance(v, (list, tuple, np.ndarray)):  # per-layer arrays
                vals = [_scalar(x, kind, where, full) for x in v]
                if n_layer is not None and len(vals) != n_layer:
                    raise QtkFormatError(f"{where}: {full} has {len(vals)} per-layer values; block_count is {n_layer}")
                if len(set(vals)) != 1:
                    raise QtkNotImplementedError(f"{where}: {full} differs between layers ({sorted(set(vals))[:8]})")
                v = vals[0]
            else:
                v = _scalar(v, kind, where, full)
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                bounds = f"at least {lo}" if hi is None else f"in [{lo}, {hi}]"
                raise QtkFormatError(f"{where}: {full} = {v} is out of range (must be {bounds})")
            return v

        n_layer = get("block_count", lo=1, hi=1 << 16)
        n_embd = get("embedding_length", lo=1, hi=1 << 20)
        n_head = get("attention.head_count", lo=1, hi=1 << 16)
        n_head_kv = get("attention.head_count_kv", n_head, lo=1, hi=n_head)
        if n_head % n_head_kv:
            raise QtkFormatError(f"{where}: {n_head} attention heads cannot share {n_head_kv} KV heads")
        head_dim = get("attention.key_length", max(1, n_embd // n_head), lo=1, hi=1 << 16)
        head_dim_v = get("attention.value_length", head_dim, lo=1, hi=1 << 16)
        n_rot = get("rope.dimension_count", head_dim, lo=0, hi=head_dim)
        if n_rot % 2:
            raise QtkFormatError(f"{where}: rope.dimension_count {n_rot} must be even and at most the head size {head_dim}")
        scale = 1.0
        rtype = md.get(f"{arch}.rope.scaling.type")
        if rtype in (None, "none"):
            pass
        elif rtype == "linear":
            factor = get("rope.scaling.factor", 1.0, float, lo=0.0)
            scale = 1.0 / factor if factor else 1.0
        else:
            raise QtkNotImplementedError(f"{where}: rope scaling {rtype!r} is not supported for inference yet (linear is)")
        if f"{arch}.rope.scale_linear" in md:
            factor = get("rope.scale_linear", 1.0, float, lo=0.0)
            scale = 1.0 / factor if factor else 1.0
        neox, norm_topk = ARCHS[arch]
        hp = cls(
            arch=arch,
            n_layer=n_layer,
            n_embd=n_embd,
            n_head=n_head,
            n_head_kv=n_head_kv,
            head_dim=head_dim,
            head_dim_v=head_dim_v,
            n_rot=n_rot,
            rope_neox=neox,
            rope_base=get("rope.freq_base", 10000.0, float, lo=1e-30),
            rope_freq_scale=scale,
            eps=get("attention.layer_norm_rms_epsilon", None, float, lo=0.0),
            n_ctx_train=get("context_length", 4096, lo=0),
            n_expert=get("expert_count", 0, lo=0, hi=1 << 16),
            n_expert_used=get("expert_used_count", 0, lo=0),
            norm_topk=norm_topk,
            attn_scale=get("attention.scale", 0.0, float, lo=0.0),
        )
        if hp.n_expert and not 0 < hp.n_expert_used <= hp.n_expert:
            raise QtkFormatError(f"{where}: expert_used_count {hp.n_expert_used} is not in 1..{hp.n_expert}")
        return hp


def _scalar(v: Any, kind: type, where: str, key: str):
    """An integer metadata value (not a bool, a float or a string) or a finite float."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer) if kind is int else (int, float, np.integer, np.floating)):
        what = "an integer" if kind is int else "a number"
        raise QtkFormatError(f"{where}: metadata key {key} = {v!r} is not {what}")
    v = kind(v)
    if kind is float and not math.isfinite(v):
        raise QtkFormatError(f"{where}: metadata key {key} = {v} is not finite")
    return v
