"""The GGUF names of a loaded model's weights: the one map between :class:`~.forward.Layer`
attributes and llama.cpp's tensor names (ggml-formats.md §6.1), used by the loader to fill a layer,
by :mod:`.taps` to report what enters each matrix, and by :func:`replace_tensor` to swap one.

* ``LINEARS``: layer attribute -> name inside ``blk.N.`` of each matrix (``Linear``);
* ``EXPERT_STACKS``: the three routed-expert stacks of an :class:`~.linear.Experts`, in the order
  gate, up, down;
* ``VECTORS``: layer attribute -> name of each norm or gate vector.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np

from ..errors import QtkValueError
from ..quants import QuantType
from .forward import Model
from .linear import Experts, Linear

LINEARS = {
    "wq": "attn_q", "wk": "attn_k", "wv": "attn_v", "wo": "attn_output",
    "ffn_gate": "ffn_gate", "ffn_up": "ffn_up", "ffn_down": "ffn_down",
    "router": "ffn_gate_inp",
    "shexp_gate": "ffn_gate_shexp", "shexp_up": "ffn_up_shexp", "shexp_down": "ffn_down_shexp",
}
EXPERT_STACKS = ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps")
VECTORS = {
    "attn_norm": "attn_norm", "q_norm": "attn_q_norm", "k_norm": "attn_k_norm", "ffn_norm": "ffn_norm",
    "shexp_inp": "ffn_gate_inp_shexp",
}
ATTR_OF = {short: attr for attr, short in LINEARS.items()}


def layer_tensor(il: int, short: str) -> str:
    """``blk.{il}.{short}.weight``."""
    return f"blk.{il}.{short}.weight"


def split_name(name: str) -> Tuple[int, str]:
    """``blk.3.attn_q.weight`` -> (3, "attn_q"); (-1, name) for a tensor outside the layers."""
    parts = name.split(".")
    if len(parts) >= 3 and parts[0] == "blk" and parts[1].isdigit():
        return int(parts[1]), parts[2]
    return -1, name


def linear_of(w: np.ndarray, qtype: QuantType, cols: int, bias=None, threads=None, act_f32=False) -> Linear:
    if qtype == QuantType.F32:
        return Linear(np.ascontiguousarray(w, dtype=np.float32), QuantType.F32, cols, bias=bias, threads=threads)
    return Linear(np.ascontiguousarray(w).reshape(w.shape[-2] if w.ndim == 3 else w.shape[0], -1), qtype, cols,
                  bias=bias, threads=threads, act_f32=act_f32 and qtype == QuantType.BF16)


def replace_in_layer(L, short: str, w: np.ndarray, qtype: QuantType = QuantType.F32) -> Callable[[], None]:
    """Put weights ``w`` in place of the matrix ``short`` (e.g. ``attn_q``, ``ffn_up_exps``) of the
    block ``L``; as :func:`replace_tensor`. Returns an undo function."""
    if short in EXPERT_STACKS:
        old: Optional[Experts] = L.experts
        if old is None:
            raise QtkValueError(f"the block has no expert stack {short}")
        # the other two projections stay as they are (float32, stored dtype, or quantized in a GGUF)
        mats = list(old.matrices)
        qtypes = list(old.qtypes)
        j = EXPERT_STACKS.index(short)
        mats[j] = np.ascontiguousarray(w, dtype=np.float32) if qtype == QuantType.F32 else np.ascontiguousarray(w)
        qtypes[j] = qtype
        L.experts = Experts(*mats, qtypes, old.n_embd, old.n_ff, threads=old.threads, act_f32=old.act_f32)

        def undo_experts():
            L.experts = old
        return undo_experts
    attr = ATTR_OF.get(short)
    prev = getattr(L, attr, None) if attr is not None else None
    if prev is None:
        raise QtkValueError(f"the block has no matrix {short}")
    setattr(L, attr, linear_of(w, qtype, prev.cols, bias=prev.bias, threads=prev.threads, act_f32=prev.act_f32))

    def undo():
        setattr(L, attr, prev)
    return undo


def replace_tensor(model: Model, name: str, w: np.ndarray, qtype: QuantType = QuantType.F32,
                   cols: int = 0) -> Callable[[], None]:
    """Put weights ``w`` in place of tensor ``name``: float32 in the tensor's numpy shape, or, with
    ``qtype``, its quantized bytes (rows of ``cols`` elements; ``[n_expert, rows, row_bytes]`` for
    experts) run by the kernels as the quantized file will be. Returns an undo function."""
    if name in ("token_embd.weight", "output.weight"):
        old_embd, old_out = model.tok_embd, model.output
        lin = linear_of(w, qtype, cols or w.shape[1], threads=old_embd.threads)
        if name == "token_embd.weight":
            model.tok_embd = lin
            if old_out is old_embd:
                model.output = lin
        else:
            model.output = lin

        def undo_head():
            model.tok_embd, model.output = old_embd, old_out
        return undo_head
    il, short = split_name(name)
    if il < 0 or il >= len(model.layers):
        raise QtkValueError(f"the model has no tensor {name}")
    return replace_in_layer(model.layers[il], short, w, qtype)
