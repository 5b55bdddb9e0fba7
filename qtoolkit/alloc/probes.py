"""Sensitivity probes of the bit allocator: how much KL divergence from the full-precision model a
tensor's quantization error costs, measured on the calibration text (docs/allocation.md).

Each band of tensors (the same tensor kind in a few consecutive layers, or one tensor alone) is
quantized alone to a few probe types and the model's KL divergence from the reference is
measured; a tensor's predicted loss at any type is read off the line through its probes in
log(error)-log(KLD) space (:func:`qtoolkit.alloc.allocate.predict_loss`). Members of a band share
its measurement in proportion to their errors. With a GGUF reference (a Q8_0 conversion standing
in for the float32 model), what undoing the reference's own error costs is measured too and
subtracted.
"""

from __future__ import annotations

import logging
import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..quants import QuantType, dequantize, quantize, type_info
from ..model.tensors import replace_tensor
from .calibration import Calibration, start_layer

log = logging.getLogger(__name__)

PROBE_BPW = (2.625, 4.5, 6.5625)   # probe at the candidates nearest these sizes: Q2_K, Q4_K, Q6_K
_ACT_Q8_0 = {QuantType.Q4_0, QuantType.Q5_0, QuantType.Q8_0, QuantType.IQ4_NL}
_ACT_Q8_1 = {QuantType.Q4_1, QuantType.Q5_1}


def quantizer_importance(q_im: Optional[np.ndarray], w: np.ndarray) -> Optional[np.ndarray]:
    """The importance weights ``quantize`` takes for weights ``w``: per matrix for a 3-D stack,
    the one row otherwise."""
    if q_im is None:
        return None
    return q_im if w.ndim == 3 else q_im[0]


def activation_format(t: QuantType) -> str:
    """What a CPU matmul quantizes the activations to for weights of type ``t`` (ggml's vec_dot_type)."""
    if t in (QuantType.F32, QuantType.F16, QuantType.BF16):
        return t.name
    if t in _ACT_Q8_0:
        return "Q8_0"
    if t in _ACT_Q8_1:
        return "Q8_1"
    return "Q8_K"


def _band_key(name: str, band: int) -> Tuple[str, int]:
    m = re.match(r"^blk\.(\d+)\.(.+)$", name)
    return (name, -1) if m is None else (m.group(2), int(m.group(1)) // band)


def bands(free: Sequence, band: int) -> List[List]:
    """Tensors probed together: the same kind (name after ``blk.N.``) in ``band`` consecutive layers."""
    groups: Dict[Tuple[str, int], List] = {}
    for tp in free:
        groups.setdefault(_band_key(tp.name, band), []).append(tp)
    out = []
    for members in groups.values():   # members of a band must share their candidate types
        by_types: Dict[Tuple[QuantType, ...], List] = {}
        for tp in members:
            by_types.setdefault(tuple(tp.types), []).append(tp)
        out.extend(by_types.values())
    return out


def auto_band(free: Sequence, n_probe_types: int, max_probes: int) -> int:
    """The fewest layers per band that keep the probe runs within ``max_probes``."""
    band = 1
    while len(bands(free, band)) * n_probe_types > max_probes:
        nxt = band * 2
        if len(bands(free, nxt)) == len(bands(free, band)):
            break
        band = nxt
    return band


class Prober:
    """Measures the KLD of replacing a band's tensors (see the module doc).

    ``weights_of(name)``: a tensor's full-precision weights (float32, its numpy shape);
    ``importance[name]``: the quantizer's importance weights of each tensor (the converter's own)."""

    def __init__(self, calib: Calibration, weights_of: Callable[[str], np.ndarray],
                 importance: Dict[str, Optional[np.ndarray]], reference: bool, threads: Optional[int]):
        self.calib = calib
        self.model = calib.model
        self.weights_of = weights_of
        self.importance = importance
        self.reference = reference
        self.threads = threads
        self.tied = self.model.output is self.model.tok_embd

    def kld(self, members: Sequence, t: Optional[QuantType], mode: str) -> float:
        """KLD with every member replaced: ``weights`` = quantized to t and run in float32,
        ``kernels`` = quantized to t and run by the kernels (activations quantized as the file's
        will be), ``null`` = its own full-precision weights in float32."""
        undos = []
        try:
            for tp in members:
                w = self.weights_of(tp.name)
                if mode == "null":
                    undos.append(replace_tensor(self.model, tp.name, w))
                    continue
                q = quantize(w, t, imatrix=quantizer_importance(self.importance[tp.name], w), threads=self.threads)
                if mode == "weights":
                    undos.append(replace_tensor(self.model, tp.name,
                                                dequantize(q, t, threads=self.threads).reshape(w.shape)))
                else:
                    undos.append(replace_tensor(self.model, tp.name, q, t, w.shape[-1]))
            n_layer = len(self.model.layers)
            return self.calib.kld(min(start_layer(tp.name, n_layer, self.tied) for tp in members))
        finally:
            for undo in reversed(undos):
                undo()

    def kld_of_types(self, types: Dict[str, QuantType]) -> Dict[str, float]:
        """KLD of a whole file: every tensor of ``types`` quantized to its type and run on the
        kernels, all at once (an anchor)."""
        undos = []
        try:
            for name, t in types.items():
                w = self.weights_of(name)
                q = quantize(w, t, imatrix=quantizer_importance(self.importance[name], w), threads=self.threads)
                undos.append(replace_tensor(self.model, name, q, t, w.shape[-1]))
                del w
            k = self.calib.kld(-1)
            return {"kld": k, "kld_probe_chunks": k}
        finally:
            for undo in reversed(undos):
                undo()

    def measure(self, members: Sequence, probe_bpw: Sequence[float] = PROBE_BPW) -> None:
        """Fill ``probes``, ``null``, ``act``, ``act_probe`` and ``band`` of every member."""
        specs = probe_specs(members, probe_bpw, self.reference)
        klds = {}
        for spec in specs:
            mode, t = spec
            if mode == "weights" and sum(tp.error[tp.types.index(t)] for tp in members) <= 0:
                klds[spec] = 0.0   # no error: nothing to measure
                continue
            klds[spec] = self.kld(members, t, mode)
        apply_probes(members, specs, klds)


Spec = Tuple[str, Optional[QuantType]]   # ("null", None), ("weights", type) or ("kernels", type)


def probe_specs(members: Sequence, probe_bpw: Sequence[float] = PROBE_BPW, reference: bool = False,
                errors: Optional[Sequence[float]] = None) -> List[Spec]:
    """The probes of a band, in the order they are applied: the null probe (with a GGUF
    reference), a weight probe at the candidate nearest each of ``probe_bpw`` (ties: the least
    error), a kernel probe at the most precise candidate of each activation format. ``errors``:
    the lead member's errors per candidate (default its ``error``)."""
    lead = members[0]
    err = list(errors if errors is not None else lead.error)
    bpws = [type_info(t).bits_per_weight for t in lead.types]
    specs: List[Spec] = [("null", None)] if reference else []
    for j in sorted({min(range(len(bpws)), key=lambda j: (abs(bpws[j] - b), err[j])) for b in probe_bpw}):
        specs.append(("weights", lead.types[j]))
    for fmt in ("Q8_K", "Q8_0"):
        js = [j for j, t in enumerate(lead.types) if activation_format(t) == fmt]
        if js:
            specs.append(("kernels", lead.types[max(js, key=lambda j: (bpws[j], -err[j]))]))
    return specs


def apply_probes(members: Sequence, specs: Sequence[Spec], klds: Dict[Spec, float], scale: float = 1.0) -> None:
    """Fill ``probes``, ``null``, ``act``, ``act_probe`` and ``band`` of every member from the
    measured KL divergences of its band's probes (each member's share in proportion to its error;
    the null probe's value subtracted from the others; what the kernels add over the weight curve
    is the activation cost of that format). ``scale`` multiplies every measurement."""
    if len(members) > 1:
        for tp in members:
            tp.band = [m.name for m in members]
    null = klds.get(("null", None), 0.0) * scale
    for tp, sh in zip(members, _shares(members, 0)):
        tp.null = null * sh
    for mode, t in specs:
        if mode != "weights":
            continue
        j = members[0].types.index(t)
        k = max(klds[(mode, t)] * scale - null, 0.0) if sum(tp.error[j] for tp in members) > 0 else 0.0
        for tp, sh in zip(members, _shares(members, j)):
            tp.probes[t.name] = k * sh
    for mode, t in specs:
        if mode != "kernels":
            continue
        j = members[0].types.index(t)
        fmt = activation_format(t)
        k = max(klds[(mode, t)] * scale - null, 0.0)
        for tp, sh in zip(members, _shares(members, j)):
            tp.act[fmt] = max(k * sh - tp.weight_loss(tp.error[j]), 0.0)
            tp.act_probe[fmt] = t.name
    lead = members[0]
    log.info("probes of %s: %s; activations %s", ", ".join(tp.name for tp in members),
             ", ".join(f"{n} {sum(tp.probes[n] for tp in members):.2e}" for n in lead.probes),
             ", ".join(f"{f} {sum(tp.act.get(f, 0) for tp in members):.2e}" for f in lead.act))


def _shares(members: Sequence, j: int) -> List[float]:
    """Each member's share of a band's measurement at candidate ``j``: its part of the error."""
    total = sum(tp.error[j] for tp in members)
    return [tp.error[j] / total if total > 0 else 1.0 / len(members) for tp in members]
