"""Inference speed: prompt (batched) and decode (one token at a time) tokens per second, qtoolkit
side by side with llama.cpp (llama-cpp-python) on the same GGUF file.

Models:
  fixture  the trained tiny Qwen3-MoE (tests/data/tiny-moe) converted to the preset
  a3b      a synthetic qwen3moe with Qwen3-30B-A3B's layer widths (hidden 2048, 32/4 heads of 128,
           128 experts, top-8, expert width 768), --layers layers, random weights

    python tools/bench/bench_infer.py [--model fixture|a3b|both] [--preset Q4_K_M] [--threads 1]
        [--layers 4] [--vocab 8192] [--n-prompt 128] [--n-decode 64] [--repeat 3] [--workdir DIR] [--json FILE]

Timings are the best of --repeat runs (the machine is shared; the best run is the least disturbed).
Decode feeds a fixed token sequence one token at a time through the KV cache (both sides).
numpy's OpenBLAS gets one thread (it competes with the kernels' pool otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

THREADS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)


def build_file(kind: str, preset: str, workdir: str, layers: int, vocab: int) -> str:
    import qtoolkit

    os.makedirs(workdir, exist_ok=True)
    if kind == "fixture":
        src = os.path.join(REPO, "tests", "data", "tiny-moe")
        out = os.path.join(workdir, f"tiny-moe-{preset}.gguf")
    else:
        from tools.fixtures.synth_checkpoint import make_checkpoint

        src = os.path.join(workdir, f"a3b-{layers}l-v{vocab}")
        if not os.path.exists(os.path.join(src, "config.json")):
            print(f"writing the synthetic checkpoint {src} ...", file=sys.stderr)
            make_checkpoint(src, "qwen3moe", hidden=2048, layers=layers, heads=32, kv_heads=4, head_dim=128,
                            experts=128, top_k=8, moe_ff=768, vocab=vocab, dtype="bf16", seed=1)
        out = os.path.join(workdir, f"a3b-{layers}l-v{vocab}-{preset}.gguf")
    if not os.path.exists(out):
        print(f"converting to {out} ...", file=sys.stderr)
        qtoolkit.convert(src, out, preset)
    return out


def bench_ours(path: str, threads: int, n_prompt: int, n_decode: int, repeat: int):
    import numpy as np

    import qtoolkit

    m = qtoolkit.load(path, threads=threads)
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, m.n_vocab, n_prompt).tolist()
    follow = rng.integers(0, m.n_vocab, n_decode).tolist()
    best_p = best_d = float("inf")
    for _ in range(repeat):
        cache = m.new_cache(n_prompt + n_decode)
        t0 = time.perf_counter()
        m.forward(prompt, cache, logits_from=n_prompt - 1)
        t1 = time.perf_counter()
        for t in follow:
            m.forward([t], cache)
        t2 = time.perf_counter()
        best_p, best_d = min(best_p, t1 - t0), min(best_d, t2 - t1)
    return n_prompt / best_p, n_decode / best_d


def bench_llama(path: str, threads: int, n_prompt: int, n_decode: int, repeat: int):
    import ctypes

    import numpy as np

    try:
        import llama_cpp
    except ImportError:
        return None

    @llama_cpp.llama_log_callback
    def _quiet(level, text, user_data):
        pass

    llama_cpp.llama_log_set(_quiet, ctypes.c_void_p())
    llm = llama_cpp.Llama(model_path=path, n_ctx=n_prompt + n_decode + 8, n_batch=n_prompt, n_ubatch=n_prompt,
                          n_threads=threads, n_threads_batch=threads, verbose=False, logits_all=False)
    n_vocab = llm.n_vocab()
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, n_vocab, n_prompt).tolist()
    follow = rng.integers(0, n_vocab, n_decode).tolist()
    ctx = llm.ctx
    batch = llama_cpp.llama_batch_init(n_prompt, 0, 1)

    def decode(tokens, pos0):
        batch.n_tokens = len(tokens)
        for i, t in enumerate(tokens):
            batch.token[i] = t
            batch.pos[i] = pos0 + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = i == len(tokens) - 1
        if llama_cpp.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")

    best_p = best_d = float("inf")
    try:
        for _ in range(repeat):
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
            t0 = time.perf_counter()
            decode(prompt, 0)
            t1 = time.perf_counter()
            for i, t in enumerate(follow):
                decode([t], n_prompt + i)
            t2 = time.perf_counter()
            best_p, best_d = min(best_p, t1 - t0), min(best_d, t2 - t1)
    finally:
        llama_cpp.llama_batch_free(batch)
        llm.close()
    return n_prompt / best_p, n_decode / best_d


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["fixture", "a3b", "both"], default="both")
    ap.add_argument("--preset", default="Q4_K_M")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--n-prompt", type=int, default=128)
    ap.add_argument("--n-decode", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", default=os.path.join(REPO, ".bench"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    for k in THREADS_ENV:  # numpy's BLAS only runs attention here: one thread, see qtoolkit/model/blas.py
        os.environ.setdefault(k, "1")

    rows = []
    for kind in (["fixture", "a3b"] if args.model == "both" else [args.model]):
        path = build_file(kind, args.preset, args.workdir, args.layers, args.vocab)
        ours = bench_ours(path, args.threads, args.n_prompt, args.n_decode, args.repeat)
        ref = bench_llama(path, args.threads, args.n_prompt, args.n_decode, args.repeat)
        row = {"model": kind, "file": os.path.basename(path), "bytes": os.path.getsize(path), "threads": args.threads,
               "prompt_tok_s": ours[0], "decode_tok_s": ours[1]}
        if ref is not None:
            row.update(llama_prompt_tok_s=ref[0], llama_decode_tok_s=ref[1],
                       prompt_ratio=ours[0] / ref[0], decode_ratio=ours[1] / ref[1])
        rows.append(row)
    print(f"{'model':8s} {'file':28s} {'MiB':>7s} {'thr':>3s} | {'prompt tok/s':>12s} {'llama.cpp':>10s} {'ratio':>6s} | "
          f"{'decode tok/s':>12s} {'llama.cpp':>10s} {'ratio':>6s}")
    for r in rows:
        lp = f"{r['llama_prompt_tok_s']:10.1f} {r['prompt_ratio']:6.2f}" if "llama_prompt_tok_s" in r else f"{'-':>10s} {'-':>6s}"
        ld = f"{r['llama_decode_tok_s']:10.1f} {r['decode_ratio']:6.2f}" if "llama_decode_tok_s" in r else f"{'-':>10s} {'-':>6s}"
        print(f"{r['model']:8s} {r['file']:28s} {r['bytes'] / 2**20:7.1f} {r['threads']:3d} | {r['prompt_tok_s']:12.1f} {lp} | "
              f"{r['decode_tok_s']:12.1f} {ld}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
