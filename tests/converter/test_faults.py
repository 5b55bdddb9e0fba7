"""Faults during a conversion: killed (SIGKILL, SIGINT, SIGTERM) at random moments, a second writer
of the same output, a full disk (RLIMIT_FSIZE). Whatever happens, the output path holds either
nothing, the old file, or the new complete file (byte-identical to an undisturbed run); after
SIGINT/SIGTERM no ``.partial`` remains; after SIGKILL one may, and the next run overwrites it.

Each kill runs ``qtoolkit convert`` in a child process on a checkpoint whose conversion takes a
few seconds (IQ3_M quantization is slow, so the checkpoint stays small); the moments are drawn
inside that run, most of them after the ``.partial`` file appeared. ``RUN_SLOW=1`` kills 50 times
per signal instead of 10.
"""

import hashlib
import os
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from qtoolkit.io.gguf_reader import GGUFFile
from tools.fixtures.synth_checkpoint import make_checkpoint
from tests.support.paths import ROOT

PRESET = "IQ3_M"
KILLS = 50 if os.environ.get("RUN_SLOW") else 10
RECOVERIES = 3  # stale .partial files that a rerun must overwrite (each rerun is a whole conversion)


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def command(ck, out, *extra):
    return [sys.executable, "-m", "qtoolkit", "convert", ck, "-o", out, "--type", PRESET, "--quiet",
            "--threads", "2", *extra]


def env():
    return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=ROOT, timeout=300, **kw)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """The checkpoint, and an undisturbed conversion: its output's hash, its duration and when its
    .partial file appeared."""
    d = tmp_path_factory.mktemp("faults")
    ck = make_checkpoint(str(d / "ck"), "qwen3moe", hidden=512, layers=2, heads=4, kv_heads=2, experts=16, top_k=2,
                         moe_ff=256, vocab=4096, dtype="bf16")
    out = str(d / "ref.gguf")
    t0 = time.monotonic()
    p = subprocess.Popen(command(ck, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env(), cwd=ROOT)
    t_partial = None
    while p.poll() is None:
        if t_partial is None and os.path.exists(out + ".partial"):
            t_partial = time.monotonic() - t0
        time.sleep(0.005)
    total = time.monotonic() - t0
    assert p.returncode == 0, p.stderr.read().decode()[-2000:]
    with GGUFFile(out) as g:
        assert len(g.tensors) > 10
    return {"ck": ck, "dir": d, "sha": sha(out), "size": os.path.getsize(out), "seconds": total,
            "t_partial": t_partial if t_partial is not None else 0.3 * total}


def kill_once(job, sig, delay, out, force):
    """Start a conversion, send ``sig`` after ``delay`` s; returns (exit code, was .partial there)."""
    p = subprocess.Popen(command(job["ck"], out, *(["--force"] if force else [])), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=env(), cwd=ROOT)
    time.sleep(delay)
    writing = os.path.exists(out + ".partial")
    p.send_signal(sig)
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:  # pragma: no cover - the failure this test exists for
        p.kill()
        pytest.fail(f"the conversion did not stop within 60 s of signal {sig}")
    p.stderr.close()
    return p.returncode, writing


def moments(job, rng, n):
    """n kill moments inside the run: one in five before the .partial file appears, the rest after."""
    tp, total = job["t_partial"], job["seconds"]
    return [float(rng.uniform(0.05, tp)) if i % 5 == 0 else float(rng.uniform(tp, total * 1.05)) for i in range(n)]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=["SIGKILL", "SIGINT", "SIGTERM"])
def test_killed_conversions_leave_nothing_or_the_complete_file(job, sig, tmp_path):
    rng = np.random.default_rng(int(sig))
    n = KILLS if sig != signal.SIGTERM else 3
    out = str(tmp_path / "out.gguf")
    old = b"the previous output, which must survive until a new one is complete"
    stats = {"writing": 0, "completed": 0, "stale_partials": 0, "recovered": 0}
    for i, delay in enumerate(moments(job, rng, n)):
        force = i % 2 == 1  # every other run replaces an existing output
        if force:
            with open(out, "wb") as f:
                f.write(old)
        rc, writing = kill_once(job, sig, delay, out, force)
        stats["writing"] += writing
        partial = out + ".partial"
        if os.path.exists(out) and sha(out) == job["sha"]:
            stats["completed"] += 1           # the signal came after the rename
        elif force:
            assert open(out, "rb").read() == old, f"kill {i} at {delay:.2f} s damaged the existing output"
        else:
            assert not os.path.exists(out), f"kill {i} at {delay:.2f} s left an incomplete {out}"
        if sig == signal.SIGKILL:
            if os.path.exists(partial):
                stats["stale_partials"] += 1
                if stats["recovered"] < RECOVERIES:  # the next run overwrites the stale .partial
                    r = run(command(job["ck"], out, "--force"))
                    assert r.returncode == 0, r.stderr[-2000:]
                    assert sha(out) == job["sha"] and not os.path.exists(partial)
                    stats["recovered"] += 1
        else:
            assert not os.path.exists(partial), f"signal {sig} at {delay:.2f} s left {partial}"
            assert rc in (0, 130, 143, -int(sig)), f"exit code {rc} after signal {sig}"
        for p in (out, partial):
            if os.path.exists(p):
                os.remove(p)
    print(f"\n{signal.Signals(sig).name}: {n} kills, {stats['writing']} while the .partial file was being written, "
          f"{stats['completed']} after completion; stale .partial files {stats['stale_partials']}, "
          f"{stats['recovered']} overwritten by a rerun")
    assert stats["writing"] >= 1, "no kill fell inside the writing phase: the checkpoint converts too fast"
    if sig == signal.SIGKILL:
        assert stats["stale_partials"] == 0 or stats["recovered"] >= 1


def test_a_second_writer_of_the_same_output_is_refused(job, tmp_path):
    out = str(tmp_path / "out.gguf")
    first = subprocess.Popen(command(job["ck"], out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env(),
                             cwd=ROOT)
    deadline = time.monotonic() + 60
    while not os.path.exists(out + ".partial") and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    second = run(command(job["ck"], out, "--force"))
    assert first.wait(timeout=120) == 0, first.stderr.read().decode()[-2000:]
    first.stderr.close()
    assert second.returncode == 1
    assert "another process is writing it" in second.stderr and "out.gguf.partial is locked" in second.stderr
    assert sha(out) == job["sha"] and not os.path.exists(out + ".partial")


def _fsize_limit(n):
    def set_limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))
    return set_limit


@pytest.mark.parametrize("where", ["header", "data"])
def test_disk_full_is_a_clear_error_and_leaves_nothing(job, tmp_path, where):
    limit = 4096 if where == "header" else job["size"] // 2
    out = str(tmp_path / "out.gguf")
    old = b"old output"
    with open(out, "wb") as f:
        f.write(old)
    r = run(command(job["ck"], out, "--force"), preexec_fn=_fsize_limit(limit))
    assert r.returncode == 1, r.stderr[-2000:]
    assert "cannot write the output" in r.stderr and "File too large" in r.stderr
    assert "file-size limit" in r.stderr and "Traceback" not in r.stderr
    assert open(out, "rb").read() == old and not os.path.exists(out + ".partial")


def test_disk_full_while_quantizing_a_gguf(job, tmp_path):
    f16 = str(tmp_path / "f16.gguf")
    r = run([sys.executable, "-m", "qtoolkit", "convert", job["ck"], "-o", f16, "--type", "F16", "--quiet"])
    assert r.returncode == 0, r.stderr[-2000:]
    out = str(tmp_path / "q.gguf")
    r = run([sys.executable, "-m", "qtoolkit", "quantize", f16, out, "Q4_K_M", "--quiet"],
            preexec_fn=_fsize_limit(os.path.getsize(f16) // 8))
    assert r.returncode == 1 and "File too large" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert not os.path.exists(out) and not os.path.exists(out + ".partial")
