"""Watching what enters every weight matrix of a forward pass, without changing the pass.

:func:`observe` swaps each :class:`~qtoolkit.model.linear.Linear` and
:class:`~qtoolkit.model.linear.Experts` of a loaded model for a thin proxy that hands the input
to an observer and then calls the original; leaving the ``with`` block puts the originals back.
A model that nobody observes runs exactly the code it always ran: there is no check on the hot
path, the proxies simply are not there.

An observer has two methods:

* ``dense(name, x)``: ``x`` float32 ``[tokens, n]`` is about to be multiplied by the GGUF tensor
  ``name`` (e.g. ``blk.0.attn_q.weight``);
* ``experts(names, x, ids, hidden, n_expert)``: an expert stack ran on ``x`` ``[tokens, n_embd]``
  with routed expert ids ``ids`` ``[tokens, k]``; ``hidden`` ``[tokens, k, n_ff]`` is the input of
  the down projection for each routed pair; ``names`` = the gate, up and down stack names.

Tensor names follow llama.cpp (ggml-formats.md §6.1), so what an observer records can be written
under the names llama-quantize looks up.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, List, Tuple

import numpy as np

from .forward import Model

# Layer attribute -> GGUF tensor name inside "blk.N."
LINEARS = {
    "wq": "attn_q", "wk": "attn_k", "wv": "attn_v", "wo": "attn_output",
    "ffn_gate": "ffn_gate", "ffn_up": "ffn_up", "ffn_down": "ffn_down",
    "router": "ffn_gate_inp",
    "shexp_gate": "ffn_gate_shexp", "shexp_up": "ffn_up_shexp", "shexp_down": "ffn_down_shexp",
}
EXPERTS = ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps")


class ObservedLinear:
    """Calls ``observer.dense(name, x)`` for each of ``names``, then the wrapped layer."""

    __slots__ = ("inner", "names", "observer")

    def __init__(self, inner, names: Tuple[str, ...], observer):
        self.inner, self.names, self.observer = inner, names, observer

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for name in self.names:
            self.observer.dense(name, x)
        return self.inner(x)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)


class ObservedExperts:
    """Runs the wrapped expert stack through ``forward_with_hidden`` and reports the routed inputs."""

    __slots__ = ("inner", "names", "observer")

    def __init__(self, inner, names: Tuple[str, str, str], observer):
        self.inner, self.names, self.observer = inner, names, observer

    def __call__(self, x: np.ndarray, ids: np.ndarray, weights: np.ndarray) -> np.ndarray:
        out, hidden = self.inner.forward_with_hidden(x, ids, weights)
        self.observer.experts(self.names, x, ids, hidden, self.inner.n_expert)
        return out

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)


@contextmanager
def observe(model: Model, observer, output: bool = False) -> Iterator[Model]:
    """Within the block every matrix product of ``model`` reports its input to ``observer``.

    The output projection is watched only with ``output=True`` and only when the model has its
    own ``output.weight`` (a tied model multiplies by ``token_embd.weight``, which llama-imatrix
    never records either). The shared-expert gate of Qwen2-MoE (``ffn_gate_inp_shexp``, a vector
    that multiplies the same input as ``ffn_gate_shexp``) is reported under its own name too."""
    saved: List[Tuple[Any, str, Any]] = []
    try:
        for il, L in enumerate(model.layers):
            prefix = f"blk.{il}."
            for attr, short in LINEARS.items():
                lin = getattr(L, attr, None)
                if lin is None:
                    continue
                names = (prefix + short + ".weight",)
                if attr == "shexp_gate" and getattr(L, "shexp_inp", None) is not None:
                    names += (prefix + "ffn_gate_inp_shexp.weight",)
                saved.append((L, attr, lin))
                setattr(L, attr, ObservedLinear(lin, names, observer))
            if L.experts is not None:
                saved.append((L, "experts", L.experts))
                L.experts = ObservedExperts(L.experts, tuple(prefix + n + ".weight" for n in EXPERTS), observer)
        if output and model.output is not model.tok_embd:
            saved.append((model, "output", model.output))
            model.output = ObservedLinear(model.output, ("output.weight",), observer)
        yield model
    finally:
        for obj, attr, original in reversed(saved):
            setattr(obj, attr, original)
