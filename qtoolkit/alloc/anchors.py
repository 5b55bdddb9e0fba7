"""Anchors of the bit allocator: whole files (a preset, or a hand-made recipe of the kind big MoE
releases use) measured on every calibration chunk in the same pass as the probes, on the
kernels. Their measured KL divergence beside the sum of their tensors' predicted losses shows how
far the probes are off (their few chunks, and what the sum over tensors misses); the predictions
are scaled by the anchor nearest the target (docs/allocation.md, "Anchors")."""

from __future__ import annotations

import logging
import math
from typing import Any, Dict, List, Sequence, Tuple

from ..converter.plan import Plan, tensor_types
from ..presets import TypeOptions, get_preset, parse_tensor_types
from ..quants import QuantType, producible_type
from .sizes import BASE_PRESETS, file_bytes, type_bytes

log = logging.getLogger(__name__)


def recipe_overrides(outs, low: str) -> List[str]:
    """The hand-made recipe of big MoE releases as ``REGEX=TYPE`` lines on a Q8_0 base: the
    routed experts at ``low``, everything else (attention, shared experts, dense layers, embedding,
    output) Q8_0. A dense model's analog: its feed-forward matrices at ``low``."""
    if any(o.name.endswith("_exps.weight") for o in outs):
        return [f"ffn_(gate|up|down)_exps\\.weight={low}"]
    return [f"ffn_(gate|up|down)\\.weight={low}"]


def anchor_file_types(plan: Plan, outs, spec: str, has_imatrix: bool) -> Dict[str, QuantType]:
    """Every tensor's type in the file an anchor names: a preset, or ``recipe:TYPE``."""
    if spec.startswith("recipe:"):
        low = producible_type(spec.split(":", 1)[1], f"anchor {spec}").name
        return tensor_types(plan.arch, outs, get_preset("Q8_0"), TypeOptions(
            tensor_types=parse_tensor_types(recipe_overrides(outs, low)), has_imatrix=has_imatrix))
    return tensor_types(plan.arch, outs, get_preset(spec), TypeOptions(has_imatrix=has_imatrix))


def anchor_types(plan: Plan, outs, free: Sequence, specs: Sequence[str], has_imatrix: bool, kind: str,
                 target_bytes: int) -> Tuple[Dict[str, Dict[str, QuantType]], Dict[str, int]]:
    """The anchors to measure: label -> the free tensors' types in that file (fixed tensors keep
    their own), and label -> the file's bytes as the budget counts them. ``auto``: the base preset
    nearest the target in size."""
    files: Dict[str, Tuple[Dict[str, QuantType], int]] = {}   # label -> (every tensor's type, bytes)

    def file_of(label: str) -> Tuple[Dict[str, QuantType], int]:
        if label not in files:
            types = anchor_file_types(plan, outs, label, has_imatrix)
            files[label] = (types, _anchor_bytes(plan, outs, types, kind))
        return files[label]

    out: Dict[str, Dict[str, QuantType]] = {}
    sizes_of: Dict[str, int] = {}
    for spec in specs:
        if spec == "auto":
            spec = min(BASE_PRESETS, key=lambda p: abs(file_of(p)[1] - target_bytes))
        label = spec if spec.startswith("recipe:") else get_preset(spec).name
        if label in out:
            continue
        types, sizes_of[label] = file_of(label)
        out[label] = {tp.name: types[tp.name] for tp in free}
    return out, sizes_of


def _anchor_bytes(plan: Plan, outs, types: Dict[str, QuantType], kind: str) -> int:
    """An anchor file's size as the budget counts it: the file, or its tensor data."""
    if kind == "file":
        return file_bytes(plan, outs, types)
    return sum(type_bytes(o.n_elements, types[o.name]) for o in outs)


def scale_by_anchors(free: Sequence, anchors, sizes: Dict[str, int], measured: Dict[str, Dict[str, float]],
                     target_bytes: int):
    """Each anchor's prediction (the sum of its tensors' predicted losses) beside its measured KL
    divergence; the predictions are then scaled by measured / predicted of the anchor nearest the
    target in size (the probes' common error: their few chunks, and what the sum over tensors
    misses). Returns (the anchors' figures, the scale)."""
    rows: Dict[str, Dict[str, Any]] = {}
    for label, types in anchors.items():
        pred = 0.0
        for tp in free:
            t = types[tp.name]
            if t not in tp.types:
                pred = float("nan")
                break
            pred += tp.loss[tp.types.index(t)]
        rows[label] = {"bytes": sizes[label], "predicted_kld": pred,
                       **measured.get(label, {})}
    usable = [lb for lb, r in rows.items() if r.get("kld") is not None and math.isfinite(r["predicted_kld"])
              and r["predicted_kld"] > 0 and r["kld"] > 0]
    scale = 1.0
    if usable:
        near = min(usable, key=lambda lb: abs(rows[lb]["bytes"] - target_bytes))
        scale = rows[near]["kld"] / rows[near]["predicted_kld"]
        rows[near]["scales"] = True
        log.info("anchor %s: measured KLD %.4g, predicted %.4g: predictions scaled by %.3f", near, rows[near]["kld"],
                 rows[near]["predicted_kld"], scale)
        for tp in free:
            tp.loss = [l * scale for l in tp.loss]
    for r in rows.values():
        r["predicted_kld_scaled"] = r["predicted_kld"] * scale
    return rows, scale
