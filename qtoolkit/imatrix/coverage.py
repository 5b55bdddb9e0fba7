"""Expert coverage of an importance matrix: per MoE layer, how many tokens reached each expert,
and which experts stayed below a threshold (docs/imatrix.md, "Coverage").

2-bit quantization of a large MoE model leans on the importance matrix, and an expert that the
calibration text never routed to has none: llama-quantize then quantizes it with uniform weights,
silently. This report makes that visible; ``convert --uncovered-experts`` decides what to do.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional

import numpy as np

from ..io.imatrix_file import ImatrixStats

_LAYER = re.compile(r"^blk\.(\d+)\.")
# the stack whose counts stand for the layer's routing (gate, up and down see the same pairs)
_PREFERRED = ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps")


def layer_of(name: str) -> Optional[int]:
    m = _LAYER.match(name)
    return int(m.group(1)) if m else None


def coverage(stats: ImatrixStats, min_tokens: int = 1) -> Dict[str, Any]:
    """JSON-ready coverage report of ``stats``.

    ``layers``: per MoE layer ``{"layer", "tensor", "n_expert", "routed", "counts", "share",
    "min", "max", "uncovered"}`` — ``counts[e]`` are the tokens routed to expert e (one per
    routed token, so ``routed`` = tokens × experts per token), ``uncovered`` the experts with
    fewer than ``min_tokens``. ``uncovered``: the same as a flat list of ``{"layer", "expert",
    "tokens"}``. ``tensors``: every expert tensor that has uncovered experts, with their ids
    (stacks of one layer normally agree). ``tokens``: tokens seen by the dense matrices.
    ``empty``: tensors whose entry holds no data at all. A legacy ``.dat`` file keeps no
    per-expert counts: ``per_expert_counts`` is False and the lists are empty."""
    min_tokens = max(1, int(min_tokens))
    rep: Dict[str, Any] = {
        "min_tokens": min_tokens, "per_expert_counts": not stats.legacy, "chunks": stats.chunk_count,
        "chunk_size": stats.chunk_size, "datasets": list(stats.datasets), "entries": len(stats.sums),
        "tokens": None, "layers": [], "uncovered": [], "tensors": {}, "empty": [], "n_experts": 0, "n_uncovered": 0,
    }
    if stats.legacy:
        return rep
    dense_tokens = [int(stats.expert_counts(n)[0]) for n in stats.names() if stats.n_mat(n) == 1]
    rep["tokens"] = max(dense_tokens) if dense_tokens else None
    by_layer: Dict[int, Dict[str, np.ndarray]] = {}
    for name in stats.names():
        counts = stats.expert_counts(name)
        if not np.any(counts > 0):
            rep["empty"].append(name)
        if counts.size == 1:
            continue
        low = np.nonzero(counts < min_tokens)[0]
        if low.size:
            rep["tensors"][name] = [int(e) for e in low]
        il = layer_of(name)
        if il is not None:
            by_layer.setdefault(il, {})[name] = counts
    for il in sorted(by_layer):
        stacks = by_layer[il]
        ref = next((n for short in _PREFERRED for n in stacks if f".{short}." in n), sorted(stacks)[0])
        counts = stacks[ref]
        routed = int(counts.sum())
        low = [int(e) for e in np.nonzero(counts < min_tokens)[0]]
        rep["layers"].append({
            "layer": il, "tensor": ref, "n_expert": int(counts.size), "routed": routed,
            "counts": [int(c) for c in counts],
            "share": [round(float(c) / routed, 6) if routed else 0.0 for c in counts],
            "min": int(counts.min()), "max": int(counts.max()), "uncovered": low,
        })
        rep["uncovered"] += [{"layer": il, "expert": e, "tokens": int(counts[e])} for e in low]
        rep["n_experts"] += int(counts.size)
    rep["n_uncovered"] = len(rep["uncovered"])
    return rep


def format_coverage(rep: Dict[str, Any], max_experts: int = 16) -> List[str]:
    """Text lines of a coverage report (for the CLI): one line per MoE layer with the smallest and
    largest counts, then the experts below the threshold."""
    lines: List[str] = []
    if not rep["per_expert_counts"]:
        return ["expert coverage: unknown (a legacy .dat file keeps one count per tensor, none per expert)"]
    if not rep["layers"]:
        return ["expert coverage: no expert tensors (not an MoE model)"]
    lines.append(f"expert coverage (tokens routed to each expert; threshold {rep['min_tokens']}):")
    for L in rep["layers"]:
        c = L["counts"]
        if len(c) <= max_experts:
            detail = " ".join(str(v) for v in c)
        else:
            detail = f"median {int(np.median(c))}"
        flag = f"  {len(L['uncovered'])} under threshold" if L["uncovered"] else ""
        lines.append(f"  layer {L['layer']:3d}: {L['n_expert']} experts, min {L['min']}, max {L['max']} "
                     f"[{detail}]{flag}")
    n, tot = rep["n_uncovered"], rep["n_experts"]
    if n:
        shown = ", ".join(f"{u['layer']}/{u['expert']} ({u['tokens']})" for u in rep["uncovered"][:40])
        more = f" and {n - 40} more" if n > 40 else ""
        lines.append(f"{n} of {tot} experts under {rep['min_tokens']} tokens (layer/expert (tokens)): {shown}{more}")
    else:
        lines.append(f"all {tot} experts reached {rep['min_tokens']} token{'s' if rep['min_tokens'] > 1 else ''}")
    if rep["empty"]:
        lines.append(f"entries without any data: {', '.join(rep['empty'][:10])}")
    return lines
