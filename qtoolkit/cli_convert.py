"""``qtoolkit convert MODEL_DIR -o OUT.gguf --type PRESET``: a Hugging Face checkpoint to GGUF."""

from __future__ import annotations

import json

from .presets import PRESETS


def add_arguments(parser) -> None:
    parser.add_argument("model_dir", help="Hugging Face model folder (config.json, *.safetensors, tokenizer.json)")
    parser.add_argument("-o", "--output", help="output .gguf file (not needed with --dry-run)")
    parser.add_argument("--type", default="Q4_K_M", metavar="PRESET",
                        help=f"llama-quantize preset (default Q4_K_M): {', '.join(PRESETS)}")
    add_quant_options(parser)
    parser.add_argument("--tokenizer-pre", metavar="NAME",
                        help="llama.cpp pre-tokenizer name, when the tokenizer's split regex is not recognised")
    parser.add_argument("--dry-run", action="store_true", help="print the per-tensor plan and totals; read only headers")


def add_quant_options(parser) -> None:
    """Options shared with 'qtoolkit quantize'."""
    parser.add_argument("--imatrix", metavar="FILE",
                        help="importance matrix from 'qtoolkit imatrix' or llama-imatrix (GGUF or legacy .dat)")
    parser.add_argument("--uncovered-experts", choices=("uniform", "layer-mean", "error"), default=None,
                        help="experts the imatrix calibration did not reach: uniform weights (llama-quantize's "
                             "choice, the default), the mean of the layer's covered experts, or refuse")
    parser.add_argument("--min-expert-tokens", type=int, default=1, metavar="N",
                        help="an expert that fewer than N calibration tokens reached counts as uncovered (default 1)")
    parser.add_argument("--tensor-type", action="append", default=[], metavar="REGEX=TYPE",
                        help="type for tensors whose name matches REGEX (repeatable; first match wins)")
    parser.add_argument("--output-tensor-type", metavar="TYPE", help="type of output.weight")
    parser.add_argument("--token-embedding-type", metavar="TYPE", help="type of token_embd.weight")
    parser.add_argument("--pure", action="store_true", help="no mixture rules: the preset's type for every quantizable tensor")
    parser.add_argument("--threads", type=int, default=None, help="quantization threads (default: all cores)")
    parser.add_argument("--force", action="store_true", help="replace an existing output file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def print_report(report: dict, plan: bool) -> None:
    if plan:
        print(f"{'tensor':40s} {'dims (ggml order)':24s} {'type':8s} {'bytes':>14s}")
        for t in report["tensors"]:
            dims = "x".join(str(d) for d in t["ne"])
            print(f"{t['name']:40s} {dims:24s} {t['type']:8s} {t['bytes']:14,d}")
        print()
    for name, agg in sorted(report["by_type"].items(), key=lambda kv: -kv[1]["bytes"]):
        print(f"  {name:8s} {agg['tensors']:5d} tensors {agg['elements']:15,d} weights {agg['bytes']:15,d} bytes {agg['bpw']:7.3f} bpw")
    tot = report["totals"]
    line = f"total: {tot['tensors']} tensors, {tot['elements']:,} weights, {tot['bytes']:,} bytes of tensor data, {tot['bpw']:.3f} bits per weight"
    print(line)
    if report.get("file_bytes"):
        print(f"wrote {report['output']} ({report['file_bytes']:,} bytes) in {report['seconds']:.1f} s")
    im = report.get("imatrix")
    if im and im.get("missing"):
        print(f"importance matrix: no data for {len(im['missing'])} tensors (quantized without): {', '.join(im['missing'][:5])}")
    if im and im.get("uncovered"):
        bad = im["uncovered"]
        n = sum(len(v["experts"]) for v in bad.values())
        filled = "/".join(sorted({v["filled"] for v in bad.values()}))
        first = "; ".join(f"{k}: {', '.join(map(str, v['experts']))}" for k, v in list(bad.items())[:3])
        print(f"importance matrix: {n} expert matrices in {len(bad)} tensors below {im['min_expert_tokens']} "
              f"calibration tokens got {filled} weights ({first}{' ...' if len(bad) > 3 else ''})")


def uncovered_options(args) -> dict:
    opts = {"min_expert_tokens": args.min_expert_tokens}
    if args.uncovered_experts:
        opts["uncovered_experts"] = args.uncovered_experts
    return opts


def run(args) -> int:
    from .converter.core import convert
    from .errors import QtkValueError

    if not args.dry_run and not args.output:
        raise QtkValueError("give the output file with -o OUT.gguf (or use --dry-run)")
    progress = None
    if not (args.quiet or args.json or args.dry_run):
        from .cli_progress import TqdmProgress

        progress = TqdmProgress("convert")
    report = convert(
        args.model_dir, args.output, args.type, imatrix=args.imatrix, tensor_types=args.tensor_type,
        output_tensor_type=args.output_tensor_type, token_embedding_type=args.token_embedding_type,
        pure=args.pure, dry_run=args.dry_run, threads=args.threads, force=args.force,
        tokenizer_pre=args.tokenizer_pre, progress=progress, **uncovered_options(args),
    )
    if args.json:
        print(json.dumps(report))
    elif args.dry_run or not args.quiet:
        print_report(report, plan=args.dry_run)
    return 0
