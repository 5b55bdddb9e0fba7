"""Evaluation speed: `qtoolkit perplexity` (the layer-major runner) against llama.cpp evaluating the
same chunks of the same GGUF file on the same threads, side by side in one run.

llama.cpp side (llama-cpp-python, the library built natively at install): each chunk of ctx tokens
decoded from an empty KV cache with every position's logits requested, as llama-perplexity asks
for them; its default KV cache and attention settings. Times are the best of --repeat runs, with
the file already in the page cache for both (reading is bench_runner.py's business).

    python tools/bench/bench_perplexity.py FILE.gguf [--chunks 8] [--ctx 512] [--threads 2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)


def ours(path, text, ctx, chunks, threads, repeat):
    import qtoolkit
    from qtoolkit.model.blas import set_blas_threads

    set_blas_threads(1)   # attention's numpy; the matrices run on the kernels' pool (as the CLI does)
    best, ppl = float("inf"), None
    for _ in range(repeat):
        res = qtoolkit.perplexity(path, text=text, ctx=ctx, chunks=chunks, threads=threads)
        best, ppl = min(best, res["seconds"]), res["ppl"]
    return chunks * ctx / best, ppl


def llama(path, tokens, ctx, chunks, threads, repeat):
    import llama_cpp

    @llama_cpp.llama_log_callback
    def _quiet(level, text, user_data):
        pass

    llama_cpp.llama_log_set(_quiet, ctypes.c_void_p())
    llm = llama_cpp.Llama(model_path=path, n_ctx=ctx, n_batch=ctx, n_ubatch=ctx, logits_all=True, verbose=False,
                          n_threads=threads, n_threads_batch=threads)
    try:
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            for c in range(chunks):
                llm.reset()
                llm.eval(tokens[c * ctx:(c + 1) * ctx])
            best = min(best, time.perf_counter() - t0)
        return chunks * ctx / best
    finally:
        llm.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file")
    ap.add_argument("--text", default=os.path.join(ROOT, "tests", "data", "heldout.txt"))
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    import qtoolkit

    with open(args.text, encoding="utf-8") as f:
        text = f.read()
    tokens = qtoolkit.load(args.file).tokenizer.encode(text)
    tq, ppl = ours(args.file, text, args.ctx, args.chunks, args.threads, args.repeat)
    tl = llama(args.file, tokens, args.ctx, args.chunks, args.threads, args.repeat)
    print(f"{os.path.basename(args.file)}: {args.chunks} chunks of {args.ctx}, {args.threads} threads, "
          f"kernels {qtoolkit.active_isa()}")
    print(f"  qtoolkit perplexity {tq:8.1f} tok/s (PPL {ppl:.4f})   llama.cpp {tl:8.1f} tok/s   ratio {tq / tl:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
