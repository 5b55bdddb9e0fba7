"""What to do with experts an importance matrix does not cover: measured on the tiny-moe fixture.

    python tools/quality/uncovered_experts_table.py [--imatrix FILE | --calibrate TEXT] [--holes 2]
        [--presets IQ2_XXS,IQ1_M,Q2_K] [--chunks 40] [--workdir DIR] [--markdown FILE] [--json FILE]

Starts from a full importance matrix (made with ``qtoolkit.imatrix`` on the calibration excerpt,
or given), then pretends calibration never reached the ``--holes`` least-routed experts of every
MoE layer (their counts and sums set to 0: what a short calibration text does to a 128-expert
model). Each preset is converted four ways — no importance matrix (where the preset allows it),
the full matrix, the holed matrix with ``--uncovered-experts uniform`` (llama-quantize's
behaviour) and with ``layer-mean`` — and compared with the bf16 folder on the held-out text
(``qtoolkit.compare``, docs/METHODS.md). The rows say how much of the full matrix's gain each
policy keeps.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)


def holed_copy(src: str, dst: str, holes: int):
    """``src`` with the ``holes`` least-routed experts of every layer emptied; returns {layer: experts}."""
    import numpy as np

    from qtoolkit.imatrix import ImatrixStats, read_imatrix, write_imatrix
    from qtoolkit.imatrix.coverage import layer_of

    st = read_imatrix(src)
    sums = {k: v.copy() for k, v in st.sums.items()}
    counts = {k: v.copy() for k, v in st.counts.items()}
    emptied = {}
    for name in st.names():
        if ".ffn_gate_exps." not in name:
            continue
        il = layer_of(name)
        order = np.argsort(st.expert_counts(name), kind="stable")[:holes]
        emptied[il] = sorted(int(e) for e in order)
        for stack in ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"):
            n = name.replace("ffn_gate_exps", stack)
            sums[n][order] = 0
            counts[n][order] = 0
    write_imatrix(dst, ImatrixStats(sums, counts, st.datasets, st.chunk_count, st.chunk_size), force=True)
    return emptied


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(REPO, "tests", "data", "tiny-moe"))
    ap.add_argument("--text", default=os.path.join(REPO, "tests", "data", "heldout.txt"))
    ap.add_argument("--imatrix", default=None)
    ap.add_argument("--calibrate", default=os.path.join(REPO, "tests", "data", "calibration.txt"))
    ap.add_argument("--holes", type=int, default=2, help="experts emptied per layer (the least routed)")
    ap.add_argument("--presets", default="IQ1_M,IQ2_XXS,IQ2_M,Q2_K,IQ3_XXS")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=40)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--workdir", default=os.path.join(REPO, ".bench", "uncovered"))
    ap.add_argument("--markdown", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import qtoolkit

    os.makedirs(args.workdir, exist_ok=True)
    base = qtoolkit.load(args.model, threads=args.threads)
    full = args.imatrix
    if full is None:
        full = os.path.join(args.workdir, "imatrix.gguf")
        qtoolkit.compute_imatrix(base, file=args.calibrate, output=full, ctx=args.ctx, force=True)
    holed = os.path.join(args.workdir, "holed.gguf")
    emptied = holed_copy(full, holed, args.holes)
    variants = [("none", None, None), ("full", full, "uniform"), ("holed, uniform", holed, "uniform"),
                ("holed, layer-mean", holed, "layer-mean")]
    rows = []
    for preset in args.presets.split(","):
        for label, im, policy in variants:
            out = os.path.join(args.workdir, f"{preset}-{label.replace(', ', '-').replace(' ', '')}.gguf")
            opts = {"imatrix": im, "uncovered_experts": policy} if im else {}
            try:
                qtoolkit.convert(args.model, out, preset, force=True, **opts)
            except qtoolkit.QtkImatrixRequiredError:
                continue
            res = qtoolkit.compare(base, qtoolkit.load(out, threads=args.threads), file=args.text, ctx=args.ctx,
                                   chunks=args.chunks)
            rows.append({"preset": preset, "imatrix": label, **{k: res[k] for k in (
                "ppl_base", "ppl_quant", "ppl_ratio", "kld_mean", "kld_p99", "top1_agree", "router_agree", "chunks",
                "scored")}})
            print(f"{preset:8s} {label:18s} KLD {res['kld_mean']:.5f} PPL {res['ppl_quant']:.3f}", file=sys.stderr,
                  flush=True)
    holes = "; ".join(f"layer {il}: experts {', '.join(map(str, e))}" for il, e in sorted(emptied.items()))
    lines = [f"Emptied (the {args.holes} least-routed experts of each layer): {holes}. "
             f"Held-out text, {rows[0]['chunks']} chunks of {args.ctx} ({rows[0]['scored']} scored tokens); "
             f"reference PPL {rows[0]['ppl_base']:.3f}.", "",
             "| preset | importance matrix | PPL | PPL ratio | KLD mean | KLD p99 | same top token | router agreement |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['preset']} | {r['imatrix']} | {r['ppl_quant']:.3f} | {r['ppl_ratio']:.4f} | "
                     f"{r['kld_mean']:.5f} | {r['kld_p99']:.4f} | {100 * r['top1_agree']:.2f} % | "
                     f"{100 * r['router_agree']:.2f} % |")
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(table + "\n")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"rows": rows, "emptied": emptied}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
