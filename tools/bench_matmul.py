"""Benchmark of qtoolkit's dequant-matmul against the machine's memory read bandwidth, numpy's
float32 matmul on the dequantized matrix, and ggml's own mul_mat (when llama-cpp-python is
installed), side by side in one run.

Dense: a 14336 x 4096 weight matrix (larger than any cache) times a 4096-wide activation (decode,
a gemv) for each type, at 1 and 2 threads. MoE: Qwen3-30B-A3B's layer widths (hidden 2048, 128
experts, top-8, expert width 768): one token through mul_mat_id (qtoolkit.moe_matmul vs ggml) and
through the whole fused expert FFN (qtoolkit.moe_ffn).

Timings are interleaved (qtoolkit, ggml, qtoolkit, ...) so both see the same machine noise; the
table shows medians and, in parentheses, the best run (the machine this was written on is shared,
so the best run is the closer estimate of an idle machine). GB/s = bytes of quantized weights
streamed per second.

    python tools/bench_matmul.py                 # everything, markdown table on stdout
    python tools/bench_matmul.py --types Q4_K,Q8_0 --reps 15 --no-moe
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import qtoolkit as q  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TYPES = ["F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
         "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0"]
ROWS, COLS = 14336, 4096


# ---------------------------------------------------------------- ggml harness

def build_ggml():
    """Compile tools/ggml_bench.c against llama-cpp-python's ggml; None when unavailable."""
    try:
        import llama_cpp
    except ImportError:
        return None
    libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    candidates = glob.glob("/work/ext/llama_cpp_python-*/vendor/llama.cpp/ggml/include") + [
        os.environ.get("GGML_INCLUDE", "")]
    inc = next((c for c in candidates if c and os.path.exists(os.path.join(c, "ggml-cpu.h"))), None)
    if inc is None or not os.path.exists(os.path.join(libdir, "libggml-cpu.so.0")):
        return None
    out = os.path.join(tempfile.mkdtemp(prefix="qtk_bench_"), "ggml_bench.so")
    cmd = ["cc", "-O2", "-shared", "-fPIC", "-o", out, os.path.join(HERE, "ggml_bench.c"), f"-I{inc}",
           f"-L{libdir}", "-l:libggml-cpu.so.0", "-l:libggml-base.so.0", f"-Wl,-rpath,{libdir}"]
    subprocess.run(cmd, check=True)
    lib = ctypes.CDLL(out)
    lib.gb_new.restype = ctypes.c_void_p
    lib.gb_new.argtypes = [ctypes.c_int, ctypes.c_void_p] + [ctypes.c_int64] * 5 + [ctypes.c_int]
    lib.gb_set.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.gb_run.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_double)]
    lib.gb_out.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.gb_free.argtypes = [ctypes.c_void_p]
    return lib


class GgmlMatmul:
    def __init__(self, lib, type_id, w, n, threads, n_experts=0, tokens=1, k=0):
        self.lib = lib
        rows = w.shape[-2]
        self.h = lib.gb_new(type_id, w.ctypes.data, n_experts, rows, n, tokens, k, threads)
        if not self.h:
            raise RuntimeError("ggml context allocation failed")
        self.shape = (tokens, k, rows) if n_experts else (tokens, rows)

    def set(self, x, ids=None):
        self._x = np.ascontiguousarray(x, dtype=np.float32)
        self._ids = None if ids is None else np.ascontiguousarray(ids, dtype=np.int32)
        self.lib.gb_set(self.h, self._x.ctypes.data, None if self._ids is None else self._ids.ctypes.data)

    def run_once(self) -> float:
        t = (ctypes.c_double * 1)()
        if self.lib.gb_run(self.h, 1, t):
            raise RuntimeError("ggml graph failed")
        return t[0]

    def out(self):
        o = np.empty(self.shape, np.float32)
        self.lib.gb_out(self.h, o.ctypes.data)
        return o

    def close(self):
        self.lib.gb_free(self.h)


# ---------------------------------------------------------------- numpy threads

def set_blas_threads(n):
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), "..", "numpy.libs", "libscipy_openblas*.so"))
    for path in libs:
        lib = ctypes.CDLL(path)
        for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn(ctypes.c_int(n))
                return True
    return False


# ---------------------------------------------------------------- helpers

def make_weights(qtype, rows, cols, rng, distinct=1024):
    """rows x cols quantized weights: `distinct` quantized rows tiled (quantizing 58M floats with
    the search quantizers would dominate the run; the bytes streamed are the same)."""
    base = q.quantize((rng.standard_normal((min(distinct, rows), cols)) * 0.02).astype(np.float32), qtype)
    reps = -(-rows // base.shape[0])
    return np.ascontiguousarray(np.tile(base, (reps, 1))[:rows])


def median(v):
    return float(np.median(np.asarray(v)))


_FLUSH = None


def flush_caches():
    """Read 256 MiB so the next run streams its weights from memory, not from the last-level cache.
    The machine this was written on reports a 32 MiB L3 but reads 64 MiB buffers at twice the speed
    of 128 MiB ones (a larger cache behind the virtual CPU), so the flush is sized well above both."""
    global _FLUSH
    if _FLUSH is None:
        _FLUSH = np.ones(256 << 18, dtype=np.float32)
    return float(_FLUSH.sum())


def timed(fn, flush=True):
    if flush:
        flush_caches()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def timed_ggml(g, flush=True):
    if flush:
        flush_caches()
    return g.run_once()


def nerr(a, b):
    a = np.asarray(a, np.float64)
    return float(((a - b) ** 2).sum() / max((a ** 2).sum(), 1e-300))


# ---------------------------------------------------------------- dense

def bench_in_cache(types, reps, ggml, rows=1024):
    """Kernel speed: a rows x 4096 matrix that stays in L2/L3, one thread, best of `reps` (the
    best run is robust to other processes on a shared machine). Includes each side's per-call
    overhead (qtoolkit's Python wrapper: ~7 us)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal(COLS).astype(np.float32)
    out = []
    for t in types:
        w = make_weights(t, rows, COLS, rng)
        g = GgmlMatmul(ggml, int(q.QuantType[t]), w, COLS, 1) if ggml is not None else None
        if g is not None:
            g.set(x[None, :])
        tq, tg = [], []
        for _ in range(reps):
            tq.append(timed(lambda: q.matmul(w, t, x, threads=1), flush=False))
            if g is not None:
                tg.append(g.run_once())
        row = {"type": t, "qtk_us": min(tq) * 1e6, "qtk_GBs": w.nbytes / min(tq) / 1e9}
        if g is not None:
            row["ggml_us"] = min(tg) * 1e6
            g.close()
        out.append(row)
        print(f"  in-cache {t}: " + ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "type"), file=sys.stderr)
    return out


def bench_prompt(types, tokens, reps, ggml, threads=1, rows=4096):
    """Prompt processing: rows x 4096 weights times `tokens` activations (the blocked gemm)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((tokens, COLS)).astype(np.float32)
    lines = [f"Prompt: {rows} x {COLS} weights x {tokens} tokens, {threads} thread(s), median (best) ms.", "",
             "| type | qtk ms | GFLOP/s | ggml ms | qtk/ggml |", "|---|---|---|---|---|"]
    for t in types:
        w = make_weights(t, rows, COLS, rng)
        g = GgmlMatmul(ggml, int(q.QuantType[t]), w, COLS, threads, tokens=tokens) if ggml is not None else None
        if g is not None:
            g.set(x)
        tq, tg = [], []
        for _ in range(reps):
            tq.append(timed(lambda: q.matmul(w, t, x, threads=threads), flush=False))
            if g is not None:
                tg.append(g.run_once())
        flops = 2.0 * rows * COLS * tokens
        cell = f"| {t} | {median(tq) * 1e3:.1f} ({min(tq) * 1e3:.1f}) | {flops / median(tq) / 1e9:.0f} | "
        if g is not None:
            cell += f"{median(tg) * 1e3:.1f} ({min(tg) * 1e3:.1f}) | {median(tg) / median(tq):.2f} |"
            g.close()
        else:
            cell += "- | - |"
        lines.append(cell)
        print("  prompt " + cell, file=sys.stderr)
    return "\n".join(lines)


def report_in_cache(rows_out, rows=1024):
    lines = [f"In-cache kernel speed: {rows} x {COLS} weights (L2/L3-resident), one token, one thread, best of "
             "the runs; qtk/ggml = ggml time / qtoolkit time (above 1: qtoolkit faster).", "",
             "| type | qtk us | qtk GB/s | ggml us | qtk/ggml |", "|---|---|---|---|---|"]
    for r in rows_out:
        g = r.get("ggml_us")
        lines.append(f"| {r['type']} | {r['qtk_us']:.1f} | {r['qtk_GBs']:.1f} | "
                     + (f"{g:.1f} | {g / r['qtk_us']:.2f} |" if g else "- | - |"))
    return "\n".join(lines)


def bench_dense(types, threads_list, reps, ggml, bw):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(COLS).astype(np.float32)
    rows_out = []
    for t in types:
        w = make_weights(t, ROWS, COLS, rng)
        tid = int(q.QuantType[t])
        flops = 2.0 * ROWS * COLS
        row = {"type": t, "MB": w.nbytes / 1e6}
        wd = None
        for th in threads_list:
            g = None
            if ggml is not None:
                g = GgmlMatmul(ggml, tid, w, COLS, th)
                g.set(x[None, :])
                g.run_once()
            q.matmul(w, t, x, threads=th)
            tq, tg = [], []
            for _ in range(reps):
                tq.append(timed(lambda: q.matmul(w, t, x, threads=th)))
                if g is not None:
                    tg.append(timed_ggml(g))
            row[f"qtk{th}"] = w.nbytes / median(tq) / 1e9
            row[f"qtkbest{th}"] = w.nbytes / min(tq) / 1e9
            row[f"gflops{th}"] = flops / median(tq) / 1e9
            if g is not None:
                row[f"ggml{th}"] = w.nbytes / median(tg) / 1e9
                row[f"ggmlbest{th}"] = w.nbytes / min(tg) / 1e9
                row["err_vs_ggml"] = nerr(g.out()[0], q.matmul(w, t, x))
                g.close()
            if wd is None:
                wd = q.dequantize(w, t)
            set_blas_threads(th)
            tn = [timed(lambda: wd @ x) for _ in range(max(3, reps // 3))]
            row[f"numpy{th}"] = wd.nbytes / median(tn) / 1e9   # float32 bytes it streams
            row[f"numpy_ms{th}"] = median(tn) * 1e3
            row[f"qtk_ms{th}"] = median(tq) * 1e3
        del wd
        rows_out.append(row)
        print(f"  {t}: " + ", ".join(f"{k}={v:.3g}" for k, v in row.items() if k != "type"), file=sys.stderr)
    return rows_out


# ---------------------------------------------------------------- MoE

def bench_moe(threads_list, reps, ggml, qtype="Q4_K", down_type="Q6_K"):
    hidden, n_experts, k, ff = 2048, 128, 8, 768
    rng = np.random.default_rng(1)
    gate = make_weights(qtype, n_experts * ff, hidden, rng, distinct=4096).reshape(n_experts, ff, -1)
    up = make_weights(qtype, n_experts * ff, hidden, rng, distinct=4096).reshape(n_experts, ff, -1)
    down = make_weights(down_type, n_experts * hidden, ff, rng, distinct=4096).reshape(n_experts, hidden, -1)
    results = []
    for tokens in (1, 32):
        x = rng.standard_normal((tokens, hidden)).astype(np.float32)
        ids = np.stack([rng.choice(n_experts, k, replace=False) for _ in range(tokens)]).astype(np.int32)
        wts = rng.random((tokens, k)).astype(np.float32)
        used = np.unique(ids)
        gate_bytes = gate[used].nbytes
        layer_bytes = gate_bytes + up[used].nbytes + down[used].nbytes
        for th in threads_list:
            row = {"tokens": tokens, "threads": th, "experts_touched": len(used)}
            g = None
            if ggml is not None:
                g = GgmlMatmul(ggml, int(q.QuantType[qtype]), gate, hidden, th, n_experts=n_experts, tokens=tokens, k=k)
                g.set(x[:, None, :], ids)
                g.run_once()
            tq, tg, tf = [], [], []
            q.moe_matmul(gate, qtype, x, ids, threads=th)
            for _ in range(reps):
                tq.append(timed(lambda: q.moe_matmul(gate, qtype, x, ids, threads=th)))
                if g is not None:
                    tg.append(timed_ggml(g))
                tf.append(timed(lambda: q.moe_ffn(gate, up, down, (qtype, qtype, down_type), x, ids, wts, threads=th)))
            row["mul_mat_id_ms"] = median(tq) * 1e3
            row["mul_mat_id_best_ms"] = min(tq) * 1e3
            row["mul_mat_id_GBs"] = gate_bytes / median(tq) / 1e9
            if g is not None:
                row["ggml_mul_mat_id_ms"] = median(tg) * 1e3
                row["ggml_mul_mat_id_best_ms"] = min(tg) * 1e3
                row["ggml_mul_mat_id_GBs"] = gate_bytes / median(tg) / 1e9
                row["err_vs_ggml"] = nerr(g.out(), q.moe_matmul(gate, qtype, x, ids))
                g.close()
            row["ffn_ms"] = median(tf) * 1e3
            row["ffn_best_ms"] = min(tf) * 1e3
            row["ffn_GBs"] = layer_bytes / median(tf) / 1e9
            results.append(row)
            print("  moe: " + ", ".join(f"{k}={v:.4g}" for k, v in row.items()), file=sys.stderr)
    return results


# ---------------------------------------------------------------- report

def report(dense, moe, bw, threads_list, ggml_ok, reps, loads):
    out = []
    out.append(f"qtoolkit {q.__version__}, kernels: {q.active_isa()}; {os.cpu_count()} cores; {reps} interleaved runs "
               f"per cell; load average {loads[0]:.1f} at the start, {loads[1]:.1f} at the end")
    out.append("")
    out.append("Memory read bandwidth (qtoolkit.memory_read_bandwidth, 512 MiB, median / best of 7): "
               + ", ".join(f"{th} thread{'s' if th > 1 else ''}: {median(bw[th]):.1f} / {max(bw[th]):.1f} GB/s"
                           for th in threads_list))
    out.append("")
    out.append("GB/s of quantized weights streamed, median (best); ratio = qtoolkit / ggml speed, median (best); "
               "% BW = median qtoolkit GB/s over the median read bandwidth at that thread count.")
    out.append("")
    hdr = ["type", "MB"]
    for th in threads_list:
        hdr += [f"qtk {th}T GB/s", f"GFLOP/s {th}T"]
        if ggml_ok:
            hdr += [f"ggml {th}T GB/s", f"qtk/ggml {th}T"]
        hdr += [f"% BW {th}T", f"numpy f32 {th}T ms"]
    out.append("| " + " | ".join(hdr) + " |")
    out.append("|" + "---|" * len(hdr))
    for r in dense:
        cells = [r["type"], f"{r['MB']:.0f}"]
        for th in threads_list:
            cells += [f"{r[f'qtk{th}']:.1f} ({r[f'qtkbest{th}']:.1f})", f"{r[f'gflops{th}']:.0f}"]
            if ggml_ok:
                cells += [f"{r[f'ggml{th}']:.1f} ({r[f'ggmlbest{th}']:.1f})",
                          f"{r[f'qtk{th}'] / r[f'ggml{th}']:.2f} ({r[f'qtkbest{th}'] / r[f'ggmlbest{th}']:.2f})"]
            cells += [f"{100 * r[f'qtk{th}'] / median(bw[th]):.0f}%", f"{r[f'numpy_ms{th}']:.1f}"]
        out.append("| " + " | ".join(cells) + " |")
    if moe:
        out.append("")
        out.append("MoE, Qwen3-30B-A3B widths (hidden 2048, 128 experts, top-8, expert width 768); gate/up Q4_K, "
                   "down Q6_K. mul_mat_id = the gate projection alone (qtoolkit.moe_matmul vs ggml_mul_mat_id); "
                   "moe_ffn = the whole expert FFN of the layer (gate, up, SiLU, down, weighted sum) in one call. "
                   "Times median (best); GB/s over the routed experts' bytes at the median.")
        out.append("")
        hdr = ["tokens", "threads", "experts", "mul_mat_id ms", "GB/s"]
        if ggml_ok:
            hdr += ["ggml mul_mat_id ms", "ggml GB/s", "qtk/ggml"]
        hdr += ["moe_ffn ms", "moe_ffn GB/s"]
        out.append("| " + " | ".join(hdr) + " |")
        out.append("|" + "---|" * len(hdr))
        for r in moe:
            cells = [str(r["tokens"]), str(r["threads"]), str(r["experts_touched"]),
                     f"{r['mul_mat_id_ms']:.2f} ({r['mul_mat_id_best_ms']:.2f})", f"{r['mul_mat_id_GBs']:.1f}"]
            if ggml_ok:
                cells += [f"{r['ggml_mul_mat_id_ms']:.2f} ({r['ggml_mul_mat_id_best_ms']:.2f})",
                          f"{r['ggml_mul_mat_id_GBs']:.1f}",
                          f"{r['ggml_mul_mat_id_ms'] / r['mul_mat_id_ms']:.2f} "
                          f"({r['ggml_mul_mat_id_best_ms'] / r['mul_mat_id_best_ms']:.2f})"]
            cells += [f"{r['ffn_ms']:.2f} ({r['ffn_best_ms']:.2f})", f"{r['ffn_GBs']:.1f}"]
            out.append("| " + " | ".join(cells) + " |")
    if ggml_ok and dense:
        worst = max(r.get("err_vs_ggml", 0.0) for r in dense)
        out.append("")
        out.append(f"Largest normalised difference qtoolkit vs ggml over the dense types: {worst:.2g}")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", default=",".join(TYPES))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--no-moe", action="store_true")
    ap.add_argument("--no-ggml", action="store_true")
    ap.add_argument("--isa", help="force an instruction set (qtoolkit.set_isa)")
    ap.add_argument("--prompt", type=int, metavar="TOKENS",
                    help="only the prompt (gemm) comparison: 4096 x 4096 weights x TOKENS tokens, 1 thread")
    ap.add_argument("--in-cache", action="store_true",
                    help="only the in-cache kernel comparison (1024 x 4096, 1 thread, best of --reps)")
    args = ap.parse_args(argv)
    if args.isa:
        q.set_isa(args.isa)
    threads_list = [int(t) for t in args.threads.split(",")]
    ggml = None if args.no_ggml else build_ggml()
    types = [t.strip().upper() for t in args.types.split(",") if t.strip()]
    if args.prompt:
        print(bench_prompt(types, args.prompt, min(args.reps, 7), ggml))
        return 0
    if args.in_cache:
        print(report_in_cache(bench_in_cache(types, max(args.reps, 50), ggml)))
        return 0
    loads = [os.getloadavg()[0]]
    bw = {th: [] for th in threads_list}
    for _ in range(7):
        for th in threads_list:
            bw[th].append(q.memory_read_bandwidth(1 << 29, reps=1, threads=th))
    print(f"bandwidth: {bw}", file=sys.stderr)
    dense = bench_dense(types, threads_list, args.reps, ggml, bw)
    moe = [] if args.no_moe else bench_moe(threads_list, args.reps, ggml)
    loads.append(os.getloadavg()[0])
    print(report(dense, moe, bw, threads_list, ggml is not None, args.reps, loads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
