"""The slab scheduler: results in order and equal to a plain quantize, errors re-raised in order,
and an abandoned stream does not hang."""

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import qtoolkit
from qtoolkit.converter.quantize_stream import prefetched, quantize_stream


def test_results_in_order_and_identical():
    rng = np.random.default_rng(0)
    slabs = [rng.standard_normal((r, 512)).astype(np.float32) for r in (3, 17, 1, 64, 9, 33)]
    w = rng.gamma(2, 1, 512).astype(np.float32)
    with ThreadPoolExecutor(3) as pool:
        out = list(quantize_stream(((x, w, i) for i, x in enumerate(slabs)), "Q4_K", pool, 3))
    for x, q in zip(slabs, out):
        assert np.array_equal(q, qtoolkit.quantize(x, "Q4_K", imatrix=w))


def test_errors_come_in_order():
    def items():
        yield 1
        yield 2
        raise ValueError("third")
    got = []
    with pytest.raises(ValueError, match="third"):
        for i in prefetched(items(), depth=2):
            got.append(i)
    assert got == [1, 2]


def test_abandoned_stream_does_not_hang():
    def items():
        for i in range(1000):
            yield np.zeros(10)
    t = time.perf_counter()
    g = prefetched(items(), depth=1)
    next(g)
    g.close()
    assert time.perf_counter() - t < 2
