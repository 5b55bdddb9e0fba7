"""Every ISA against the portable reference (layer 2 of the house test plan).

* dequantize and activation quantize: bit-exact with the reference, on lengths that hit the SIMD
  tails and on awkward values (roundf ties, zeros, constant blocks, subnormals, huge values, NaN);
* dot products / matmul: normalised error sum((a-b)^2) / sum(a^2) < 5e-4 against a float64
  product of the dequantized weights and the activation dequantized from its companion format.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qtoolkit as q
from qtoolkit import QtkValueError
from qtoolkit import _clib
from qtoolkit.matmul import weight_type

IQ_TYPES = ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M"]
DOT_TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
             "Q6_K", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0"] + IQ_TYPES
CUSTOMS = [q.CustomQuant(2, 32), q.CustomQuant(3, 16, True), q.CustomQuant(4, 32), q.CustomQuant(5, 24),
           q.CustomQuant(6, 64, True), q.CustomQuant(7, 8), q.CustomQuant(8, 40, True)]
DEQUANT_TYPES = DOT_TYPES + ["Q8_1", "Q8_K"]
BLOCK_COUNTS = [1, 2, 3, 7, 8, 15, 16, 17, 31, 33]
TOLERANCE = 5e-4


def _ids(values):
    return [v.name if isinstance(v, q.CustomQuant) else v for v in values]


def with_isa(name, fn, *args, **kwargs):
    before = q.active_isa()
    q.set_isa(name)
    try:
        return fn(*args, **kwargs)
    finally:
        q.set_isa(before)


def qz(x, qtype):
    """quantize, with importance weights for the types that need them (IQ2_XXS, IQ2_XS, IQ1_S)."""
    if not isinstance(qtype, q.CustomQuant) and q.type_info(qtype).requires_imatrix:
        n = x.shape[-1]
        return q.quantize(x, qtype, imatrix=(1.0 + 0.5 * np.cos(np.arange(n))).astype(np.float32))
    return q.quantize(x, qtype)


def weights(rng, rows, n, scale=1.0):
    w = rng.standard_normal((rows, n)) * rng.uniform(0.2, 2.0, (rows, 1)) * scale
    return w.astype(np.float32)


def companion(qtype):
    """The companion (activation) format of a weight type, for decoding the quantized activation."""
    qt = q.quants.resolve(qtype)
    if isinstance(qt, q.CustomQuant):
        return "Q8G"
    return {"F32": "F32", "F16": "F32", "BF16": "BF16", "Q4_0": "Q8_0", "Q5_0": "Q8_0", "Q8_0": "Q8_0",
            "IQ4_NL": "Q8_0", "Q4_1": "Q8_1", "Q5_1": "Q8_1"}.get(qt.name, "Q8_K")


def decode_activation(qtype, y, n):
    """float64 values of a quantized activation row."""
    comp = companion(qtype)
    if comp == "Q8G":
        g = q.quants.resolve(qtype).group_size
        blocks = y.reshape(n // g, 8 + g)
        d = blocks[:, :4].copy().view(np.float32)[:, 0].astype(np.float64)
        qs = blocks[:, 8:].view(np.int8).astype(np.float64)
        return (qs * d[:, None]).reshape(n)
    info = q.type_info(comp)
    blocks = y[: n // info.block_size * info.type_size]   # Q8_0 / Q8_1 rows carry a float tail after the blocks
    if comp in ("Q8_0", "Q8_1"):
        tail = y[blocks.size:].view(np.float32)
        nb = n // 32
        fields = q.dequantize(blocks.reshape(nb, -1)[:, :4].copy().reshape(1, -1).view(np.uint8), "F16")
        assert np.array_equal(tail[:nb], fields[0, 0::2])        # d, converted from the block's fp16
        if comp == "Q8_1":
            assert np.array_equal(tail[nb:], fields[0, 1::2])    # s
        else:
            sums = blocks.reshape(nb, -1)[:, 2:].view(np.int8).astype(np.int64).sum(1)
            assert np.array_equal(tail[nb:], sums.astype(np.float32))
    return q.dequantize(blocks[None, :], comp)[0].astype(np.float64)


def normalised_error(exact, got):
    exact = np.asarray(exact, dtype=np.float64)
    den = float((exact ** 2).sum())
    num = float(((exact - np.asarray(got, dtype=np.float64)) ** 2).sum())
    if den == 0.0:
        return 0.0 if num == 0.0 else float("inf")
    return num / den


def block_size(qtype):
    return q.type_info(qtype).block_size


# ---------------------------------------------------------------- bit-exact dequantize

@pytest.mark.parametrize("qtype", DEQUANT_TYPES + CUSTOMS, ids=_ids(DEQUANT_TYPES + CUSTOMS))
def test_dequantize_matches_reference(isa, qtype):
    rng = np.random.default_rng(1)
    for nb in BLOCK_COUNTS:
        n = nb * block_size(qtype)
        data = qz(weights(rng, 3, n), qtype)
        got = q.dequantize(data, qtype)
        ref = with_isa("ref", q.dequantize, data, qtype)
        assert np.array_equal(got.view(np.uint32), ref.view(np.uint32)), f"{nb} blocks"


@pytest.mark.parametrize("qtype", ["Q4_0", "Q5_1", "Q3_K", "Q6_K", "IQ4_XS", "TQ1_0", "F16", "BF16"] + IQ_TYPES)
def test_dequantize_random_bytes_matches_reference(isa, qtype):
    """Arbitrary block bytes (any level, any scale bit pattern including Inf/NaN halves)."""
    rng = np.random.default_rng(2)
    info = q.type_info(qtype)
    for nb in (1, 7, 33):
        data = rng.integers(0, 256, size=(4, nb * info.type_size), dtype=np.uint8)
        got = q.dequantize(data, qtype)
        ref = with_isa("ref", q.dequantize, data, qtype)
        assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))


# ---------------------------------------------------------------- bit-exact activation quantize

def awkward_rows(n, rng):
    """Rows with roundf ties, zeros, constant blocks, subnormals, huge values, heavy tails."""
    rows = []
    ties = np.zeros(n, np.float32)
    ties[::32] = 127.0                     # d = 1 per 32-block, so x * id is x itself
    ties[1::32] = 0.5
    ties[2::32] = -2.5
    ties[3::32] = 1.5
    ties[4::32] = -0.5
    ties[5::32] = 126.5
    ties[6::32] = -126.5
    rows.append(ties)
    rows.append(np.zeros(n, np.float32))
    rows.append(np.full(n, -3.25, np.float32))
    rows.append((rng.standard_normal(n) * 1e-39).astype(np.float32))   # subnormal
    rows.append((rng.standard_normal(n) * 1e6).astype(np.float32))
    rows.append(rng.standard_cauchy(n).astype(np.float32))
    mixed = rng.standard_normal(n).astype(np.float32)
    mixed[: n // 2] = 0.0
    mixed[n // 3] = 7.0                   # equal magnitudes of both signs (Q8_K keeps the first)
    mixed[n // 3 + 1] = -7.0
    rows.append(mixed)
    return np.stack(rows)


@pytest.mark.parametrize("act", ["Q8_0", "Q8_1", "Q8_K", "F16", "BF16"])
def test_activation_quantize_matches_reference(isa, act):
    rng = np.random.default_rng(3)
    for nb in BLOCK_COUNTS:
        n = nb * 256
        x = np.concatenate([awkward_rows(n, rng), rng.standard_normal((4, n)).astype(np.float32) * 5])
        if act == "F16":  # the public quantize refuses values that overflow fp16
            x = np.clip(x, -6e4, 6e4)
        got = q.quantize(x, act)
        ref = with_isa("ref", q.quantize, x, act)
        assert np.array_equal(got, ref), f"{nb} blocks"


@pytest.mark.parametrize("qtype", DOT_TYPES + CUSTOMS, ids=_ids(DOT_TYPES + CUSTOMS))
def test_companion_quantize_matches_reference(isa, qtype):
    """The activation quantizer a matmul uses, NaN included (the reference's NaN encoding)."""
    rng = np.random.default_rng(4)
    wt = weight_type(q.quants.resolve(qtype))
    unit = 256 if not isinstance(qtype, q.CustomQuant) else qtype.group_size * 32
    for x in list(awkward_rows(unit * 3, rng)) + [np.where(rng.random(unit * 3) < 0.01, np.nan, 1.0).astype(np.float32)]:
        got = _clib.quantize_activation(wt, np.ascontiguousarray(x))
        ref = with_isa("ref", _clib.quantize_activation, wt, np.ascontiguousarray(x))
        assert np.array_equal(got, ref)


# ---------------------------------------------------------------- dot products and matmul

def dot_oracle(qtype, w, x):
    """float64 product of the dequantized weights with the activations decoded from their companion
    format (quantized by the reference). For Q4_1 / Q5_1 the min term uses the activation block's
    stored s (ggml's fp16(d * sum q), taken before d is rounded), as ggml's kernel does."""
    wd = q.dequantize(w, qtype).astype(np.float64)
    wt = weight_type(q.quants.resolve(qtype))
    n = x.shape[1]
    ys = [with_isa("ref", _clib.quantize_activation, wt, row) for row in x]
    xd = np.stack([decode_activation(qtype, y, n) for y in ys])
    if companion(qtype) != "Q8_1":
        return xd @ wd.T
    nb = n // 32
    size = q.type_info(qtype).type_size
    m = q.dequantize(w.reshape(-1, nb, size)[:, :, 2:4].copy().reshape(w.shape[0], -1), "F16").astype(np.float64)
    s = np.stack([y[nb * 36:].view(np.float32)[nb:] for y in ys]).astype(np.float64)
    return xd @ (wd - np.repeat(m, 32, axis=1)).T + s @ m.T


@pytest.mark.parametrize("qtype", DOT_TYPES + CUSTOMS, ids=_ids(DOT_TYPES + CUSTOMS))
def test_matmul_error_bound_on_tail_lengths(isa, qtype):
    rng = np.random.default_rng(5)
    for nb in BLOCK_COUNTS:
        n = nb * block_size(qtype)
        w = qz(weights(rng, 5, n), qtype)
        x = rng.standard_normal((3, n)).astype(np.float32)
        got = q.matmul(w, qtype, x)
        err = normalised_error(dot_oracle(qtype, w, x), got)
        assert err < TOLERANCE, f"{nb} blocks: normalised error {err:.3g}"


@pytest.mark.parametrize("qtype", DOT_TYPES + CUSTOMS, ids=_ids(DOT_TYPES + CUSTOMS))
def test_vec_dot_matches_matmul(isa, qtype):
    """matmul is the dot kernel, element by element (the same bits)."""
    rng = np.random.default_rng(6)
    n = 8 * block_size(qtype) if block_size(qtype) > 1 else 100
    w = qz(weights(rng, 4, n), qtype)
    x = rng.standard_normal(n).astype(np.float32)
    wt = weight_type(q.quants.resolve(qtype))
    y = _clib.quantize_activation(wt, x)
    dots = np.array([_clib.vec_dot(wt, n, w[r], y) for r in range(4)], dtype=np.float32)
    assert np.array_equal(dots, q.matmul(w, qtype, x))


VALUE_KINDS = ["normal", "tiny", "large", "heavy", "constant", "sparse", "zeros"]


def make_values(kind, shape, rng):
    if kind == "normal":
        return rng.standard_normal(shape)
    if kind == "tiny":
        return rng.standard_normal(shape) * 1e-6
    if kind == "large":
        return rng.standard_normal(shape) * 300.0
    if kind == "heavy":
        return np.clip(rng.standard_cauchy(shape), -1e4, 1e4)
    if kind == "constant":
        return np.full(shape, 0.75)
    if kind == "sparse":
        return rng.standard_normal(shape) * (rng.random(shape) < 0.05)
    return np.zeros(shape)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    qtype=st.sampled_from(DOT_TYPES + CUSTOMS[:3]),
    rows=st.integers(1, 40),
    tokens=st.integers(1, 9),
    nblocks=st.integers(1, 20),
    wkind=st.sampled_from(VALUE_KINDS),
    xkind=st.sampled_from(VALUE_KINDS),
    seed=st.integers(0, 2 ** 31),
)
def test_matmul_hypothesis(isa, qtype, rows, tokens, nblocks, wkind, xkind, seed):
    rng = np.random.default_rng(seed)
    n = nblocks * block_size(qtype) if block_size(qtype) > 1 else nblocks * 7
    w = qz(make_values(wkind, (rows, n), rng).astype(np.float32), qtype)
    x = make_values(xkind, (tokens, n), rng).astype(np.float32)
    got = q.matmul(w, qtype, x)
    assert got.shape == (tokens, rows) and got.dtype == np.float32
    exact = dot_oracle(qtype, w, x)
    assert normalised_error(exact, got) < TOLERANCE
    ref = with_isa("ref", q.matmul, w, qtype, x)
    assert normalised_error(ref, got) < TOLERANCE


GEMM_TYPES = ["Q4_K", "Q8_0", "IQ4_NL", "Q6_K", "Q4_0", "Q2_K", "Q3_K", "Q5_K", "IQ4_XS", "Q4_1", "Q5_0", "Q5_1",
              "F16", "F32", "BF16", "TQ1_0", "TQ2_0"] + IQ_TYPES


@pytest.mark.parametrize("qtype", GEMM_TYPES)
def test_gemv_equals_gemm_rows(isa, qtype):
    """A token computed alone (gemv: the single-row, eight-row or 4 x 1 tile kernels) and inside a
    prompt (the 4- / 8-token kernels, 3 x 4 tiles, and the leftovers) gives the same bits, for every
    token count that leaves a different remainder and row counts that are not multiples of 8."""
    rng = np.random.default_rng(7)
    n = 512 if qtype not in ("F16", "F32", "BF16") else 517   # float rows: a tail after the 8-wide steps
    w = qz(weights(rng, 203, n), qtype)
    x = rng.standard_normal((37, n)).astype(np.float32)
    alone = np.stack([q.matmul(w, qtype, x[t]) for t in range(37)])
    for tokens in (37, 12, 9, 5, 3, 2):
        assert np.array_equal(q.matmul(w, qtype, x[:tokens]), alone[:tokens]), f"{tokens} tokens"
    one_row = np.array([q.matmul(w[r:r + 1], qtype, x[5])[0] for r in range(0, 203, 29)], np.float32)
    assert np.array_equal(one_row, alone[5, 0:203:29])


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_K", "F16", q.CustomQuant(4, 24)], ids=_ids(["Q8_0", "Q4_K", "F16", q.CustomQuant(4, 24)]))
def test_quantize_still_refuses_nonfinite(isa, qtype):
    """The dispatched NaN/Inf check of quantize finds a bad value at any position, tail included."""
    n = 768
    for pos in (0, 15, 16, 500, n - 1):
        for bad in (np.nan, np.inf, -np.inf):
            x = np.ones((3, n), np.float32)
            x[2, pos] = bad
            with pytest.raises(QtkValueError, match="row 2"):
                q.quantize(x, qtype)


def _matmul_runs(type_id: int) -> bool:
    """The empirical check the allocator's candidates once made: quantize ones((1, 256))
    with an importance matrix of ones, then run qtk_matmul on it. A type the build cannot quantize
    gets zero bytes of the right length, so matmul itself is asked."""
    tr = _clib.type_traits(type_id)
    ones = np.ones((1, 256), np.float32)
    w = np.zeros((1, 256 // tr.block_size * tr.type_size), np.uint8)
    try:
        if tr.can_quantize:
            _clib.quantize_rows(type_id, ones, w, imatrix=np.ones(256, np.float32))
        _clib.BoundMatmul(type_id, w, 256)(ones, 1)
        return True
    except Exception:  # noqa: BLE001 - any refusal means "cannot run"
        return False


@pytest.mark.parametrize("qtype", list(q.QuantType), ids=[t.name for t in q.QuantType])
def test_can_matmul_trait_is_what_matmul_does(isa, qtype):
    """The traits' can_matmul (from the reference kernel table) says whether qtk_matmul runs the type,
    on every ISA."""
    runs = _matmul_runs(int(qtype))
    assert _clib.type_traits(int(qtype)).can_matmul == runs
    assert q.type_info(qtype).can_matmul == runs   # what the bit allocator's --runnable-only reads
