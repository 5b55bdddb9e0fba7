"""What each llama-quantize preset costs on the trained tiny MoE fixture: file size, bits per weight,
perplexity, KL divergence from the bf16 reference, top-token and router agreement.

    python tools/quality/quality_table.py [--model tests/data/tiny-moe] [--text tests/data/heldout.txt]
        [--presets Q2_K,Q4_K_M,...] [--ctx 512] [--chunks 40] [--workdir DIR] [--json FILE] [--markdown FILE]
        [--imatrix FILE | --calibrate [tests/data/calibration.txt]] [--iq-presets IQ2_XXS,...]

Every preset is converted from the Hugging Face folder with ``qtoolkit.convert`` and compared with
the folder itself (float32 reference) by ``qtoolkit.compare`` (docs/METHODS.md). With an importance
matrix — ``--imatrix FILE`` (from ``qtoolkit imatrix`` or llama-imatrix), or ``--calibrate TEXT``,
which makes one with ``qtoolkit.imatrix`` on TEXT (never the evaluation text) — every quantized
preset is also converted with it and gets a second row marked "yes", and the IQ1/IQ2/IQ3 presets
(``--iq-presets``) are added; those that llama-quantize refuses without an importance matrix get
only the "yes" row.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

DEFAULT_PRESETS = ["Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_0", "Q4_1", "Q4_K_S", "Q4_K_M", "IQ4_NL", "IQ4_XS",
                   "Q5_0", "Q5_1", "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0", "F16"]
IQ_PRESETS = ["IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "Q2_K_S", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M"]
NO_IMATRIX_EFFECT = ("F16", "BF16", "F32", "Q8_0")   # types that ignore importance weights


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(REPO, "tests", "data", "tiny-moe"))
    ap.add_argument("--text", default=os.path.join(REPO, "tests", "data", "heldout.txt"))
    ap.add_argument("--presets", default=",".join(DEFAULT_PRESETS))
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=None, help="default: the whole text")
    ap.add_argument("--imatrix", default=None, help="also convert every preset with this importance matrix")
    ap.add_argument("--calibrate", nargs="?", const=os.path.join(REPO, "tests", "data", "calibration.txt"), default=None,
                    metavar="TEXT", help="make the importance matrix with qtoolkit on TEXT (default: the calibration excerpt)")
    ap.add_argument("--iq-presets", default=",".join(IQ_PRESETS),
                    help="presets added when there is an importance matrix ('' for none)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--workdir", default=os.path.join(REPO, ".bench", "quality"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--markdown", default=None, help="also write the table to this file")
    args = ap.parse_args(argv)

    import qtoolkit

    os.makedirs(args.workdir, exist_ok=True)
    base = qtoolkit.load(args.model, threads=args.threads)
    n_params = sum(int(v) for v in _param_counts(args.model))
    imatrix, calib = args.imatrix, None
    if args.calibrate:
        if os.path.abspath(args.calibrate) == os.path.abspath(args.text):
            raise SystemExit("error: the calibration text must not be the evaluation text")
        imatrix = os.path.join(args.workdir, "imatrix.gguf")
        calib = qtoolkit.compute_imatrix(base, file=args.calibrate, output=imatrix, ctx=args.ctx, force=True,
                                 dataset=os.path.relpath(args.calibrate, REPO))
        print(f"imatrix: {calib['chunks']} chunks of {calib['ctx']} from {args.calibrate} in {calib['seconds']:.1f} s",
              file=sys.stderr, flush=True)
    presets = [p for p in args.presets.split(",") if p]
    if imatrix:
        presets += [p for p in args.iq_presets.split(",") if p and p not in presets]
    runs = []
    for p in presets:
        try:   # the plan alone says whether llama-quantize's rules refuse this preset without an imatrix
            qtoolkit.convert(args.model, None, p, dry_run=True)
            runs.append((p, None))
        except qtoolkit.QtkImatrixRequiredError:
            pass
        if imatrix and p not in NO_IMATRIX_EFFECT:
            runs.append((p, imatrix))
    rows = []
    for preset, im in runs:
        tag = preset + ("-imat" if im else "")
        out = os.path.join(args.workdir, f"{os.path.basename(os.path.normpath(args.model))}-{tag}.gguf")
        t0 = time.perf_counter()
        qtoolkit.convert(args.model, out, preset, imatrix=im, force=True)
        quant = qtoolkit.load(out, threads=args.threads)
        res = qtoolkit.compare(base, quant, file=args.text, ctx=args.ctx, chunks=args.chunks)
        size = os.path.getsize(out)
        row = {"preset": preset, "imatrix": bool(im), "bytes": size, "bpw": 8.0 * _tensor_bytes(out) / n_params,
               **{k: res[k] for k in ("ppl_base", "ppl_quant", "ppl_ratio", "kld_mean", "kld_median", "kld_p99",
                                      "kld_max", "top1_agree", "rms_dp", "chunks", "scored")}}
        if "router_agree" in res:
            row["router_agree"] = res["router_agree"]
        rows.append(row)
        print(f"{tag:12s} done in {time.perf_counter() - t0:.1f} s: PPL {res['ppl_quant']:.3f} KLD {res['kld_mean']:.5f}",
              file=sys.stderr, flush=True)
    table = format_table(rows)
    print(table)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(table + "\n")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"rows": rows, "imatrix": imatrix, "calibration": calib}, f, indent=1)
    return 0


def _param_counts(model_dir):
    from qtoolkit.io.safetensors_reader import Checkpoint

    ck = Checkpoint(model_dir)
    try:
        for shape in ck.shapes.values():
            n = 1
            for d in shape:
                n *= d
            yield n
    finally:
        ck.close()


def _tensor_bytes(path: str) -> int:
    from qtoolkit.io.gguf_reader import GGUFFile

    with GGUFFile(path) as f:
        return sum(t.nbytes for t in f.tensors)


def format_table(rows) -> str:
    if not rows:
        return ""
    r0 = rows[0]
    lines = [
        f"Reference: bf16 Hugging Face folder run in float32, PPL {r0['ppl_base']:.3f} "
        f"({r0['chunks']} chunks of 512, {r0['scored']} scored tokens).",
        "",
        "| preset | imatrix | file MiB | bpw | PPL | PPL ratio | KLD mean | KLD p99 | same top token | router agreement |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        ra = f"{100 * r['router_agree']:.2f} %" if "router_agree" in r else "-"
        lines.append(
            f"| {r['preset']} | {'yes' if r['imatrix'] else 'no'} | {r['bytes'] / 2**20:.2f} | {r['bpw']:.2f} | "
            f"{r['ppl_quant']:.3f} | {r['ppl_ratio']:.4f} | {r['kld_mean']:.5f} | {r['kld_p99']:.4f} | "
            f"{100 * r['top1_agree']:.2f} % | {ra} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
