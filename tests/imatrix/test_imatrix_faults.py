"""An interrupted `qtoolkit imatrix` (Ctrl-C or SIGTERM at any moment of the layer-major run, or of
the write) leaves nothing at the output path, no .partial file, and an existing output untouched;
the hidden states spilled to disk leave nothing in the spill folder, even after SIGKILL."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.support.paths import DATA, ROOT
from tools.fixtures.synth_checkpoint import make_checkpoint

HELDOUT = os.path.join(DATA, "heldout.txt")


def command(ck, out, spill, *extra):
    return [sys.executable, "-m", "qtoolkit", "imatrix", ck, "-f", HELDOUT, "--ctx", "128", "--chunks", "8",
            "-o", out, "--quiet", "--max-memory", "1K", "--spill-dir", spill, *extra]


def env():
    return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    d = tmp_path_factory.mktemp("imatrix-faults")
    path = make_checkpoint(str(d / "ck"), "qwen3moe", hidden=256, layers=6, heads=4, kv_heads=2, experts=16, top_k=2,
                           moe_ff=256, vocab=512)
    t0 = time.monotonic()
    r = subprocess.run(command(path, str(d / "ref.gguf"), str(d)), capture_output=True, text=True, env=env(), cwd=ROOT,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return {"path": path, "seconds": time.monotonic() - t0}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_an_interrupted_imatrix_leaves_nothing(ck, sig, tmp_path):
    rng = np.random.default_rng(int(sig))
    out = str(tmp_path / "im.gguf")
    spill = tmp_path / "spill"
    spill.mkdir()
    old = b"an earlier importance matrix, which must survive"
    for i in range(4):
        force = i % 2 == 1
        if force:
            with open(out, "wb") as f:
                f.write(old)
        p = subprocess.Popen(command(ck["path"], out, str(spill), *(["--force"] if force else [])),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(), cwd=ROOT)
        time.sleep(float(rng.uniform(0.2, 0.9)) * ck["seconds"])
        p.send_signal(sig)
        p.wait(timeout=60)
        if os.path.exists(out) and open(out, "rb").read() != old:
            assert p.returncode == 0                  # it finished before the signal: a whole file
            os.remove(out)
        elif force:
            assert open(out, "rb").read() == old
        else:
            assert not os.path.exists(out)
        if sig != signal.SIGKILL:
            assert not os.path.exists(out + ".partial")
        assert list(spill.iterdir()) == []           # the hidden-state file never had a name there
        for f in (out, out + ".partial"):
            if os.path.exists(f):
                os.remove(f)
