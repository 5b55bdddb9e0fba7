"""``qtoolkit perplexity MODEL --file TEXT``: llama-perplexity's measurement (docs/METHODS.md)."""

from __future__ import annotations

import json

from .options import add_eval_arguments, format_run, one_blas_thread_for_gguf, read_eval_text, run_options


def add_arguments(parser) -> None:
    parser.add_argument("model", help="GGUF file or Hugging Face model folder")
    add_eval_arguments(parser)


def run(args) -> int:
    from ..model.evaluate import perplexity
    from .progress import ChunkBar, LayerBar

    one_blas_thread_for_gguf(args.model)
    quiet = args.quiet or args.json
    bar, layers = (None, None) if quiet else (ChunkBar("perplexity"), LayerBar("layers"))
    file, text = read_eval_text(args)
    try:
        res = perplexity(args.model, file=file, text=text, ctx=args.ctx, chunks=args.chunks, threads=args.threads, progress=bar,
                         layer_progress=layers, **run_options(args))
    finally:
        for b in (layers, bar):
            if b is not None:
                b.close()
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"model: {res['model']} ({res['architecture']}, {res['file_type']})")
    print(f"text: {res['text_tokens']} tokens (BOS {'added' if res['add_bos'] else 'not added'}); "
          f"{res['chunks']} chunks of {res['ctx']}, {res['scored']} scored tokens")
    print(f"PPL = {res['ppl']:.4f} +/- {res['ppl_stderr']:.4f}")
    print(f"time: {res['seconds']:.2f} s ({res['tok_per_s']:.1f} tok/s), load {res['load_seconds']:.2f} s")
    print(format_run(res["run"]))
    return 0
