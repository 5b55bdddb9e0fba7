"""``qtoolkit quantize IN.gguf OUT.gguf PRESET``: re-quantize an F32/F16/BF16 GGUF file."""

from __future__ import annotations

import json

from .options import add_quant_options, tensor_type_args, uncovered_options
from .reports import print_report
from ..presets import PRESETS


def add_arguments(parser) -> None:
    parser.add_argument("input", help="GGUF file with F32/F16/BF16 weights")
    parser.add_argument("output", help="output .gguf file")
    parser.add_argument("preset", metavar="PRESET", help=f"llama-quantize preset: {', '.join(PRESETS)}")
    add_quant_options(parser)
    parser.add_argument("--allow-requantize", action="store_true",
                        help="also re-quantize tensors that are already quantized (loses quality)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")


def run(args) -> int:
    from ..converter.requantize import requantize

    progress = None
    if not (args.quiet or args.json or args.dry_run):
        from .progress import TqdmProgress

        progress = TqdmProgress("quantize")
    report = requantize(
        args.input, args.output, args.preset, imatrix=args.imatrix, tensor_types=tensor_type_args(args),
        output_tensor_type=args.output_tensor_type, token_embedding_type=args.token_embedding_type, pure=args.pure,
        allow_requantize=args.allow_requantize, threads=args.threads, force=args.force, dry_run=args.dry_run,
        progress=progress, **uncovered_options(args),
    )
    if args.json:
        print(json.dumps(report))
    elif args.dry_run or not args.quiet:
        print_report(report, plan=args.dry_run)
    return 0
