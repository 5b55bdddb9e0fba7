"""Layer 2 of the tests for quantize: every fast quantizer variant against the C reference.

The reference row functions (csrc/ref/ref_*.c, variant "ref") are the specification; the fast variants
("vec": lane code at the baseline ISA, "avx2": the same code in an AVX2 target region) must write
the same bytes for every type, with and without importance weights, and refuse the same rows with
the same errors. A variant this CPU (or the QTK_ISA cap) does not offer is skipped with a reason.
"""

import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qtoolkit import QuantType as T
from qtoolkit import _clib, quantize, type_info
from tests.support.paths import ROOT

FAST = ["vec", "avx2"]
TYPES = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K,
         T.IQ4_NL, T.IQ4_XS, T.TQ1_0, T.TQ2_0]
FLOAT_TYPES = {T.F32, T.F16, T.BF16}


@contextlib.contextmanager
def variant(name):
    before = _clib.quantizer_variant()
    _clib.set_quantizer_variant(name)
    try:
        yield
    finally:
        _clib.set_quantizer_variant(before)


@pytest.fixture(params=FAST)
def fast(request):
    name = request.param
    if not _clib.quantizer_variant_supported(name):
        pytest.skip(f"this CPU or build has no '{name}' quantizer variant")
    if not _clib.quantizer_variants()[name]:
        pytest.skip(f"the '{name}' variant is above the QTK_ISA cap ({os.environ.get('QTK_ISA')})")
    return name


def run(name, x, t, imatrix=None):
    """quantize under one variant; a refusal is returned as its message (compared as such)."""
    with variant(name):
        try:
            return quantize(x, t, imatrix=imatrix, threads=1)
        except ValueError as exc:
            return str(exc)


def assert_same(fast_name, x, t, imatrix=None):
    ref = run("ref", x, t, imatrix)
    got = run(fast_name, x, t, imatrix)
    if isinstance(ref, str) or isinstance(got, str):
        assert got == ref
        return
    bad = np.nonzero((ref != got).any(axis=1))[0]
    assert bad.size == 0, f"{t.name} rows {bad[:8].tolist()} differ from the reference ({fast_name})"


def row_len(t, blocks):
    return blocks * type_info(t).block_size


def battery(t, blocks, seed):
    """Deterministic inputs that reach every special case of the fast paths."""
    rng = np.random.default_rng(seed)
    n = row_len(t, blocks)
    big = 6e4 if t in (T.F16,) else 1e4 if t not in FLOAT_TYPES else 3e38

    def normal(rows=4):
        return rng.standard_normal((rows, n))

    cases = {
        "normal": normal(),
        "heavy": rng.standard_t(1.5, (4, n)).clip(-3e4, 3e4),
        "sparse": normal() * (rng.random((4, n)) < 0.1),
        "zeros": np.zeros((2, n)),
        "neg_zeros": -np.zeros((2, n)),
        "mixed_zeros": rng.choice(np.array([0.0, -0.0]), (2, n)),
        "constant": np.full((2, n), 3.25),
        "neg_constant": np.full((2, n), -3.25),
        "ties": rng.choice(np.array([-2.0, 2.0, 0.0, -0.0, 1.0]), (4, n)),
        "plus_minus": rng.choice(np.array([-1.0, 1.0]), (4, n)),
        "subnormal": normal() * 1e-41,
        "tiny": normal() * 1e-38,
        "small": normal() * 1e-30,
        "large": normal() * big / 4,
        "positive": np.abs(normal()),
        "negative": -np.abs(normal()),
        "blockwise_scales": normal() * np.repeat(10.0 ** rng.uniform(-20, 3, (4, -(-n // 32))), 32, axis=1)[:, :n],
    }
    # a row whose blocks mix the awkward cases, block by block
    blk = type_info(t).block_size
    mix = normal(1)
    kinds = [0.0, -0.0, 1e-41, 1e-38, 5.0, -5.0]
    for b in range(max(1, n // blk)):
        k = kinds[b % len(kinds)]
        if b % 3 == 0:
            mix[0, b * blk:(b + 1) * blk] = k
    cases["block_mix"] = mix
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in cases.items()}


def imatrices(n, seed):
    rng = np.random.default_rng(seed)
    w = (rng.uniform(0, 3, n) ** 2).astype(np.float32)
    zeros_some = w.copy()
    zeros_some[::5] = 0
    huge_ratio = (10.0 ** rng.uniform(-20, 20, n)).astype(np.float32)
    return {"plain": w, "zeros_some": zeros_some, "all_zero": np.zeros(n, np.float32),
            "huge_ratio": huge_ratio, "neg_zero": -np.zeros(n, np.float32)}


# block counts that hit lane-group tails: IQ4_NL and the weighted legacy types run 8 blocks at once
BLOCKS_SMALL = [1, 3, 8, 9]
BLOCKS_FLOAT = [1, 7, 15, 16, 17, 33, 100]   # element counts for F32/F16/BF16 (vector tails)


def blocks_for(t):
    if t in FLOAT_TYPES:
        return BLOCKS_FLOAT
    return BLOCKS_SMALL if type_info(t).block_size == 32 else [1, 2, 5]


# ---------------------------------------------------------------- deterministic


@pytest.mark.parametrize("t", TYPES, ids=lambda t: t.name)
def test_fast_equals_reference_deterministic(fast, t):
    for blocks in blocks_for(t):
        for name, x in battery(t, blocks, seed=blocks).items():
            assert_same(fast, x, t)


@pytest.mark.parametrize("t", [t for t in TYPES if type_info(t).uses_imatrix], ids=lambda t: t.name)
def test_fast_equals_reference_with_imatrix(fast, t):
    for blocks in blocks_for(t):
        n = row_len(t, blocks)
        cases = battery(t, blocks, seed=100 + blocks)
        for wname, w in imatrices(n, seed=blocks).items():
            for name in ("normal", "heavy", "sparse", "zeros", "ties", "tiny", "subnormal", "block_mix"):
                assert_same(fast, cases[name], t, w)


@pytest.mark.parametrize("t", TYPES, ids=lambda t: t.name)
def test_fast_refuses_the_same_rows(fast, t):
    n = row_len(t, 2 if type_info(t).block_size == 256 else 9)
    rng = np.random.default_rng(5)
    for bad in (np.nan, np.inf, -np.inf):
        for col in (0, n // 2, n - 1):
            x = rng.standard_normal((4, n)).astype(np.float32)
            x[2, col] = bad
            msg = run(fast, x, t)
            assert isinstance(msg, str) and "row 2" in msg
            assert msg == run("ref", x, t)
    # values too large for the format's fp16 scale / value: the same refusal on the same row
    x = rng.standard_normal((4, n)).astype(np.float32)
    x[1] *= 1e30 if t == T.BF16 else 1e6
    if t == T.BF16:
        x[1, 3] = 3.4e38
    assert_same(fast, x, t)


def test_fast_threads_do_not_change_bytes(fast):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((64, 512)).astype(np.float32)
    for t in (T.Q4_K, T.IQ4_NL, T.Q4_0, T.F16):
        with variant(fast):
            one = quantize(x, t, threads=1)
            two = quantize(x, t, threads=2)
        assert np.array_equal(one, two)
        assert np.array_equal(one, run("ref", x, t))


# ---------------------------------------------------------------- hypothesis


@st.composite
def cases(draw):
    t = draw(st.sampled_from(TYPES))
    blck = type_info(t).block_size
    rows = draw(st.integers(1, 3))
    if t in FLOAT_TYPES:
        n = draw(st.integers(1, 70))
    else:
        n = blck * draw(st.integers(1, 2 if blck == 256 else 18))
    kind = draw(st.sampled_from(["normal", "heavy", "scaled", "sparse", "constant", "values", "tiny"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "normal":
        x = rng.standard_normal((rows, n))
    elif kind == "heavy":
        x = rng.standard_t(1.2, (rows, n)).clip(-3e4, 3e4)
    elif kind == "scaled":
        x = rng.standard_normal((rows, n)) * 10.0 ** draw(st.floats(-42, 4))
    elif kind == "sparse":
        x = rng.standard_normal((rows, n)) * (rng.random((rows, n)) < draw(st.floats(0.01, 0.5)))
    elif kind == "constant":
        x = np.full((rows, n), draw(st.floats(-6e4, 6e4, width=32)))
    elif kind == "tiny":
        x = rng.standard_normal((rows, n)) * draw(st.sampled_from([1e-45, 1e-40, 1e-38, 3e-39]))
    else:
        vals = draw(st.lists(st.floats(-1e4, 1e4, width=32), min_size=1, max_size=6))
        x = rng.choice(np.array(vals + [-v for v in vals]), (rows, n))
    w = None
    if type_info(t).uses_imatrix and draw(st.booleans()):
        w = (rng.uniform(0, 3, n) ** draw(st.sampled_from([1, 2, 8]))).astype(np.float32)
        if draw(st.booleans()):
            w[rng.random(n) < 0.3] = 0
    return t, np.ascontiguousarray(x, dtype=np.float32), w


@pytest.mark.parametrize("name", FAST)
def test_fast_equals_reference_hypothesis(name):
    if not _clib.quantizer_variants()[name]:
        pytest.skip(f"no '{name}' quantizer variant here (CPU, build or QTK_ISA)")

    @given(cases())
    def check(case):
        t, x, w = case
        assert_same(name, x, t, w)

    check()


# ---------------------------------------------------------------- selection


def test_variant_selection_is_observable_and_forceable():
    names = _clib.quantizer_variants()
    assert list(names) == ["ref", "vec", "avx2"]
    assert names["ref"] and _clib.quantizer_variant_supported("vec")
    with variant("ref"):
        assert _clib.quantizer_variant() == "ref"
    with pytest.raises(ValueError):
        _clib.set_quantizer_variant("sse9")


@pytest.mark.parametrize("env,expected", [("ref", "ref"), ("scalar", "vec"), ("baseline", "vec"), ("vec", "vec")])
def test_qtk_isa_caps_the_choice(env, expected):
    code = ("from qtoolkit import _clib; import sys; v = _clib.quantizer_variant(); "
            "avail = _clib.quantizer_variants(); sys.stdout.write(v + ' ' + str(avail['avx2']))")
    root = ROOT
    env_vars = dict(os.environ, QTK_ISA=env, PYTHONPATH=root)
    out = subprocess.run([sys.executable, "-c", code], env=env_vars, capture_output=True, text=True, check=True,
                         cwd=root).stdout.split()
    assert out == [expected, "False"]


# ---------------------------------------------------------------- build-level checks



def _have(*tools):
    import shutil

    return all(shutil.which(t) for t in tools)


@pytest.mark.skipif(not _have("gcc", "objdump"), reason="needs gcc and objdump")
def test_no_fused_multiply_add_in_quantizers():
    """A fused a*b+c rounds once and would change bytes: prove none was formed (tools/check/check_no_fma.sh)."""
    res = subprocess.run(["bash", os.path.join(ROOT, "tools", "check", "check_no_fma.sh")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.skipif(not _have("aarch64-linux-gnu-gcc", "qemu-aarch64"),
                    reason="needs gcc-aarch64-linux-gnu and qemu-user (apt-get install gcc-aarch64-linux-gnu qemu-user)")
def test_arm64_variants_match_reference_under_qemu():
    res = subprocess.run(["bash", os.path.join(ROOT, "tools", "check", "check_arm64.sh")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
