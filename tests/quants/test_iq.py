"""The sub-3-bit codebook formats: IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S.

- their grids, sign table and delta equal the gguf package's (the tables are format constants);
- dequantizing every grid index, sign pattern and scale is bit-identical to gguf-py;
- quantize is byte-identical to ggml live (hypothesis: zeros, constant blocks, subnormals, large
  magnitudes, heavy tails, sparse rows, ties, importance weights with zeros). ggml builds its
  IQ2/IQ1 search tables in ~30 s per process, so those types run live only with
  QTK_SLOW_ORACLE=1 (.ci/run sets it); the committed golden vectors (test_compat.py) cover every
  type on every run;
- the types ggml only defines with importance weights refuse to go without, with a clear error;
- the reference dot products with Q8_K activations agree with a float64 product;
- the search tables are built once, safely from many threads at once.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from gguf import GGMLQuantizationType as G
from gguf import quants as gq
from hypothesis import given
from hypothesis import strategies as st

from qtoolkit import QtkImatrixRequiredError, QtkValueError, dequantize, quantize, type_info
from qtoolkit import QuantType as T
from qtoolkit import _clib
from tests.support.paths import ROOT

IQ = [T.IQ2_XXS, T.IQ2_XS, T.IQ2_S, T.IQ3_XXS, T.IQ3_S, T.IQ1_S, T.IQ1_M]
REQUIRED = [T.IQ2_XXS, T.IQ2_XS, T.IQ1_S]
# types whose ggml search tables are cheap to build (< 1 s): compared live on every run
CHEAP_IN_GGML = [T.IQ3_XXS, T.IQ3_S]
SLOW_ORACLE = os.environ.get("QTK_SLOW_ORACLE") == "1"

name = lambda t: t.name  # noqa: E731


def bits(a):
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def gguf_class(t):
    return getattr(gq, t.name)


# ---------------------------------------------------------------- tables


@pytest.mark.parametrize("t", IQ, ids=name)
def test_grid_equals_gguf(t):
    cls = gguf_class(t)
    cls.init_grid()
    ref = np.asarray(cls.grid, dtype=np.float32).reshape(cls.grid_shape)
    ours = _clib.iq_grid(int(t))
    assert ours.shape == tuple(cls.grid_shape)
    assert np.array_equal(ours.astype(np.float32), ref)


def test_sign_table_and_delta_equal_gguf():
    assert _clib.iq_ksigns().tobytes() == gq.IQ2_XXS.ksigns
    assert _clib.iq1_delta() == float(gq.IQ1_S.delta) == float(gq.IQ1_M.delta)
    # bit 7 of each sign pattern is the parity of the other seven
    k = _clib.iq_ksigns()
    assert all(bin(int(v)).count("1") % 2 == 0 for v in k)


def test_generated_header_matches_the_tool():
    """csrc/ref/iq_grids.h is what tools/fixtures/gen_iq_grids.py writes from the installed gguf package."""
    here = ROOT
    header = os.path.join(here, "csrc", "ref", "iq_grids.h")
    if not os.path.exists(header):
        pytest.skip("not a source checkout")
    sys.path.insert(0, os.path.join(here, "tools", "fixtures"))
    try:
        import gen_iq_grids
    finally:
        sys.path.pop(0)
    with open(header, encoding="utf-8") as f:
        committed = f.read()

    def tables(text):  # the comment names the gguf version; the tables must match exactly
        return text[text.index("#define QTK_IQ1_DELTA"):]

    assert tables(committed) == tables(gen_iq_grids.render())


# ---------------------------------------------------------------- dequantize


def every_index_blocks(t, seed=0):
    """Blocks that together use every grid index, random signs, scales and finite fp16 scales."""
    info = type_info(t)
    rng = np.random.default_rng(seed)
    entries = _clib.iq_grid(int(t)).shape[0]
    groups_per_block = 256 // 8 if t not in (T.IQ3_XXS, T.IQ3_S) else 256 // 4
    nblocks = -(-entries // groups_per_block) + 2
    raw = rng.integers(0, 256, (nblocks, info.type_size), dtype=np.uint8)
    idx = np.concatenate([rng.permutation(entries), rng.integers(0, entries, nblocks * groups_per_block - entries)])
    idx = idx.reshape(nblocks, groups_per_block)
    d = rng.uniform(0.01, 2.0, nblocks).astype(np.float16).view(np.uint16)
    d[0] = 0
    for b in range(nblocks):
        blk = raw[b]
        if t == T.IQ2_XXS:
            q = blk[2:].view(np.uint32).copy()
            q[0::2] = [sum(int(idx[b, 4 * g + k]) << (8 * k) for k in range(4)) for g in range(8)]
            blk[2:] = q.view(np.uint8)
        elif t == T.IQ2_XS:
            q = blk[2:66].view(np.uint16).copy()
            q[:] = (q & 0xFE00) | idx[b]
            blk[2:66] = q.view(np.uint8)
        elif t == T.IQ2_S:
            blk[2:34] = idx[b] & 255
            blk[66:74] = [sum(int(idx[b, 4 * g + k] >> 8) << (2 * k) for k in range(4)) for g in range(8)]
        elif t == T.IQ3_XXS:
            blk[2:66] = idx[b]
        elif t == T.IQ3_S:
            blk[2:66] = idx[b] & 255
            blk[66:74] = [sum(int(idx[b, 8 * g + k] >> 8) << k for k in range(8)) for g in range(8)]
        elif t == T.IQ1_S:
            blk[2:34] = idx[b] & 255
            qh = blk[34:50].view(np.uint16).copy()
            qh[:] = (qh & 0xF000) | [sum(int(idx[b, 4 * g + k] >> 8) << (3 * k) for k in range(4)) for g in range(8)]
            blk[34:50] = qh.view(np.uint8)
        elif t == T.IQ1_M:
            blk[0:32] = idx[b] & 255
            blk[32:48] = (blk[32:48] & 0x88) | [(int(idx[b, 2 * g] >> 8)) | (int(idx[b, 2 * g + 1] >> 8) << 4)
                                                for g in range(16)]
        if t == T.IQ1_M:
            sc = blk[48:56].view(np.uint16).copy()
            h = int(d[b])
            for k in range(4):
                sc[k] = (sc[k] & 0x0FFF) | (((h >> (4 * k)) & 0xF) << 12)
            blk[48:56] = sc.view(np.uint8)
        else:
            blk[0:2] = np.array([d[b]], np.uint16).view(np.uint8)
    return raw.reshape(1, -1)


@pytest.mark.parametrize("t", IQ, ids=name)
def test_dequantize_every_grid_index_bit_identical_to_gguf(t):
    data = every_index_blocks(t)
    ours = dequantize(data, t)
    ref = gq.dequantize(data, G(int(t)))
    assert np.array_equal(bits(ours), bits(ref))


@pytest.mark.parametrize("t", IQ, ids=name)
def test_dequantize_every_grid_index_bit_identical_to_ggml(ggml, t):
    data = every_index_blocks(t, seed=1)
    ours = dequantize(data, t)
    ref = ggml.to_float(int(t), data[0], ours.shape[1])
    assert np.array_equal(bits(ours[0]), bits(ref))


# ---------------------------------------------------------------- importance weights


@pytest.mark.parametrize("t", REQUIRED, ids=name)
def test_types_that_need_an_imatrix_refuse_without_one(t):
    x = np.random.default_rng(0).standard_normal((4, 512)).astype(np.float32)
    assert type_info(t).requires_imatrix
    with pytest.raises(QtkImatrixRequiredError) as info:
        quantize(x, t)
    err = info.value
    assert isinstance(err, QtkValueError) and isinstance(err, ValueError)
    assert err.qtype == t.name
    msg = str(err)
    assert t.name in msg and "importance matrix" in msg
    assert "qtoolkit imatrix" in msg and "--imatrix" in msg
    # with weights it works, also per expert of a stacked tensor
    x3 = np.random.default_rng(1).standard_normal((2, 3, 256)).astype(np.float32)
    w3 = np.random.default_rng(2).uniform(0, 1, (2, 256)).astype(np.float32)
    q = quantize(x3, t, imatrix=w3)
    for e in range(2):
        assert np.array_equal(q[e], quantize(x3[e], t, imatrix=w3[e]))


@pytest.mark.parametrize("t", REQUIRED, ids=name)
def test_the_c_core_refuses_too(t, monkeypatch):
    """Past the Python check the C core returns QTK_E_IMATRIX (ggml would abort the process)."""
    monkeypatch.setattr(_clib, "requires_imatrix", lambda type_id: False)
    x = np.ones((2, 256), np.float32)
    with pytest.raises(QtkImatrixRequiredError, match=t.name):
        quantize(x, t)


@pytest.mark.parametrize("t", [t for t in IQ if t not in REQUIRED], ids=name)
def test_other_types_work_without_one(t):
    assert not type_info(t).requires_imatrix
    assert type_info(t).uses_imatrix
    x = np.random.default_rng(3).standard_normal((2, 512)).astype(np.float32)
    y = dequantize(quantize(x, t), t)
    assert np.isfinite(y).all() and y.any()


def test_bad_imatrix_values_are_still_a_plain_value_error():
    x = np.ones((2, 256), np.float32)
    w = np.ones(256, np.float32)
    w[7] = -1
    with pytest.raises(QtkValueError, match="non-negative") as info:
        quantize(x, "IQ2_XXS", imatrix=w)
    assert not isinstance(info.value, QtkImatrixRequiredError)


# ---------------------------------------------------------------- edge inputs


@pytest.mark.parametrize("t", IQ, ids=name)
def test_values_beyond_any_scale_are_refused_not_mangled(t):
    w = np.ones(512, np.float32)
    for scale in (1e9, 1e20, 1e30):
        x = (np.random.default_rng(4).standard_normal((3, 512)) * scale).astype(np.float32)
        x[0] = np.random.default_rng(5).standard_normal(512)  # a fine first row
        with pytest.raises(QtkValueError, match="row 1 has values too large"):
            quantize(x, t, imatrix=w, threads=1)


@pytest.mark.parametrize("t", IQ, ids=name)
def test_zero_rows_and_tiny_values(t):
    w = np.ones(512, np.float32)
    x = np.zeros((4, 512), np.float32)
    x[1] = 1e-41
    x[2] = np.random.default_rng(6).standard_normal(512) * 1e-30
    x[3, :256] = np.random.default_rng(7).standard_normal(256)
    y = dequantize(quantize(x, t, imatrix=w), t)
    assert np.isfinite(y).all()
    assert not y[0].any() and not y[3, 256:].any()


def test_iq3_s_keeps_ggmls_slot_quirk_for_zero_sub_blocks():
    """ggml's IQ3_S quantizer does not advance its index/sign slots past an all-zero 32-element
    sub-block: later sub-blocks are stored one slot early. We write the same bytes (see ref_iq3.c);
    this documents the consequence: such a block does not dequantize to what was meant."""
    x = np.random.default_rng(8).standard_normal((1, 256)).astype(np.float32)
    x[0, 32:64] = 0
    q = quantize(x, "IQ3_S")
    assert not q[0, 2 + 64 - 8:2 + 64].any()            # the last index slot stays empty
    assert not q[0, 74 + 32 - 4:74 + 32].any()          # and so does the last sign slot
    y = dequantize(q, "IQ3_S")
    assert np.abs(y[0, 32:64]).max() > 0                # the zero sub-block reads the next one's slot


# ---------------------------------------------------------------- live ggml


@st.composite
def iq_cases(draw, t):
    rows = draw(st.integers(1, 3))
    n = 256 * draw(st.integers(1, 2))
    kind = draw(st.sampled_from(["normal", "heavy", "scaled", "sparse", "zero-blocks", "constant", "ties",
                                 "subnormal", "zeros", "mixed"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "normal":
        x = rng.standard_normal((rows, n))
    elif kind == "heavy":
        x = rng.standard_t(1.3, (rows, n)).clip(-1e4, 1e4)
    elif kind == "scaled":
        x = rng.standard_normal((rows, n)) * 10.0 ** draw(st.floats(-38, 7))
    elif kind == "sparse":
        x = rng.standard_normal((rows, n)) * (rng.random((rows, n)) < draw(st.floats(0.01, 0.5)))
    elif kind == "zero-blocks":
        x = rng.standard_normal((rows, n)) * (rng.random((rows, n // 16)) < 0.6).repeat(16, axis=1)
    elif kind == "constant":
        x = np.full((rows, n), draw(st.floats(-6e4, 6e4, width=32)))
    elif kind == "ties":
        vals = draw(st.lists(st.floats(-10, 10, width=32), min_size=1, max_size=4))
        x = rng.choice(np.array(vals + [0.0]), (rows, n))
    elif kind == "subnormal":
        x = rng.standard_normal((rows, n)) * 1e-41
    elif kind == "zeros":
        x = np.zeros((rows, n))
    else:
        x = rng.standard_normal((rows, n)) * 10.0 ** rng.uniform(-9, 3, (rows, n // 32)).repeat(32, axis=1)
    w = None
    if t in REQUIRED or draw(st.booleans()):
        w = rng.uniform(0, 3, n) ** draw(st.sampled_from([1, 2, 4]))
        if draw(st.booleans()):
            w[rng.random(n) < draw(st.floats(0.05, 1.0))] = 0.0
        w = w.astype(np.float32)
    return x.astype(np.float32), w


def ggml_scale_overflows(ggml, t, data):
    """True when ggml's bytes hold an infinite or NaN fp16 scale (what we refuse to write)."""
    info = type_info(t)
    blocks = data.reshape(-1, info.type_size)
    if t == T.IQ1_M:
        sc = blocks[:, 48:56].copy().view(np.uint16)
        h = (sc[:, 0] >> 12) | ((sc[:, 1] >> 8) & 0xF0) | ((sc[:, 2] >> 4) & 0xF00) | (sc[:, 3] & 0xF000)
    else:
        h = blocks[:, 0:2].copy().view(np.uint16)[:, 0]
    return bool(((h & 0x7C00) == 0x7C00).any())


@pytest.mark.parametrize("t", IQ, ids=name)
def test_quantize_byte_identical_to_live_ggml(ggml, t):
    if t not in CHEAP_IN_GGML and not SLOW_ORACLE:
        pytest.skip("ggml builds its IQ2/IQ1 search tables in ~30 s; set QTK_SLOW_ORACLE=1 (golden vectors cover it)")

    @given(iq_cases(t))
    def check(case):
        x, w = case
        ref = ggml.quantize_chunk(int(t), x, w)
        try:
            ours = quantize(x, t, imatrix=w, threads=1)
        except QtkValueError as exc:   # only where ggml itself stores a non-finite scale
            assert "too large" in str(exc)
            assert ggml_scale_overflows(ggml, t, ref)
            return
        assert np.array_equal(ours, ref)

    check()


# ---------------------------------------------------------------- dot products


def q8k_rows(x):
    """Activation rows quantized to Q8_K, and their dequantized values."""
    y = quantize(x, "Q8_K")
    return y, dequantize(y, "Q8_K")


@pytest.mark.parametrize("t", IQ, ids=name)
@pytest.mark.parametrize("blocks", [1, 2, 3, 8])
def test_reference_dot_matches_float64(t, blocks):
    rng = np.random.default_rng(blocks)
    n = 256 * blocks
    rows = 24
    x = (rng.standard_normal((rows, n)) * rng.uniform(0.01, 10, (rows, 1))).astype(np.float32)
    x[0] = 0
    w = rng.uniform(0, 2, n).astype(np.float32)
    wq = quantize(x, t, imatrix=w)
    wd = dequantize(wq, t).astype(np.float64)
    act = rng.standard_normal((rows, n)).astype(np.float32)
    aq, ad = q8k_rows(act)
    got = np.array([_clib.iq_vec_dot_ref(int(t), wq[r], aq[r], n) for r in range(rows)])
    want = np.sum(wd * ad.astype(np.float64), axis=1)
    assert got[0] == 0.0
    err = np.sum((got - want) ** 2) / np.sum(want ** 2)
    assert err < 5e-4, err
    assert err < 1e-10  # integer sums and a few float products: far tighter than the kernels' bound


def test_reference_dot_rejects_bad_arguments():
    with pytest.raises(QtkValueError):
        _clib.iq_vec_dot_ref(int(T.IQ2_S), np.zeros(82, np.uint8), np.zeros(100, np.uint8), 256)
    with pytest.raises(QtkValueError):
        _clib.iq_vec_dot_ref(int(T.IQ2_S), np.zeros(80, np.uint8), np.zeros(292, np.uint8), 256)


# ---------------------------------------------------------------- threads


def test_search_tables_built_once_from_many_threads():
    """First use of every lattice from 8 threads at once (a fresh process): identical results."""
    code = r"""
import threading, numpy as np, qtoolkit
rng = np.random.default_rng(0)
x = rng.standard_normal((6, 512)).astype(np.float32)
w = rng.uniform(0, 1, 512).astype(np.float32)
types = ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M"]
out = {}
def work(i):
    t = types[i % len(types)]
    out[i] = (t, qtoolkit.quantize(x, t, imatrix=w, threads=1))
threads = [threading.Thread(target=work, args=(i,)) for i in range(2 * len(types))]
for th in threads: th.start()
for th in threads: th.join()
ok = all(np.array_equal(q, qtoolkit.quantize(x, t, imatrix=w, threads=1)) for t, q in out.values())
print("same" if ok and len(out) == 2 * len(types) else "DIFFERENT")
"""
    env = dict(os.environ)
    root = ROOT
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "same"


@pytest.mark.parametrize("t", IQ, ids=name)
def test_result_does_not_depend_on_thread_count(t):
    x = np.random.default_rng(9).standard_normal((67, 512)).astype(np.float32)
    w = np.random.default_rng(10).uniform(0, 1, 512).astype(np.float32)
    ref = quantize(x, t, imatrix=w, threads=1)
    assert np.array_equal(quantize(x, t, imatrix=w, threads=2), ref)
    assert np.array_equal(quantize(x, t, imatrix=w, threads=5), ref)
