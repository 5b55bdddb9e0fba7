"""Watching what enters every weight matrix of a forward pass, without changing the pass: the one
activation-tap mechanism, used by the importance-matrix collection (:mod:`qtoolkit.imatrix`) and
by the bit allocator's calibration (:mod:`qtoolkit.alloc.calibration`).

:func:`observe` swaps each :class:`~qtoolkit.model.linear.Linear` and
:class:`~qtoolkit.model.linear.Experts` of a loaded model for a thin proxy that hands the input
to an observer and then calls the original; leaving the ``with`` block puts the originals back.
A model that nobody observes runs exactly the code it always ran: there is no check on the hot
path, the proxies simply are not there.

An observer has these methods (names from :mod:`.tensors`, as llama.cpp names the tensors, so what
an observer records can be written under the names llama-quantize looks up):

* ``dense(name, x)``: ``x`` float32 ``[tokens, n]`` is about to be multiplied by the GGUF tensor
  ``name`` (e.g. ``blk.0.attn_q.weight``);
* ``experts(names, stack, x, ids, weights, hidden)``: the expert stack ``stack`` (the
  :class:`~qtoolkit.model.linear.Experts` itself) ran on ``x`` ``[tokens, n_embd]`` with routed
  expert ids ``ids`` and router weights ``weights`` ``[tokens, k]``; ``hidden``
  ``[tokens, k, n_ff]`` is the input of the down projection of each routed pair, or None when the
  observer's ``wants_hidden`` attribute is False (the stack then runs its usual fused kernel);
  ``names`` = the gate, up and down stack names;
* ``lookup(name, table, ids)`` (only with ``observe(..., lookups=True)``): rows ``ids`` of the
  embedding ``name`` (the :class:`~qtoolkit.model.linear.Linear` ``table``) are looked up.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, List, Tuple

import numpy as np

from .forward import Model
from .tensors import EXPERT_STACKS, LINEARS, layer_tensor


class ObservedLinear:
    """Calls ``observer.dense(name, x)`` for each of ``names``, then the wrapped layer; with
    ``lookups``, an embedding lookup (``rows_f32``) is reported to ``observer.lookup`` first.
    ``products=False`` leaves the matrix products unreported (an embedding watched as a table)."""

    __slots__ = ("inner", "names", "observer", "products", "lookups")

    def __init__(self, inner, names: Tuple[str, ...], observer, products: bool = True, lookups: bool = False):
        self.inner, self.names, self.observer = inner, names, observer
        self.products, self.lookups = products, lookups

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.products:
            for name in self.names:
                self.observer.dense(name, x)
        return self.inner(x)

    def rows_f32(self, ids: np.ndarray) -> np.ndarray:
        if self.lookups:
            self.observer.lookup(self.names[0], self.inner, ids)
        return self.inner.rows_f32(ids)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)


class ObservedExperts:
    """Runs the wrapped expert stack and reports its routed inputs (see the module doc)."""

    __slots__ = ("inner", "names", "observer")

    def __init__(self, inner, names: Tuple[str, str, str], observer):
        self.inner, self.names, self.observer = inner, names, observer

    def __call__(self, x: np.ndarray, ids: np.ndarray, weights: np.ndarray) -> np.ndarray:
        if getattr(self.observer, "wants_hidden", True):
            out, hidden = self.inner.forward_with_hidden(x, ids, weights)
        else:
            out, hidden = self.inner(x, ids, weights), None
        self.observer.experts(self.names, self.inner, x, ids, weights, hidden)
        return out

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)


def _swap_layer(saved: List[Tuple[Any, str, Any]], L, il: int, observer) -> None:
    """Proxies on every matrix of block ``il`` (recorded in ``saved`` for the way back)."""
    for attr, short in LINEARS.items():
        lin = getattr(L, attr, None)
        if lin is None:
            continue
        names = (layer_tensor(il, short),)
        if attr == "shexp_gate" and getattr(L, "shexp_inp", None) is not None:
            names += (layer_tensor(il, "ffn_gate_inp_shexp"),)
        saved.append((L, attr, lin))
        setattr(L, attr, ObservedLinear(lin, names, observer))
    if L.experts is not None:
        saved.append((L, "experts", L.experts))
        L.experts = ObservedExperts(L.experts, tuple(layer_tensor(il, n) for n in EXPERT_STACKS), observer)


def _restore(saved: List[Tuple[Any, str, Any]]) -> None:
    for obj, attr, original in reversed(saved):
        setattr(obj, attr, original)


@contextmanager
def observe_layer(layer, il: int, observer) -> Iterator[Any]:
    """Within the block every matrix product of ``layer`` (block ``il``) reports its input to
    ``observer`` (the layer-major runner observes one layer at a time)."""
    saved: List[Tuple[Any, str, Any]] = []
    try:
        _swap_layer(saved, layer, il, observer)
        yield layer
    finally:
        _restore(saved)


@contextmanager
def observe_head(model: Model, observer) -> Iterator[Model]:
    """Within the block the output projection reports its input, under ``output.weight`` (or
    ``token_embd.weight`` for a tied head)."""
    saved: List[Tuple[Any, str, Any]] = []
    try:
        name = ("token_embd.weight",) if model.output is model.tok_embd else ("output.weight",)
        saved.append((model, "output", model.output))
        model.output = ObservedLinear(model.output, name, observer)
        yield model
    finally:
        _restore(saved)


@contextmanager
def observe(model: Model, observer, head: bool = False, lookups: bool = False) -> Iterator[Model]:
    """Within the block every matrix product of the layers of ``model`` reports its input to
    ``observer``.

    ``head``: also the output projection, under ``output.weight``, or ``token_embd.weight`` for a
    model whose head is its embedding matrix (tied). ``lookups``: also the embedding lookups,
    under ``token_embd.weight`` (``observer.lookup``). The shared-expert gate of Qwen2-MoE
    (``ffn_gate_inp_shexp``, a vector that multiplies the same input as ``ffn_gate_shexp``) is
    reported under its own name too."""
    saved: List[Tuple[Any, str, Any]] = []

    def swap(obj, attr: str, proxy) -> None:
        saved.append((obj, attr, getattr(obj, attr)))
        setattr(obj, attr, proxy)

    try:
        for il, L in enumerate(model.layers):
            _swap_layer(saved, L, il, observer)
        emb = ("token_embd.weight",)
        if model.output is model.tok_embd:   # tied: one proxy in both roles
            if head or lookups:
                proxy = ObservedLinear(model.tok_embd, emb, observer, products=head, lookups=lookups)
                swap(model, "tok_embd", proxy)
                swap(model, "output", proxy)
        else:
            if lookups:
                swap(model, "tok_embd", ObservedLinear(model.tok_embd, emb, observer, products=False, lookups=True))
            if head:
                swap(model, "output", ObservedLinear(model.output, ("output.weight",), observer))
        yield model
    finally:
        _restore(saved)

