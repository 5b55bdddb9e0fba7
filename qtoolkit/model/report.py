"""``qtoolkit compare --report DIR``: a markdown summary and PNG plots (KL-divergence histogram,
per-layer router agreement). matplotlib is an optional extra (``pip install qtoolkit[report]``),
imported only here."""

from __future__ import annotations

import io
import json
import os
from typing import Any, Dict, Optional, Sequence

import numpy as np

from ..errors import QtkFileExistsError, QtkNotImplementedError
from ..io.output import check_output, write_bytes, write_text

REPORT_FILES = ("report.md", "compare.json", "kld_hist.png", "router_agreement.png")


def require_matplotlib():
    """matplotlib's pyplot (Agg backend), or a QtkNotImplementedError saying how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise QtkNotImplementedError(
            "--report needs matplotlib, which is an optional extra: pip install 'qtoolkit[report]' (or matplotlib)"
        ) from None
    return plt


def check_report(folder: str, force: bool, inputs: Sequence[Optional[str]] = ()) -> None:
    """Refuse, before a long run, a ``folder`` that is a file, or that holds report files
    (without ``force``) or inputs under their names."""
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise QtkFileExistsError(f"{folder}: is not a folder; --report takes the folder to write the report into")
    if os.path.isdir(folder):
        for name in REPORT_FILES:
            check_output(os.path.join(folder, name), force, inputs)


def _save(fig, path: str, force: bool, inputs) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    write_bytes(path, buf.getvalue(), force, "the plot", inputs)


def write_report(folder: str, res: Dict[str, Any], kld: np.ndarray, force: bool = False,
                 inputs: Sequence[Optional[str]] = ()) -> Dict[str, str]:
    """Writes report.md, kld_hist.png, router_agreement.png (MoE only) and compare.json into
    ``folder``, each through the package's one output path (an earlier file only replaced with
    ``force``; never one of ``inputs``); returns the paths written."""
    plt = require_matplotlib()
    check_report(folder, force, inputs)
    os.makedirs(folder, exist_ok=True)
    paths = {}

    fig, ax = plt.subplots(figsize=(7, 4))
    v = np.log10(np.maximum(kld, 1e-10))
    ax.hist(v, bins=80, color="#4472c4")
    ax.set_xlabel("log10 KL divergence per scored token (nats)")
    ax.set_ylabel("tokens")
    ax.set_title(f"KLD of {os.path.basename(str(res['quant']))} from {os.path.basename(str(res['base']))}")
    for q, name, color in ((res["kld_mean"], "mean", "black"), (res["kld_p99"], "p99", "red")):
        if q > 0:
            ax.axvline(np.log10(q), color=color, linestyle="--", label=f"{name} {q:.4g}")
    ax.legend()
    fig.tight_layout()
    paths["kld_hist"] = os.path.join(folder, "kld_hist.png")
    _save(fig, paths["kld_hist"], force, inputs)
    plt.close(fig)

    if "router_agree_layers" in res:
        layers = res["router_agree_layers"]
        fig, ax = plt.subplots(figsize=(max(5, 0.25 * len(layers) + 3), 4))
        ax.bar(np.arange(len(layers)), layers, color="#ed7d31")
        low = min(layers)
        ax.set_ylim(max(0.0, low - max(0.01, 0.5 * (1.0 - low))), 1.0)
        ax.set_xticks(np.arange(0, len(layers), max(1, len(layers) // 24)))
        if len(layers) <= 16:
            for i, a in enumerate(layers):
                ax.text(i, a, f"{100 * a:.2f}%", ha="center", va="bottom", fontsize=8)
        ax.set_xlabel("layer")
        ax.set_ylabel("mean |top-k(base) ∩ top-k(quant)| / k")
        ax.set_title("router agreement per MoE layer")
        fig.tight_layout()
        paths["router"] = os.path.join(folder, "router_agreement.png")
        _save(fig, paths["router"], force, inputs)
        plt.close(fig)

    md = [
        f"# {os.path.basename(str(res['quant']))} vs {os.path.basename(str(res['base']))}",
        "",
        f"Method: docs/METHODS.md (llama-perplexity's), ctx {res['ctx']}, {res['chunks']} chunks, "
        f"{res['scored']} scored tokens.",
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| PPL base ({res['base_type']}) | {res['ppl_base']:.4f} |",
        f"| PPL quant ({res['quant_type']}) | {res['ppl_quant']:.4f} |",
        f"| PPL ratio | {res['ppl_ratio']:.5f} |",
        f"| KLD mean | {res['kld_mean']:.6f} |",
        f"| KLD median | {res['kld_median']:.6f} |",
        f"| KLD p99 | {res['kld_p99']:.6f} |",
        f"| KLD p99.9 | {res['kld_p999']:.6f} |",
        f"| KLD max | {res['kld_max']:.6f} |",
        f"| same top token | {100 * res['top1_agree']:.3f} % |",
        f"| RMS Δp | {100 * res['rms_dp']:.3f} % |",
    ]
    if "router_agree" in res:
        md.append(f"| router agreement (all layers) | {100 * res['router_agree']:.3f} % |")
        md += ["", "| layer | router agreement |", "| --- | --- |"]
        md += [f"| {i} | {100 * a:.3f} % |" for i, a in enumerate(res["router_agree_layers"])]
        md += ["", "![router agreement](router_agreement.png)"]
    md += ["", "![KLD histogram](kld_hist.png)", ""]
    paths["markdown"] = os.path.join(folder, "report.md")
    write_text(paths["markdown"], "\n".join(md), force, "the report", inputs)
    paths["json"] = os.path.join(folder, "compare.json")
    write_text(paths["json"], json.dumps({k: v for k, v in res.items() if k != "report"}, indent=1), force,
               "the report", inputs)
    return paths
