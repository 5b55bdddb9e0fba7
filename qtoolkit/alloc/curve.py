"""Predicted KL divergence against file size across the whole range (``qtoolkit plan MODEL --calib
TEXT --curve out.png``): after one calibration, the solver's answer at many budgets, with the
presets (by the same prediction), the anchors (measured on every calibration chunk) and the
allocated file (predicted and measured) as points, and the user's RAM as a line."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..units import human
from .sizes import pad
from .solver import lagrangian


def curve(alloc, points: int = 40) -> List[Dict[str, float]]:
    """``points`` (file bytes, bits per weight, predicted KLD) along the range the candidate types
    allow, from the allocation's loss tables (the Lagrangian solver at each budget: a vertex of
    every tensor's convex hull, with its optimality gap)."""
    free = [t for t in alloc.tensors if t.fixed is None]
    chosen = sum(pad(t.nbytes[t.types.index(t.chosen)]) for t in free)
    overhead = alloc.file_bytes - chosen              # the header and the fixed tensors, padded
    opts = [[(pad(b), l) for b, l in zip(t.nbytes, t.loss)] for t in free]
    lo = sum(min(b for b, _ in o) for o in opts)
    hi = sum(max(b for b, _ in o) for o in opts)
    out = []
    u = np.linspace(0.0, 1.0, max(2, points))
    budgets = list(lo + (hi - lo) * u ** 2)   # denser where the loss changes fastest: the small files
    budgets += [p["file_bytes"] - overhead for p in alloc.preset_predictions.values()]   # one at each preset's size
    for budget in np.unique(np.clip(np.round(budgets), lo, hi).astype(np.int64)):
        sol = lagrangian(opts, int(budget))
        fb = overhead + sol.bytes
        out.append({"file_bytes": int(fb), "budget_bytes": int(budget + overhead),
                    "bpw": 8.0 * (alloc.tensor_bytes - sum(t.nbytes[t.types.index(t.chosen)] for t in free)
                                  + sum(t.nbytes[c] for t, c in zip(free, sol.choice))) / alloc.n_elements,
                    "predicted_kld": float(sol.loss), "gap": float(sol.gap)})
    return out


def curve_table(alloc, points: int = 40) -> Dict[str, Any]:
    """The curve and every marked point, as one JSON-ready object."""
    cal = alloc.calibration
    return {"curve": curve(alloc, points),
            "presets": [{"name": p, "file_bytes": v["file_bytes"], "predicted_kld": v["predicted_kld"]}
                        for p, v in alloc.preset_predictions.items()],
            "anchors": [{"name": k, "file_bytes": v["bytes"], "measured_kld": v.get("kld"),
                         "predicted_kld": v.get("predicted_kld_scaled")} for k, v in cal.get("anchors", {}).items()],
            "allocated": {"file_bytes": alloc.file_bytes, "predicted_kld": alloc.predicted_kld,
                          "measured_kld": cal.get("measured_kld")},
            "calibration": {"chunks": cal.get("chunks"), "ctx": cal.get("ctx"), "method": cal.get("method")}}


def plot_curve(table: Dict[str, Any], path: str, title: str, ram: Optional[int] = None, force: bool = False,
               inputs: Sequence[Optional[str]] = ()) -> None:
    """Write the curve as a PNG (matplotlib, the ``report`` extra) through the one output path."""
    import io

    from ..io.output import write_bytes
    from ..model.report import require_matplotlib

    plt = require_matplotlib()
    gb = 1e9
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    c = [p for p in table["curve"] if p["predicted_kld"] > 0]
    ax.plot([p["file_bytes"] / gb for p in c], [p["predicted_kld"] for p in c], "-", color="C0",
            label="allocated (predicted)")
    ps = [p for p in table["presets"] if p["predicted_kld"] == p["predicted_kld"] and p["predicted_kld"] > 0]
    ax.plot([p["file_bytes"] / gb for p in ps], [p["predicted_kld"] for p in ps], "s", color="C1",
            label="presets (predicted)")
    for p in ps:
        ax.annotate(p["name"], (p["file_bytes"] / gb, p["predicted_kld"]), textcoords="offset points",
                    xytext=(4, 4), fontsize=7)
    an = [p for p in table["anchors"] if p["measured_kld"]]
    if an:
        ax.plot([p["file_bytes"] / gb for p in an], [p["measured_kld"] for p in an], "D", color="C3",
                label="anchors (measured)")
        for p in an:
            ax.annotate(p["name"], (p["file_bytes"] / gb, p["measured_kld"]), textcoords="offset points",
                        xytext=(4, -10), fontsize=7, color="C3")
    a = table["allocated"]
    if a.get("measured_kld"):
        ax.plot([a["file_bytes"] / gb], [a["measured_kld"]], "*", color="C2", markersize=12,
                label="allocated file (measured)")
    if ram:
        ax.axvline(ram / gb, color="grey", linestyle="--", label=f"--ram {human(ram)}")
    ax.set_yscale("log")
    ax.set_xlabel("file size (GB)")
    ax.set_ylabel(f"mean KL divergence ({table['calibration']['chunks']} calibration chunks)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_bytes(path, buf.getvalue(), force, "the curve", inputs)
