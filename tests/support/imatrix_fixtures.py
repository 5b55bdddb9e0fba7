"""Importance-matrix files made by qtoolkit for the tiny-moe fixture, shared by the imatrix tests."""

import os

import numpy as np
import pytest

import qtoolkit
from qtoolkit.io.gguf_reader import GGUFFile
from qtoolkit.imatrix import ImatrixStats, read_imatrix, write_imatrix
from tests.support.paths import DATA

FIXTURE = os.path.join(DATA, "tiny-moe")
CALIB = os.path.join(DATA, "calibration.txt")


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    """The fixture's importance matrix made by qtoolkit (GGUF and legacy), and its F32 file."""
    d = tmp_path_factory.mktemp("ours")
    g, dat, f32 = str(d / "imatrix.gguf"), str(d / "imatrix.dat"), str(d / "f32.gguf")
    rep = qtoolkit.compute_imatrix(FIXTURE, file=CALIB, output=g, ctx=128, chunks=8)
    assert rep["coverage"]["n_uncovered"] == 0
    write_imatrix(dat, read_imatrix(g))
    qtoolkit.convert(FIXTURE, f32, "F32")
    return {"gguf": g, "dat": dat, "f32": f32, "dir": d}


@pytest.fixture(scope="module")
def holed(ours):
    """Our imatrix with layer 1's experts 3 and 6 never routed to (counts and sums 0)."""
    st = read_imatrix(ours["gguf"])
    sums = {k: v.copy() for k, v in st.sums.items()}
    counts = {k: v.copy() for k, v in st.counts.items()}
    for stack in ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"):
        name = f"blk.1.{stack}.weight"
        for e in (3, 6):
            sums[name][e] = 0
            counts[name][e] = 0
    path = str(ours["dir"] / "holed.gguf")
    write_imatrix(path, ImatrixStats(sums, counts, st.datasets, st.chunk_count, st.chunk_size))
    return path


def same_tensors(a_path, b_path):
    a, b = GGUFFile(a_path), GGUFFile(b_path)
    try:
        assert [t.name for t in a.tensors] == [t.name for t in b.tensors]
        return [x.name for x, y in zip(a.tensors, b.tensors)
                if x.type_id != y.type_id or not np.array_equal(a.data(x), b.data(y))]
    finally:
        a.close()
        b.close()
