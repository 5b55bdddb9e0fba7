"""The layer-major runner at scale: peak memory, bytes read and wall time of `qtoolkit compare`,
`qtoolkit imatrix` and `qtoolkit perplexity` on a synthetic checkpoint bigger than what fits as
float32, against the targets of the runner (docs/inference.md, "The layer-major runner"):

* peak RSS <= 2 x the largest layer's stored bytes (both models' when comparing) + the hidden
  states + 1 GB;
* bytes read from each file per pass <= 1.1 x its size;
* wall time <= 1.3 x (compute time + the files' size at the disk's measured read speed).

Each command runs in its own process; its peak RSS is the kernel's (ru_maxrss of the child), its
storage reads are /proc/PID/io's read_bytes (0 when the page cache already held the file), its
own accounting comes from its --json report.

    python tools/bench/bench_runner.py --work /work/bench --layers 10          # builds what is missing
    python tools/bench/bench_runner.py --model DIR --quant FILE.gguf --chunks 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

# Qwen3-30B-A3B's layer widths (hidden 2048, 32/4 heads of 128, 128 experts, top-8, expert width 768)
A3B = dict(arch="qwen3moe", hidden=2048, heads=32, kv_heads=4, head_dim=128, experts=128, top_k=8, moe_ff=768,
           vocab=8192)


def run(cmd, cwd=None, limit=None):
    """(return code, stdout, wall seconds, peak RSS bytes, storage bytes read) of one command, run in
    ``cwd`` (another checkout's ``python -m qtoolkit``), its address space capped at ``limit`` bytes."""
    t0 = time.perf_counter()

    def cap():
        if limit:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, preexec_fn=cap)
    io = {"read_bytes": 0}

    def sample():
        while p.poll() is None:
            try:
                with open(f"/proc/{p.pid}/io") as f:
                    for line in f:
                        k, v = line.split(":")
                        if k == "read_bytes":
                            io["read_bytes"] = max(io["read_bytes"], int(v))
            except OSError:
                pass
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, status, ru = os.wait4(p.pid, 0)
    out, err = p.stdout.read(), p.stderr.read()
    th.join()
    wall = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        sys.stderr.write(err[-3000:])
    return rc, out, wall, ru.ru_maxrss * 1024, io["read_bytes"]


def drop_caches() -> bool:
    try:
        subprocess.run(["sync"], check=False)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
        return True
    except OSError:
        return False


def disk_speed(paths, cold: bool) -> float:
    """GB/s reading the files once, sequentially (after dropping the page cache when we may)."""
    if cold:
        drop_caches()
    t0 = time.perf_counter()
    n = 0
    buf = bytearray(64 << 20)
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while True:
                k = f.readinto(buf)
                if not k:
                    break
                n += k
    return n / (time.perf_counter() - t0) / 1e9


def layer_bytes(model_dir: str, quant: str):
    """Largest block in stored bytes: (checkpoint, quantized file), and the files' sizes."""
    from qtoolkit.io.gguf_reader import GGUFFile
    from qtoolkit.model.sources import HFSource

    src = HFSource(model_dir)
    per = {}
    for name in src.names():
        if name.startswith("blk."):
            il = int(name.split(".")[1])
            per[il] = per.get(il, 0) + src.nbytes(name)
    src_files = src.files()
    src.close()
    g = GGUFFile(quant)
    qper = {}
    for t in g.tensors:
        if t.name.startswith("blk."):
            il = int(t.name.split(".")[1])
            qper[il] = qper.get(il, 0) + t.nbytes
    g.close()
    return max(per.values()), max(qper.values()), src_files


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=os.path.join(ROOT, ".bench"), help="where the synthetic model and files go")
    ap.add_argument("--layers", type=int, default=10, help="layers of the synthetic checkpoint (10: about 12.5 GB)")
    ap.add_argument("--model", help="a Hugging Face folder (default: the synthetic checkpoint, built if missing)")
    ap.add_argument("--quant", help="its quantized GGUF (default: Q4_K_M, converted if missing)")
    ap.add_argument("--text", default=os.path.join(ROOT, "tests", "data", "heldout.txt"))
    ap.add_argument("--chunks", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--commands", default="compare,imatrix,perplexity")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--code", help="run the commands of this checkout of qtoolkit (e.g. an older commit's worktree)")
    ap.add_argument("--limit", help="cap each command's address space (e.g. 22G), so a run that would not fit fails "
                                    "instead of swapping")
    args = ap.parse_args(argv)

    model = args.model or os.path.join(args.work, f"a3b-{args.layers}")
    if not os.path.isdir(model):
        from tools.fixtures.synth_checkpoint import make_checkpoint

        print(f"writing the synthetic checkpoint {model} ...", flush=True)
        make_checkpoint(model, layers=args.layers, shards=max(1, args.layers // 3), **A3B)
    quant = args.quant or model.rstrip("/") + "-Q4_K_M.gguf"
    py = sys.executable
    if not os.path.exists(quant):
        print(f"converting to {quant} ...", flush=True)
        rc, _, wall, rss, _ = run([py, "-m", "qtoolkit", "convert", model, "-o", quant, "--type", "Q4_K_M", "--quiet"])
        if rc:
            return rc
        print(f"  convert: {wall:.1f} s, peak RSS {rss / 1e9:.2f} GB")
    big_src, big_q, src_files = layer_bytes(model, quant)
    ck_bytes = sum(os.path.getsize(p) for p in src_files)
    q_bytes = os.path.getsize(quant)
    cold = drop_caches()
    speed = disk_speed(src_files + [quant], cold)
    print(f"checkpoint {ck_bytes / 1e9:.2f} GB (largest layer {big_src / 1e9:.3f} GB), {os.path.basename(quant)} "
          f"{q_bytes / 1e9:.2f} GB (largest layer {big_q / 1e9:.3f} GB); disk read {speed:.2f} GB/s "
          f"({'page cache dropped' if cold else 'page cache could not be dropped: warm reads'})")
    hidden = args.chunks * args.ctx * A3B["hidden"] * 4
    base = [py, "-m", "qtoolkit"]
    common = ["-f", args.text, "--chunks", str(args.chunks), "--ctx", str(args.ctx), "--json"]
    if args.threads:
        common += ["--threads", str(args.threads)]
    jobs = {
        "compare": (base + ["compare", model, quant] + common, [ck_bytes, q_bytes], 2 * (big_src + big_q) + 2 * hidden),
        "imatrix": (base + ["imatrix", model, "-o", os.path.join(args.work, "bench-imatrix.gguf"), "--force"] + common,
                    [ck_bytes], 2 * big_src + hidden),
        "perplexity": (base + ["perplexity", quant] + common, [q_bytes], 2 * big_q + hidden),
    }
    rows = []
    for name in args.commands.split(","):
        cmd, files, layers_bound = jobs[name]
        if cold:
            drop_caches()
        from qtoolkit.units import parse_size

        rc, out, wall, rss, disk_read = run(cmd, cwd=args.code, limit=parse_size(args.limit) if args.limit else None)
        if rc:
            print(f"{name:10s} exit {rc} after {wall:.1f} s, peak RSS {rss / 1e9:.2f} GB")
            rows.append({"command": name, "exit": rc, "wall": wall, "peak_rss": rss})
            continue
        rep = json.loads(out.strip().splitlines()[-1])
        r = rep.get("run") or {"compute_seconds": rep["seconds"], "read_seconds": rep.get("load_seconds", 0.0),
                               "bytes_read": [0] * len(files)}   # an older qtoolkit reports no run figures
        bound = layers_bound + (1 << 30)
        limit = 1.3 * (r["compute_seconds"] + sum(files) / (speed * 1e9))
        row = {"command": name, "peak_rss": rss, "rss_bound": bound, "wall": wall, "wall_bound": limit,
               "compute_seconds": r["compute_seconds"], "read_seconds": r["read_seconds"],
               "bytes_read": r["bytes_read"], "file_bytes": files, "storage_read": disk_read,
               "read_ratio": [b / f for b, f in zip(r["bytes_read"], files)]}
        rows.append(row)
        print(f"{name:10s} peak RSS {rss / 1e9:6.2f} GB (bound {bound / 1e9:.2f}: {'ok' if rss <= bound else 'OVER'})  "
              f"wall {wall:7.1f} s (bound {limit:.1f}: {'ok' if wall <= limit else 'OVER'})  compute {r['compute_seconds']:.1f} s  "
              f"read/file {', '.join(f'{x:.3f}' for x in row['read_ratio'])}  storage reads {disk_read / 1e9:.2f} GB",
              flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": model, "quant": quant, "checkpoint_bytes": ck_bytes, "quant_bytes": q_bytes,
                       "largest_layer": [big_src, big_q], "disk_gb_s": speed, "cold": cold, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
