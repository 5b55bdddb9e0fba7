"""Quantize / dequantize speed per type, side by side in one run: qtoolkit vs ggml vs gguf-py.

    python tools/bench/bench_quant.py [--rows 256] [--cols 4096] [--repeat 3] [--threads 1] [--imatrix]
                                [--types q4_k,q2_k] [--variant ref|vec|avx2]

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

import os

import numpy as np

# measure this checkout's build, not whatever qtoolkit is installed elsewhere
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import qtoolkit  # noqa: E402
from qtoolkit import QuantType as T  # noqa: E402
from tests.support import ggml_ref  # noqa: E402

TYPES = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.IQ4_NL, T.IQ4_XS,
         T.TQ1_0, T.TQ2_0, T.F16, T.BF16]


def _variant() -> str:
    from qtoolkit import _clib

    return _clib.quantizer_variant()


def best_time(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def paired(g, x, w, types, n, mb) -> int:
    """Alternate qtoolkit and ggml n times per type on one thread; CPU time of this thread."""
    import statistics

    if not g:
        print("--paired needs ggml (llama-cpp-python)")
        return 1
    print(f"input {x.shape[0]}x{x.shape[1]} f32 ({mb:.1f} MB), paired x{n}, 1 thread, CPU time, "
          f"imatrix={'yes' if w is not None else 'no'}, quantizer={_variant()}")
    head = f"{'type':7s} | {'qtoolkit MB/s':>13s} {'ggml MB/s':>10s} {'median ratio':>12s} {'same':>5s}"
    print(head)
    print("-" * len(head))
    for t in types:
        if w is None and qtoolkit.type_info(t).requires_imatrix:   # (ggml would abort)
            print(f"{t.name:7s} | needs importance weights: run with --imatrix")
            continue
        ours, theirs = [], []
        same = np.array_equal(qtoolkit.quantize(x, t, imatrix=w, threads=1), g.quantize_chunk(int(t), x, w))
        for _ in range(n):
            t0 = time.thread_time()
            qtoolkit.quantize(x, t, imatrix=w, threads=1)
            ours.append(mb / max(time.thread_time() - t0, 1e-9))
            t0 = time.thread_time()
            g.quantize_chunk(int(t), x, w)
            theirs.append(mb / max(time.thread_time() - t0, 1e-9))
        ratio = statistics.median(a / b for a, b in zip(ours, theirs))
        print(f"{t.name:7s} | {statistics.median(ours):13.1f} {statistics.median(theirs):10.1f} {ratio:11.2f}x "
              f"{'yes' if same else 'NO':>5s}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--imatrix", action="store_true", help="quantize with importance weights")
    ap.add_argument("--types", help="comma-separated subset")
    ap.add_argument("--variant", help="force a quantizer variant: ref, vec or avx2 (default: the best available)")
    ap.add_argument("--paired", type=int, metavar="N",
                    help="1 thread, qtoolkit vs ggml only: alternate the two N times, timing CPU time of the "
                         "calling thread (robust on a shared machine), and report medians and the median ratio")
    args = ap.parse_args(argv)
    if args.variant:
        from qtoolkit import _clib

        _clib.set_quantizer_variant(args.variant)

    import gguf

    g = ggml_ref.load()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.rows, args.cols)).astype(np.float32)
    w = (rng.uniform(0, 2, args.cols) ** 2).astype(np.float32) if args.imatrix else None
    mb = x.nbytes / 1e6
    types = [T[t.strip().upper()] for t in args.types.split(",")] if args.types else TYPES
    if args.paired:
        return paired(g, x, w, types, args.paired, mb)
    print(f"input {args.rows}x{args.cols} f32 ({mb:.1f} MB), threads={args.threads}, imatrix={'yes' if w is not None else 'no'}, "
          f"ggml={'llama-cpp-python' if g else 'not installed'}, quantizer={_variant()}")
    head = f"{'type':7s} | {'quantize MB/s':>13s} {'ggml':>8s} {'x ggml':>7s} {'gguf-py':>8s} {'x gguf':>7s} {'same':>5s} |"
    head += f" {'dequant MB/s':>12s} {'ggml':>8s} {'x ggml':>7s} {'gguf-py':>8s} {'x gguf':>7s}"
    print(head)
    print("-" * len(head))
    for t in types:
        if w is None and qtoolkit.type_info(t).requires_imatrix:
            print(f"{t.name:7s} | needs importance weights: run with --imatrix")
            continue
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
