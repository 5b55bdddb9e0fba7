"""``qtoolkit imatrix MODEL --file CALIB.txt -o IMATRIX.gguf``: compute an importance matrix
(llama-imatrix's statistics and file format; per expert for MoE models) and report expert coverage."""

from __future__ import annotations

import json

from ..imatrix.coverage import format_coverage
from .options import (add_run_arguments, add_text_errors, format_run, one_blas_thread_for_gguf, read_eval_text,
                      run_options, thread_count)


def add_arguments(parser) -> None:
    parser.add_argument("model", help="GGUF file or Hugging Face model folder")
    parser.add_argument("--file", "-f", required=True, help="calibration text (UTF-8, at least 2 × ctx tokens)")
    parser.add_argument("-o", "--output", default="imatrix.gguf", help="output file (default imatrix.gguf)")
    parser.add_argument("--output-format", choices=("gguf", "dat"), default=None,
                        help="gguf (llama.cpp's current format) or dat (legacy); default: from the suffix, gguf")
    parser.add_argument("--ctx", "-c", type=int, default=512, help="tokens per chunk (default 512, as llama-imatrix)")
    parser.add_argument("--chunks", type=int, default=None, help="use at most this many chunks (default: the whole text)")
    parser.add_argument("--threads", "-t", type=thread_count, default=None, help="matmul threads (default: all cores)")
    add_text_errors(parser)
    parser.add_argument("--process-output", action="store_true", help="also collect output.weight (untied models)")
    parser.add_argument("--no-ppl", action="store_true", help="do not compute the calibration text's perplexity")
    parser.add_argument("--min-tokens", type=int, default=1, metavar="N",
                        help="list the experts that fewer than N tokens reached (default 1: never reached)")
    parser.add_argument("--force", action="store_true", help="replace an existing output file")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_run_arguments(parser)


def run(args) -> int:
    from ..imatrix.collect import compute_imatrix
    from .progress import ChunkBar, LayerBar

    one_blas_thread_for_gguf(args.model)
    quiet = args.quiet or args.json
    bar, layers = (None, None) if quiet else (ChunkBar("imatrix"), LayerBar("layers"))
    file, text = read_eval_text(args)
    try:
        rep = compute_imatrix(args.model, file=file, text=text, dataset=args.file, output=args.output, ctx=args.ctx, chunks=args.chunks,
                              threads=args.threads, process_output=args.process_output, compute_ppl=not args.no_ppl,
                              output_format=args.output_format, force=args.force, min_tokens=args.min_tokens,
                              progress=bar, layer_progress=layers, **run_options(args))
    finally:
        for b in (layers, bar):
            if b is not None:
                b.close()
    if args.json:
        print(json.dumps(rep))
        return 0
    print(f"model: {rep['model']} ({rep['architecture']}, {rep['file_type']})")
    print(f"text: {rep['dataset']}: {rep['text_tokens']} tokens (BOS {'added' if rep['add_bos'] else 'not added'}); "
          f"{rep['chunks']} chunks of {rep['ctx']} = {rep['tokens']} tokens")
    if rep["ppl"] is not None:
        print(f"calibration PPL = {rep['ppl']:.4f}")
    print(f"wrote {rep['output']} ({rep['format']}, {rep['entries']} entries, {rep['file_bytes']:,} bytes) "
          f"in {rep['seconds']:.1f} s ({rep['tok_per_s']} tok/s)")
    for line in format_coverage(rep["coverage"]):
        print(line)
    print(format_run(rep["run"]))
    return 0
