"""Benchmark: one-pass ``qtoolkit convert`` against llama.cpp's two-step route, on a synthetic
Qwen3-MoE checkpoint of a few GB (bf16).

* qtoolkit: ``python -m qtoolkit convert DIR -o OUT --type Q4_K_M``
* llama.cpp: ``convert_hf_to_gguf.py --outtype f16`` (from the llama-cpp-python source tree, run as a
  separate process; its tokenizer check is told the pre-tokenizer name, since it only knows hashes
  of published vocabularies), then ``llama_model_quantize(F16 -> Q4_K_M)`` (llama-cpp-python).

Each step runs in its own process; wall time and peak RSS (``wait4``) are reported. The page cache
is warmed by reading the checkpoint once before each route. Results are noisy on a shared machine.

    python tools/bench/bench_convert.py [--work DIR] [--size small|medium] [--threads 2] [--llama-cpp-src PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

SIZES = {
    # ~1.0 B weights, 2.0 GB bf16
    "medium": dict(hidden=2048, layers=8, heads=16, kv_heads=4, head_dim=128, experts=32, top_k=4, moe_ff=768,
                   vocab=65536, tied=False),
    # ~0.25 B weights, 0.5 GB bf16
    "small": dict(hidden=1024, layers=4, heads=8, kv_heads=4, head_dim=128, experts=32, top_k=4, moe_ff=512,
                  vocab=32768, tied=False),
}

LLAMA_CONVERT_WRAPPER = """
import sys
sys.argv = [sys.argv[1]] + sys.argv[2:]
sys.path.insert(0, __import__('os').path.dirname(sys.argv[0]))
import runpy
import conversion.base as base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "qwen2"   # hash table only knows published vocabularies
runpy.run_path(sys.argv[0], run_name="__main__")
"""

LLAMA_QUANTIZE = """
import ctypes, sys, llama_cpp
p = llama_cpp.llama_model_quantize_default_params()
p.ftype = 15  # Q4_K_M
p.nthread = int(sys.argv[3])
rc = llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p))
sys.exit(rc)
"""


CPU = {}  # command name -> least CPU seconds seen (user + system): robust to other jobs on the machine


def best(n, cmd, env=None):
    """The fastest of n runs (and the largest peak RSS seen)."""
    runs = [run(cmd, env) for _ in range(max(1, n))]
    return min(r[0] for r in runs), max(r[1] for r in runs)


def run(cmd, env=None):
    """(seconds, peak RSS MiB) of a child process; its CPU time goes to CPU["last"]."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(proc.pid, 0)
    dt = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace")
    CPU["last"] = min(CPU.get("last", 1e30), ru.ru_utime + ru.ru_stime)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}):\n{err[-3000:]}")
    return dt, ru.ru_maxrss / 1024.0


def warm(path):
    for root, _, files in os.walk(path):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                while fh.read(1 << 24):
                    pass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed afterwards)")
    ap.add_argument("--size", default="medium", choices=sorted(SIZES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--llama-cpp-src", default=os.environ.get("LLAMA_CPP_SRC", "/work/ext/llama_cpp_python-0.3.36/vendor/llama.cpp"))
    ap.add_argument("--skip-llama", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="run each step N times and keep the fastest (noisy machines)")
    args = ap.parse_args(argv)

    work = args.work or tempfile.mkdtemp(prefix="qtk-bench-")
    os.makedirs(work, exist_ok=True)
    model = os.path.join(work, "model")
    results = {"size": args.size, "threads": args.threads, "repeat": args.repeat}
    try:
        if not os.path.exists(os.path.join(model, "config.json")):
            gen = [sys.executable, "-c",
                   "import sys, json; sys.path.insert(0, %r); from tools.fixtures.synth_checkpoint import make_checkpoint; "
                   "make_checkpoint(sys.argv[1], 'qwen3moe', dtype='bf16', **json.loads(sys.argv[2]))" % ROOT,
                   model, json.dumps(SIZES[args.size])]
            t, _ = run(gen)
            print(f"generated the checkpoint in {t:.1f} s")
        size = sum(os.path.getsize(os.path.join(model, f)) for f in os.listdir(model))
        results["checkpoint_bytes"] = size
        print(f"checkpoint: {size / 2**30:.2f} GiB ({args.size})")

        out = os.path.join(work, "qtk-q4km.gguf")
        warm(model)
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        CPU.pop("last", None)
        t, rss = best(args.repeat, [sys.executable, "-m", "qtoolkit", "convert", model, "-o", out, "--type", "Q4_K_M",
                                    "--quiet", "--force", "--threads", str(args.threads)], env=env)
        cq = CPU.pop("last")
        results["qtoolkit"] = {"seconds": round(t, 2), "cpu_seconds": round(cq, 2), "peak_rss_mib": round(rss, 1),
                               "out_bytes": os.path.getsize(out)}
        print(f"qtoolkit convert -> Q4_K_M: {t:7.1f} s ({cq:.1f} CPU s), peak RSS {rss:7.0f} MiB")
        os.remove(out)

        script = os.path.join(args.llama_cpp_src, "convert_hf_to_gguf.py")
        if args.skip_llama or not os.path.exists(script):
            print("llama.cpp route skipped" + ("" if args.skip_llama else f" ({script} not found)"))
        else:
            f16 = os.path.join(work, "llama-f16.gguf")
            q = os.path.join(work, "llama-q4km.gguf")
            warm(model)
            CPU.pop("last", None)
            t1, r1 = best(args.repeat, [sys.executable, "-c", LLAMA_CONVERT_WRAPPER, script, model, "--outtype", "f16",
                                        "--outfile", f16])
            c1 = CPU.pop("last")
            t2, r2 = best(args.repeat, [sys.executable, "-c", LLAMA_QUANTIZE, f16, q, str(args.threads)])
            c2 = CPU.pop("last")
            results["llama_cpp"] = {"convert_f16_seconds": round(t1, 2), "convert_f16_peak_rss_mib": round(r1, 1),
                                    "quantize_seconds": round(t2, 2), "quantize_peak_rss_mib": round(r2, 1),
                                    "seconds": round(t1 + t2, 2), "cpu_seconds": round(c1 + c2, 2),
                                    "peak_rss_mib": round(max(r1, r2), 1),
                                    "out_bytes": os.path.getsize(q)}
            print(f"llama.cpp convert_hf_to_gguf -> F16: {t1:7.1f} s ({c1:.1f} CPU s), peak RSS {r1:7.0f} MiB")
            print(f"llama.cpp llama_model_quantize -> Q4_K_M: {t2:7.1f} s ({c2:.1f} CPU s), peak RSS {r2:7.0f} MiB")
            q_t, l_t = results["qtoolkit"]["seconds"], t1 + t2
            q_m, l_m = results["qtoolkit"]["peak_rss_mib"], max(r1, r2)
            results["speedup"] = round(l_t / q_t, 2)
            results["cpu_ratio"] = round((c1 + c2) / cq, 2)
            print(f"CPU time: qtoolkit {cq:.1f} s vs llama.cpp {c1 + c2:.1f} s = {(c1 + c2) / cq:.2f}x less work")
            results["memory_ratio"] = round(q_m / l_m, 3)
            print(f"end to end: qtoolkit {q_t:.1f} s vs llama.cpp {l_t:.1f} s = {l_t / q_t:.2f}x faster; "
                  f"peak memory {q_m:.0f} vs {l_m:.0f} MiB = {q_m / l_m:.2f}x")
            for p in (f16, q):
                os.remove(p)
        print(json.dumps(results))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
