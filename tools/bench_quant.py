"""Quantize / dequantize speed per type, side by side in one run: qtoolkit vs ggml vs gguf-py.

    python tools/bench_quant.py [--rows 256] [--cols 4096] [--repeat 3] [--threads 1]

MB/s are megabytes of float32 input (quantize) or output (dequantize) per second, best of
--repeat runs. ggml is llama-cpp-python's libggml (ggml_quantize_chunk, one call over the whole
matrix, and dequantize_row_* per row); gguf-py is the gguf package's numpy code. The "same" column
says whether qtoolkit's bytes equal ggml's on this input. Single-threaded by default, as ggml's
ggml_quantize_chunk is.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import qtoolkit
from qtoolkit import QuantType as T
from qtoolkit import ggml_ref

TYPES = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.IQ4_NL, T.IQ4_XS,
         T.TQ1_0, T.TQ2_0, T.F16, T.BF16]


def best_time(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--imatrix", action="store_true", help="quantize with importance weights")
    ap.add_argument("--types", help="comma-separated subset")
    args = ap.parse_args(argv)

    import gguf

    g = ggml_ref.load()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.rows, args.cols)).astype(np.float32)
    w = (rng.uniform(0, 2, args.cols) ** 2).astype(np.float32) if args.imatrix else None
    mb = x.nbytes / 1e6
    types = [T[t.strip().upper()] for t in args.types.split(",")] if args.types else TYPES
    print(f"input {args.rows}x{args.cols} f32 ({mb:.1f} MB), threads={args.threads}, imatrix={'yes' if w is not None else 'no'}, "
          f"ggml={'llama-cpp-python' if g else 'not installed'}")
    head = f"{'type':7s} | {'quantize MB/s':>13s} {'ggml':>8s} {'x ggml':>7s} {'gguf-py':>8s} {'x gguf':>7s} {'same':>5s} |"
    head += f" {'dequant MB/s':>12s} {'ggml':>8s} {'x ggml':>7s} {'gguf-py':>8s} {'x gguf':>7s}"
    print(head)
    print("-" * len(head))
    for t in types:
        ours_q = qtoolkit.quantize(x, t, imatrix=w, threads=args.threads)
        tq = best_time(lambda: qtoolkit.quantize(x, t, imatrix=w, threads=args.threads), args.repeat)
        gt = gguf.GGMLQuantizationType(int(t))
        row = {"q": mb / tq}
        if g:
            ref = g.quantize_chunk(int(t), x, w)
            row["same"] = "yes" if np.array_equal(ref, ours_q) else "NO"
            row["q_ggml"] = mb / best_time(lambda: g.quantize_chunk(int(t), x, w), args.repeat)
        if w is None:
            try:
                gguf.quants.quantize(x[:8], gt)
                row["q_gguf"] = mb / best_time(lambda: gguf.quants.quantize(x, gt), 1)
            except NotImplementedError:
                pass
        td = best_time(lambda: qtoolkit.dequantize(ours_q, t, threads=args.threads), args.repeat)
        row["d"] = mb / td
        if g:
            def ggml_deq():
                for r in range(ours_q.shape[0]):
                    g.to_float(int(t), ours_q[r], args.cols)
            row["d_ggml"] = mb / best_time(ggml_deq, args.repeat)
        try:
            row["d_gguf"] = mb / best_time(lambda: gguf.quants.dequantize(ours_q, gt), 1)
        except NotImplementedError:
            pass

        def col(key, base, width=8):
            return f"{row[key]:{width}.1f}" if key in row else f"{'-':>{width}s}"

        def ratio(a, b):
            return f"{row[a] / row[b]:6.1f}x" if b in row else f"{'-':>7s}"

        print(f"{t.name:7s} | {row['q']:13.1f} {col('q_ggml', 'q')} {ratio('q', 'q_ggml')} {col('q_gguf', 'q')} "
              f"{ratio('q', 'q_gguf')} {row.get('same', '-'):>5s} | {row['d']:12.1f} {col('d_ggml', 'd')} "
              f"{ratio('d', 'd_ggml')} {col('d_gguf', 'd')} {ratio('d', 'd_gguf')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
