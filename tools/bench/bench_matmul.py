"""Benchmark of qtoolkit's dequant-matmul against the machine's memory read bandwidth and ggml's own
mul_mat / mul_mat_id, side by side in one run: the ggml of the installed llama-cpp-python wheel
(column "ggml"; built -march=native, so it uses AVX-512/VNNI where the CPU has them) and, with
--ggml-lib DIR, an own static build of the same ggml sources (column "ggml-avx2": the AVX2-only
build of docs/performance.md, the like-for-like baseline for qtoolkit's AVX2 kernels).

Dense: a 14336 x 4096 weight matrix (larger than any cache) times a 4096-wide activation (decode,
a gemv) for each type, at 1 and 2 threads. MoE: Qwen3-30B-A3B's layer widths (hidden 2048, 128
experts, top-8, expert width 768): tokens through mul_mat_id (qtoolkit.moe_matmul vs ggml) and
through the whole fused expert FFN (qtoolkit.moe_ffn). --prompt: the blocked gemm.

Timings are interleaved (qtoolkit, ggml, ggml-avx2, qtoolkit, ...) so all see the same machine
noise. At 1 thread every side computes in the calling thread and the CPU time of that thread is
used (it leaves out time the scheduler gave to other processes); at 2 threads, wall time. Ratios
are medians over the paired runs; the tables also show the medians and, in parentheses, the best
run. GB/s = bytes of quantized weights streamed per second.

    python tools/bench/bench_matmul.py --ggml-lib /work/ext/ggml-avx2/build-static      # markdown on stdout
    python tools/bench/bench_matmul.py --types Q4_K,Q8_0 --reps 15 --no-moe
    python tools/bench/bench_matmul.py --prompt 64,512 --types Q4_K,Q8_0 --threads 1
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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import qtoolkit as q  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
         "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M"]
ROWS, COLS = 14336, 4096


# ---------------------------------------------------------------- ggml harness

def _find_ggml_include():
    candidates = glob.glob("/work/ext/llama_cpp_python-*/vendor/llama.cpp/ggml/include") + [
        os.environ.get("GGML_INCLUDE", "")]
    return next((c for c in candidates if c and os.path.exists(os.path.join(c, "ggml-cpu.h"))), None)


def _load_harness(out):
    lib = ctypes.CDLL(out)
    lib.gb_new.restype = ctypes.c_void_p
    lib.gb_new.argtypes = [ctypes.c_int, ctypes.c_void_p] + [ctypes.c_int64] * 5 + [ctypes.c_int]
    lib.gb_set.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.gb_run.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_double)]
    lib.gb_out.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.gb_free.argtypes = [ctypes.c_void_p]
    return lib


def build_ggml():
    """Compile tools/bench/ggml_bench.c against llama-cpp-python's ggml (the "native" build of the wheel);
    None when unavailable."""
    try:
        import llama_cpp
    except ImportError:
        return None
    libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    inc = _find_ggml_include()
    if inc is None or not os.path.exists(os.path.join(libdir, "libggml-cpu.so.0")):
        return None
    out = os.path.join(tempfile.mkdtemp(prefix="qtk_bench_"), "ggml_bench.so")
    cmd = ["cc", "-O2", "-shared", "-fPIC", "-o", out, os.path.join(HERE, "ggml_bench.c"), f"-I{inc}",
           f"-L{libdir}", "-l:libggml-cpu.so.0", "-l:libggml-base.so.0", f"-Wl,-rpath,{libdir}"]
    subprocess.run(cmd, check=True)
    return _load_harness(out)


def build_ggml_static(root):
    """Compile tools/bench/ggml_bench.c against the static ggml libraries found under `root` (an own
    build of ggml, e.g. the AVX2-only one docs/performance.md describes). Linked statically with
    -Bsymbolic so it coexists in one process with the wheel's shared ggml."""
    def find(name):
        hits = sorted(glob.glob(os.path.join(root, "**", name), recursive=True))
        if not hits:
            raise SystemExit(f"--ggml-lib {root}: no {name} below it (build ggml with -DBUILD_SHARED_LIBS=OFF "
                             "-DCMAKE_POSITION_INDEPENDENT_CODE=ON, see docs/performance.md)")
        return hits[0]
    cpu, base = find("libggml-cpu.a"), find("libggml-base.a")
    inc = _find_ggml_include()
    if inc is None:
        raise SystemExit("ggml headers not found: set GGML_INCLUDE to ggml/include of the same sources")
    out = os.path.join(tempfile.mkdtemp(prefix="qtk_bench_"), "ggml_bench_static.so")
    cmd = ["cc", "-O2", "-shared", "-fPIC", "-o", out, os.path.join(HERE, "ggml_bench.c"), f"-I{inc}", cpu, base,
           "-fopenmp", "-lstdc++", "-lm", "-Wl,-Bsymbolic"]
    subprocess.run(cmd, check=True)
    return _load_harness(out)


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
    the search quantizers would dominate the run; the bytes streamed are the same). The types that
    need importance weights get a fixed one."""
    x = (rng.standard_normal((min(distinct, rows), cols)) * 0.02).astype(np.float32)
    imatrix = np.linspace(0.5, 2.0, cols, dtype=np.float32) if q.type_info(qtype).requires_imatrix else None
    base = q.quantize(x, qtype, imatrix=imatrix)
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


def measure(fn, flush=True):
    """(wall seconds, CPU seconds of the calling thread) of one call. With one thread both sides
    compute in the calling thread, so the CPU time leaves out the time the scheduler gave to other
    processes: the robust figure on a shared machine."""
    if flush:
        flush_caches()
    c0, t0 = time.thread_time(), time.perf_counter()
    fn()
    t1, c1 = time.perf_counter(), time.thread_time()
    return t1 - t0, c1 - c0


def nerr(a, b):
    a = np.asarray(a, np.float64)
    return float(((a - b) ** 2).sum() / max((a ** 2).sum(), 1e-300))


class Cell:
    """Interleaved timings of qtoolkit and each ggml build on one workload."""

    def __init__(self, labels):
        self.labels = labels
        self.wall = {k: [] for k in ["qtk"] + labels}
        self.cpu = {k: [] for k in ["qtk"] + labels}

    def add(self, key, wc):
        self.wall[key].append(wc[0])
        self.cpu[key].append(wc[1])

    def t(self, key, threads):
        """the time to report: CPU time at 1 thread, wall time otherwise"""
        return self.cpu[key] if threads == 1 else self.wall[key]

    def ratio(self, label, threads):
        """median over the paired runs of ggml time / qtoolkit time (above 1: qtoolkit faster)"""
        a, b = np.asarray(self.t(label, threads)), np.asarray(self.t("qtk", threads))
        return float(np.median(a / b))


def run_cell(reps, qfn, gs, flush):
    c = Cell([g[0] for g in gs])
    qfn()
    for _, g in gs:
        g.run_once()
    for _ in range(reps):
        c.add("qtk", measure(qfn, flush))
        for label, g in gs:
            c.add(label, measure(g.run_once, flush))
    return c


def ggml_for(ggmls, qtype, w, n, threads, x, **kw):
    out = []
    for label, lib in ggmls:
        g = GgmlMatmul(lib, int(q.QuantType[qtype]), w, n, threads, **kw)
        g.set(x, kw.get("ids_value"))
        out.append((label, g))
    return out


# ---------------------------------------------------------------- dense

def bench_in_cache(types, reps, ggmls, rows=1024):
    """Kernel speed: a rows x 4096 matrix that stays in L2/L3, one thread, best CPU time of `reps`.
    Includes each side's per-call overhead (qtoolkit's Python wrapper: ~7 us)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal(COLS).astype(np.float32)
    lines = [f"In-cache kernel speed: {rows} x {COLS} weights (L2/L3-resident), one token, one thread, best CPU "
             "time of the runs; ratio = ggml time / qtoolkit time (above 1: qtoolkit faster).", "",
             "| type | qtk us | qtk GB/s | " + " | ".join(f"{l} us | qtk/{l}" for l, _ in ggmls) + " |",
             "|---|---|---|" + "---|---|" * len(ggmls)]
    for t in types:
        w = make_weights(t, rows, COLS, rng)
        gs = []
        for label, lib in ggmls:
            g = GgmlMatmul(lib, int(q.QuantType[t]), w, COLS, 1)
            g.set(x[None, :])
            gs.append((label, g))
        c = run_cell(reps, lambda: q.matmul(w, t, x, threads=1), gs, flush=False)
        tq = min(c.cpu["qtk"])
        cell = f"| {t} | {tq * 1e6:.1f} | {w.nbytes / tq / 1e9:.1f} | "
        cell += " | ".join(f"{min(c.cpu[l]) * 1e6:.1f} | {min(c.cpu[l]) / tq:.2f}" for l, _ in gs)
        lines.append(cell + " |")
        print("  in-cache " + cell, file=sys.stderr)
        for _, g in gs:
            g.close()
    return "\n".join(lines)


def bench_prompt(types, tokens_list, reps, ggmls, threads=1, rows=4096):
    """Prompt processing: rows x 4096 weights times `tokens` activations (the blocked gemm)."""
    rng = np.random.default_rng(3)
    what = "CPU time" if threads == 1 else "wall time"
    lines = [f"Prompt: {rows} x {COLS} weights x T tokens, {threads} thread(s), {what}, median (best) ms; ratio = "
             "median over paired runs of ggml time / qtoolkit time (above 1: qtoolkit faster).", "",
             "| type | tokens | qtk ms | GFLOP/s | " + " | ".join(f"{l} ms | qtk/{l}" for l, _ in ggmls) + " |",
             "|---|---|---|---|" + "---|---|" * len(ggmls)]
    for t in types:
        w = make_weights(t, rows, COLS, rng)
        for tokens in tokens_list:
            x = rng.standard_normal((tokens, COLS)).astype(np.float32)
            gs = []
            for label, lib in ggmls:
                g = GgmlMatmul(lib, int(q.QuantType[t]), w, COLS, threads, tokens=tokens)
                g.set(x)
                gs.append((label, g))
            c = run_cell(reps, lambda: q.matmul(w, t, x, threads=threads), gs, flush=False)
            tq = c.t("qtk", threads)
            flops = 2.0 * rows * COLS * tokens
            cell = f"| {t} | {tokens} | {median(tq) * 1e3:.1f} ({min(tq) * 1e3:.1f}) | {flops / median(tq) / 1e9:.0f} | "
            cell += " | ".join(f"{median(c.t(l, threads)) * 1e3:.1f} ({min(c.t(l, threads)) * 1e3:.1f}) | "
                               f"{c.ratio(l, threads):.2f}" for l, _ in gs)
            lines.append(cell + " |")
            print("  prompt " + cell, file=sys.stderr)
            for _, g in gs:
                g.close()
    return "\n".join(lines)


def bench_dense(types, threads_list, reps, ggmls, numpy_col):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(COLS).astype(np.float32)
    rows_out = []
    for t in types:
        w = make_weights(t, ROWS, COLS, rng)
        row = {"type": t, "MB": w.nbytes / 1e6, "cells": {}, "err": {}}
        wd = None
        for th in threads_list:
            gs = []
            for label, lib in ggmls:
                g = GgmlMatmul(lib, int(q.QuantType[t]), w, COLS, th)
                g.set(x[None, :])
                gs.append((label, g))
            c = run_cell(reps, lambda: q.matmul(w, t, x, threads=th), gs, flush=True)
            row["cells"][th] = c
            for label, g in gs:
                row["err"][label] = nerr(g.out()[0], q.matmul(w, t, x))
                g.close()
            if numpy_col:
                if wd is None:
                    wd = q.dequantize(w, t)
                set_blas_threads(th)
                tn = [measure(lambda: wd @ x)[0] for _ in range(max(3, reps // 3))]
                row[f"numpy_ms{th}"] = median(tn) * 1e3
        del wd
        rows_out.append(row)
        msg = []
        for th, c in row["cells"].items():
            msg.append(f"{th}T qtk {row['MB'] / 1e3 / median(c.t('qtk', th)):.1f} GB/s " +
                       " ".join(f"{l} x{c.ratio(l, th):.2f}" for l in c.labels))
        print(f"  {t}: " + "; ".join(msg), file=sys.stderr)
    return rows_out


# ---------------------------------------------------------------- MoE

def bench_moe(threads_list, reps, ggmls, tokens_list=(1, 32), qtype="Q4_K", down_type="Q6_K"):
    hidden, n_experts, k, ff = 2048, 128, 8, 768
    rng = np.random.default_rng(1)
    gate = make_weights(qtype, n_experts * ff, hidden, rng, distinct=4096).reshape(n_experts, ff, -1)
    up = make_weights(qtype, n_experts * ff, hidden, rng, distinct=4096).reshape(n_experts, ff, -1)
    down = make_weights(down_type, n_experts * hidden, ff, rng, distinct=4096).reshape(n_experts, hidden, -1)
    results = []
    for tokens in tokens_list:
        x = rng.standard_normal((tokens, hidden)).astype(np.float32)
        ids = np.stack([rng.choice(n_experts, k, replace=False) for _ in range(tokens)]).astype(np.int32)
        wts = rng.random((tokens, k)).astype(np.float32)
        used = np.unique(ids)
        gate_bytes = gate[used].nbytes
        layer_bytes = gate_bytes + up[used].nbytes + down[used].nbytes
        r = max(3, reps // 3) if tokens > 64 else reps
        for th in threads_list:
            gs = []
            for label, lib in ggmls:
                g = GgmlMatmul(lib, int(q.QuantType[qtype]), gate, hidden, th, n_experts=n_experts, tokens=tokens, k=k)
                g.set(x[:, None, :], ids)
                gs.append((label, g))
            c = run_cell(r, lambda: q.moe_matmul(gate, qtype, x, ids, threads=th), gs, flush=True)
            ffn = [measure(lambda: q.moe_ffn(gate, up, down, (qtype, qtype, down_type), x, ids, wts, threads=th))
                   for _ in range(r)]
            ffn_t = [f[1] if th == 1 else f[0] for f in ffn]
            row = {"tokens": tokens, "threads": th, "experts": len(used), "cell": c, "gate_bytes": gate_bytes,
                   "ffn_ms": median(ffn_t) * 1e3, "ffn_best_ms": min(ffn_t) * 1e3,
                   "ffn_GBs": layer_bytes / median(ffn_t) / 1e9, "err": {}}
            for label, g in gs:
                row["err"][label] = nerr(g.out(), q.moe_matmul(gate, qtype, x, ids))
                g.close()
            results.append(row)
            print(f"  moe {tokens} tokens {th}T: qtk {median(c.t('qtk', th)) * 1e3:.2f} ms " +
                  " ".join(f"{l} x{c.ratio(l, th):.2f}" for l in c.labels) + f", ffn {row['ffn_ms']:.2f} ms",
                  file=sys.stderr)
    return results


# ---------------------------------------------------------------- report

def report(dense, moe, bw, threads_list, labels, reps, loads, numpy_col):
    out = []
    out.append(f"qtoolkit {q.__version__}, kernels: {q.active_isa()}; {os.cpu_count()} cores; {reps} interleaved runs "
               f"per cell; load average {loads[0]:.1f} at the start, {loads[1]:.1f} at the end")
    out.append("")
    out.append("Memory read bandwidth (qtoolkit.memory_read_bandwidth, 512 MiB, median / best of 7): "
               + ", ".join(f"{th} thread{'s' if th > 1 else ''}: {median(bw[th]):.1f} / {max(bw[th]):.1f} GB/s"
                           for th in threads_list))
    out.append("")
    out.append("GB/s of quantized weights streamed, median (best), from CPU time at 1 thread and wall time at 2; "
               "qtk/X = median over the paired runs of X's time / qtoolkit's time (above 1: qtoolkit faster); "
               "% BW = median qtoolkit GB/s over the median read bandwidth at that thread count.")
    out.append("")
    hdr = ["type", "MB"]
    for th in threads_list:
        hdr += [f"qtk {th}T GB/s"]
        for l in labels:
            hdr += [f"{l} {th}T GB/s", f"qtk/{l} {th}T"]
        hdr += [f"% BW {th}T"]
        if numpy_col:
            hdr += [f"numpy f32 {th}T ms"]
    out.append("| " + " | ".join(hdr) + " |")
    out.append("|" + "---|" * len(hdr))
    for r in dense:
        cells = [r["type"], f"{r['MB']:.0f}"]
        for th in threads_list:
            c = r["cells"][th]
            tq = c.t("qtk", th)
            cells += [f"{r['MB'] / 1e3 / median(tq):.1f} ({r['MB'] / 1e3 / min(tq):.1f})"]
            for l in labels:
                tg = c.t(l, th)
                cells += [f"{r['MB'] / 1e3 / median(tg):.1f} ({r['MB'] / 1e3 / min(tg):.1f})", f"{c.ratio(l, th):.2f}"]
            cells += [f"{100 * r['MB'] / 1e3 / median(tq) / median(bw[th]):.0f}%"]
            if numpy_col:
                cells += [f"{r[f'numpy_ms{th}']:.1f}"]
        out.append("| " + " | ".join(cells) + " |")
    if moe:
        out.append("")
        out.append("MoE, Qwen3-30B-A3B widths (hidden 2048, 128 experts, top-8, expert width 768); gate/up Q4_K, "
                   "down Q6_K. mul_mat_id = the gate projection alone (qtoolkit.moe_matmul vs ggml_mul_mat_id); "
                   "moe_ffn = the whole expert FFN of the layer (gate, up, SiLU, down, weighted sum) in one call. "
                   "Times median (best), CPU time at 1 thread, wall at 2; GB/s over the routed experts' bytes.")
        out.append("")
        hdr = ["tokens", "threads", "experts", "mul_mat_id ms", "GB/s"]
        for l in labels:
            hdr += [f"{l} ms", f"qtk/{l}"]
        hdr += ["moe_ffn ms", "moe_ffn GB/s"]
        out.append("| " + " | ".join(hdr) + " |")
        out.append("|" + "---|" * len(hdr))
        for r in moe:
            c, th = r["cell"], r["threads"]
            tq = c.t("qtk", th)
            cells = [str(r["tokens"]), str(th), str(r["experts"]), f"{median(tq) * 1e3:.2f} ({min(tq) * 1e3:.2f})",
                     f"{r['gate_bytes'] / median(tq) / 1e9:.1f}"]
            for l in labels:
                tg = c.t(l, th)
                cells += [f"{median(tg) * 1e3:.2f} ({min(tg) * 1e3:.2f})", f"{c.ratio(l, th):.2f}"]
            cells += [f"{r['ffn_ms']:.2f} ({r['ffn_best_ms']:.2f})", f"{r['ffn_GBs']:.1f}"]
            out.append("| " + " | ".join(cells) + " |")
    if labels and dense:
        worst = max(max(r["err"].values()) for r in dense)
        out.append("")
        out.append(f"Largest normalised difference qtoolkit vs ggml over the dense types: {worst:.2g}")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", default=",".join(TYPES))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--no-moe", action="store_true")
    ap.add_argument("--moe-tokens", default="1,32", help="token counts of the MoE rows (e.g. 1,32,512)")
    ap.add_argument("--no-ggml", action="store_true", help="leave out the wheel's (native) ggml")
    ap.add_argument("--ggml-lib", metavar="DIR",
                    help="also compare against the static ggml libraries below DIR (e.g. the AVX2-only build of "
                         "docs/performance.md), in columns labelled --ggml-label")
    ap.add_argument("--ggml-label", default="ggml-avx2")
    ap.add_argument("--numpy", action="store_true", help="add numpy's float32 matmul on the dequantized matrix")
    ap.add_argument("--isa", help="force an instruction set (qtoolkit.set_isa)")
    ap.add_argument("--prompt", metavar="TOKENS",
                    help="only the prompt (gemm) comparison: 4096 x 4096 weights x TOKENS tokens (a list: 64,512)")
    ap.add_argument("--in-cache", action="store_true",
                    help="only the in-cache kernel comparison (1024 x 4096, 1 thread, best of --reps)")
    args = ap.parse_args(argv)
    if args.isa:
        q.set_isa(args.isa)
    threads_list = [int(t) for t in args.threads.split(",")]
    ggmls = []
    if not args.no_ggml:
        native = build_ggml()
        if native is not None:
            ggmls.append(("ggml", native))
    if args.ggml_lib:
        ggmls.append((args.ggml_label, build_ggml_static(args.ggml_lib)))
    labels = [l for l, _ in ggmls]
    types = [t.strip().upper() for t in args.types.split(",") if t.strip()]
    if args.prompt:
        tokens = [int(t) for t in args.prompt.split(",")]
        for th in threads_list:
            print(bench_prompt(types, tokens, min(args.reps, 7), ggmls, threads=th))
            print()
        return 0
    if args.in_cache:
        print(bench_in_cache(types, max(args.reps, 50), ggmls))
        return 0
    loads = [os.getloadavg()[0]]
    bw = {th: [] for th in threads_list}
    for _ in range(7):
        for th in threads_list:
            bw[th].append(q.memory_read_bandwidth(1 << 29, reps=1, threads=th))
    print(f"bandwidth: {bw}", file=sys.stderr)
    dense = bench_dense(types, threads_list, args.reps, ggmls, args.numpy)
    moe_tokens = [int(t) for t in args.moe_tokens.split(",")]
    moe = [] if args.no_moe else bench_moe(threads_list, args.reps, ggmls, moe_tokens)
    loads.append(os.getloadavg()[0])
    print(report(dense, moe, bw, threads_list, labels, args.reps, loads, args.numpy))
    return 0


if __name__ == "__main__":
    sys.exit(main())
