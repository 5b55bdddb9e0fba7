"""Budgeted bit allocation: one ggml type per tensor so that the file fits a size and the model
loses the least, as predicted from a short calibration run (docs/allocation.md).

1. Plan: the converter's own plan (names, shapes, metadata); tensors llama-quantize never
   quantizes (norms, routers) and tensors the user pinned (``--tensor-type``,
   ``--output-tensor-type``, ``--token-embedding-type``) are fixed; the others are free.
2. Calibration (:class:`~.calibrate.Calibration`): the full-precision model on the calibration
   text, once.
3. Error table: for every free tensor and every candidate type, the squared quantization error
   weighted by the calibration's activation statistics (``quant_error`` in C, on sampled rows).
4. Sensitivity: each free tensor is quantized alone to a few probe types and the model's KL
   divergence from the reference is measured on the calibration text; a tensor's predicted loss at
   any type is read off the line through its probes in log(error)-log(KLD) space.
5. Solver (:mod:`.solver`): the assignment with the least summed predicted KL divergence whose
   file fits the budget.
6. Recipe (:mod:`.recipe`): ``REGEX=TYPE`` lines that make the converter write exactly that file.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import QtkMemoryError, QtkValueError
from ..formats import QuantType, dequantize, quant_error, quantize, type_info
from ..presets import get_preset, is_quantizable
from .calibrate import Calibration, replace_tensor, start_layer
from .candidates import candidates as candidate_types
from .candidates import qtoolkit_can_run
from .recipe import check_reproduces, recipe_lines
from .solver import solve

log = logging.getLogger(__name__)

PROBE_BPW = (2.625, 4.5, 6.5625)   # probe at the candidates nearest these sizes: Q2_K, Q4_K, Q6_K
BASE_PRESETS = ("Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0")
ALIGN = 32
Progress = Callable[[str, int, int], None]   # (phase, done, total)


def _pad(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class TensorPlan:
    name: str
    ne: Tuple[int, ...]
    n_elements: int
    quantizable: bool = True                    # llama-quantize may change its type (not a norm or router)
    fixed: Optional[QuantType] = None           # a type the allocator may not change
    types: List[QuantType] = field(default_factory=list)
    nbytes: List[int] = field(default_factory=list)
    error: List[float] = field(default_factory=list)      # weighted squared error per candidate
    probes: Dict[str, float] = field(default_factory=dict)  # type name -> KLD of its weight error (its share of a band's)
    act: Dict[str, float] = field(default_factory=dict)     # activation format -> KLD the kernels add
    act_probe: Dict[str, str] = field(default_factory=dict)  # activation format -> the type that measured it
    null: float = 0.0                                       # KLD of undoing a GGUF reference's own error
    band: List[str] = field(default_factory=list)         # the tensors probed together with it (none: alone)
    loss: List[float] = field(default_factory=list)       # predicted KLD per candidate
    chosen: Optional[QuantType] = None

    def weight_loss(self, err: float) -> float:
        return predict_loss(self.probe_points, err)

    def predict(self, t: QuantType, err: float) -> float:
        """Predicted KLD of this tensor at type ``t``: its weight error's, plus the activation
        quantization of ``t``'s kernels (Q8_1 taken as Q8_0: same 32-element blocks)."""
        fmt = activation_format(t)
        return self.weight_loss(err) + self.act.get("Q8_0" if fmt == "Q8_1" else fmt, 0.0)

    @property
    def probe_points(self) -> List[Tuple[float, float]]:
        pts = []
        for name, k in self.probes.items():
            i = self.types.index(QuantType[name])
            pts.append((self.error[i], k))
        return pts


_ACT_Q8_0 = {QuantType.Q4_0, QuantType.Q5_0, QuantType.Q8_0, QuantType.IQ4_NL}
_ACT_Q8_1 = {QuantType.Q4_1, QuantType.Q5_1}


def activation_format(t: QuantType) -> str:
    """What a CPU matmul quantizes the activations to for weights of type ``t`` (ggml's vec_dot_type)."""
    if t in (QuantType.F32, QuantType.F16, QuantType.BF16):
        return t.name
    if t in _ACT_Q8_0:
        return "Q8_0"
    if t in _ACT_Q8_1:
        return "Q8_1"
    return "Q8_K"


def predict_loss(points: Sequence[Tuple[float, float]], err: float, slope_range=(0.5, 1.5)) -> float:
    """KL divergence at squared error ``err``, from measured (error, KLD) probe points: piecewise
    linear in log-log between them, the end slopes (clipped to ``slope_range``) beyond them. Probe
    KLDs are first made non-decreasing in error (measurement noise must not reward more error)."""
    if err <= 0.0 or not points:
        return 0.0
    pts = sorted((float(e), float(k)) for e, k in points if e > 0)
    if not pts:
        return 0.0
    es = np.log([p[0] for p in pts])
    ks = [max(p[1], 1e-12) for p in pts]
    for i in range(len(ks) - 2, -1, -1):
        ks[i] = min(ks[i], ks[i + 1])
    ks = np.log(ks)
    x = math.log(err)
    lo, hi = slope_range

    def slope(a, b):
        return float(np.clip((ks[b] - ks[a]) / (es[b] - es[a]), lo, hi)) if es[b] > es[a] else 1.0

    if len(pts) == 1:
        return float(math.exp(ks[0] + (x - es[0])))
    if x <= es[0]:
        return float(math.exp(ks[0] + slope(0, 1) * (x - es[0])))
    if x >= es[-1]:
        return float(math.exp(ks[-1] + slope(-2 + len(es), len(es) - 1) * (x - es[-1])))
    return float(math.exp(np.interp(x, es, ks)))


@dataclass
class Allocation:
    types: Dict[str, QuantType]                 # every tensor of the file
    base_preset: str
    recipe: List[str]
    predicted_kld: float
    budget_bytes: int                           # the target: file bytes, or tensor-data bytes for a bpw target
    budget_kind: str                            # "file" or "bpw"
    tensor_bytes: int
    file_bytes: int
    n_elements: int
    tensors: List[TensorPlan]
    solver: Dict[str, Any]
    calibration: Dict[str, Any]
    preset_predictions: Dict[str, Dict[str, float]]
    seconds: Dict[str, float]

    def types_quantized(self) -> Dict[str, QuantType]:
        """The types of the tensors llama-quantize may change (what a recipe names)."""
        return {t.name: self.types[t.name] for t in self.tensors if t.quantizable}

    @property
    def bpw(self) -> float:
        return 8.0 * self.tensor_bytes / self.n_elements

    def report(self) -> Dict[str, Any]:
        rows = []
        for t in self.tensors:
            if t.fixed is not None:
                rows.append({"name": t.name, "type": t.fixed.name, "fixed": True,
                             "bytes": _type_bytes(t.n_elements, t.fixed)})
                continue
            i = t.types.index(t.chosen)
            rows.append({"name": t.name, "type": t.chosen.name, "fixed": False, "bytes": t.nbytes[i],
                         "error": t.error[i], "predicted_kld": t.loss[i], "probes": dict(t.probes),
                         "activation_kld": dict(t.act), "null_kld": t.null, "band": list(t.band),
                         "options": {q.name: {"bytes": b, "error": e, "predicted_kld": l}
                                     for q, b, e, l in zip(t.types, t.nbytes, t.error, t.loss)}})
        return {"base_preset": self.base_preset, "predicted_kld": self.predicted_kld, "budget_bytes": self.budget_bytes,
                "budget_kind": self.budget_kind, "tensor_bytes": self.tensor_bytes, "file_bytes": self.file_bytes,
                "bpw": self.bpw, "recipe": self.recipe, "tensors": rows, "solver": self.solver,
                "calibration": self.calibration, "preset_predictions": self.preset_predictions, "seconds": self.seconds}


def _type_bytes(n: int, t: QuantType) -> int:
    info = type_info(t)
    return n // info.block_size * info.type_size


def _sample_rows(n_rows: int, n_mat: int, max_rows: int) -> np.ndarray:
    k = min(n_rows, max(4, max_rows // max(n_mat, 1)))
    return np.unique(np.linspace(0, n_rows - 1, k).round().astype(np.int64))


def _band_key(name: str, band: int) -> Tuple[str, int]:
    m = re.match(r"^blk\.(\d+)\.(.+)$", name)
    return (name, -1) if m is None else (m.group(2), int(m.group(1)) // band)


def _bands(free: Sequence[TensorPlan], band: int) -> List[List[TensorPlan]]:
    """Tensors probed together: the same kind (name after ``blk.N.``) in ``band`` consecutive layers."""
    groups: Dict[Tuple[str, int], List[TensorPlan]] = {}
    for tp in free:
        groups.setdefault(_band_key(tp.name, band), []).append(tp)
    out = []
    for members in groups.values():   # members of a band must share their candidate types
        by_types: Dict[Tuple[QuantType, ...], List[TensorPlan]] = {}
        for tp in members:
            by_types.setdefault(tuple(tp.types), []).append(tp)
        out.extend(by_types.values())
    return out


def _auto_band(free: Sequence[TensorPlan], n_probe_types: int, max_probes: int) -> int:
    """The fewest layers per band that keep the probe runs within ``max_probes``."""
    band = 1
    while len(_bands(free, band)) * n_probe_types > max_probes:
        nxt = band * 2
        if len(_bands(free, nxt)) == len(_bands(free, band)):
            break
        band = nxt
    return band


def _available_memory() -> Optional[int]:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return None


def _check_reference(model, outs, path: str) -> None:
    """A GGUF reference must be the same model: every planned matrix present with its shape."""
    hp = model.hp
    if hp.n_layer != max((int(o.name.split(".")[1]) for o in outs if o.name.startswith("blk.")), default=-1) + 1:
        raise QtkValueError(f"{path}: has {hp.n_layer} layers, the checkpoint another number; it is not the same model")
    emb = next(o for o in outs if o.name == "token_embd.weight")
    if (model.tok_embd.rows, model.tok_embd.cols) != (emb.shape[0], emb.shape[1]):
        raise QtkValueError(f"{path}: token_embd is {model.tok_embd.rows} x {model.tok_embd.cols}, the checkpoint's "
                            f"{emb.shape[0]} x {emb.shape[1]}; it is not the same model")
    tied_ref = model.output is model.tok_embd
    if tied_ref != all(o.name != "output.weight" for o in outs):
        raise QtkValueError(f"{path}: its output head is {'tied' if tied_ref else 'untied'}, the checkpoint's is not")


def _user_fixed(names: Sequence[str], tensor_types, output_tensor_type, token_embedding_type) -> Dict[str, QuantType]:
    from ..converter.core import _as_type, parse_tensor_types

    pats = [(re.compile(p), t) for p, t in parse_tensor_types(tensor_types)]
    out: Dict[str, QuantType] = {}
    for n in names:
        if n == "output.weight" and output_tensor_type:
            out[n] = _as_type(output_tensor_type, "--output-tensor-type")
            continue
        if n == "token_embd.weight" and token_embedding_type:
            out[n] = _as_type(token_embedding_type, "--token-embedding-type")
            continue
        for rx, t in pats:
            if rx.search(n):
                out[n] = t
                break
    return out


def allocate(model_dir: str, calib_text: str, target_size: Optional[int] = None, target_bpw: Optional[float] = None,
             imatrix: Optional[str] = None, types: Optional[Sequence[QuantType]] = None,
             base_preset: Optional[str] = None, tensor_types: Sequence = (), output_tensor_type=None,
             token_embedding_type=None, calib_ctx: int = 512, calib_chunks: Optional[int] = 16,
             probe_bpw: Sequence[float] = PROBE_BPW, max_rows: int = 4096, runnable_only: bool = False,
             probe_layers: Optional[int] = None, max_probes: int = 256, reference: Optional[str] = None,
             threads: Optional[int] = None, progress: Optional[Progress] = None,
             tokenizer_pre: Optional[str] = None, uncovered_experts: Optional[str] = None,
             min_expert_tokens: int = 1) -> Allocation:
    """Choose every tensor's type for a file of at most ``target_size`` bytes (or ``target_bpw`` bits
    per weight of tensor data); see the module doc. ``calib_text``: the calibration text itself.
    ``types``: the types to choose from (default: every type llama.cpp runs, the importance-matrix
    ones only with ``imatrix``); ``runnable_only`` keeps only those qtoolkit's own kernels run.
    ``probe_layers``: probe the same tensor of that many consecutive layers together (default: 1
    while the probe runs stay within ``max_probes``, else the fewest layers that do). ``reference``:
    a GGUF conversion of the same model (Q8_0, BF16...) to calibrate against instead of the float32
    model, for models whose float32 weights do not fit in memory. ``uncovered_experts`` and
    ``min_expert_tokens``: what the converter does with experts the importance matrix's calibration
    did not reach (the quantizer's weights here are the converter's own)."""
    from .. import load
    from ..converter.core import ConvertOptions, build_plan, tensor_f32
    from ..converter.core import tensor_types as plan_tensor_types
    from ..gguf_stream import file_layout
    from ..presets import PlanOptions

    if (target_size is None) == (target_bpw is None):
        raise QtkValueError("give exactly one of a target size and a target bpw")
    if target_bpw is not None and not 1.0 <= float(target_bpw) <= 32.0:
        raise QtkValueError(f"target bpw must lie between 1 and 32, got {target_bpw!r}")
    if base_preset is not None:
        bp = get_preset(base_preset)
        if not type_info(bp.default).is_quantized:
            raise QtkValueError(f"the base preset must be a quantized one (not {bp.name}): overrides do not apply to it")
    report = progress or (lambda phase, done, total: None)
    secs: Dict[str, float] = {}
    t0 = time.perf_counter()

    copts = ConvertOptions(qtype="Q8_0", imatrix=imatrix, tokenizer_pre=tokenizer_pre, min_expert_tokens=min_expert_tokens)
    if uncovered_experts is not None:
        copts.uncovered_experts = uncovered_experts
    if imatrix is not None and copts.uncovered_experts == "error":
        # refuse before the calibration and the probes, not after them at the final conversion: the
        # plan at a type that uses importance weights (Q6_K) runs the converter's own coverage check
        build_plan(model_dir, ConvertOptions(qtype="Q6_K", imatrix=imatrix, tokenizer_pre=tokenizer_pre,
                                             uncovered_experts="error", min_expert_tokens=min_expert_tokens)
                   ).checkpoint.close()
    plan = build_plan(model_dir, copts)
    try:
        # the quantizer's importance weights, as the converter prepares them (uncovered-expert policy included)
        q_ims: Dict[str, Optional[np.ndarray]] = {pt.out.name: pt.imatrix for pt in plan.tensors}
        outs = [pt.out for pt in plan.tensors]
        names = [o.name for o in outs]
        fixed_user = _user_fixed(names, tensor_types, output_tensor_type, token_embedding_type)
        runnable = qtoolkit_can_run if runnable_only else None
        tplans: List[TensorPlan] = []
        for o in outs:
            tp = TensorPlan(o.name, tuple(o.ne), o.n_elements)
            if not is_quantizable(o.name, o.ne):
                tp.quantizable = False
                tp.fixed = QuantType.F32
            elif o.name in fixed_user:
                tp.fixed = fixed_user[o.name]
            else:
                tp.types = candidate_types(o.ne[0], q_ims.get(o.name) is not None, types, runnable)
                if not tp.types:
                    raise QtkValueError(f"tensor {o.name} (rows of {o.ne[0]}) has no candidate type among the allowed ones")
                tp.nbytes = [_type_bytes(o.n_elements, t) for t in tp.types]
            tplans.append(tp)
        free = [tp for tp in tplans if tp.fixed is None]
        if not free:
            raise QtkValueError("every tensor's type is fixed; there is nothing to allocate")
        n_elements = sum(tp.n_elements for tp in tplans)

        # the budget, in the units the solver counts
        layout = file_layout(plan.arch.gguf_arch, plan.metadata, [(o.name, o.ne, 0) for o in outs])
        header = layout["header_bytes"]
        if target_size is not None:
            kind = "file"
            size_of = _pad
            budget = int(target_size) - header
        else:
            kind = "bpw"
            size_of = int
            budget = int(float(target_bpw) * n_elements / 8)
        target_bytes = budget + (header if kind == "file" else 0)   # what the user asked for, in bytes
        budget -= sum(size_of(_type_bytes(tp.n_elements, tp.fixed)) for tp in tplans if tp.fixed is not None)
        least = sum(size_of(min(tp.nbytes)) for tp in free)
        if budget < least:
            fixed_bytes = sum(size_of(_type_bytes(tp.n_elements, tp.fixed)) for tp in tplans if tp.fixed is not None)
            smallest = least + fixed_bytes + (header if kind == "file" else 0)
            what = f"{smallest:,} bytes" if kind == "file" else f"{8.0 * smallest / n_elements:.3f} bits per weight"
            raise QtkValueError(f"the target is below the smallest file the allowed types can make ({what})")
        secs["plan"] = time.perf_counter() - t0

        # calibration
        t1 = time.perf_counter()
        report("calibration", 0, 1)
        if reference is None:
            need = 4 * n_elements
            avail = _available_memory()
            if avail is not None and need > 0.8 * avail:
                raise QtkMemoryError(
                    f"the calibration run needs the model in float32 ({need / 1e9:.1f} GB) and only "
                    f"{avail / 1e9:.1f} GB of memory is available; convert it to Q8_0 (or BF16) first and pass that "
                    "file as the calibration reference (--calib-reference FILE.gguf)")
            model = load(model_dir, threads=threads)
        else:
            model = load(reference, threads=threads)
            _check_reference(model, outs, reference)
        calib = Calibration(model, calib_text, ctx=calib_ctx, chunks=calib_chunks)
        report("calibration", 1, 1)
        secs["calibration"] = time.perf_counter() - t1

        # the error table, one tensor at a time
        t_err = time.perf_counter()
        by_name = {o.name: o for o in outs}
        tied = model.output is model.tok_embd
        for i, tp in enumerate(free):
            report("errors", i, len(free))
            w = tensor_f32(plan, by_name[tp.name])
            w3 = w.reshape((-1,) + w.shape[-2:])
            n_mat, n_rows, n_cols = w3.shape
            col_w, row_w = calib.error_weights(tp.name, n_cols, n_mat, n_rows)
            q_im = q_ims.get(tp.name)
            rows = _sample_rows(n_rows, n_mat, max_rows)
            scale = n_rows / rows.size
            for t in tp.types:
                total = 0.0
                for m in range(n_mat):
                    qi = None if q_im is None else q_im[m]
                    cw = None if col_w is None else col_w[m if col_w.shape[0] > 1 else 0]
                    e = quant_error(np.ascontiguousarray(w3[m][rows]), t, imatrix=qi, weights=cw, threads=threads)
                    total += float(np.dot(e, row_w[rows]) if row_w is not None else e.sum()) * scale
                tp.error.append(total)
        report("errors", len(free), len(free))
        secs["errors"] = time.perf_counter() - t_err

        # sensitivity probes: each band of tensors changed alone (see the module doc)
        t_probe = time.perf_counter()
        n_kinds = len(probe_bpw) + 2 + (reference is not None)
        band = probe_layers or _auto_band(free, n_kinds, max_probes)
        bands = _bands(free, band)

        def probe(members, t, mode) -> float:
            """KLD with every member replaced: ``weights`` = quantized to t and run in float32,
            ``kernels`` = quantized to t and run by the kernels (activations quantized as the file's
            will be), ``null`` = its own full-precision weights in float32."""
            undos = []
            try:
                for tp in members:
                    w = tensor_f32(plan, by_name[tp.name])
                    if mode == "null":
                        undos.append(replace_tensor(model, tp.name, w))
                        continue
                    q_im = q_ims[tp.name]
                    imq = q_im if q_im is not None and w.ndim == 3 else (q_im[0] if q_im is not None else None)
                    q = quantize(w, t, imatrix=imq, threads=threads)
                    if mode == "weights":
                        undos.append(replace_tensor(model, tp.name, dequantize(q, t, threads=threads).reshape(w.shape)))
                    else:
                        undos.append(replace_tensor(model, tp.name, q, t, w.shape[-1]))
                return calib.kld(min(start_layer(tp.name, len(model.layers), tied) for tp in members))
            finally:
                for undo in reversed(undos):
                    undo()

        def share(members, j):
            total = sum(tp.error[j] for tp in members)
            return [tp.error[j] / total if total > 0 else 1.0 / len(members) for tp in members]

        for bi, members in enumerate(bands):
            report("probes", bi, len(bands))
            lead = members[0]
            bpws = [type_info(t).bits_per_weight for t in lead.types]
            if len(members) > 1:
                for tp in members:
                    tp.band = [m.name for m in members]
            # a GGUF reference has its own error on these tensors: what removing it costs is subtracted
            null = probe(members, None, "null") if reference is not None else 0.0
            for tp, sh in zip(members, share(members, 0)):
                tp.null = null * sh
            for j in sorted({min(range(len(bpws)), key=lambda j: (abs(bpws[j] - b), lead.error[j])) for b in probe_bpw}):
                t = lead.types[j]
                k = max(probe(members, t, "weights") - null, 0.0) if sum(tp.error[j] for tp in members) > 0 else 0.0
                for tp, sh in zip(members, share(members, j)):
                    tp.probes[t.name] = k * sh
            # activation quantization: what the kernels add over float32, per activation format, at the
            # most precise candidate that quantizes its activations that way
            for fmt in ("Q8_K", "Q8_0"):
                js = [j for j, t in enumerate(lead.types) if activation_format(t) == fmt]
                if not js:
                    continue
                j = max(js, key=lambda j: (bpws[j], -lead.error[j]))
                t = lead.types[j]
                k = max(probe(members, t, "kernels") - null, 0.0)
                for tp, sh in zip(members, share(members, j)):
                    tp.act[fmt] = max(k * sh - tp.weight_loss(tp.error[j]), 0.0)
                    tp.act_probe[fmt] = t.name
            log.info("probes of %s: %s; activations %s", ", ".join(tp.name for tp in members),
                     ", ".join(f"{n} {sum(tp.probes[n] for tp in members):.2e}" for n in lead.probes),
                     ", ".join(f"{f} {sum(tp.act.get(f, 0) for tp in members):.2e}" for f in lead.act))
        for tp in free:
            tp.loss = [tp.predict(t, e) for t, e in zip(tp.types, tp.error)]
        report("probes", len(bands), len(bands))
        secs["probes"] = time.perf_counter() - t_probe

        # solve
        t2 = time.perf_counter()
        options = [[(size_of(b), l) for b, l in zip(tp.nbytes, tp.loss)] for tp in free]
        sol = solve(options, budget)
        for tp, c in zip(free, sol.choice):
            tp.chosen = tp.types[c]
        secs["solve"] = time.perf_counter() - t2

        chosen = {tp.name: (tp.fixed if tp.fixed is not None else tp.chosen) for tp in tplans}
        named = {tp.name: chosen[tp.name] for tp in tplans if tp.quantizable}
        tensor_bytes = sum(_type_bytes(tp.n_elements, chosen[tp.name]) for tp in tplans)
        file_bytes = file_layout(plan.arch.gguf_arch, plan.metadata,
                                 [(o.name, o.ne, _type_bytes(o.n_elements, chosen[o.name])) for o in outs])["file_bytes"]

        # what the presets would have cost and lost, by the same prediction
        preset_pred: Dict[str, Dict[str, float]] = {}
        for p in BASE_PRESETS:
            pt = plan_tensor_types(plan.arch, outs, get_preset(p), PlanOptions(has_imatrix=imatrix is not None))
            pred = 0.0
            ok = True
            for tp in free:
                t = pt[tp.name]
                if t not in tp.types:
                    ok = False
                    break
                pred += tp.loss[tp.types.index(t)]
            size = file_layout(plan.arch.gguf_arch, plan.metadata,
                               [(o.name, o.ne, _type_bytes(o.n_elements, pt[o.name])) for o in outs])["file_bytes"]
            preset_pred[p] = {"file_bytes": size, "predicted_kld": pred if ok else float("nan")}

        # the preset written as general.file_type: the given one, else the nearest in size
        if base_preset is None:
            base_preset = min(BASE_PRESETS, key=lambda p: abs(preset_pred[p]["file_bytes"] - file_bytes))
        base = get_preset(base_preset).name
        lines = recipe_lines(named)

        def apply(ls):
            from ..converter.core import parse_tensor_types

            return plan_tensor_types(plan.arch, outs, get_preset(base), PlanOptions(
                tensor_types=parse_tensor_types(ls), has_imatrix=imatrix is not None))

        check_reproduces(chosen, lines, apply)
        secs["total"] = time.perf_counter() - t0
        return Allocation(
            types=chosen, base_preset=base, recipe=lines, predicted_kld=sol.loss,
            budget_bytes=target_bytes,
            budget_kind=kind, tensor_bytes=tensor_bytes, file_bytes=file_bytes, n_elements=n_elements,
            tensors=tplans,
            solver={"method": sol.method, "loss": sol.loss, "lower_bound": sol.lower_bound, "gap": sol.gap,
                    "lambda": sol.lam, "free_tensors": len(free), "fixed_tensors": len(tplans) - len(free)},
            calibration={"tokens": calib.n_tokens, "chunks": len(calib.chunks), "ctx": calib.ctx,
                         "scored": calib.scored, "probes": calib.n_probes, "probe_layers": band,
                         "probe_bands": len(bands),
                         "expert_counts": {k: v.tolist() for k, v in calib.expert_counts().items()}},
            preset_predictions=preset_pred, seconds={k: round(v, 3) for k, v in secs.items()},
        )
    finally:
        plan.checkpoint.close()


def read_text(path: str) -> str:
    from ..errors import QtkFileNotFoundError

    if not os.path.isfile(path):
        raise QtkFileNotFoundError(f"{path}: no such calibration text file")
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()



