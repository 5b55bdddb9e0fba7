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

from ..converter.importance import load_imatrix
from ..converter.plan import ConvertOptions, Plan, assign_types, tensor_types
from ..converter.source import open_model, tensor_f32
from ..errors import QtkMemoryError, QtkValueError
from ..quants import QuantType, producible_type, type_info
from ..io.gguf_writer import file_layout
from ..model.loader import load
from ..model.runner import available_memory
from ..presets import TypeOptions, get_preset, is_quantizable, parse_tensor_types
from .calibration import Calibration, unreached_experts
from .candidates import candidates as candidate_types
from .candidates import qtoolkit_can_run
from .error_table import tensor_errors
from .probes import PROBE_BPW, Prober, activation_format, auto_band, bands
from .anchors import anchor_types, scale_by_anchors
from .recipe import check_reproduces, recipe_lines
from .sizes import BASE_PRESETS, file_bytes as _file_bytes, pad as _pad, type_bytes as _type_bytes
from .solver import solve
from .streamed import COMPUTE_BUDGET, StreamedCalibration

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]   # (phase, done, total)


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


@dataclass
class Target:
    """The budget: the whole file's bytes, or bits per weight of the tensor data (exactly one)."""

    size: Optional[int] = None
    bpw: Optional[float] = None

    def check(self) -> None:
        if (self.size is None) == (self.bpw is None):
            raise QtkValueError("give exactly one of a target size and a target bpw")
        if self.bpw is not None and not 1.0 <= float(self.bpw) <= 32.0:
            raise QtkValueError(f"target bpw must lie between 1 and 32, got {self.bpw!r}")


@dataclass
class AllocOptions:
    """How to allocate (see :func:`allocate`)."""

    types: Optional[Sequence[QuantType]] = None      # the types to choose from (None: every type llama.cpp runs)
    runnable_only: bool = False                      # only types qtoolkit's own kernels run
    base_preset: Optional[str] = None                # written as general.file_type (None: nearest in size)
    tensor_types: Sequence = ()                      # the user's pins (--tensor-type)
    output_tensor_type: Optional[Any] = None
    token_embedding_type: Optional[Any] = None
    calib_ctx: int = 512
    calib_chunks: Optional[int] = 16
    probe_bpw: Sequence[float] = PROBE_BPW
    max_rows: int = 4096                             # rows sampled per tensor for the error table
    probe_layers: Optional[int] = None               # layers per probe band (None: as few as max_probes allows)
    max_probes: int = 256
    reference: Optional[str] = None                  # a GGUF of the same model to calibrate against
    threads: Optional[int] = None
    progress: Optional[Progress] = None
    probes: str = "streamed"                         # "streamed": one pass over the checkpoint (alloc/streamed.py);
                                                     # "full": the model in memory, every probe on every chunk
    probe_chunks: Optional[int] = None               # chunks each streamed probe runs on (None: as the budget allows)
    compute_budget: float = COMPUTE_BUDGET           # the streams' compute, in calibration passes
    max_memory: Optional[int] = None                 # hidden states in memory up to this, then spilled
    spill_dir: Optional[str] = None
    verify: bool = True                              # measure the chosen file on every calibration chunk (a
                                                     # second pass over the checkpoint when streamed)
    anchors: Sequence[str] = ("auto",)               # whole files measured on every chunk in the same pass:
                                                     # preset names, "recipe:TYPE" (experts / FFN at TYPE, the
                                                     # rest Q8_0), "auto" (the preset nearest the target); the
                                                     # nearest measured one scales the predictions


@dataclass
class _Budget:
    kind: str                       # "file" or "bpw"
    size_of: Callable[[int], int]   # a tensor's bytes as the budget counts them (padded for a file)
    free_bytes: int                 # what the free tensors may use
    target_bytes: int               # what the user asked for, in bytes


def check_request(target: Target, opts: AllocOptions) -> None:
    """Refuse a request that cannot be met before anything is read."""
    target.check()
    if opts.probes not in ("streamed", "full"):
        raise QtkValueError(f"probes must be 'streamed' or 'full', got {opts.probes!r}")
    if opts.base_preset is not None and not type_info(get_preset(opts.base_preset).default).is_quantized:
        raise QtkValueError(f"the base preset must be a quantized one (not {get_preset(opts.base_preset).name}): "
                            "overrides do not apply to it")


def base_plan(model_dir: str, imatrix: Optional[str] = None, tokenizer_pre: Optional[str] = None,
              uncovered_experts: Optional[str] = None, min_expert_tokens: int = 1) -> Plan:
    """The plan an allocation starts from: the model's tensors at Q8_0 with the converter's own
    importance weights (the uncovered-expert policy applied). With ``uncovered_experts="error"`` an
    importance matrix that misses experts is refused here, before any calibration: the plan at a
    type that uses importance weights (Q6_K) runs the converter's own coverage check."""
    copts = ConvertOptions(qtype="Q8_0", imatrix=imatrix, tokenizer_pre=tokenizer_pre, min_expert_tokens=min_expert_tokens)
    if uncovered_experts is not None:
        copts.uncovered_experts = uncovered_experts
    src = open_model(model_dir, tokenizer_pre)
    try:
        im = load_imatrix(imatrix) if imatrix is not None else None
        cov = copts.coverage
        if im is not None and cov.policy == "error":
            q6 = get_preset("Q6_K")
            assign_types(src, tensor_types(src.arch, src.tensors, q6, TypeOptions(has_imatrix=True)), q6, im, cov)
        q8 = get_preset("Q8_0")
        return assign_types(src, tensor_types(src.arch, src.tensors, q8, TypeOptions(has_imatrix=im is not None)),
                            q8, im, cov)
    except BaseException:
        src.close()
        raise


def allocate(model_dir: str, calib_text: str, target_size: Optional[int] = None, target_bpw: Optional[float] = None,
             imatrix: Optional[str] = None, tokenizer_pre: Optional[str] = None,
             uncovered_experts: Optional[str] = None, min_expert_tokens: int = 1, **options) -> Allocation:
    """Choose every tensor's type of the model in ``model_dir`` for a file of at most
    ``target_size`` bytes (or ``target_bpw`` bits per weight of tensor data); ``calib_text``: the
    calibration text itself; ``options``: the fields of :class:`AllocOptions`. See the module doc
    and :func:`allocate_plan`."""
    target, opts = Target(target_size, target_bpw), AllocOptions(**options)
    check_request(target, opts)
    plan = base_plan(model_dir, imatrix, tokenizer_pre, uncovered_experts, min_expert_tokens)
    try:
        return allocate_plan(plan, calib_text, target, opts)
    finally:
        plan.close()


@dataclass
class _Setup:
    """What an allocation (or its cost estimate) starts from: every tensor's plan, the free ones,
    the budget, and the anchors to measure (their free tensors' types and their sizes)."""

    outs: List[Any]
    q_ims: Dict[str, Optional[np.ndarray]]
    tplans: List[TensorPlan]
    free: List[TensorPlan]
    n_elements: int
    budget: _Budget
    anchors: Dict[str, Dict[str, QuantType]]
    anchor_sizes: Dict[str, int]


def prepare(plan: Plan, target: Target, opts: AllocOptions) -> _Setup:
    """The request checked, every tensor planned, the budget and the anchors (:class:`_Setup`)."""
    check_request(target, opts)
    outs = [pt.out for pt in plan.tensors]
    q_ims: Dict[str, Optional[np.ndarray]] = {pt.out.name: pt.imatrix for pt in plan.tensors}
    tplans = _tensor_plans(outs, q_ims, opts)
    free = [tp for tp in tplans if tp.fixed is None]
    n_elements = sum(tp.n_elements for tp in tplans)
    budget = _budget(plan, outs, tplans, free, target, n_elements)
    anchors, sizes = anchor_types(plan, outs, free, opts.anchors, plan.imatrix is not None, budget.kind,
                                  budget.target_bytes)
    return _Setup(outs, q_ims, tplans, free, n_elements, budget, anchors, sizes)


@dataclass
class _Pass:
    """A calibration run's results and what it can still do: measure a whole file on every chunk
    (``measure``), and end (``finish``: returns what a streamed pass spent, None otherwise)."""

    report: Dict[str, Any]
    anchor_kld: Dict[str, Dict[str, float]]
    stats: Any
    measure: Callable[[Dict[str, QuantType]], Dict[str, float]]
    finish: Callable[[], Optional[Dict[str, Any]]]


def allocate_plan(plan: Plan, calib_text: str, target: Target, opts: AllocOptions) -> Allocation:
    """The allocation of ``plan``'s tensors (its types are ignored; its importance weights are
    what the quantizer will get).

    ``opts.types``: the types to choose from (default: every type llama.cpp runs, the
    importance-matrix ones only with one); ``runnable_only`` keeps only those qtoolkit's own
    kernels run. ``probe_layers``: probe the same tensor of that many consecutive layers together
    (default: 1 while the probe runs stay within ``max_probes``, else the fewest layers that do).
    ``reference``: a GGUF conversion of the same model (Q8_0, BF16...) to calibrate against
    instead of the float32 model, for models whose float32 weights do not fit in memory."""
    report = opts.progress or (lambda phase, done, total: None)
    secs: Dict[str, float] = {}
    t0 = time.perf_counter()
    st = prepare(plan, target, opts)
    outs, q_ims, tplans, free, n_elements, budget = st.outs, st.q_ims, st.tplans, st.free, st.n_elements, st.budget
    has_imatrix = plan.imatrix is not None
    anchors = st.anchors
    secs["plan"] = time.perf_counter() - t0

    by_name = {o.name: o for o in outs}
    if opts.probes == "streamed":
        run = _streamed(plan, by_name, free, calib_text, q_ims, opts, report, secs, anchors,
                        {tp.name: tuple(tp.ne) for tp in tplans})
    else:
        run = _full(plan, outs, by_name, free, calib_text, q_ims, n_elements, opts, report, secs, anchors)
    calib_report = run.report
    try:
        for tp in free:
            tp.loss = [tp.predict(t, e) for t, e in zip(tp.types, tp.error)]
        calib_report["anchors"], calib_report["scale"] = scale_by_anchors(free, anchors, st.anchor_sizes,
                                                                           run.anchor_kld, budget.target_bytes)

        t2 = time.perf_counter()
        sol = solve([[(budget.size_of(b), l) for b, l in zip(tp.nbytes, tp.loss)] for tp in free], budget.free_bytes)
        for tp, c in zip(free, sol.choice):
            tp.chosen = tp.types[c]
        secs["solve"] = time.perf_counter() - t2

        chosen = {tp.name: (tp.fixed if tp.fixed is not None else tp.chosen) for tp in tplans}
        measured = None
        if opts.verify:   # the chosen file itself on every calibration chunk (the user's pins included)
            report("verify", 0, 1)
            t3 = time.perf_counter()
            quantized = {tp.name: chosen[tp.name] for tp in tplans
                         if tp.quantizable and chosen[tp.name] != QuantType.F32}
            measured = run.measure(quantized)["kld"]
            secs["verify"] = time.perf_counter() - t3
            report("verify", 1, 1)
            log.info("the allocated file on the calibration chunks: KLD %.4g (predicted %.4g)", measured, sol.loss)
        calib_report["measured_kld"] = measured
        calib_report["unreached_experts"] = unreached_experts(run.stats, free)
    finally:
        figures = run.finish()
    if figures is not None:
        calib_report["run"] = figures
    file_bytes = _file_bytes(plan, outs, chosen)
    preset_pred = _preset_predictions(plan, outs, free, has_imatrix)
    base = opts.base_preset
    if base is None:   # the preset written as general.file_type: the nearest in size
        base = min(BASE_PRESETS, key=lambda p: abs(preset_pred[p]["file_bytes"] - file_bytes))
    base = get_preset(base).name
    named = {tp.name: chosen[tp.name] for tp in tplans if tp.quantizable}
    lines = recipe_lines(named)
    check_reproduces(chosen, lines, lambda ls: tensor_types(plan.arch, outs, get_preset(base), TypeOptions(
        tensor_types=parse_tensor_types(ls), has_imatrix=has_imatrix)))
    secs["total"] = time.perf_counter() - t0
    return Allocation(
        types=chosen, base_preset=base, recipe=lines, predicted_kld=sol.loss, budget_bytes=budget.target_bytes,
        budget_kind=budget.kind, tensor_bytes=sum(_type_bytes(tp.n_elements, chosen[tp.name]) for tp in tplans),
        file_bytes=file_bytes, n_elements=n_elements, tensors=tplans,
        solver={"method": sol.method, "loss": sol.loss, "lower_bound": sol.lower_bound, "gap": sol.gap,
                "lambda": sol.lam, "free_tensors": len(free), "fixed_tensors": len(tplans) - len(free)},
        calibration=calib_report,
        preset_predictions=preset_pred, seconds={k: round(v, 3) for k, v in secs.items()},
    )


def _streamed(plan: Plan, by_name, free: List[TensorPlan], calib_text: str, q_ims, opts: AllocOptions,
              report: Progress, secs: Dict[str, float], anchors: Dict[str, Dict[str, QuantType]], shapes):
    """Calibration, error table, probes and anchors in one pass over the checkpoint
    (alloc/streamed.py); a file is measured on a second pass."""
    t1 = time.perf_counter()
    source = opts.reference or plan.model_dir
    sc = StreamedCalibration(
        source, calib_text, free, q_ims, lambda name: tensor_f32(plan.checkpoint, by_name[name]),
        reference=opts.reference is not None, ctx=opts.calib_ctx, chunks=opts.calib_chunks, probe_bpw=opts.probe_bpw,
        probe_layers=opts.probe_layers, probe_chunks=opts.probe_chunks, max_rows=opts.max_rows,
        max_probes=opts.max_probes, threads=opts.threads, max_memory=opts.max_memory, spill_dir=opts.spill_dir,
        budget=opts.compute_budget, progress=report, anchors=anchors, shapes=shapes)
    try:
        if opts.reference is not None:
            _check_reference(sc.sm.model, list(by_name.values()), opts.reference)
        sc.run()
    except BaseException:
        sc.close()
        raise
    run = sc.figures()
    secs["calibration"] = round(sc.base_seconds, 3)
    secs["errors"] = round(sc.error_seconds, 3)
    secs["probes"] = round(sc.stream_seconds, 3)
    secs["anchors"] = round(sc.anchor_seconds, 3)
    secs["pass"] = time.perf_counter() - t1
    log.info("streamed calibration: %d chunks, %d probe streams on %d chunks each, %d anchor(s), %.1f GB read "
             "(%.2f x the checkpoint), %.1f s", len(sc.chunks), run["streams"], run["probe_chunks"], len(anchors),
             run["bytes_read"] / 1e9, run["reads_of_checkpoint"] or 0.0, run["seconds"])
    calib = {"method": "streamed", "tokens": sc.n_tokens, "chunks": len(sc.chunks), "ctx": sc.ctx,
             "scored": sc.scored, "probes": sc.n_probes, "probe_layers": sc.plan.band, "probe_bands": len(sc.groups),
             "probe_chunks": len(sc.probe_at),
             "expert_counts": {k: v.tolist() for k, v in sc.expert_counts().items()}}

    def finish() -> Dict[str, Any]:
        try:
            return sc.figures()
        finally:
            sc.close()
    return _Pass(calib, dict(sc.anchor_kld), sc.stats, sc.measure_file, finish)


def _full(plan: Plan, outs, by_name, free: List[TensorPlan], calib_text: str, q_ims, n_elements: int,
          opts: AllocOptions, report: Progress, secs: Dict[str, float], anchors: Dict[str, Dict[str, QuantType]]):
    """The model in memory; every probe re-runs the changed layers on every calibration chunk."""
    t1 = time.perf_counter()
    report("calibration", 0, 1)
    model = _calibration_model(plan, outs, n_elements, opts)
    calib = Calibration(model, calib_text, ctx=opts.calib_ctx, chunks=opts.calib_chunks)
    report("calibration", 1, 1)
    secs["calibration"] = time.perf_counter() - t1

    t_err = time.perf_counter()
    _error_table(plan, by_name, free, calib, q_ims, opts, report)
    secs["errors"] = time.perf_counter() - t_err

    t_probe = time.perf_counter()
    n_kinds = len(opts.probe_bpw) + 2 + (opts.reference is not None)
    band = opts.probe_layers or auto_band(free, n_kinds, opts.max_probes)
    groups = bands(free, band)
    prober = Prober(calib, lambda name: tensor_f32(plan.checkpoint, by_name[name]), q_ims, opts.reference is not None,
                    opts.threads)
    for bi, members in enumerate(groups):
        report("probes", bi, len(groups))
        prober.measure(members, opts.probe_bpw)
    report("probes", len(groups), len(groups))
    secs["probes"] = time.perf_counter() - t_probe
    t_anchor = time.perf_counter()
    anchor_kld = {label: prober.kld_of_types(types) for label, types in anchors.items()}
    secs["anchors"] = time.perf_counter() - t_anchor
    calib_report = {"method": "full", "tokens": calib.n_tokens, "chunks": len(calib.chunks), "ctx": calib.ctx,
                    "scored": calib.scored, "probes": calib.n_probes, "probe_layers": band,
                    "probe_bands": len(groups),
                    "expert_counts": {k: v.tolist() for k, v in calib.expert_counts().items()}}
    return _Pass(calib_report, anchor_kld, calib.stats, prober.kld_of_types, lambda: None)


# -- the steps ---------------------------------------------------------------------------------


def _user_fixed(names: Sequence[str], opts: AllocOptions) -> Dict[str, QuantType]:
    """The types the user pinned (``--tensor-type``, ``--output-tensor-type``, ``--token-embedding-type``)."""
    pats = [(re.compile(p), t) for p, t in parse_tensor_types(opts.tensor_types)]
    out: Dict[str, QuantType] = {}
    for n in names:
        if n == "output.weight" and opts.output_tensor_type:
            out[n] = producible_type(opts.output_tensor_type, "--output-tensor-type")
            continue
        if n == "token_embd.weight" and opts.token_embedding_type:
            out[n] = producible_type(opts.token_embedding_type, "--token-embedding-type")
            continue
        for rx, t in pats:
            if rx.search(n):
                out[n] = t
                break
    return out


def _tensor_plans(outs, q_ims: Dict[str, Optional[np.ndarray]], opts: AllocOptions) -> List[TensorPlan]:
    """Every tensor, fixed (norms and routers stay F32; the user's pins) or free with its candidates."""
    fixed_user = _user_fixed([o.name for o in outs], opts)
    runnable = qtoolkit_can_run if opts.runnable_only else None
    tplans: List[TensorPlan] = []
    for o in outs:
        tp = TensorPlan(o.name, tuple(o.ne), o.n_elements)
        if not is_quantizable(o.name, o.ne):
            tp.quantizable = False
            tp.fixed = QuantType.F32
        elif o.name in fixed_user:
            tp.fixed = fixed_user[o.name]
        else:
            tp.types = candidate_types(o.ne[0], q_ims.get(o.name) is not None, opts.types, runnable)
            if not tp.types:
                raise QtkValueError(f"tensor {o.name} (rows of {o.ne[0]}) has no candidate type among the allowed ones")
            tp.nbytes = [_type_bytes(o.n_elements, t) for t in tp.types]
        tplans.append(tp)
    if not any(tp.fixed is None for tp in tplans):
        raise QtkValueError("every tensor's type is fixed; there is nothing to allocate")
    return tplans


def _budget(plan: Plan, outs, tplans: List[TensorPlan], free: List[TensorPlan], target: Target,
            n_elements: int) -> _Budget:
    """The bytes the free tensors may use, in the units the solver counts; refuses a target below
    the smallest file the allowed types can make."""
    header = file_layout(plan.arch.gguf_arch, plan.metadata, [(o.name, o.ne, 0) for o in outs])["header_bytes"]
    if target.size is not None:
        kind, size_of = "file", _pad
        budget = int(target.size) - header
    else:
        kind, size_of = "bpw", int
        budget = int(float(target.bpw) * n_elements / 8)
    target_bytes = budget + (header if kind == "file" else 0)
    fixed_bytes = sum(size_of(_type_bytes(tp.n_elements, tp.fixed)) for tp in tplans if tp.fixed is not None)
    budget -= fixed_bytes
    least = sum(size_of(min(tp.nbytes)) for tp in free)
    if budget < least:
        smallest = least + fixed_bytes + (header if kind == "file" else 0)
        what = f"{smallest:,} bytes" if kind == "file" else f"{8.0 * smallest / n_elements:.3f} bits per weight"
        raise QtkValueError(f"the target is below the smallest file the allowed types can make ({what})")
    return _Budget(kind, size_of, budget, target_bytes)


def _calibration_model(plan: Plan, outs, n_elements: int, opts: AllocOptions):
    """The model the calibration runs: the float32 weights of the folder, or the GGUF reference."""
    if opts.reference is None:
        need = sum(os.path.getsize(p) for p in plan.checkpoint.files)   # the weights in their stored dtype
        avail = available_memory()
        if avail is not None and need > 0.8 * avail:
            raise QtkMemoryError(
                f"the calibration run holds the model in memory ({need / 1e9:.1f} GB) and only "
                f"{avail / 1e9:.1f} GB of memory is available; convert it to Q8_0 first and pass that "
                "file as the calibration reference (--calib-reference FILE.gguf)")
        return load(plan.model_dir, threads=opts.threads)
    model = load(opts.reference, threads=opts.threads)
    _check_reference(model, outs, opts.reference)
    return model


def _error_table(plan: Plan, by_name, free: List[TensorPlan], calib: Calibration,
                 q_ims: Dict[str, Optional[np.ndarray]], opts: AllocOptions, report: Progress) -> None:
    """For every free tensor and candidate type, the squared quantization error weighted by the
    calibration's activation statistics (``quant_error`` in C, on sampled rows), one tensor at a time."""
    for i, tp in enumerate(free):
        report("errors", i, len(free))
        w = tensor_f32(plan.checkpoint, by_name[tp.name])
        w3 = w.reshape((-1,) + w.shape[-2:])
        col_w, row_w = calib.error_weights(tp.name, w3.shape[2], w3.shape[0], w3.shape[1])
        tp.error = tensor_errors(w, tp.types, col_w, row_w, q_ims.get(tp.name), opts.max_rows, opts.threads)
    report("errors", len(free), len(free))


def _preset_predictions(plan: Plan, outs, free: List[TensorPlan], has_imatrix: bool) -> Dict[str, Dict[str, float]]:
    """What the presets would have cost and lost, by the same prediction."""
    out: Dict[str, Dict[str, float]] = {}
    for p in BASE_PRESETS:
        pt = tensor_types(plan.arch, outs, get_preset(p), TypeOptions(has_imatrix=has_imatrix))
        pred = 0.0
        ok = True
        for tp in free:
            t = pt[tp.name]
            if t not in tp.types:
                ok = False
                break
            pred += tp.loss[tp.types.index(t)]
        out[p] = {"file_bytes": _file_bytes(plan, outs, pt), "predicted_kld": pred if ok else float("nan")}
    return out


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
