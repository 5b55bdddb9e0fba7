"""The streamed pass of the bit allocator (qtoolkit/alloc/streamed.py): on every calibration chunk
it measures exactly what the in-memory probes measure, and it reads the checkpoint once."""

import os

import pytest

from qtoolkit.alloc.allocate import allocate

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")
MOE = os.path.join(DATA, "tiny-moe")


@pytest.fixture(scope="module")
def text():
    with open(os.path.join(DATA, "calib-shakespeare.txt"), encoding="utf-8") as f:
        return f.read()


def _run(text, chunks=4, **kw):
    return allocate(MOE, text, target_size=2_289_504, calib_chunks=chunks, threads=2, **kw)


def test_streamed_on_every_chunk_equals_full_probes(text):
    full = _run(text, probes="full")
    streamed = _run(text, probes="streamed", probe_chunks=4)
    assert streamed.types == full.types
    assert streamed.predicted_kld == pytest.approx(full.predicted_kld, rel=1e-9)
    by_name = {t.name: t for t in full.tensors}
    n = 0
    for tp in streamed.tensors:
        if tp.fixed is not None:
            continue
        ref = by_name[tp.name]
        assert tp.error == pytest.approx(ref.error, rel=1e-9)
        assert set(tp.probes) == set(ref.probes)
        for k, v in ref.probes.items():
            assert tp.probes[k] == pytest.approx(v, rel=1e-9, abs=1e-15)
            n += 1
        assert tp.act == pytest.approx(ref.act, rel=1e-9, abs=1e-15)
    assert n >= 30


def test_streamed_reads_the_checkpoint_once_and_reports_its_cost(text):
    a = _run(text, chunks=16, probes="streamed")   # (on 4 chunks even one probe chunk would exceed the budget)
    run = a.calibration["run"]
    assert a.calibration["method"] == "streamed"
    assert run["passes"] == 1
    assert run["reads_of_checkpoint"] == pytest.approx(1.0, abs=0.01)
    assert 1 <= run["probe_chunks"] < 16
    assert run["streams"] == a.calibration["probes"]
    assert run["estimated_stream_ratio"] <= 9.0 + 1e-9
    assert a.file_bytes <= 2_289_504


def test_unknown_probe_mode_is_refused(text):
    from qtoolkit.errors import QtkValueError

    with pytest.raises(QtkValueError, match="probes must be"):
        _run(text, probes="sometimes")
