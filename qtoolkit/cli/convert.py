"""``qtoolkit convert MODEL_DIR -o OUT.gguf --type PRESET``: a Hugging Face checkpoint to GGUF."""

from __future__ import annotations

import json

from ..alloc.streamed import COMPUTE_BUDGET
from ..presets import PRESETS
from .options import add_quant_options, add_run_arguments, tensor_type_args, uncovered_options
from .reports import print_report


def add_arguments(parser) -> None:
    parser.add_argument("model_dir", help="Hugging Face model folder (config.json, *.safetensors, tokenizer.json)")
    parser.add_argument("-o", "--output", help="output .gguf file (not needed with --dry-run)")
    parser.add_argument("--type", default=None, metavar="PRESET",
                        help=f"llama-quantize preset (default Q4_K_M; with a target: only the file type written, "
                             f"default the preset nearest in size): {', '.join(PRESETS)}")
    add_quant_options(parser)
    g = parser.add_argument_group("bit allocation (docs/allocation.md)")
    g.add_argument("--target-size", metavar="SIZE",
                   help="choose every tensor's type so that the file is at most SIZE (85G = GiB, 91GB = 10^9 bytes)")
    g.add_argument("--target-bpw", type=float, metavar="B", help="... or at most B bits per weight of tensor data")
    g.add_argument("--calib", metavar="FILE", help="calibration text for the allocation (not the text you evaluate on)")
    g.add_argument("--calib-chunks", type=int, default=16, metavar="N", help="chunks of calibration text (default 16)")
    g.add_argument("--calib-ctx", type=int, default=512, metavar="N", help="tokens per calibration chunk (default 512)")
    g.add_argument("--calib-reference", metavar="GGUF",
                   help="calibrate against this conversion of the same model (Q8_0 or BF16) instead of the checkpoint "
                        "weights: for models whose weights do not fit in memory")
    g.add_argument("--max-probes", type=int, default=256, metavar="N",
                   help="at most N sensitivity probe runs; deeper models probe bands of layers together (default 256)")
    g.add_argument("--probes", choices=("streamed", "full"), default="streamed",
                   help="streamed (default): calibration, probes and anchors in one read of the checkpoint, memory "
                        "bounded by two layers; full: the model in memory, every probe on every chunk")
    g.add_argument("--probe-chunks", type=int, metavar="N",
                   help="calibration chunks each streamed probe runs on (default: as many as --compute-budget allows)")
    g.add_argument("--compute-budget", type=float, default=COMPUTE_BUDGET, metavar="X",
                   help=f"compute of the probe streams and anchors, in calibration passes (default {COMPUTE_BUDGET:g})")
    g.add_argument("--anchors", default="auto", metavar="LIST",
                   help="whole files measured on every chunk to scale the predictions: preset names, recipe:TYPE "
                        "(routed experts at TYPE, the rest Q8_0), auto (the preset nearest the target), none")
    g.add_argument("--no-verify", action="store_true",
                   help="do not measure the chosen file on the calibration chunks (saves a second read)")
    g.add_argument("--recipe", metavar="FILE", help="where to write the REGEX=TYPE recipe (default: OUT.recipe)")
    g.add_argument("--alloc-types", metavar="LIST",
                   help="comma-separated types the allocator may choose (default: every type llama.cpp runs; "
                        "the IQ1/IQ2/IQ3_XXS types only with --imatrix)")
    add_run_arguments(parser)   # --max-memory, --spill-dir: the calibration's hidden states
    parser.add_argument("--tokenizer-pre", metavar="NAME",
                        help="llama.cpp pre-tokenizer name, when the tokenizer's split regex is not recognised")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the per-tensor plan and totals (with a target: what the allocation will cost); "
                             "read only headers")


def run(args) -> int:
    from ..alloc.budget import convert_to_budget
    from ..converter.convert import convert
    from ..errors import QtkValueError

    if not args.dry_run and not args.output:
        raise QtkValueError("give the output file with -o OUT.gguf (or use --dry-run)")
    progress = None
    if not (args.quiet or args.json or args.dry_run):
        from .progress import TqdmProgress

        progress = TqdmProgress("convert")
    targeting = args.target_size is not None or args.target_bpw is not None
    if not targeting and (args.calib or args.recipe or args.alloc_types or args.calib_reference):
        raise QtkValueError("--calib, --calib-reference, --recipe and --alloc-types only go with --target-size or --target-bpw")
    options = dict(imatrix=args.imatrix, tensor_types=tensor_type_args(args), output_tensor_type=args.output_tensor_type,
                   token_embedding_type=args.token_embedding_type, pure=args.pure, dry_run=args.dry_run,
                   threads=args.threads, force=args.force, tokenizer_pre=args.tokenizer_pre, progress=progress,
                   **uncovered_options(args))
    if targeting:
        alloc_progress = None
        if not (args.quiet or args.json):
            import sys

            def alloc_progress(phase, done, total):
                print(f"\rallocation: {phase} {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)
        report = convert_to_budget(args.model_dir, args.output, args.type, target_size=args.target_size,
                                   target_bpw=args.target_bpw, calib=args.calib, calib_chunks=args.calib_chunks,
                                   calib_ctx=args.calib_ctx, recipe=args.recipe, alloc_types=args.alloc_types,
                                   alloc_progress=alloc_progress, calib_reference=args.calib_reference,
                                   max_probes=args.max_probes, probes=args.probes, probe_chunks=args.probe_chunks,
                                   compute_budget=args.compute_budget, anchors=args.anchors,
                                   verify=not args.no_verify, max_memory=args.max_memory, spill_dir=args.spill_dir,
                                   **options)
        if args.dry_run and not args.json:
            from ..alloc.cost import format_cost

            print("\n".join(format_cost(report["allocation_cost"])))
            return 0
    else:
        report = convert(args.model_dir, args.output, args.type, **options)
    if args.json:
        print(json.dumps(report))
    elif args.dry_run or not args.quiet:
        print_report(report, plan=args.dry_run)
    return 0
