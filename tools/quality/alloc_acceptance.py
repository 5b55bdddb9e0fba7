"""Acceptance runs of the bit allocator: at the file size of each llama.cpp preset, the allocated
file against the preset file, both measured against the full-precision model on held-out text.

    python tools/quality/alloc_acceptance.py [--models tests/data/tiny-moe,tests/data/tiny-dense]
        [--presets Q2_K,Q3_K_M,Q4_K_M] [--calib tests/data/calib-shakespeare.txt]
        [--text tests/data/heldout.txt] [--chunks N] [--calib-chunks 16]
        [--with-imatrix | --imatrix MODEL=FILE ...] [--alloc-types LIST] [--runnable-only]
        [--workdir .bench/alloc] [--json FILE] [--markdown FILE]

For every model and preset: convert with the preset (``qtoolkit.convert``), take that file's size
as ``--target-size`` of an allocated conversion (calibrated on ``--calib``, never on the held-out
text), then ``qtoolkit.compare`` both files with the model's own folder (float32 reference) on
``--text`` (docs/METHODS.md). The criterion of docs/allocation.md: allocated file within 1 % of the
preset's size (never above it) and mean KL divergence at most 0.8 x the preset's.
``--with-imatrix`` first computes each model's importance matrix on the calibration text with
``qtoolkit.imatrix`` (``--calib-chunks`` chunks of ``--ctx`` tokens) and gives it to the preset and
the allocated conversion alike; ``--imatrix MODEL=FILE`` brings one instead.
``--runnable-only`` restricts the allocator to the types qtoolkit's own kernels run (needed while
qtoolkit cannot run a type that llama.cpp can, or ``compare`` could not measure the file).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # the float reference runs beside the kernels' own threads


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = os.path.join(REPO, "tests", "data")
    ap.add_argument("--models", default=",".join(os.path.join(d, m) for m in ("tiny-moe", "tiny-dense")))
    ap.add_argument("--presets", default="Q2_K,Q3_K_M,Q4_K_M")
    ap.add_argument("--recipes", default="Q2_K,Q3_K",
                    help="hand-made recipe rows: routed experts (a dense model: its FFN) at TYPE, the rest Q8_0")
    ap.add_argument("--probes", default=None, help="the allocator's probes: streamed or full (default: its default)")
    ap.add_argument("--probe-chunks", type=int, default=None)
    ap.add_argument("--anchors", default=None, help="the allocator's anchors (default: its default)")
    ap.add_argument("--calib", default=os.path.join(d, "calib-shakespeare.txt"))
    ap.add_argument("--text", default=os.path.join(d, "heldout.txt"))
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=None, help="held-out chunks (default: the whole text)")
    ap.add_argument("--calib-chunks", type=int, default=16)
    ap.add_argument("--imatrix", action="append", default=[], metavar="MODEL=FILE",
                    help="importance matrix for a model (folder name), used by the preset and the allocation alike")
    ap.add_argument("--with-imatrix", action="store_true",
                    help="compute each model's importance matrix on --calib with qtoolkit.imatrix")
    ap.add_argument("--alloc-types", default=None)
    ap.add_argument("--runnable-only", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--workdir", default=os.path.join(REPO, ".bench", "alloc"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--markdown", default=None)
    args = ap.parse_args(argv)

    import qtoolkit
    from qtoolkit.alloc.candidates import DEFAULT_TYPES, qtoolkit_can_run
    from qtoolkit.alloc.budget import recipe_path

    os.makedirs(args.workdir, exist_ok=True)
    imatrices = dict(s.split("=", 1) for s in args.imatrix)
    alloc_types = args.alloc_types
    if args.runnable_only and alloc_types is None:
        alloc_types = ",".join(t.name for t in DEFAULT_TYPES if qtoolkit_can_run(t))
    rows = []
    for model in args.models.split(","):
        name = os.path.basename(os.path.normpath(model))
        im = imatrices.get(name)
        if im is None and args.with_imatrix:
            im = os.path.join(args.workdir, name + ".imatrix.gguf")
            qtoolkit.compute_imatrix(model, file=args.calib, output=im, ctx=args.ctx, chunks=args.calib_chunks,
                             threads=args.threads, compute_ppl=False, force=True)
        base = qtoolkit.load(model, threads=args.threads)
        alloc_kw = {k: v for k, v in (("probes", args.probes), ("probe_chunks", args.probe_chunks),
                                      ("anchors", args.anchors)) if v is not None}
        refs = [(p, p, None) for p in args.presets.split(",") if p] + \
               [(f"recipe:{t}", "Q8_0", t) for t in args.recipes.split(",") if t]
        for label, preset, low in refs:
            tag = f"{name}-{label.replace(':', '-')}" + ("-imat" if im else "")
            p_out = os.path.join(args.workdir, tag + ".gguf")
            a_out = os.path.join(args.workdir, tag + "-alloc.gguf")
            overrides = []
            if low is not None:
                from qtoolkit.alloc.anchors import recipe_overrides
                overrides = recipe_overrides(_out_names(model), low)
            ref_rep = qtoolkit.convert(model, p_out, preset, imatrix=im, force=True, threads=args.threads,
                                       tensor_types=overrides)
            ref_types = {t["name"]: t["type"] for t in ref_rep["tensors"]}
            size = os.path.getsize(p_out)
            t0 = time.perf_counter()
            rep = qtoolkit.convert(model, a_out, None, imatrix=im, force=True, threads=args.threads, target_size=size,
                                   calib=args.calib, calib_chunks=args.calib_chunks, alloc_types=alloc_types,
                                   **alloc_kw)
            t_alloc = time.perf_counter() - t0
            a = rep["allocation"]
            res = {}
            for kind, path in (("preset", p_out), ("alloc", a_out)):
                q = qtoolkit.load(path, threads=args.threads)
                r = qtoolkit.compare(base, q, file=args.text, ctx=args.ctx, chunks=args.chunks, threads=args.threads)
                # on the calibration chunks themselves: what the prediction is a prediction of
                rc = qtoolkit.compare(base, q, file=args.calib, ctx=args.ctx, chunks=args.calib_chunks,
                                      threads=args.threads)
                res[kind] = {"bytes": os.path.getsize(path), "ppl": r["ppl_quant"], "kld": r["kld_mean"],
                             "kld_p99": r["kld_p99"], "top1": r["top1_agree"], "router": r.get("router_agree"),
                             "ppl_base": r["ppl_base"], "chunks": r["chunks"], "scored": r["scored"],
                             "kld_calib": rc["kld_mean"]}
            anchors = a["calibration"].get("anchors", {})
            # the allocator's prediction for the reference file: its tensors' predicted losses at that file's types
            pred_ref = 0.0
            for t in a["tensors"]:
                if not t["fixed"]:
                    opt = t["options"].get(ref_types[t["name"]])
                    pred_ref += opt["predicted_kld"] if opt is not None else float("nan")
            row = {"model": name, "preset": label, "imatrix": bool(im), **{f"{k}_{kk}": v for k, d in res.items() for kk, v in d.items()},
                   "predicted_preset": pred_ref,
                   "predicted_alloc": a["predicted_kld"], "measured_alloc_calib": a["calibration"].get("measured_kld"),
                   "alloc_seconds": round(t_alloc, 1),
                   "anchors": anchors, "scale": a["calibration"].get("scale"),
                   "base_preset": a["base_preset"], "recipe": recipe_path(a_out), "solver": a["solver"],
                   "alloc_phase_seconds": a["seconds"], "calibration": {k: v for k, v in a["calibration"].items()
                                                                         if k != "expert_counts"},
                   "types": {t["name"]: t["type"] for t in a["tensors"] if not t["fixed"]},
                   "preset_predictions": a["preset_predictions"]}
            row["kld_ratio"] = row["alloc_kld"] / row["preset_kld"]
            row["size_ratio"] = row["alloc_bytes"] / row["preset_bytes"]
            row["pred_over_meas_calib"] = row["predicted_alloc"] / row["alloc_kld_calib"]
            row["met"] = row["kld_ratio"] <= 0.8 and 0.99 <= row["size_ratio"] <= 1.0
            row["prediction_met"] = abs(row["pred_over_meas_calib"] - 1.0) <= 0.15
            rows.append(row)
            print(f"{tag}: preset {row['preset_bytes']:,} B KLD {row['preset_kld']:.5f}; allocated {row['alloc_bytes']:,} B "
                  f"KLD {row['alloc_kld']:.5f} (x{row['kld_ratio']:.2f}; predicted {row['predicted_preset']:.5f} -> "
                  f"{row['predicted_alloc']:.5f}; on the calibration text {row['alloc_kld_calib']:.5f}) in {t_alloc:.0f} s",
                  file=sys.stderr, flush=True)
    table = format_table(rows)
    print(table)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(table + "\n")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
    return 0


def _out_names(model: str):
    """The GGUF tensor names of a model folder (what a recipe's patterns match)."""
    import qtoolkit
    rep = qtoolkit.convert(model, None, "Q8_0", dry_run=True)
    return [type("T", (), {"name": t["name"]}) for t in rep["tensors"]]


def format_table(rows) -> str:
    out = ["| model | size of | imatrix | file | bytes | PPL | KLD mean | KLD p99 | same top token | predicted KLD | "
           "KLD on calib. text | KLD ratio | met |",
           "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        for kind in ("preset", "alloc"):
            label = r["preset"] if kind == "preset" else f"allocated ({r['base_preset']} file type)"
            pred = r["predicted_preset"] if kind == "preset" else r["predicted_alloc"]
            ratio = f"{r['kld_ratio']:.2f}" if kind == "alloc" else ""
            met = ("yes" if r["met"] else "**no**") if kind == "alloc" else ""
            out.append(f"| {r['model']} | {r['preset']} | {'yes' if r['imatrix'] else 'no'} | {label} | {r[kind + '_bytes']:,} | "
                       f"{r[kind + '_ppl']:.3f} | {r[kind + '_kld']:.5f} | {r[kind + '_kld_p99']:.4f} | "
                       f"{100 * r[kind + '_top1']:.2f} % | {pred:.5f} | {r[kind + '_kld_calib']:.5f} | {ratio} | {met} |")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
