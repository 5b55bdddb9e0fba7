"""Streaming: the converter's peak resident memory stays within 2x the largest output tensor in
float32 plus 300 MB, measured on a child process converting a checkpoint whose tensors are big
enough for a non-streaming design to blow through that bound."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

import qtoolkit
from tools.fixtures.synth_checkpoint import make_checkpoint
from tests.support.paths import ROOT


CHILD = textwrap.dedent("""
    import json, sys, time
    from qtoolkit.cli import main
    t = time.perf_counter()
    rc = main(sys.argv[1:])
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the forking parent
    hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
    print(json.dumps({"rc": rc, "maxrss_kb": hwm, "seconds": time.perf_counter() - t}))
""")


def run_child(args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", CHILD] + args, capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


SIZES = {
    # ~227 M weights (454 MB of bf16): 32 experts x 3 projections x 3 layers, two 33 M-weight vocab matrices
    # (largest tensor 128 MiB in f32)
    "default": dict(hidden=1024, layers=3, heads=8, kv_heads=4, head_dim=128, experts=32, top_k=4, moe_ff=512,
                    vocab=32768),
    # ~357 M weights (714 MB of bf16): the same layers, two 102 M-weight vocab matrices (largest tensor
    # 400 MiB in f32, "a few hundred MB"); all weights in f32 exceed the bound
    "large": dict(hidden=1024, layers=3, heads=8, kv_heads=4, head_dim=128, experts=32, top_k=4, moe_ff=512,
                  vocab=102400),
}


@pytest.mark.parametrize("size", ["default", pytest.param("large", marks=pytest.mark.slow)])
def test_peak_rss_of_a_streaming_conversion(tmp_path, size):
    d = make_checkpoint(str(tmp_path / "big"), "qwen3moe", tied=False, dtype="bf16", **SIZES[size])
    plan = qtoolkit.convert(d, None, "Q4_K_M", dry_run=True)
    largest_f32 = max(t["elements"] for t in plan["tensors"]) * 4
    total_f32 = plan["totals"]["elements"] * 4
    out = str(tmp_path / "big.gguf")
    res = run_child(["convert", d, "-o", out, "--type", "Q4_K_M", "--quiet", "--threads", "2"])
    peak = res["maxrss_kb"] * 1024
    limit = 2 * largest_f32 + 300 * 2**20
    print(f"\n{size}: largest tensor {largest_f32 / 2**20:.0f} MiB in f32; peak RSS {peak / 2**20:.0f} MiB "
          f"(limit {limit / 2**20:.0f} MiB; all weights in f32 would be {total_f32 / 2**20:.0f} MiB), {res['seconds']:.1f} s")
    assert res["rc"] == 0
    assert peak <= limit
    assert total_f32 > limit  # a design that held the weights in f32 would fail
    assert os.path.getsize(out) > plan["totals"]["bytes"]
