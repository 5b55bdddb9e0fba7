"""``qtoolkit compare BASE QUANT --file TEXT``: what a quantization cost (docs/METHODS.md)."""

from __future__ import annotations

import json

from .options import add_eval_arguments, format_run, one_blas_thread_for_gguf, read_eval_text, run_options


def add_arguments(parser) -> None:
    parser.add_argument("base", help="the reference: Hugging Face folder or GGUF file")
    parser.add_argument("quant", help="the quantized GGUF file")
    add_eval_arguments(parser)
    parser.add_argument("--report", metavar="DIR", default=None,
                        help="write report.md and PNG plots here (needs matplotlib: pip install 'qtoolkit[report]')")
    parser.add_argument("--force", action="store_true", help="replace the report files of an earlier run in --report DIR")


def format_result(res) -> str:
    lines = [
        f"base:  {res['base']} ({res['base_type']})",
        f"quant: {res['quant']} ({res['quant_type']})",
        f"{res['chunks']} chunks of {res['ctx']}, {res['scored']} scored tokens, {res['seconds']:.1f} s",
        f"PPL base   {res['ppl_base']:10.4f}",
        f"PPL quant  {res['ppl_quant']:10.4f}   ratio {res['ppl_ratio']:.5f}",
        f"KLD        mean {res['kld_mean']:.6f}  median {res['kld_median']:.6f}  p99 {res['kld_p99']:.6f}  "
        f"p99.9 {res['kld_p999']:.6f}  max {res['kld_max']:.6f}",
        f"same top token {100 * res['top1_agree']:.3f} %   RMS Δp {100 * res['rms_dp']:.3f} %",
    ]
    if "router_agree" in res:
        per = " ".join(f"{100 * a:.2f}" for a in res["router_agree_layers"])
        lines.append(f"router agreement {100 * res['router_agree']:.3f} % (per layer, %: {per})")
    if "report" in res:
        lines.append(f"report: {res['report']['markdown']}")
    if "run" in res:
        lines.append(format_run(res["run"]))
    return "\n".join(lines)


def run(args) -> int:
    from ..model.evaluate import compare
    from ..model.report import check_report
    from .progress import ChunkBar, LayerBar

    if args.report:  # fail before the long run when matplotlib is missing
        from ..model.report import require_matplotlib

        require_matplotlib()
        check_report(args.report, args.force, [args.base, args.quant, args.file])
    one_blas_thread_for_gguf(args.base, args.quant)
    quiet = args.quiet or args.json
    bar, layers = (None, None) if quiet else (ChunkBar("compare"), LayerBar("layers"))
    file, text = read_eval_text(args)
    try:
        res = compare(args.base, args.quant, file=file, text=text, report_force=args.force, ctx=args.ctx, chunks=args.chunks, threads=args.threads,
                      progress=bar, report=args.report, layer_progress=layers, **run_options(args))
    finally:
        for b in (layers, bar):
            if b is not None:
                b.close()
    print(json.dumps(res) if args.json else format_result(res))
    return 0
