"""``qtoolkit convert MODEL_DIR -o OUT.gguf --type PRESET``: a Hugging Face checkpoint to GGUF."""

from __future__ import annotations

import json

from .presets import PRESETS


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
                   help="calibrate against this conversion of the same model (Q8_0 or BF16) instead of the float32 "
                        "weights: for models whose float32 weights do not fit in memory")
    g.add_argument("--max-probes", type=int, default=256, metavar="N",
                   help="at most N sensitivity probe runs; deeper models probe bands of layers together (default 256)")
    g.add_argument("--recipe", metavar="FILE", help="where to write the REGEX=TYPE recipe (default: OUT.recipe)")
    g.add_argument("--alloc-types", metavar="LIST",
                   help="comma-separated types the allocator may choose (default: every type llama.cpp runs; "
                        "the IQ1/IQ2/IQ3_XXS types only with --imatrix)")
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
    parser.add_argument("--tensor-type-file", metavar="FILE",
                        help="REGEX=TYPE entries, whitespace or newline separated, # comments (a recipe); "
                             "after any --tensor-type")
    parser.add_argument("--output-tensor-type", metavar="TYPE", help="type of output.weight")
    parser.add_argument("--token-embedding-type", metavar="TYPE", help="type of token_embd.weight")
    parser.add_argument("--pure", action="store_true", help="no mixture rules: the preset's type for every quantizable tensor")
    parser.add_argument("--threads", type=int, default=None, help="quantization threads (default: all cores)")
    parser.add_argument("--force", action="store_true", help="replace an existing output file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def tensor_type_args(args) -> list:
    """--tensor-type entries, then those of --tensor-type-file."""
    items = list(args.tensor_type or [])
    if getattr(args, "tensor_type_file", None):
        from .alloc.recipe import read_recipe

        items += read_recipe(args.tensor_type_file)
    return items


def print_allocation(a: dict) -> None:
    print(f"{'tensor':32s} {'type':8s} {'bytes':>10s} {'predicted KLD':>14s}   probes (type: measured KLD)")
    for t in a["tensors"]:
        if t["fixed"]:
            continue
        probes = ", ".join(f"{k} {v:.2e}" for k, v in t["probes"].items())
        print(f"{t['name']:32s} {t['type']:8s} {t['bytes']:10,d} {t['predicted_kld']:14.3e}   {probes}")
    fixed = [t for t in a["tensors"] if t["fixed"]]
    if fixed:
        print(f"  + {len(fixed)} fixed tensors (norms, routers, pinned): {sum(t['bytes'] for t in fixed):,} bytes")
    s = a["solver"]
    print(f"predicted KL divergence {a['predicted_kld']:.5f} (solver {s['method']}, lower bound {s['lower_bound']:.5f}); "
          f"file {a['file_bytes']:,} bytes, tensor data {a['tensor_bytes']:,} bytes, {a['bpw']:.3f} bits per weight; "
          f"target {a['budget_bytes']:,} bytes ({'file' if a['budget_kind'] == 'file' else 'tensor data'})")
    near = sorted(a["preset_predictions"].items(), key=lambda kv: abs(kv[1]["file_bytes"] - a["file_bytes"]))[:3]
    print("presets by the same prediction: " + "; ".join(
        f"{p} {v['file_bytes']:,} bytes, KLD {v['predicted_kld']:.5f}" for p, v in sorted(near, key=lambda kv: kv[1]["file_bytes"])))
    c = a["calibration"]
    sec = a["seconds"]
    print(f"calibration: {c['chunks']} chunks x {c['ctx']} tokens, {c['probes']} probes; "
          f"{sec.get('total', 0):.1f} s (errors {sec.get('errors', 0):.1f} s, probes {sec.get('probes', 0):.1f} s)")
    print(f"file type {a['base_preset']}" + (f"; recipe: {a['recipe_file']}" if a.get("recipe_file") else ""))


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
    if report.get("allocation"):
        print()
        print_allocation(report["allocation"])
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
    from .alloc.budget import convert_to_budget
    from .converter.convert import convert
    from .errors import QtkValueError

    if not args.dry_run and not args.output:
        raise QtkValueError("give the output file with -o OUT.gguf (or use --dry-run)")
    progress = None
    if not (args.quiet or args.json or args.dry_run):
        from .cli_progress import TqdmProgress

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
                                   max_probes=args.max_probes, **options)
    else:
        report = convert(args.model_dir, args.output, args.type, **options)
    if args.json:
        print(json.dumps(report))
    elif args.dry_run or not args.quiet:
        print_report(report, plan=args.dry_run)
    return 0
