"""``qtoolkit perplexity MODEL --file TEXT``: llama-perplexity's measurement (docs/METHODS.md)."""

from __future__ import annotations

import json


def add_eval_arguments(parser) -> None:
    parser.add_argument("--file", "-f", required=True, help="UTF-8 text to evaluate (at least 2 × ctx tokens)")
    parser.add_argument("--ctx", "-c", type=int, default=512, help="tokens per chunk (default 512, as llama-perplexity)")
    parser.add_argument("--chunks", type=int, default=None, help="evaluate at most this many chunks")
    parser.add_argument("--threads", "-t", type=int, default=None, help="matmul threads (default: all cores)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object (last line)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def one_blas_thread_for_gguf(*paths) -> None:
    """All models are GGUF files: their matrices run on the kernels' pool, so numpy's OpenBLAS
    (attention only) gets one thread instead of competing with it (see qtoolkit/model/blas.py)."""
    import os

    if all(not os.path.isdir(p) for p in paths):
        from .model.blas import set_blas_threads

        set_blas_threads(1)


def add_arguments(parser) -> None:
    parser.add_argument("model", help="GGUF file or Hugging Face model folder")
    add_eval_arguments(parser)


def run(args) -> int:
    from .cli_progress import ChunkBar
    from .model.evaluate import perplexity

    one_blas_thread_for_gguf(args.model)
    bar = None if (args.quiet or args.json) else ChunkBar("perplexity")
    try:
        res = perplexity(args.model, file=args.file, ctx=args.ctx, chunks=args.chunks, threads=args.threads, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"model: {res['model']} ({res['architecture']}, {res['file_type']})")
    print(f"text: {res['text_tokens']} tokens (BOS {'added' if res['add_bos'] else 'not added'}); "
          f"{res['chunks']} chunks of {res['ctx']}, {res['scored']} scored tokens")
    print(f"PPL = {res['ppl']:.4f} +/- {res['ppl_stderr']:.4f}")
    print(f"time: {res['seconds']:.2f} s ({res['tok_per_s']:.1f} tok/s), load {res['load_seconds']:.2f} s")
    return 0
